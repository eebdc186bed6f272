"""One typed call for the app and the notebooks: what SAMIC does to one image.

``inspect_image`` runs the real codec (compress to .samic bytes, decompress) with its trace
on, so everything it shows comes from the file on display: the reconstruction, the rate, the
timings, the SAMB clusters and scan orders, the SVD-RRM spectrum and the bits of every latent
position (samic.codec.api.EncodeTrace / DecodeTrace); it also measures PSNR, MS-SSIM and
LPIPS-Alex. ``scan_order`` picks every SAMB's scan order ("semantic", "raster" or "random"):
the file stores it and the decoder follows it, so all of the above comes from that order.
``rd_curve`` and
``classical_rd_curves`` give this image's rate-distortion points for SAMIC and for JPEG, WebP
and AVIF (real encoders). ``cached_inspect_image`` and ``cached_rd_curves`` memoize both per
(image content, quality, decoder, scan order, model) in small thread-safe LRU caches.
``iter_inspect_image`` and ``iter_rd_curves`` are the same work in stages, for a page that
shows each result as soon as it exists: the decoded file first (a ``Decoded``), then the
full Inspection; the RD curves point by point.

All arrays are numpy, batch dimension removed, and read-only (cached results are shared).
"""
from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from typing import Callable, Iterator, NamedTuple

import numpy as np
from PIL import Image

from samic.codec.api import (choose_decoder, compress_image, decode_traced, decompress_image, default_model,
                             encode_traced, read_header)
from samic.codec.image_io import load_image
from samic.eval.classical import CODECS, bits_per_pixel, missing_codecs
from samic.layers.samb import ScanSettings
from samic.metrics import lpips_distance, ms_ssim, psnr
from samic.quality import VALIDATION_QUALITIES
from samic.models.samic import SAMIC

Progress = Callable[[float, str], None]  # (fraction done in [0, 1], description)

# Uploads above this many pixels are downscaled by prepare_image (CPU time grows linearly).
DEFAULT_MAX_PIXELS = 2_000_000
# A few points per classical codec, spread from its lowest rate to well above SAMIC's range
# (four each: every point is a real file measured three ways, which dominates the chart's time).
CLASSICAL_RD_QUALITIES = {
    "jpeg": (5, 15, 35, 75),
    "webp": (0, 10, 30, 75),
    "avif": (0, 20, 45, 75),
}


class BlockClusters(NamedTuple):
    """The clustering of one SAMB over its h x w token grid (K clusters)."""

    assignment: np.ndarray  # (h, w) int64 cluster id of each token (deterministic argmax)
    probs: np.ndarray  # (K, h, w) float32 soft assignment probabilities (no Gumbel noise)
    order: np.ndarray  # (h*w,) int64 raster indices of the tokens in scan order
    stride: int  # image pixels per token side: token (r, c) covers rows r*stride..(r+1)*stride-1


class Spectrum(NamedTuple):
    """SVD-RRM on y (before the gain units): singular values, descending."""

    singular_values: np.ndarray  # (C,) float32
    thresholded: np.ndarray  # (C,) float32, max(s - threshold, 0)
    threshold: float  # the absolute soft threshold tau


class Decoded(NamedTuple):
    """The first stage of an inspection: the real file and what it decodes to, not yet measured."""

    original: np.ndarray  # (H, W, 3) uint8
    reconstruction: np.ndarray  # (H, W, 3) uint8, decoded from ``data``
    data: bytes  # the .samic file
    quality: float  # as stored in the file
    decoder: str
    scan_order: str  # as stored in the file
    encode_seconds: float
    decode_seconds: float


