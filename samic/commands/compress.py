"""samic compress IN OUT.samic --quality Q: compress an image file."""
from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Callable

from samic.errors import UserError


def register(subparsers) -> None:
    from samic.codec.bitstream import SCAN_ORDER_CODES  # the orders a file can store; no torch import

    p = subparsers.add_parser("compress", help="compress an image to a .samic file")
    p.add_argument("input", help="image file (PNG, JPEG, ...; converted to 8-bit RGB, see docs/bitstream.md)")
    p.add_argument("output", help="output .samic file")
    p.add_argument("--quality", "-q", required=True, help="rate knob in [0, 1]; higher keeps more detail")
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--model", help="preset whose shipped weights to use (default: samic-lite)")
    weights.add_argument("--weights", help="path to a .safetensors weights file")
    p.add_argument("--scan-order", default="semantic", choices=tuple(SCAN_ORDER_CODES),
                   help="every SAMB's scan order, stored in the file (default semantic, the paper's; "
                        "raster and random are ablations)")
    p.add_argument("--force", "-f", action="store_true", help="overwrite OUTPUT if it exists")
    p.set_defaults(func=run)


# ----------------------------------------------------------------------------- shared with decompress
def check_paths(input_path: str, output_path: str, force: bool) -> tuple[Path, Path]:
    """Fail early, before any slow work, on paths that cannot work."""
    source, target = Path(input_path), Path(output_path)
    if not source.exists():
        raise UserError(f"{source} does not exist")
    if not source.is_file():
        raise UserError(f"{source} is not a file")
    if not target.parent.is_dir():
        raise UserError(f"the folder of {target} does not exist")
    if target.is_dir():
        raise UserError(f"{target} is a folder")
    if target.exists() and not force:
        raise UserError(f"{target} exists (use --force to overwrite)")
    return source, target


def load_model(name_or_path: str | None):
    """samic.weights.load_model with its failures turned into one-line user errors."""
    from samic.models import PRESETS

    try:
        from samic.weights import load_model as load
    except ImportError as exc:
        raise UserError(f"cannot load weights: {exc}") from None
    if name_or_path is not None and name_or_path not in PRESETS and not Path(name_or_path).is_file():
        raise UserError(f"{name_or_path!r} is neither a model ({', '.join(PRESETS)}) nor a weights file")
    try:
        return load(name_or_path)
    except (OSError, ValueError) as exc:  # samic.weights.WeightsError is a ValueError
        raise UserError(str(exc)) from None


def write_output(target: Path, write: Callable[[BinaryIO], None], force: bool) -> None:
    from samic.codec.files import write_atomic

    try:
        write_atomic(target, write, overwrite=force)
    except FileExistsError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"cannot write {target}: {exc.strerror or exc}") from None


# ----------------------------------------------------------------------------- command
def run(args) -> int:
    try:
        quality = float(args.quality)
    except ValueError:
        raise UserError(f"--quality must be a number in [0, 1], got {args.quality!r}") from None
    if not 0.0 <= quality <= 1.0:  # also rejects nan
        raise UserError(f"--quality must be in [0, 1], got {args.quality}")
    source, target = check_paths(args.input, args.output, args.force)

    from samic.codec import bitstream
    from samic.codec.image_io import ImageError, open_image_file

    try:  # before torch and the model load, so that a bad input fails fast
        rgb = open_image_file(source)
    except (ImageError, OSError) as exc:
        raise UserError(str(exc)) from None
    model = load_model(args.weights or args.model)
    from samic.codec.api import compress_image

    data = compress_image(rgb, quality, model, scan_order=args.scan_order)
    write_output(target, lambda file: file.write(data), args.force)

    header = bitstream.unpack(data)[0]
    pixels = header.height * header.width
    print(f"{source} -> {target}: {header.width}x{header.height}, {header.model_name}, quality {quality:g}, "
          f"{header.scan_order} scan")
    print(f"  {len(data)} bytes, {8 * len(data) / pixels:.4f} bpp: header {header.size} B, "
          f"payload {header.z_length + header.y_length} B (z {header.z_length} B, y {header.y_length} B)")
    return 0
