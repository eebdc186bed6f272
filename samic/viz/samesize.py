"""The same image at the same number of bytes: SAMIC's file against JPEG, WebP and AVIF.

``same_size_comparison`` takes an Inspection (one real .samic file and its decoding) and
searches each classical codec's quality setting (``samic.eval.classical.find_quality_for_bpp``,
a bisection over the codec's own quality scale) for the file closest to the .samic file's
byte count. JPEG and WebP search a continuous quality (the same scale as their integer
setting: WebP passes it to libwebp as the float it is, JPEG scales the standard quantization
tables as libjpeg does, without rounding the quality), so they can land within a few bytes;
AVIF's quality is an integer. A codec whose closest file is off by more than ``tolerance`` (3 % by default) is
kept but labelled with why: its smallest file is still too large, its largest still too
small, or its quality steps jump over the size. Every codec's reconstruction is measured
against the same original (PSNR, LPIPS-Alex), so the table compares like with like.

``zoom_crops`` cuts the same box out of the original and every reconstruction (crop metrics
included) as a samic.viz.crops.CropComparison, which ``render_crop_comparison`` draws.
"""
from __future__ import annotations

import io
from functools import lru_cache
from typing import NamedTuple, Sequence

import numpy as np
from PIL import Image

from samic.eval.classical import (CODECS, JPEGCodec, WebPCodec, bits_per_pixel, find_quality_for_bpp,
                                  missing_codecs)
from samic.viz.crops import CODEC_LABELS, CropComparison, CropPanel, _cut, _metrics, _thumbnail, check_box
from samic.viz.inspect import Inspection, image_digest

DEFAULT_CODECS = ("jpeg", "webp", "avif")
DEFAULT_TOLERANCE = 0.03  # a classical file within 3 % of the .samic file's bytes counts as the same size


