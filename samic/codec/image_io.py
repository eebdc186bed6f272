"""Images in, uint8 RGB out: the conversion rule of the codec (docs/bitstream.md, "Input images").

- EXIF orientation is applied (an unreadable EXIF block is ignored).
- Palette images (P, PA) become RGB, or RGBA if they have transparency.
- Alpha (RGBA, LA, PA, ...) is composited over white: round((c * a + 255 * (255 - a)) / 255).
- 16-bit and 32-bit integer grayscale (I;16*, I) -> 8 bits by round(v / 257) after clipping to
  0..65535; float grayscale (F) is taken on the 0..255 scale, rounded and clipped.
  Pillow hands over 16-bit *colour* PNGs as 8-bit RGB already (their high byte).
- Grayscale is replicated to three channels; CMYK, YCbCr, LAB, HSV go through Pillow's RGB conversion.
- Animated or multi-page files: the first frame.
- Arrays: uint8 (or uint16, scaled as above) H x W, H x W x 1, x 3 or x 4 (RGBA).

Images above the pixel limit of samic.codec.bitstream are refused before their pixels are
decoded; Pillow's decompression-bomb check stays on.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from samic.codec.bitstream import dimension_problem

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_WIDE_GRAY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageError(ValueError):
    """The input is not an image the codec can take (unreadable, empty, too large, wrong type)."""


def _from_16_bit(values: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(values.astype(np.float64), 0, 65535) / 257).astype(np.uint8)


def _composite_over_white(rgba: np.ndarray) -> np.ndarray:
    color, alpha = rgba[..., :3].astype(np.uint32), rgba[..., 3:].astype(np.uint32)
    return ((color * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)


def _apply_orientation(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # EXIF comes from the file and can be malformed in any way: ignore it
        return image


def pil_to_rgb(image: Image.Image) -> np.ndarray:
    """A PIL image -> uint8 (H, W, 3) by the conversion rule of the module docstring."""
    problem = dimension_problem(image.height, image.width)
    if problem:
        raise ImageError(problem)
    image = _apply_orientation(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode == "PA":
        image = image.convert("RGBA")
    if image.mode in _WIDE_GRAY_MODES:
        gray = _from_16_bit(np.asarray(image))
    elif image.mode == "F":
        gray = np.rint(np.clip(np.nan_to_num(np.asarray(image, dtype=np.float64)), 0, 255)).astype(np.uint8)
    elif image.mode in ("1", "L"):
        gray = np.asarray(image.convert("L"))
    elif image.mode in _ALPHA_MODES:
        return _composite_over_white(np.asarray(image.convert("RGBA")))
    else:
        return np.ascontiguousarray(np.asarray(image.convert("RGB")))
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def array_to_rgb(array: np.ndarray) -> np.ndarray:
    """uint8/uint16 (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) -> uint8 (H, W, 3)."""
    if array.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"image arrays must be uint8 (or uint16), got {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ImageError(f"image arrays must be H x W or H x W x 1, 3 or 4, got shape {array.shape}")
    problem = dimension_problem(array.shape[0], array.shape[1])
    if problem:
        raise ImageError(problem)
    if array.dtype == np.uint16:
        array = _from_16_bit(array)
    if array.shape[2] == 4:
        return _composite_over_white(array)
    return np.ascontiguousarray(np.broadcast_to(array, array.shape[:2] + (3,)))


def open_image_file(path: str | os.PathLike) -> np.ndarray:
    """Read an image file -> uint8 (H, W, 3); ImageError for anything that is not a usable image."""
    path = os.fspath(path)
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise ImageError(f"{path} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Pillow warns between its limit and twice it; our own, lower limit refuses those.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:  # lazy: reads the header, not the pixels
                return pil_to_rgb(image)
    except (ImageError, FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path} is refused as a possible decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path} is not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        # Pillow reports truncated or damaged pixel data with these types.
        raise ImageError(f"{path} is damaged or truncated: {exc}") from None


def load_image(image) -> np.ndarray:
    """A path, PIL image or array -> uint8 (H, W, 3) RGB, C-contiguous."""
    if isinstance(image, (str, os.PathLike)):
        return open_image_file(image)
    if isinstance(image, Image.Image):
        return pil_to_rgb(image)
    if isinstance(image, np.ndarray):
        return array_to_rgb(image)
    raise TypeError(f"image must be a path, a PIL image or a numpy array, got {type(image).__name__}")
