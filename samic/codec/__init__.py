"""The SAMIC codec: images <-> .samic files (format: docs/bitstream.md).

Importing this package is cheap; torch and the model load on first use of the API.
"""
from samic.codec.errors import FormatError

_LAZY = {
    "compress_image": "samic.codec.api",
    "decompress_image": "samic.codec.api",
    "read_header": "samic.codec.api",
    "model_digest": "samic.entropy.latent_codec",
    "load_image": "samic.codec.image_io",
    "ImageError": "samic.codec.image_io",
}

__all__ = ["FormatError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'samic.codec' has no attribute {name!r}")
