"""samic eval: rate-distortion evaluation of SAMIC against classical codecs.

    samic eval --dataset DIR --out DIR [--codecs samic,jpeg,webp,avif,hevc,jpeg2000,jpegxl]
               [--qualities CODEC=Q,Q,... ...] [--metrics psnr,ms-ssim,lpips,dists]
               [--per-image] [--limit N] [--weights PATH] [--decoder mse|perceptual|both]
               [--threads N] [--resume] [--no-plots] [--quiet]

Writes into --out: one CompressAI-format JSON per codec (``<name>.json``, saved after
every rate point, so that a long run can be resumed with --resume), ``bd-rate.md`` (BD-rate
of every SAMIC decoder against every classical codec, on the rate range both cover) and the
RD plots ``rd.html`` (plotly) and ``rd.png``.
"""
from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

from samic.errors import UserError

# --metrics names -> result keys (CompressAI's); "lpips" is LPIPS-Alex, as in CompressAI.
METRIC_KEYS = {
    "psnr": "psnr-rgb",
    "ms-ssim": "ms-ssim-rgb",
    "lpips": "lpips-alex",
    "lpips-alex": "lpips-alex",
    "lpips-vgg": "lpips-vgg",
    "dists": "dists",
}
DEFAULT_METRICS = "psnr,ms-ssim,lpips"
DEFAULT_CODECS = "samic,jpeg,webp,avif,hevc,jpeg2000,jpegxl"
CODEC_ALIASES = {"heic": "hevc", "heif": "hevc", "bpg": "hevc", "jp2": "jpeg2000", "j2k": "jpeg2000",
                 "jxl": "jpegxl", "jpg": "jpeg"}

# Sweeps of the classical codecs for learned-codec comparisons: dense over roughly
# 0.05-1 bpp on Kodak (the codecs' own default sweeps reach 2-4 bpp). Measured bpp on
# Kodak at the ends: jpeg 0.11-1.07 (q1-2 give the same 0.10 bpp floor), webp 0.13-0.93,
# avif 0.08-0.73, hevc 0.04-0.75, jpeg2000 0.07-0.96, jpegxl 0.16-0.79 (q5 is cjxl's floor).
EVAL_QUALITIES = {
    "jpeg": (3, 5, 7, 10, 15, 20, 30, 40, 50),
    "webp": (0, 2, 5, 10, 20, 30, 40, 50),
    "avif": (0, 5, 10, 15, 20, 25, 30, 40, 50),
    "hevc": (0, 5, 10, 15, 20, 25, 30, 36),
    "jpeg2000": (22.0, 23.0, 24.0, 25.0, 26.0, 28.0, 30.0, 32.0),
    "jpegxl": (5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0),
}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="RD evaluation of SAMIC and classical codecs (JSON, BD-rate table, plots)",
        description="Encode and decode every image of a folder with every codec at every quality; "
                    "write CompressAI-format JSON per codec, a BD-rate table and RD plots.")
    p.add_argument("--dataset", required=True, help="folder of lossless images (PNG, PPM, BMP, TIFF), e.g. Kodak")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--codecs", default=DEFAULT_CODECS,
                   help=f"comma-separated: samic and classical codecs, or 'all' (default: {DEFAULT_CODECS})")
    p.add_argument("--qualities", nargs="+", default=[], metavar="CODEC=Q,Q,...",
                   help="sweep of one codec, e.g. samic=0,0.5,1 jpeg=10,30,50 (default: built-in sweeps)")
    p.add_argument("--metrics", default=DEFAULT_METRICS,
                   help=f"comma-separated from {', '.join(METRIC_KEYS)} (default: {DEFAULT_METRICS}); "
                        "per 768x512 image on 2 CPU cores: ms-ssim ~1.5 s, lpips ~1 s, dists ~6 s")
    p.add_argument("--per-image", action="store_true", help="keep every image's values in the JSON files")
    p.add_argument("--limit", type=int, default=None, help="only the first N images (sorted by name)")
    p.add_argument("--weights", default=None,
                   help="SAMIC weights: a preset's shipped weights or a .safetensors file (default: samic-lite)")
    p.add_argument("--decoder", choices=("mse", "perceptual", "both"), default=None,
                   help="SAMIC decoder(s) to evaluate (default: every decoder the weights have)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch and numba threads for SAMIC and the metrics (default 1, like the classical "
                        "encoders, which run on one thread)")
    p.add_argument("--resume", action="store_true",
                   help="keep the rate points already in --out made with the same codec settings (for SAMIC: "
                        "the same weights digest and decoder); points that lack a requested metric are "
                        "re-encoded (same bpp required, timings replaced) for that metric only")
    p.add_argument("--no-plots", action="store_true", help="skip rd.html / rd.png")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


