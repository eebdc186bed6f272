"""What SAMB's scan contributes: the same weights run with the scan changed, at inference.

Each variant is one ``ScanSettings`` passed to ``SAMIC.forward`` (so to every SAMB):

- ``semantic``: the intact model (tokens scanned cluster by cluster, raster inside a cluster);
- ``raster``: row by row, the clusters ignored;
- ``random``: a fixed random permutation (seed 0);
- ``no-recurrence``: the state-less ablation, the scan returns only its skip term D * u.

Per variant, photo and quality one forward pass (eval mode, no gradients): the estimated rate
from the entropy models' likelihoods (bits per pixel, as in training) and the PSNR of the MSE
decoder's reconstruction clamped to [0, 1] and rounded to 8 bits. Points are means over the
photos (PSNR: the mean of per-photo PSNRs). Each variant's curve over the qualities gets a PSNR
BD-rate against the intact model (samic.eval.bdrate; positive = the variant needs more bits at
equal PSNR). These are estimated rates, not file sizes: the scan order of h_s's SAMB is not
recorded in a file, so a real file could not be decoded with another order anyway.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from samic.bench.clusters import to_tensor
from samic.layers.samb import ScanSettings
from samic.quality import MIDDLE_QUALITY, RD_QUALITIES
from samic.train.losses import bits_per_pixel, per_sample_mse, psnr_from_mse

INTACT = "semantic"
VARIANTS: dict[str, ScanSettings] = {
    INTACT: ScanSettings(order="semantic"),
    "raster": ScanSettings(order="raster"),
    "random": ScanSettings(order="random", seed=0),
    "no-recurrence": ScanSettings(recurrence=False),
    "scan-output-zeroed": ScanSettings(recurrence=False, skip=False),
}


@dataclass(frozen=True)
class RDPoint:
    """Means over the photos at one quality."""

    quality: float
    bpp: float  # estimated from the likelihoods
    psnr: float  # dB, x_hat clamped and rounded to 8 bits


def rd_point(model, x: torch.Tensor, quality: float, scan: ScanSettings) -> tuple[np.ndarray, np.ndarray]:
    """One forward pass of photos x (B, 3, H, W) in [0, 1] -> (bpp (B,), PSNR (B,)).

    No gradients; the model should be in eval mode (rounding instead of noise)."""
    device = next(model.parameters()).device
    x = x.to(device)
    with torch.no_grad():
        out = model(x, quality=quality, scan=scan)
        x_hat = torch.round(out.x_hat.clamp(0, 1) * 255) / 255
        bpp = bits_per_pixel(out.likelihoods, x.shape[-2] * x.shape[-1])
        psnr = psnr_from_mse(per_sample_mse(x_hat, x))
    return bpp.cpu().numpy(), psnr.cpu().numpy()


@dataclass(frozen=True)
class VariantResult:
    name: str
    scan: dict  # ScanSettings as a dict
    points: list[RDPoint]  # one per quality of the sweep
    at_quality: RDPoint  # the single quality reported on its own (default 0.5)
    bd_rate_psnr: float | None  # % against the intact model; None for the intact model or when undefined
    bd_note: str | None = None  # why the BD-rate is undefined


@dataclass(frozen=True)
class ScanAblationReport:
    images: list[str]
    qualities: list[float]
    at_quality: float
    variants: list[VariantResult]
    per_image: list[dict] = field(repr=False)  # {image, variant, quality, bpp, psnr}

    @classmethod
    def from_dict(cls, data: dict) -> "ScanAblationReport":
        """A report read back from its JSON (``samic bench scan-ablation --json``)."""
        variants = [VariantResult(**{**v, "points": [RDPoint(**p) for p in v["points"]],
                                     "at_quality": RDPoint(**v["at_quality"])}) for v in data["variants"]]
        return cls(**{**data, "variants": variants})


def scan_ablation(model, images: Sequence[str | Path], qualities: Sequence[float] = RD_QUALITIES,
                  variants: Mapping[str, ScanSettings] | None = None, at_quality: float = MIDDLE_QUALITY,
                  progress: Callable[[str], None] | None = None) -> ScanAblationReport:
    """Estimated-bpp/PSNR points of every variant at every quality, and their BD-rates.

    ``variants`` must contain the intact model under the name ``semantic`` (the BD anchor);
    default VARIANTS. Forward passes: photos x variants x (qualities + at_quality unless in
    qualities). The model is in eval mode for the measurement and restored after.
    """
    from samic.eval.bdrate import bd_rate
    from samic.codec.image_io import load_image as load_rgb

    variants = dict(VARIANTS if variants is None else variants)
    if INTACT not in variants:
        raise ValueError(f"the variants must include the intact model, {INTACT!r}")
    if not images:
        raise ValueError("no images")
    sweep = sorted({float(q) for q in qualities} | {float(at_quality)})
    values = {(v, q): [] for v in variants for q in sweep}  # -> [(bpp, psnr)] per photo
    per_image = []
    was_training = model.training
    model.eval()
    try:
        for path in images:
            name = Path(path).name
            if progress:
                progress(name)
            x = to_tensor(load_rgb(path))
            for variant, scan in variants.items():
                for q in sweep:
                    bpp, psnr = rd_point(model, x, q, scan)
                    values[(variant, q)].append((float(bpp[0]), float(psnr[0])))
                    per_image.append({"image": name, "variant": variant, "quality": q,
                                      "bpp": float(bpp[0]), "psnr": float(psnr[0])})
    finally:
        model.train(was_training)

    def point(variant, q) -> RDPoint:
        bpp, psnr = np.mean(values[(variant, q)], axis=0)
        return RDPoint(quality=q, bpp=float(bpp), psnr=float(psnr))

    curves = {v: [point(v, float(q)) for q in sorted({float(q) for q in qualities})] for v in variants}
    anchor = curves[INTACT]
    results = []
    for variant, scan in variants.items():
        bd, note = None, None
        if variant != INTACT:
            try:
                bd = bd_rate([p.bpp for p in anchor], [p.psnr for p in anchor],
                             [p.bpp for p in curves[variant]], [p.psnr for p in curves[variant]])
            except ValueError as err:
                note = str(err)
        results.append(VariantResult(name=variant, scan=scan._asdict(), points=curves[variant],
                                     at_quality=point(variant, float(at_quality)), bd_rate_psnr=bd, bd_note=note))
    return ScanAblationReport(images=[Path(p).name for p in images], qualities=sorted({float(q) for q in qualities}),
                              at_quality=float(at_quality), variants=results, per_image=per_image)


def format_table(report: ScanAblationReport) -> str:
    """The report as Markdown: per variant PSNR/bpp at the single quality and the BD-rate,
    then every variant's RD points."""
    q0 = report.at_quality
    lines = [f"scan ablation on {len(report.images)} photos (forward passes, estimated bpp, PSNR of the "
             f"8-bit MSE reconstruction); BD-rate (PSNR, pchip) against {INTACT} over q = "
             + ", ".join(f"{q:g}" for q in report.qualities), "",
             f"| variant | PSNR at q = {q0:g} (dB) | bpp at q = {q0:g} | PSNR BD-rate |", "|---|---:|---:|---:|"]
    for v in report.variants:
        bd = "anchor" if v.name == INTACT else ("n/a" if v.bd_rate_psnr is None else f"{v.bd_rate_psnr:+.2f} %")
        lines.append(f"| {v.name} | {v.at_quality.psnr:.3f} | {v.at_quality.bpp:.4f} | {bd} |")
    notes = [f"- {v.name}: {v.bd_note}" for v in report.variants if v.bd_note]
    if notes:
        lines += ["", *notes]
    lines += ["", "| variant | " + " | ".join(f"q = {q:g}" for q in report.qualities) + " |",
              "|---|" + "---:|" * len(report.qualities)]
    for v in report.variants:
        lines.append(f"| {v.name} | " + " | ".join(f"{p.bpp:.4f} bpp, {p.psnr:.2f} dB" for p in v.points) + " |")
    return "\n".join(lines)
