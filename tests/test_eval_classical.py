"""Classical codecs through their real encoders, on a downscaled Kodak crop."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samic.eval.classical import (
    CODECS,
    JPEGXLCodec,
    available_codecs,
    bits_per_pixel,
    find_quality_for_bpp,
    missing_codecs,
)
from samic.metrics import psnr

KODAK = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "kodak"
MISSING = missing_codecs()


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    """A 128x192 detail-rich crop of kodim23, halved so that every encoder is quick."""
    path = KODAK / "kodim23.png"
    if not path.exists():
        pytest.skip(f"Kodak not found at {KODAK}")
    with Image.open(path) as im:
        return np.array(im.convert("RGB").crop((192, 128, 576, 384)).reduce(2))


def codec_or_skip(name: str):
    if name in MISSING:
        pytest.skip(f"{name}: {MISSING[name]}")
    return CODECS[name]()


def test_available_and_missing_cover_every_codec():
    available = available_codecs()
    assert set(available) | set(MISSING) == set(CODECS)
    assert not set(available) & set(MISSING)
    # Every Pillow wheel has these, so their absence means a broken install.
    assert {"jpeg", "webp"} <= set(available)


@pytest.mark.parametrize("name", CODECS)
def test_round_trip(name, crop):
    codec = codec_or_skip(name)
    qualities = codec.default_qualities
    data = codec.encode(crop, qualities[len(qualities) // 2])
    rec = codec.decode(data)
    assert isinstance(data, bytes) and len(data) > 0
    assert rec.shape == crop.shape and rec.dtype == np.uint8
    assert psnr(crop, rec) > 25


@pytest.mark.parametrize("name", CODECS)
def test_bpp_grows_with_quality(name, crop):
    codec = codec_or_skip(name)
    bpps = [bits_per_pixel(codec.encode(crop, q), crop.shape) for q in codec.default_qualities]
    assert np.all(np.diff(bpps) > 0), bpps


@pytest.mark.parametrize("name", CODECS)
def test_target_bpp_search(name, crop):
    codec = codec_or_skip(name)
    target = 0.8
    point = find_quality_for_bpp(codec, crop, target, rel_tol=0.01)
    assert point.bpp == bits_per_pixel(point.data, crop.shape)
    assert codec.quality_range[0] <= point.quality <= codec.quality_range[1]
    if codec.integer_quality:
        # One quality step moves bpp by a few percent here; the answer must be the closest step.
        assert abs(point.bpp - target) <= 0.05 * target
        lo, hi = codec.quality_range
        for q in (point.quality - 1, point.quality + 1):
            if lo <= q <= hi:
                other = bits_per_pixel(codec.encode(crop, q), crop.shape)
                assert abs(point.bpp - target) <= abs(other - target)
    else:
        assert abs(point.bpp - target) <= 0.01 * target


def test_target_bpp_out_of_reach_gives_range_end(crop):
    codec = CODECS["jpeg"]()
    lo, hi = codec.quality_range
    # JPEG's quality 1 and 2 clip to the same tables (and differ by a byte), so compare sizes.
    smallest = find_quality_for_bpp(codec, crop, 1e-4)
    assert smallest.quality <= lo + 1
    assert smallest.bpp <= bits_per_pixel(codec.encode(crop, lo), crop.shape)
    assert find_quality_for_bpp(codec, crop, 1e3).quality == hi


def test_bad_input_and_quality_raise(crop):
    codec = CODECS["jpeg"]()
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        codec.encode(crop.astype(np.float32), 50)
    with pytest.raises(ValueError, match="outside"):
        codec.encode(crop, 101)
    with pytest.raises(ValueError, match="positive"):
        find_quality_for_bpp(codec, crop, 0)


def test_jpegxl_reports_missing_tools(monkeypatch):
    monkeypatch.setenv("PATH", "")
    assert "cjxl" in JPEGXLCodec.unavailable_reason()
    assert "jpegxl" in missing_codecs()
    assert "jpegxl" not in available_codecs()
    with pytest.raises(RuntimeError, match="jpegxl codec unavailable"):
        JPEGXLCodec()


def test_jpeg_settings_change_the_file(crop):
    """4:2:0 and Huffman optimisation (the defaults) each save bytes, as they should."""
    default = len(CODECS["jpeg"]().encode(crop, 75))
    assert default < len(CODECS["jpeg"](subsampling="4:4:4").encode(crop, 75))
    assert default < len(CODECS["jpeg"](optimize=False).encode(crop, 75))
