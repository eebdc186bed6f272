"""Classical image codecs behind one small protocol, through their real encoders.

Every codec turns an HxWx3 uint8 RGB array into the bytes of a real file and back, so
that bits per pixel are measured on exactly what would be stored or sent (container
headers included). The learned SAMIC codec plugs into the same protocol with a
continuous quality in [0, 1].

Encoders that can be pinned to one thread are (``threads=1`` by default), so that
timings compare like with like and with the single-thread CPU numbers in the reference.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image, features

__all__ = [
    "AVIFCodec",
    "CODECS",
    "HEVCCodec",
    "ImageCodec",
    "JPEG2000Codec",
    "JPEGCodec",
    "JPEGXLCodec",
    "RatePoint",
    "WebPCodec",
    "available_codecs",
    "bits_per_pixel",
    "check_rgb",
    "find_quality_for_bpp",
    "missing_codecs",
]


@runtime_checkable
class ImageCodec(Protocol):
    """What the evaluation needs from a codec.

    ``quality`` grows with the bit rate (the target-bpp search relies on it).
    ``quality_range`` gives the inclusive bounds, ``integer_quality`` whether only
    integers are meaningful, and ``default_qualities`` a sweep for RD curves.
    """

    name: str
    quality_range: tuple[float, float]
    integer_quality: bool
    default_qualities: tuple[float, ...]

    def encode(self, rgb: np.ndarray, quality: float) -> bytes: ...

    def decode(self, data: bytes) -> np.ndarray: ...


def check_rgb(rgb: np.ndarray) -> np.ndarray:
    """Return ``rgb`` as a C-contiguous HxWx3 uint8 array, or raise ValueError."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB array, got shape {rgb.shape} dtype {rgb.dtype}")
    return np.ascontiguousarray(rgb)


def bits_per_pixel(data: bytes, shape: tuple[int, ...]) -> float:
    """Bits per pixel of an encoded file for an image of ``shape`` (H, W, ...)."""
    return 8.0 * len(data) / (shape[0] * shape[1])


def _pil_to_rgb(im: Image.Image) -> np.ndarray:
    return np.array(im.convert("RGB"))  # writable: torch warns on read-only arrays


def _require(cls) -> None:
    """Raise a one-line RuntimeError when ``cls`` cannot run here."""
    if reason := cls.unavailable_reason():
        raise RuntimeError(f"{cls.name} codec unavailable: {reason}")


def _check_quality(codec: ImageCodec, quality: float) -> None:
    lo, hi = codec.quality_range
    if not lo <= quality <= hi:
        raise ValueError(f"{codec.name}: quality {quality} outside [{lo}, {hi}]")


class _Codec:
    """What the classical codecs share: a config description and an availability check."""

    name = ""
    description = ""

    @staticmethod
    def unavailable_reason() -> str | None:
        """None when this codec works here, else why not."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description})"


class _PillowCodec(_Codec):
    """Shared encode/decode for the codecs that Pillow writes itself."""

    pil_format = ""
    pil_feature = ""
    quality_range: tuple[float, float] = (0, 100)
    integer_quality = True
    default_qualities: tuple[float, ...] = ()

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if not features.check(cls.pil_feature):
            return f"Pillow was built without {cls.pil_feature}"
        return None

    def _save_options(self, quality: float) -> dict:
        """Keyword arguments for Pillow's ``save`` at this quality (per codec)."""
        raise NotImplementedError

    def encode(self, rgb: np.ndarray, quality: float) -> bytes:
        _check_quality(self, quality)
        buf = io.BytesIO()
        Image.fromarray(check_rgb(rgb)).save(buf, format=self.pil_format, **self._save_options(quality))
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as im:
            return _pil_to_rgb(im)


class JPEGCodec(_PillowCodec):
    """Baseline JPEG (libjpeg-turbo via Pillow), Huffman tables optimised per image."""

    name = "jpeg"
    pil_format = "JPEG"
    pil_feature = "jpg"
    quality_range = (1, 100)
    default_qualities = (5, 10, 15, 20, 30, 40, 50, 60, 75, 90)

    def __init__(self, subsampling: str = "4:2:0", optimize: bool = True):
        _require(type(self))
        self.subsampling = subsampling
        self.optimize = optimize
        library = f"libjpeg-turbo {features.version('libjpeg_turbo')}" if features.check("libjpeg_turbo") \
            else f"libjpeg {features.version('jpg')}"
        self.description = f"JPEG, {library}, {subsampling}, optimize={optimize}"

    def _save_options(self, quality: float) -> dict:
        return {"quality": int(quality), "subsampling": self.subsampling, "optimize": self.optimize}