class Inspection(NamedTuple):
    """Everything the app shows about one image at one quality (H x W image, padded to
    H' x W', multiples of 64, inside the network)."""

    original: np.ndarray  # (H, W, 3) uint8, the image that was coded
    reconstruction: np.ndarray  # (H, W, 3) uint8, decoded from ``data``
    data: bytes  # the .samic file
    quality: float  # the float32 quality stored in the file, in [0, 1]
    decoder: str  # "mse" or "perceptual"
    scan_order: str  # every SAMB's scan order, as stored in the file: "semantic", "raster" or "random"
    model_name: str  # preset name, e.g. "samic-lite"
    bpp: float  # 8 * len(data) / (H * W)
    compression_ratio: float  # raw 24-bit RGB size / file size = 24 / bpp
    encode_seconds: float  # compress_image wall time
    decode_seconds: float  # decompress_image wall time
    psnr: float  # dB, RGB
    ms_ssim: float  # RGB
    lpips: float  # LPIPS-Alex v0.1
    estimated_bpp: float  # information content of the coded symbols (bits_y + bits_z) per pixel: the streams' rate without coder overhead and header
    blocks: dict[str, BlockClusters]  # per SAMB of the encode and decode, e.g. "g_a.stage2", "h_s.samb", "g_s.stage3"
    spectrum: Spectrum | None  # None for presets without SVD-RRM
    bits_y: np.ndarray  # (H'/16, W'/16) float32 bits the file spends per position of y
    bits_z: np.ndarray  # (H'/64, W'/64) float32 bits the file spends per position of z
    padded_size: tuple[int, int]  # (H', W')
    phase_seconds: dict[str, float]  # encode and decode phases, e.g. "encode analysis", "decode synthesis"

    @property
    def num_bytes(self) -> int:
        return len(self.data)

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)."""
        return self.original.shape[:2]

    def metrics(self) -> dict[str, tuple[float, str]]:
        """The headline numbers, in display order: name -> (value, unit)."""
        return {
            "rate": (self.bpp, "bpp"),
            "file size": (float(self.num_bytes), "bytes"),
            "compression ratio": (self.compression_ratio, ": 1"),
            "PSNR": (self.psnr, "dB"),
            "MS-SSIM": (self.ms_ssim, ""),
            "LPIPS (Alex)": (self.lpips, "lower is better"),
            "encode time": (self.encode_seconds, "s"),
            "decode time": (self.decode_seconds, "s"),
            "rate of the symbols": (self.estimated_bpp, "bpp (information content)"),
        }


class RDPoint(NamedTuple):
    """One encoding of one image by one codec, measured on the real file."""

    codec: str  # "samic", "jpeg", "webp", "avif"
    quality: float  # the codec's own quality parameter
    bpp: float
    psnr: float
    ms_ssim: float
    lpips: float


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array


def _report(progress: Progress | None, fraction: float, description: str) -> None:
    if progress is not None:
        progress(fraction, description)


MIN_SIDE = 16  # the quality measures compare the images at several scales down to an 11-pixel window


def check_image_size(width: int, height: int, how: str = "") -> None:
    """ValueError, in plain words, for an image too small or too thin to code and measure."""
    if min(width, height) < MIN_SIDE:
        raise ValueError(f"This image is {width} x {height} pixels{how}: the app needs at least {MIN_SIDE} pixels "
                         f"on each side to measure the quality. Use a larger or less elongated image.")


def prepare_image(image, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, str | None]:
    """Load ``image`` (path, PIL image or array; see samic.codec.image_io) as uint8 (H, W, 3)
    and downscale it (Lanczos, aspect kept) when it has more than ``max_pixels`` pixels.

    Returns the array and a one-line notice when it was downscaled (else None). Unreadable
    or unsupported input raises samic.codec.ImageError with a readable message.
    """
    rgb = load_image(image)
    height, width = rgb.shape[:2]
    if max_pixels is None or height * width <= max_pixels:
        check_image_size(width, height)
        return rgb, None
    scale = math.sqrt(max_pixels / (height * width))
    new_w, new_h = max(1, int(width * scale)), max(1, int(height * scale))
    small = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), Image.LANCZOS))
    check_image_size(new_w, new_h, f" after downscaling from {width} x {height} to fit {max_pixels / 1e6:g} MP")
    notice = (f"The image was downscaled from {width} x {height} to {new_w} x {new_h} pixels "
              f"(limit {max_pixels / 1e6:g} MP).")
    return np.ascontiguousarray(small), notice


def image_metrics(original: np.ndarray, reconstruction: np.ndarray) -> dict[str, float]:
    """PSNR (dB), MS-SSIM and LPIPS-Alex of two uint8 (H, W, 3) images."""
    # writable arrays: torch.from_numpy warns on read-only ones (cached images are read-only)
    original, reconstruction = (np.require(a, requirements="W") for a in (original, reconstruction))
    return {"psnr": float(psnr(original, reconstruction)),
            "ms_ssim": float(ms_ssim(original, reconstruction)),
            "lpips": float(lpips_distance(original, reconstruction, net="alex"))}


def _block_clusters(block, padded_height: int) -> BlockClusters:
    return BlockClusters(assignment=_read_only(block.assignment[0].cpu().numpy()),
                         probs=_read_only(block.probs[0].float().cpu().numpy()),
                         order=_read_only(block.order[0].cpu().numpy()),
                         stride=padded_height // block.assignment.shape[1])


def iter_inspect_image(image, quality: float, decoder: str | None = None, model: SAMIC | None = None,
                       progress: Progress | None = None, scan_order: str = "semantic") -> Iterator[Decoded | Inspection]:
    """``inspect_image`` in two stages: yields a ``Decoded`` as soon as the file is written and
    decoded, then the full ``Inspection`` (metrics, clusters, spectrum, bits)."""
    model = default_model() if model is None else model
    decoder = choose_decoder(model, decoder)
    ScanSettings(order=scan_order).validated()  # a readable error before any work
    rgb = load_image(image)
    height, width = rgb.shape[:2]

    _report(progress, 0.0, "encoding")
    start = time.perf_counter()
    data, encoded = encode_traced(rgb, quality, model, scan_order=scan_order)
    encode_seconds = time.perf_counter() - start
    _report(progress, 0.4, "decoding")
    start = time.perf_counter()
    reconstruction, decoded = decode_traced(data, model, decoder)
    decode_seconds = time.perf_counter() - start
    quality = float(np.float32(quality))  # what the file stores (encode_traced validated it)
    stored_order = read_header(data).scan_order
    yield Decoded(original=_read_only(rgb), reconstruction=_read_only(reconstruction), data=data, quality=quality,
                  decoder=decoder, scan_order=stored_order, encode_seconds=encode_seconds,
                  decode_seconds=decode_seconds)

    _report(progress, 0.75, "measuring PSNR, MS-SSIM, LPIPS")
    metrics = image_metrics(rgb, reconstruction)
    padded_h, padded_w = encoded.padded_size
    # h_s runs in both; its decode-side clusters are the ones that rebuilt the latents
    blocks = {name: _block_clusters(block, padded_h) for name, block in {**encoded.samb, **decoded.samb}.items()}
    spectrum = None
    if encoded.spectrum is not None:
        spectrum = Spectrum(singular_values=_read_only(encoded.spectrum.singular_values[0].float().cpu().numpy()),
                            thresholded=_read_only(encoded.spectrum.thresholded[0].float().cpu().numpy()),
                            threshold=float(encoded.spectrum.threshold[0]))
    bits_y = decoded.latents.bits_y.float().numpy()
    bits_z = decoded.latents.bits_z.float().numpy()
    bpp = bits_per_pixel(data, rgb.shape)
    phases = {**{f"encode {k}": v for k, v in encoded.seconds.items()},
              **{f"decode {k}": v for k, v in decoded.seconds.items()}}
    _report(progress, 1.0, "done")
    yield Inspection(
        original=_read_only(rgb), reconstruction=_read_only(reconstruction), data=data,
        quality=quality, decoder=decoder, scan_order=stored_order, model_name=model.config.name,
        bpp=bpp, compression_ratio=24.0 / bpp,
        encode_seconds=encode_seconds, decode_seconds=decode_seconds, **metrics,
        estimated_bpp=float(decoded.latents.bits_y.sum() + decoded.latents.bits_z.sum()) / (height * width),
        blocks=blocks, spectrum=spectrum, bits_y=_read_only(bits_y), bits_z=_read_only(bits_z),
        padded_size=(padded_h, padded_w), phase_seconds=phases)


def inspect_image(image, quality: float, decoder: str | None = None, model: SAMIC | None = None,
                  progress: Progress | None = None, scan_order: str = "semantic") -> Inspection:
    """Compress and decompress ``image`` with the real codec, trace on, and collect what the app shows.

    image: a path, PIL image or uint8 array (coded as it is: see ``prepare_image`` for the
    downscaling the app applies). quality in [0, 1]. decoder: "mse", "perceptual" or None
    (perceptual when the model has it). model: a SAMIC (None: the shipped weights).
    ``progress(fraction, description)`` is called between the steps. scan_order: every SAMB's
    scan order ("semantic", "raster", "random"), stored in the file's header; the decoder
    follows the header, so the reconstruction, the metrics and the scan maps all come from it.
    """
    *_, inspection = iter_inspect_image(image, quality, decoder, model, progress, scan_order)
    return inspection


def rd_curve(image, model: SAMIC | None = None, qualities=VALIDATION_QUALITIES, decoder: str | None = None,
             progress: Progress | None = None) -> list[RDPoint]:
    """SAMIC's rate-distortion points for one image: one real compress/decompress per quality."""
    model = default_model() if model is None else model
    decoder = choose_decoder(model, decoder)
    rgb = load_image(image)
    points = []
    for i, quality in enumerate(qualities):
        _report(progress, i / len(qualities), f"SAMIC at quality {quality:g}")
        data = compress_image(rgb, quality, model)
        reconstruction = decompress_image(data, model, decoder)
        points.append(RDPoint("samic", float(quality), bits_per_pixel(data, rgb.shape),
                              **image_metrics(rgb, reconstruction)))
    return points


