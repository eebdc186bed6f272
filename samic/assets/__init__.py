"""Package data: the shipped model weights (``weights/``) and the LPIPS-Alex weights (``lpips/``).

They are found with importlib.resources, so they are reachable wherever samic is installed
(editable checkout, wheel, site-packages); pyproject.toml lists them as package data.
"""
from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path


def locate(*parts: str) -> Path:
    """``samic/assets/<parts...>`` as a filesystem path (wheels install unzipped)."""
    return Path(os.fspath(files(__name__))).joinpath(*parts)
