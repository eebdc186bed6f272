"""SAMIC: a lightweight semantic-aware Mamba for efficient perceptual image compression.

``samic.compress_image`` and ``samic.decompress_image`` (samic.codec) load lazily, so that
``import samic`` stays cheap.
"""

_CODEC_EXPORTS = ("compress_image", "decompress_image")

__all__ = list(_CODEC_EXPORTS)


def __getattr__(name: str):
    if name in _CODEC_EXPORTS:
        from samic.codec import api

        return getattr(api, name)
    raise AttributeError(f"module 'samic' has no attribute {name!r}")