def classical_rd_curves(image, qualities: dict[str, tuple[float, ...]] = CLASSICAL_RD_QUALITIES,
                        progress: Progress | None = None) -> dict[str, list[RDPoint]]:
    """Rate-distortion points of classical codecs (name -> qualities, default JPEG, WebP, AVIF)
    on one image, through their real encoders. Codecs unavailable here are left out."""
    rgb = load_image(image)
    missing = missing_codecs()
    jobs = [(name, q) for name, qs in qualities.items() if name not in missing for q in qs]
    codecs = {name: CODECS[name]() for name in qualities if name not in missing}
    curves: dict[str, list[RDPoint]] = {name: [] for name in codecs}
    for i, (name, quality) in enumerate(jobs):
        _report(progress, i / len(jobs), f"{name} at quality {quality:g}")
        data = codecs[name].encode(rgb, quality)
        reconstruction = codecs[name].decode(data)
        curves[name].append(RDPoint(name, float(quality), bits_per_pixel(data, rgb.shape),
                                    **image_metrics(rgb, reconstruction)))
    return curves


# ---------------------------------------------------------------------------------- caching
class LRUCache:
    """A small thread-safe least-recently-used mapping."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        """The value for ``key`` (marked as recently used), or None."""
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


INSPECTIONS = LRUCache(maxsize=12)
RD_CURVES = LRUCache(maxsize=8)


def image_digest(rgb: np.ndarray) -> str:
    """SHA-1 of a uint8 (H, W, 3) image's shape and pixels: the cache key of its content."""
    digest = hashlib.sha1(repr(rgb.shape).encode())
    digest.update(np.ascontiguousarray(rgb).data)
    return digest.hexdigest()