class WebPCodec(_PillowCodec):
    """Lossy WebP (libwebp via Pillow) at its slowest, best method."""

    name = "webp"
    pil_format = "WEBP"
    pil_feature = "webp"
    default_qualities = (0, 5, 10, 20, 30, 40, 50, 60, 75, 90)

    def __init__(self, method: int = 6):
        _require(type(self))
        self.method = method
        self.description = f"WebP, libwebp {features.version('webp')}, method {method}"

    def _save_options(self, quality: float) -> dict:
        return {"quality": int(quality), "method": self.method}


class AVIFCodec(_PillowCodec):
    """AV1 intra in AVIF (libavif via Pillow)."""

    name = "avif"
    pil_format = "AVIF"
    pil_feature = "avif"
    default_qualities = (0, 10, 20, 30, 40, 50, 60, 70, 80)

    def __init__(self, speed: int = 6, subsampling: str = "4:2:0", threads: int = 1):
        _require(type(self))
        self.speed = speed
        self.subsampling = subsampling
        self.threads = threads
        self.description = f"AVIF, libavif {features.version('avif')}, speed {speed}, {subsampling}"

    def _save_options(self, quality: float) -> dict:
        return {
            "quality": int(quality),
            "speed": self.speed,
            "subsampling": self.subsampling,
            "max_threads": self.threads,
        }


class JPEG2000Codec(_PillowCodec):
    """JPEG 2000 (OpenJPEG via Pillow), one quality layer aimed at a PSNR in dB.

    Uses the lossy 9/7 wavelet with the colour transform (Pillow's defaults are the
    lossless 5/3 wavelet without one) and writes a bare codestream (.j2k) rather than
    a JP2 box, so no container bytes are counted that a real deployment would skip.
    """

    name = "jpeg2000"
    pil_format = "JPEG2000"
    pil_feature = "jpg_2000"
    quality_range = (15.0, 60.0)
    integer_quality = False
    default_qualities = (26.0, 28.0, 30.0, 32.0, 34.0, 36.0, 38.0, 40.0, 42.0)

    def __init__(self):
        _require(type(self))
        self.description = f"JPEG 2000, OpenJPEG {features.version('jpg_2000')}, 9/7, target PSNR (dB)"

    def _save_options(self, quality: float) -> dict:
        return {
            "quality_mode": "dB",
            "quality_layers": [float(quality)],
            "irreversible": True,
            "mct": 1,
            "no_jp2": True,
        }


class HEVCCodec(_Codec):
    """HEVC intra (x265) in a HEIF file through pillow-heif: the nearest thing to BPG."""

    name = "hevc"
    quality_range = (0, 100)
    integer_quality = True
    # Bits grow steeply above ~50 and saturate above ~80 (the 4:2:0 YCbCr round trip caps PSNR).
    default_qualities = (0, 10, 20, 28, 36, 44, 52, 60)

    def __init__(self, chroma: int = 420, threads: int = 1):
        _require(type(self))
        import pillow_heif

        self._heif = pillow_heif
        self.chroma = chroma
        self.threads = threads
        self.description = f"HEVC intra, {pillow_heif.libheif_info()['HEIF']}, HEIF, chroma {chroma}"

    @staticmethod
    def unavailable_reason() -> str | None:
        """None when pillow-heif with an HEVC encoder is installed, else why not."""
        try:
            import pillow_heif
        except ImportError:
            return "pillow-heif is not installed"
        if not pillow_heif.libheif_info().get("HEIF"):
            return "libheif has no HEVC encoder"
        return None

    def encode(self, rgb: np.ndarray, quality: float) -> bytes:
        _check_quality(self, quality)
        heif = self._heif.from_pillow(Image.fromarray(check_rgb(rgb)))
        buf = io.BytesIO()
        # A fresh dict every call: pillow-heif writes the chroma option into it.
        heif.save(buf, quality=int(quality), chroma=self.chroma,
                  enc_params={"x265:pools": str(self.threads)})
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        return _pil_to_rgb(self._heif.open_heif(io.BytesIO(data)).to_pillow())