@lru_cache(maxsize=1)
def _standard_jpeg_tables() -> tuple[tuple[int, ...], ...]:
    """libjpeg's luminance and chrominance tables at quality 50 (scale 100 %), as Pillow reads them."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="JPEG", quality=50)
    with Image.open(buffer) as image:
        return tuple(tuple(image.quantization[k]) for k in sorted(image.quantization))


class FineJPEGCodec(JPEGCodec):
    """JPEG with a continuous quality in [1, 100]: libjpeg's own table scaling (5000 / q below
    50, 200 - 2 q above) without rounding q, written through Pillow's ``qtables``."""

    integer_quality = False

    def _save_options(self, quality: float) -> dict:
        quality = float(quality)
        scale = 5000.0 / quality if quality < 50 else 200.0 - 2.0 * quality
        tables = [[int(np.clip((value * scale + 50) // 100, 1, 255)) for value in table]
                  for table in _standard_jpeg_tables()]
        return {"qtables": tables, "subsampling": self.subsampling, "optimize": self.optimize}


class FineWebPCodec(WebPCodec):
    """WebP with its quality passed to libwebp as a float (libwebp's own type)."""

    integer_quality = False

    def _save_options(self, quality: float) -> dict:
        return {"quality": float(quality), "method": self.method}


SEARCH_CODECS = {"jpeg": FineJPEGCodec, "webp": FineWebPCodec}  # the others: samic.eval.classical.CODECS


class SizeMatch(NamedTuple):
    """One codec's file closest to the target size, and what it looks like."""

    codec: str  # "samic", "jpeg", "webp", "avif"
    label: str  # "SAMIC", "JPEG", ...
    quality: float  # the codec's own quality setting (SAMIC: its quality in [0, 1])
    num_bytes: int
    bpp: float  # 8 * num_bytes / (H * W)
    relative_error: float  # (num_bytes - target) / target
    matched: bool  # within the tolerance of the target
    note: str  # "" when matched, else why not in plain words
    psnr: float  # dB, whole image
    lpips: float  # LPIPS-Alex v0.1, whole image
    reconstruction: np.ndarray  # (H, W, 3) uint8, decoded from the file


class SameSizeComparison(NamedTuple):
    """SAMIC's file and each classical codec's closest file (display order: SAMIC first)."""

    key: tuple  # (image digest, SAMIC quality, decoder, scan order): the inspection it was made for
    target_bytes: int  # the .samic file's size
    tolerance: float
    original: np.ndarray  # (H, W, 3) uint8
    entries: tuple[SizeMatch, ...]

    def entry(self, codec: str) -> SizeMatch:
        """The entry of ``codec``; KeyError if there is none."""
        for entry in self.entries:
            if entry.codec == codec:
                return entry
        raise KeyError(f"no entry for {codec!r}")

    def rows(self) -> list[list]:
        """One table row per codec: codec, bytes, vs SAMIC, quality setting, PSNR, LPIPS, note."""
        return [[e.label, e.num_bytes, f"{100 * e.relative_error:+.1f} %", round(e.quality, 3), round(e.psnr, 2),
                 round(e.lpips, 4), "same size" if e.matched else e.note] for e in self.entries]


def _label(codec: str) -> str:
    return CODEC_LABELS.get(codec, codec.upper())


def _why_not(codec, rgb: np.ndarray, target: int, closest: int, tolerance: float) -> str:
    """Why ``codec`` cannot get within ``tolerance`` of ``target`` bytes, in plain words."""
    lo, hi = codec.quality_range
    smallest = len(codec.encode(rgb, lo))
    if smallest > target * (1 + tolerance):
        return (f"cannot go this small: its smallest file (quality {lo:g}) is {smallest} bytes, "
                f"{100 * (smallest / target - 1):+.0f} %")
    largest = len(codec.encode(rgb, hi))
    if largest < target * (1 - tolerance):
        return (f"cannot reach this size: its largest file (quality {hi:g}) is {largest} bytes, "
                f"{100 * (largest / target - 1):+.0f} %")
    return (f"cannot match within {100 * tolerance:g} %: its quality steps jump over this size "
            f"(nearest {closest} bytes, {100 * (closest / target - 1):+.1f} %)")


def match_size(codec_name: str, rgb: np.ndarray, target_bytes: int,
               tolerance: float = DEFAULT_TOLERANCE) -> SizeMatch:
    """``codec_name``'s file closest to ``target_bytes`` for ``rgb`` (uint8 (H, W, 3)), measured."""
    if target_bytes <= 0:
        raise ValueError(f"target_bytes must be positive, got {target_bytes}")
    codec = SEARCH_CODECS.get(codec_name, CODECS[codec_name])()
    target_bpp = 8.0 * target_bytes / (rgb.shape[0] * rgb.shape[1])
    point = find_quality_for_bpp(codec, rgb, target_bpp, rel_tol=min(0.01, tolerance))
    error = len(point.data) / target_bytes - 1
    matched = abs(error) <= tolerance
    reconstruction = codec.decode(point.data)
    image_psnr, image_lpips = _metrics(rgb, reconstruction)
    return SizeMatch(codec=codec_name, label=_label(codec_name), quality=float(point.quality),
                     num_bytes=len(point.data), bpp=bits_per_pixel(point.data, rgb.shape), relative_error=error,
                     matched=matched,
                     note="" if matched else _why_not(codec, rgb, target_bytes, len(point.data), tolerance),
                     psnr=image_psnr, lpips=image_lpips, reconstruction=reconstruction)


def same_size_comparison(inspection: Inspection, codecs: Sequence[str] = DEFAULT_CODECS,
                         tolerance: float = DEFAULT_TOLERANCE, digest: str | None = None) -> SameSizeComparison:
    """SAMIC's file of ``inspection`` beside each of ``codecs`` at (as near as it gets to) the
    same number of bytes. Codecs this machine lacks are left out. ``digest`` (the image's
    content digest, computed when None) goes into the result's key."""
    if digest is None:
        digest = image_digest(inspection.original)
    rgb = np.require(inspection.original, requirements="C")
    target = inspection.num_bytes
    samic = SizeMatch(codec="samic", label="SAMIC", quality=inspection.quality, num_bytes=target,
                      bpp=inspection.bpp, relative_error=0.0, matched=True, note="", psnr=inspection.psnr,
                      lpips=inspection.lpips, reconstruction=inspection.reconstruction)
    missing = missing_codecs()
    entries = [samic] + [match_size(name, rgb, target, tolerance) for name in codecs if name not in missing]
    return SameSizeComparison(key=(digest, inspection.quality, inspection.decoder, inspection.scan_order),
                              target_bytes=target, tolerance=tolerance, original=inspection.original,
                              entries=tuple(entries))


def crop_box(center: tuple[int, int], size: int, image_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A ``size`` x ``size`` box (left, top, right, bottom) centred on ``center`` = (x, y) and
    moved inside an (H, W) image (smaller when the image is)."""
    height, width = image_size
    side_w, side_h = min(size, width), min(size, height)
    left = int(np.clip(round(center[0] - side_w / 2), 0, width - side_w))
    top = int(np.clip(round(center[1] - side_h / 2), 0, height - side_h))
    return left, top, left + side_w, top + side_h


def zoom_crops(comparison: SameSizeComparison, center: tuple[int, int] | None = None, size: int = 96,
               name: str = "image") -> CropComparison:
    """The same ``size`` x ``size`` box (centred on ``center`` = (x, y), default the image's
    centre) from the original and every codec's reconstruction, with PSNR and LPIPS-Alex on
    the crop and each file's whole-image numbers: a CropComparison for render_crop_comparison."""
    height, width = comparison.original.shape[:2]
    if center is None:
        center = (width // 2, height // 2)
    box = check_box(crop_box(center, size, (height, width)), (height, width))
    original = _cut(comparison.original, box)
    panels = []
    for e in comparison.entries:
        crop = _cut(e.reconstruction, box)
        crop_psnr, crop_lpips = _metrics(original, crop)
        panels.append(CropPanel(label=f"{e.label}, {e.num_bytes} bytes" + ("" if e.matched else " (not same size)"),
                                codec=e.codec, decoder=None, quality=e.quality, num_bytes=e.num_bytes, bpp=e.bpp,
                                psnr=crop_psnr, lpips=crop_lpips, image_psnr=e.psnr, image_lpips=e.lpips,
                                crop=crop))
    return CropComparison(name=name, image_size=(height, width), box=box,
                          target_bpp=8.0 * comparison.target_bytes / (height * width), original=original,
                          panels=tuple(panels), model=f"{comparison.target_bytes} bytes",
                          thumbnail=_thumbnail(comparison.original, box, min(height, 2 * (box[3] - box[1]))))


__all__ = ["DEFAULT_CODECS", "DEFAULT_TOLERANCE", "FineJPEGCodec", "FineWebPCodec", "SEARCH_CODECS",
           "SameSizeComparison", "SizeMatch", "crop_box", "match_size",
           "same_size_comparison", "zoom_crops"]