# ----------------------------------------------------------------------------- argument checks
def parse_metrics(text: str) -> list[str]:
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if not names:
        raise UserError("--metrics is empty")
    if unknown := [n for n in names if n not in METRIC_KEYS]:
        raise UserError(f"unknown metric {unknown[0]!r}; choose from {', '.join(METRIC_KEYS)}")
    return list(dict.fromkeys(METRIC_KEYS[n] for n in names))


def parse_codecs(text: str) -> list[str]:
    """Canonical codec names ('samic' for the learned codec), checked to run here."""
    from samic.eval.classical import CODECS, missing_codecs

    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return ["samic", *(n for n in CODECS if n not in missing_codecs())]
    if not names:
        raise UserError("--codecs is empty")
    names = list(dict.fromkeys(CODEC_ALIASES.get(n, n) for n in names))
    for name in names:
        if name != "samic" and name not in CODECS:
            raise UserError(f"unknown codec {name!r}; choose from samic, {', '.join(CODECS)} (or 'all')")
        if reason := missing_codecs().get(name):
            raise UserError(f"codec {name} cannot run here: {reason}")
    return names


def parse_qualities(entries: list[str], codecs: list[str]) -> dict[str, list[float]]:
    """``CODEC=Q,Q,...`` entries -> sweeps, checked against each codec's quality range."""
    from samic.eval.classical import CODECS
    from samic.eval.samic_codec import SAMICCodec

    sweeps = {}
    for entry in entries:
        name, sep, values = entry.partition("=")
        name = CODEC_ALIASES.get(name.strip().lower(), name.strip().lower())
        if not sep or not values.strip():
            raise UserError(f"--qualities entries look like CODEC=Q,Q,... (e.g. jpeg=10,30,50), got {entry!r}")
        if name not in codecs:
            raise UserError(f"--qualities names {name!r}, which is not in --codecs ({', '.join(codecs)})")
        cls = SAMICCodec if name == "samic" else CODECS[name]
        try:
            sweep = [float(v) for v in values.split(",")]
        except ValueError:
            raise UserError(f"--qualities {name}: not a list of numbers: {values!r}") from None
        lo, hi = cls.quality_range
        for q in sweep:
            if not (math.isfinite(q) and lo <= q <= hi):
                raise UserError(f"--qualities {name}: {q:g} is outside [{lo:g}, {hi:g}]")
            if cls.integer_quality and q != int(q):
                raise UserError(f"--qualities {name}: {q:g} is not an integer")
        if len(set(sweep)) != len(sweep):
            raise UserError(f"--qualities {name}: repeated value")
        sweeps[name] = [int(q) if cls.integer_quality else q for q in sweep]
    return sweeps


def make_samic_codecs(weights: str | None, decoder: str | None) -> list:
    """One SAMICCodec per requested decoder, all sharing one loaded model."""
    from samic.commands.compress import load_model
    from samic.eval.samic_codec import SAMICCodec

    model = load_model(weights)
    wanted = list(model.decoders) if decoder is None else ["mse", "perceptual"] if decoder == "both" else [decoder]
    if missing := [d for d in wanted if d not in model.decoders]:
        raise UserError(f"the {model.config.name} weights have no {missing[0]} decoder "
                        f"(they have: {', '.join(model.decoders)})")
    return [SAMICCodec(model, d) for d in wanted]


# ----------------------------------------------------------------------------- results, point by point
class _Ticking:
    """A codec that advances the progress bar once per decode (one per image)."""

    def __init__(self, codec, bar):
        self.codec, self.bar = codec, bar

    def __getattr__(self, name):
        return getattr(self.codec, name)

    def encode(self, rgb, quality):
        return self.codec.encode(rgb, quality)

    def decode(self, data):
        rgb = self.codec.decode(data)
        self.bar.update()
        return rgb