def _model_key(model: SAMIC) -> int:
    return id(model)  # models are long-lived (one per process in the app)


def cached_inspect_image(image, quality: float, decoder: str | None = None, model: SAMIC | None = None,
                         progress: Progress | None = None, scan_order: str = "semantic") -> Inspection:
    """``inspect_image`` memoized per (image content, quality, decoder, scan order, model)."""
    model = default_model() if model is None else model
    decoder = choose_decoder(model, decoder)
    rgb = load_image(image)
    key = (image_digest(rgb), float(np.float32(quality)), decoder, scan_order, _model_key(model))
    result = INSPECTIONS.get(key)
    if result is None:
        result = inspect_image(rgb, quality, decoder, model, progress, scan_order)
        INSPECTIONS.put(key, result)
    return result


def cached_iter_inspect_image(image, quality: float, decoder: str | None = None, model: SAMIC | None = None,
                              progress: Progress | None = None,
                              scan_order: str = "semantic") -> Iterator[Decoded | Inspection]:
    """``iter_inspect_image`` through the cache: a cached inspection is yielded at once, alone."""
    model = default_model() if model is None else model
    decoder = choose_decoder(model, decoder)
    rgb = load_image(image)
    key = (image_digest(rgb), float(np.float32(quality)), decoder, scan_order, _model_key(model))
    result = INSPECTIONS.get(key)
    if result is not None:
        yield result
        return
    for stage in iter_inspect_image(rgb, quality, decoder, model, progress, scan_order):
        if isinstance(stage, Inspection):
            INSPECTIONS.put(key, stage)
        yield stage


