"""SAMIC: a lightweight semantic-aware Mamba for efficient perceptual image compression.

``samic.compress_image`` and ``samic.decompress_image`` (samic.codec) load lazily, so that
``import samic`` stays cheap.
"""

import os as _os

# Torch's and numba's OpenMP pools share few cores; with the default (active) wait policy
# idle threads spin and starve the other pool, which made small decodes 2-100x slower on
# 2 cores. Must be set before the OpenMP runtime starts, i.e. before torch is imported.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_CODEC_EXPORTS = ("compress_image", "decompress_image")

__all__ = list(_CODEC_EXPORTS)


def __getattr__(name: str):
    if name in _CODEC_EXPORTS:
        from samic.codec import api

        return getattr(api, name)
    raise AttributeError(f"module 'samic' has no attribute {name!r}")