class JPEGXLCodec(_Codec):
    """JPEG XL through the reference ``cjxl``/``djxl`` tools (Debian's libjxl-tools).

    Quality is cjxl's ``-q`` (libjpeg-like, mapped to a butteraugli distance); below
    about 4.1 the distance would pass libjxl's limit of 25, hence the lower bound.
    Encode and decode times include the tools' process start and the temporary files.
    """

    name = "jpegxl"
    quality_range = (5.0, 99.0)
    integer_quality = False
    default_qualities = (5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 75.0, 90.0)

    def __init__(self, effort: int = 7, threads: int = 1):
        _require(type(self))
        self.effort = effort
        self.threads = threads
        version = subprocess.run(["cjxl", "--version"], capture_output=True, text=True).stdout.split()
        self.description = f"JPEG XL, cjxl {version[1] if len(version) > 1 else '?'}, effort {effort}"

    @staticmethod
    def unavailable_reason() -> str | None:
        """None when cjxl and djxl are on PATH, else why not."""
        missing = [tool for tool in ("cjxl", "djxl") if shutil.which(tool) is None]
        return f"{' and '.join(missing)} not on PATH (apt install libjxl-tools)" if missing else None

    def _run(self, args: list[str]) -> None:
        proc = subprocess.run(args, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = proc.stderr.strip().splitlines()
            raise RuntimeError(f"{args[0]} exited {proc.returncode}: {lines[-1] if lines else 'no message'}")

    def encode(self, rgb: np.ndarray, quality: float) -> bytes:
        _check_quality(self, quality)
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp, "in.ppm"), Path(tmp, "out.jxl")
            Image.fromarray(check_rgb(rgb)).save(src)  # PPM: the cheapest input cjxl reads
            self._run(["cjxl", str(src), str(dst), "-q", f"{quality:g}", "-e", str(self.effort),
                       f"--num_threads={self.threads}"])
            return dst.read_bytes()

    def decode(self, data: bytes) -> np.ndarray:
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp, "in.jxl"), Path(tmp, "out.ppm")
            src.write_bytes(data)
            self._run(["djxl", str(src), str(dst), f"--num_threads={self.threads}"])
            with Image.open(dst) as im:
                return _pil_to_rgb(im)


# Every classical codec this module knows, by name, in roughly historical order.
CODECS = {
    cls.name: cls for cls in (JPEGCodec, JPEG2000Codec, WebPCodec, HEVCCodec, AVIFCodec, JPEGXLCodec)
}


def missing_codecs() -> dict[str, str]:
    """The classical codecs that cannot run here, each with the reason."""
    return {name: reason for name, cls in CODECS.items() if (reason := cls.unavailable_reason())}


def available_codecs() -> dict[str, ImageCodec]:
    """One default-configured instance of every classical codec that runs here."""
    missing = missing_codecs()
    return {name: cls() for name, cls in CODECS.items() if name not in missing}


@dataclass(frozen=True)
class RatePoint:
    """One encoding: the quality asked for, the bits per pixel achieved, the file."""

    quality: float
    bpp: float
    data: bytes


def find_quality_for_bpp(
    codec: ImageCodec,
    rgb: np.ndarray,
    target_bpp: float,
    *,
    rel_tol: float = 0.01,
    max_iter: int = 24,
) -> RatePoint:
    """Bisect the codec's quality for ``target_bpp`` on one image.

    Assumes bpp grows monotonically with quality. Stops once within ``rel_tol`` of
    the target, when an integer quality has no step left, or after ``max_iter``
    encodings, and returns the closest point achieved (targets outside the codec's
    reach give the nearest end of its range).
    """
    if target_bpp <= 0:
        raise ValueError(f"target_bpp must be positive, got {target_bpp}")
    rgb = check_rgb(rgb)
    tried: dict[float, RatePoint] = {}

    def at(quality: float) -> RatePoint:
        if quality not in tried:
            data = codec.encode(rgb, quality)
            tried[quality] = RatePoint(quality, bits_per_pixel(data, rgb.shape), data)
        return tried[quality]

    lo, hi = codec.quality_range
    for _ in range(max_iter):
        if codec.integer_quality:
            lo, hi = int(np.ceil(lo)), int(np.floor(hi))
            if hi - lo <= 1:
                break
            mid = (lo + hi) // 2
        else:
            mid = (lo + hi) / 2
        point = at(mid)
        if abs(point.bpp - target_bpp) <= rel_tol * target_bpp:
            return point
        lo, hi = (mid, hi) if point.bpp < target_bpp else (lo, mid)
    # Under the monotone assumption the target lies between the bracket's ends.
    at(lo)
    at(hi)
    return min(tried.values(), key=lambda p: abs(p.bpp - target_bpp))