def _points(result) -> dict[float, tuple[dict, dict | None]]:
    """An RDResults split into quality -> (means, per-image values or None)."""
    out = {}
    for i, q in enumerate(result.qualities or []):
        means = {k: v[i] for k, v in result.results.items()}
        per_image = None if result.per_image is None else {
            image: {k: v[i] for k, v in table.items()} for image, table in result.per_image.items()}
        out[q] = (means, per_image)
    return out


def _assemble(name: str, description: str, points: dict, sweep: list[float], per_image: bool):
    """RDResults of the points done so far, in sweep order."""
    from samic.eval.results import RDResults

    done = [q for q in sweep if q in points]

    def common_keys(tables):  # keys present at every rate point, in first-seen order
        return [k for k in tables[0] if all(k in t for t in tables)]

    means = [points[q][0] for q in done]
    table = {k: [m[k] for m in means] for k in common_keys(means)}
    by_image = None
    if per_image:
        by_image = {}
        for image in points[done[0]][1] or {}:
            rows = [points[q][1][image] for q in done]
            by_image[image] = {k: [r[k] for r in rows] for k in common_keys(rows)}
    return RDResults(name=name, description=description, qualities=done, results=table, per_image=by_image)


def _resumable(path: Path, description: str, per_image: bool, n_images: int) -> dict:
    """The points of a previous run in ``path`` that this run can build on (else {}).

    They must come from the same codec configuration (for SAMIC: the same weights digest and
    decoder, whichever file they came from) and the same number of images; metrics they lack
    are added by :func:`evaluate_all`.
    """
    from samic.eval.results import RDResults
    from samic.eval.samic_codec import results_identity

    if not path.is_file():
        return {}
    try:
        old = RDResults.load(path)
    except (ValueError, OSError) as exc:
        print(f"note: --resume: ignoring {path.name}: {exc}", file=sys.stderr)
        return {}
    same_images = old.per_image is None or len(old.per_image) == n_images
    if results_identity(old.description) != results_identity(description) or old.qualities is None \
            or (per_image and old.per_image is None) or not same_images:
        print(f"note: --resume: {path.name} was made with other settings; starting it again", file=sys.stderr)
        return {}
    return _points(old)


def run(args) -> int:
    # Every argument is checked before anything slow (torch, weights, metrics) loads.
    dataset = Path(args.dataset)
    if not dataset.is_dir():
        raise UserError(f"--dataset {dataset} is not a folder")
    if args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1, got {args.limit}")
    from samic.eval.runner import list_images

    try:
        n_images = len(list_images(dataset)[:args.limit])
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    metric_keys = parse_metrics(args.metrics)
    names = parse_codecs(args.codecs)
    sweeps = parse_qualities(args.qualities, names)
    if "samic" not in names and (args.weights or args.decoder):
        raise UserError("--weights and --decoder apply to SAMIC, which is not in --codecs")

    from samic.eval.classical import CODECS
    from samic.eval.samic_codec import SAMICCodec

    codecs = []
    if "samic" in names:
        codecs += make_samic_codecs(args.weights, args.decoder)
    codecs += [CODECS[n]() for n in names if n != "samic"]
    for codec in codecs:
        key = "samic" if isinstance(codec, SAMICCodec) else codec.name
        sweeps[codec.name] = sweeps.get(key) or list(EVAL_QUALITIES.get(key, codec.default_qualities))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create --out {out}: {exc.strerror or exc}") from None

    import torch

    from samic.bench.codec import set_threads

    threads = torch.get_num_threads()
    set_threads(args.threads)
    try:
        results = evaluate_all(dataset, codecs, sweeps, metric_keys, out, n_images=n_images, limit=args.limit,
                               per_image=args.per_image, resume=args.resume, progress=not args.quiet)
    finally:
        set_threads(threads)
    report(results, codecs, out, plots=not args.no_plots)
    return 0


