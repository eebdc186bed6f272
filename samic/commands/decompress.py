"""samic decompress IN.samic OUT.png: decode a .samic file to an image."""
from __future__ import annotations

from samic.commands.compress import check_paths, load_model, write_output
from samic.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("decompress", help="decode a .samic file to an image")
    p.add_argument("input", help=".samic file")
    p.add_argument("output", help="output image; the extension picks the format (.png is lossless)")
    p.add_argument("--decoder", choices=("mse", "perceptual"), default=None,
                   help="synthesis decoder (default: perceptual if the weights have it, else mse)")
    p.add_argument("--weights", help="weights file (default: the shipped weights of the model named in the file)")
    p.add_argument("--force", "-f", action="store_true", help="overwrite OUTPUT if it exists")
    p.set_defaults(func=run)


def _image_format(path) -> str:
    from PIL import Image

    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise UserError(f"cannot tell an image format Pillow writes from {path.name!r}; use .png")
    return fmt


def run(args) -> int:
    source, target = check_paths(args.input, args.output, args.force)
    image_format = _image_format(target)

    from PIL import Image

    from samic.codec import FormatError, bitstream

    try:
        with open(source, "rb") as file:
            if file.read(len(bitstream.MAGIC)) != bitstream.MAGIC:  # before reading a large wrong file
                raise FormatError("not a SAMIC file (wrong magic bytes)")
            data = bitstream.MAGIC + file.read()
        header = bitstream.unpack(data)[0]
    except FormatError as exc:
        raise UserError(f"{source}: {exc}") from None
    except OSError as exc:
        raise UserError(f"cannot read {source}: {exc.strerror or exc}") from None
    model = load_model(args.weights or header.model_name)
    from samic.codec.api import choose_decoder, decompress_image  # torch: only once the file looks valid

    try:
        decoder = choose_decoder(model, args.decoder)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    try:
        rgb = decompress_image(data, model, decoder)
    except FormatError as exc:
        raise UserError(f"{source}: {exc}") from None
    write_output(target, lambda file: Image.fromarray(rgb).save(file, format=image_format), args.force)
    print(f"{source} -> {target}: {header.width}x{header.height}, {header.model_name}, "
          f"{decoder} decoder")
    return 0