def iter_rd_curves(image, decoder: str | None = None, model: SAMIC | None = None,
                   progress: Progress | None = None) -> Iterator[dict[str, list[RDPoint]]]:
    """``cached_rd_curves`` point by point: yields the curves so far ({codec: [RDPoint]}) after
    each new point, the classical codecs first (fast), then SAMIC; the last yield is complete
    and cached. SAMIC points already in the inspection cache (semantic order) are reused. A
    cached set is yielded once."""
    model = default_model() if model is None else model
    decoder = choose_decoder(model, decoder)
    rgb = load_image(image)
    digest = image_digest(rgb)
    key = (digest, decoder, _model_key(model))
    cached = RD_CURVES.get(key)
    if cached is not None:
        yield cached
        return
    missing = missing_codecs()
    jobs = [(name, q) for name, qs in CLASSICAL_RD_QUALITIES.items() if name not in missing for q in qs]
    jobs += [("samic", q) for q in VALIDATION_QUALITIES]
    codecs = {name: CODECS[name]() for name in CLASSICAL_RD_QUALITIES if name not in missing}
    curves: dict[str, list[RDPoint]] = {"samic": [], **{name: [] for name in codecs}}
    for i, (name, quality) in enumerate(jobs):
        _report(progress, i / len(jobs), f"{name} at quality {quality:g}")
        if name == "samic":
            seen = INSPECTIONS.get((digest, float(np.float32(quality)), decoder, "semantic", _model_key(model)))
            if seen is not None:
                point = RDPoint("samic", float(quality), seen.bpp, seen.psnr, seen.ms_ssim, seen.lpips)
            else:
                data = compress_image(rgb, quality, model)
                point = RDPoint("samic", float(quality), bits_per_pixel(data, rgb.shape),
                                **image_metrics(rgb, decompress_image(data, model, decoder)))
        else:
            data = codecs[name].encode(rgb, quality)
            point = RDPoint(name, float(quality), bits_per_pixel(data, rgb.shape),
                            **image_metrics(rgb, codecs[name].decode(data)))
        curves[name].append(point)
        if i + 1 < len(jobs):
            yield {codec: list(points) for codec, points in curves.items()}
    RD_CURVES.put(key, curves)
    yield curves


def cached_rd_curves(image, decoder: str | None = None, model: SAMIC | None = None,
                     progress: Progress | None = None) -> dict[str, list[RDPoint]]:
    """SAMIC (default qualities) and JPEG/WebP/AVIF curves of one image, memoized per
    (image content, decoder, model): {"samic": [...], "jpeg": [...], ...}."""
    model = default_model() if model is None else model
    decoder = choose_decoder(model, decoder)
    rgb = load_image(image)
    *_, curves = iter_rd_curves(rgb, decoder, model, progress)
    return curves