def evaluate_all(dataset: Path, codecs: list, sweeps: dict, metric_keys: list[str], out: Path, *,
                 n_images: int, limit: int | None, per_image: bool, resume: bool, progress: bool) -> dict:
    """Run every codec at every quality, saving ``out/<codec>.json`` after each rate point."""
    from tqdm.auto import tqdm

    from samic.codec.image_io import load_image
    from samic.eval.runner import default_metrics, evaluate, list_images
    from samic.eval.samic_codec import SAMICCodec

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = default_metrics(metric_keys)
    if missing := [k for k in metric_keys if k not in metrics]:  # a metric asked for is an error if absent
        reasons = "; ".join(str(w.message) for w in caught)
        raise RuntimeError(f"cannot compute {', '.join(missing)}: {reasons}")
    first_image = load_image(list_images(dataset)[0])
    done = {c.name: _resumable(out / f"{c.name}.json", c.description, per_image, n_images) if resume else {}
            for c in codecs}

    def lacking(codec, quality) -> list[str]:  # the metrics a rate point still needs
        return [k for k in metric_keys if quality not in done[codec.name] or k not in done[codec.name][quality][0]]

    todo = sum(n_images * sum(bool(lacking(c, q)) for q in sweeps[c.name]) for c in codecs)
    results = {}
    with tqdm(total=todo, disable=not progress, unit="img", dynamic_ncols=True) as bar:
        for codec in codecs:
            points, sweep = done[codec.name], sweeps[codec.name]
            remaining = [q for q in sweep if lacking(codec, q)]
            bar.set_description(codec.name)
            if remaining:  # untimed warm-up: library loading, caches, the network's first pass
                codec.decode(codec.encode(first_image, remaining[0]))
            for quality in remaining:
                needed = {k: metrics[k] for k in lacking(codec, quality)}
                if isinstance(codec, SAMICCodec):
                    codec.clear_phases()
                run = evaluate(dataset, {codec.name: _Ticking(codec, bar)}, {codec.name: [quality]}, needed,
                               progress=False, per_image=True, limit=limit, warmup=False)[codec.name]
                means = {k: v[0] for k, v in run.results.items()}
                if isinstance(codec, SAMICCodec):
                    means.update(codec.phase_summary())
                images = {img: {k: v[0] for k, v in table.items()} for img, table in run.per_image.items()}
                if quality in points:  # a finished point that lacked metrics: add them (and the new timings)
                    _check_same_files(codec.name, quality, points[quality][0], means)
                    old_means, old_images = points[quality]
                    means = {**old_means, **means}
                    images = {img: {**(old_images or {}).get(img, {}), **images[img]} for img in images}
                points[quality] = (means, images)
                results[codec.name] = _assemble(codec.name, codec.description, points, sweep, per_image)
                results[codec.name].save(out / f"{codec.name}.json")
            if codec.name not in results and points:  # every point reused: same digest, provenance updated
                results[codec.name] = _assemble(codec.name, codec.description, points, sweep, per_image)
                results[codec.name].save(out / f"{codec.name}.json")
    return results


def _check_same_files(name: str, quality: float, old: dict, new: dict) -> None:
    """Adding metrics to an old point re-encodes it: the files must come out the same size."""
    if not math.isclose(old["bpp"], new["bpp"], rel_tol=1e-9):
        raise RuntimeError(f"{name} at quality {quality:g} now gives {new['bpp']:.6f} bpp, the results in --out "
                           f"{old['bpp']:.6f}: the encoder is not deterministic, rerun without --resume")


def report(results: dict, codecs: list, out: Path, *, plots: bool) -> None:
    """bd-rate.md (printed too) and the RD plots."""
    from samic.eval.bdrate import bd_rate_table
    from samic.eval.samic_codec import SAMICCodec

    tests = [results[c.name] for c in codecs if isinstance(c, SAMICCodec)]
    anchors = [results[c.name] for c in codecs if not isinstance(c, SAMICCodec)]
    metrics = ("psnr-rgb", "ms-ssim-rgb", "lpips-alex", "lpips-vgg", "dists")
    tables = [bd_rate_table(t, anchors, metrics) for t in tests] if anchors else []
    if tables:
        (out / "bd-rate.md").write_text("\n".join(tables))
        print("\n".join(tables))
    for r in results.values():
        print(f"{r.name}: {len(r)} points, {min(r.results['bpp']):.3f}-{max(r.results['bpp']):.3f} bpp -> "
              f"{out / (r.name + '.json')}")
    if plots:
        from samic.eval.plots import save_rd_plots

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # kaleido's fall-back to matplotlib is not the user's concern
            written = save_rd_plots(list(results.values()), out / "rd", title=f"RD curves ({out.name})")
        print("plots: " + ", ".join(str(p) for p in written.values()))
