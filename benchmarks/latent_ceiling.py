"""Where the distortion comes from: quantization of y, or the transforms themselves.

    python benchmarks/latent_ceiling.py [IMAGE_DIR] [--weights FILE] [--limit 4] [--qualities 0 0.5 1]

For each quality: the estimated bpp and PSNR of the normal forward pass (y rounded around the
ChARM means), and the PSNR when y is quantized k times finer (y*k rounded, divided by k) and not
at all (y_hat = y, the autoencoder's own ceiling at that quality). When the rounded PSNR is
already close to the ceiling, more rate cannot buy quality: the transforms must learn to keep
more detail (training at higher lambda), not the gain units to spend more bits.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "kodak"


def psnr(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    return -10 * math.log10(((x_hat.clamp(0, 1) - x) ** 2).mean().item())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="?", type=Path, default=KODAK, help=f"folder of images (default {KODAK})")
    parser.add_argument("--weights", default=None, help="weights file or preset (default: the shipped samic-lite)")
    parser.add_argument("--limit", type=int, default=4, help="first N images of the folder (default 4)")
    parser.add_argument("--qualities", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    parser.add_argument("--finer", type=float, nargs="+", default=[2.0, 4.0], help="finer quantization factors k")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    from samic.codec.image_io import open_image_file
    from samic.models.samic import pad_to_multiple
    from samic.weights import load_model

    torch.set_num_threads(args.threads)
    files = sorted(p for p in args.images.glob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})[:args.limit]
    if not files:
        print(f"error: no PNG or JPEG images in {args.images}", file=sys.stderr)
        return 2
    try:  # WeightsError and ImageError are ValueErrors
        model = load_model(args.weights).float().eval()
        images = [torch.from_numpy(open_image_file(f).copy()).permute(2, 0, 1)[None].float() / 255 for f in files]
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    finer = [f"k={k:g}" for k in args.finer]
    print(f"{len(files)} images from {args.images}; mean over images\n")
    print("| quality | bpp | PSNR rounded | " + " | ".join(f"PSNR {k}" for k in finer) + " | PSNR unquantized |")
    print("|---:|---:|---:|" + "---:|" * (len(finer) + 1))
    for quality in args.qualities:
        sums = [0.0] * (3 + len(finer))
        for x in images:
            height, width = x.shape[-2:]
            with torch.no_grad():
                out = model(x, quality)
                q = model.quality_tensor(quality, 1)
                y, _, _ = model.analysis(pad_to_multiple(x), q)
                bits = sum(-torch.log2(v).sum().item() for v in out.likelihoods.values())
                row = [bits / (height * width), psnr(out.x_hat, x)]
                for k in args.finer:
                    row.append(psnr(model.synthesis(torch.round(y * k) / k, q)[..., :height, :width], x))
                row.append(psnr(model.synthesis(y, q)[..., :height, :width], x))
            sums = [s + v for s, v in zip(sums, row)]
        mean = [s / len(images) for s in sums]
        print(f"| {quality:g} | {mean[0]:.3f} | " + " | ".join(f"{v:.2f}" for v in mean[1:]) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
