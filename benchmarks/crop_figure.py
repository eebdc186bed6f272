"""Side-by-side crops at one low rate: SAMIC (MSE and perceptual decoder, one .samic file),
JPEG and WebP, each at the target bpp, labelled with bpp, PSNR and LPIPS-Alex.

    python benchmarks/crop_figure.py                      # the model card's figures, shipped weights
    python benchmarks/crop_figure.py IMAGE [IMAGE ...] [--bpp 0.15] [--box L,T,R,B ...]
                                     [--out docs/images] [--scale 2] [--weights FILE]

With no images: kodim04, kodim19 and kodim23 from ../shared/data/kodak with their default boxes,
written to docs/images/crops-kodimXX.png (rerun after the weights change). ``--box`` once applies
to every image, or give one per image; without it an image needs a default box (below). ``--out``
is a folder (crops-STEM.png inside) or, for one image, a .png path. Prints a markdown table of
the numbers in the figures. See samic.viz.crops for what is measured.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "kodak"
# (left, top, right, bottom): face (eyes to lips), picket fence and life ring, parrot's head.
DEFAULT_BOXES = {
    "kodim04": (150, 290, 406, 514),
    "kodim19": (0, 420, 256, 644),
    "kodim23": (300, 80, 556, 304),
}
MAX_BYTES = 1_500_000  # per PNG (the repository keeps figures small)


def parse_box(text: str) -> tuple[int, int, int, int]:
    try:
        box = tuple(int(v) for v in text.split(","))
    except ValueError:
        box = ()
    if len(box) != 4:
        raise argparse.ArgumentTypeError(f"a box is LEFT,TOP,RIGHT,BOTTOM in pixels, got {text!r}")
    return box


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="*", type=Path, help=f"default: {', '.join(DEFAULT_BOXES)} from {KODAK}")
    parser.add_argument("--bpp", type=float, default=0.15, help="target bits per pixel (default 0.15)")
    parser.add_argument("--box", type=parse_box, action="append", help="LEFT,TOP,RIGHT,BOTTOM (once or per image)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="folder, or a .png for one image")
    parser.add_argument("--scale", type=int, default=2, help="magnification of the crops (default 2)")
    parser.add_argument("--weights", default=None, help="weights file or preset (default: the shipped samic-lite)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)

    images = args.images or [KODAK / f"{name}.png" for name in DEFAULT_BOXES]
    if args.box and len(args.box) not in (1, len(images)):
        parser.error(f"give --box once or once per image ({len(images)}), not {len(args.box)} times")
    boxes = []
    for i, image in enumerate(images):
        if args.box:
            boxes.append(args.box[0] if len(args.box) == 1 else args.box[i])
        elif image.stem in DEFAULT_BOXES:
            boxes.append(DEFAULT_BOXES[image.stem])
        else:
            parser.error(f"no default crop box for {image.name}: give --box")
        if not image.is_file():
            parser.error(f"image not found: {image}")
    if args.out.suffix.lower() == ".png" and len(images) > 1:
        parser.error("--out FILE.png needs exactly one image; give a folder for several")

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from samic.viz.crops import crop_comparison, save_crop_comparison
    from samic.weights import load_model

    from samic.weights import WeightsError

    torch.set_num_threads(args.threads)
    try:
        model = load_model(args.weights)
    except WeightsError as exc:
        parser.error(str(exc))
    print("| image | codec | quality | bpp | PSNR crop (dB) | LPIPS crop | PSNR image (dB) | LPIPS image |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for image, box in zip(images, boxes):
        start = time.perf_counter()
        try:
            result = crop_comparison(image, args.bpp, box, model=model)
        except (ValueError, OSError) as exc:  # a bad box, bpp or image file: one line, no traceback
            parser.error(f"{image.name}: {exc}")
        path = args.out if args.out.suffix.lower() == ".png" else args.out / f"crops-{image.stem}.png"
        save_crop_comparison(result, path, scale=args.scale, max_bytes=MAX_BYTES)
        for p in result.panels:
            print(f"| {result.name} | {p.label} | {p.quality:g} | {p.bpp:.3f} | {p.psnr:.2f} | {p.lpips:.3f} "
                  f"| {p.image_psnr:.2f} | {p.image_lpips:.3f} |")
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {time.perf_counter() - start:.0f} s)",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
