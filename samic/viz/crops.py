"""Side-by-side crops: SAMIC's two decoders against JPEG and WebP at the same bit rate.

``crop_comparison`` codes one whole image with every codec at (as near as each gets to) one
target rate, through real files: SAMIC's quality is searched so that its .samic file hits
the target, and that one file is decoded twice, with the MSE and with the perceptual decoder
(same bits); JPEG and WebP use the library's target-bpp search
(:func:`samic.eval.classical.find_quality_for_bpp`). It then cuts the same box out of the
original and of every reconstruction and measures PSNR and LPIPS-Alex on the crop and on the
whole image (:mod:`samic.metrics`). ``render_crop_comparison`` draws the crops in a row, each
labelled with codec, bpp, PSNR and LPIPS, as a uint8 image (Pillow only).

bpp is always that of the whole image's file (what was stored); the crop's own share of the
bits is not measurable for the classical codecs.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from samic.codec.api import choose_decoder, decompress_image, default_model
from samic.codec.image_io import load_image
from samic.eval.classical import CODECS, bits_per_pixel, find_quality_for_bpp
from samic.eval.samic_codec import SAMICCodec, weights_identity
from samic.metrics import lpips_distance, psnr
from samic.models.samic import SAMIC

Box = tuple[int, int, int, int]  # (left, top, right, bottom) in pixels, right/bottom exclusive (Pillow's order)

CODEC_LABELS = {"jpeg": "JPEG", "webp": "WebP", "avif": "AVIF", "jpeg2000": "JPEG 2000", "hevc": "HEVC",
                "jpegxl": "JPEG XL"}


class CropPanel(NamedTuple):
    """One codec's reconstruction of the crop, and its numbers."""

    label: str  # e.g. "SAMIC, MSE decoder", "JPEG"
    codec: str  # "samic", "jpeg", "webp", ...
    decoder: str | None  # "mse" / "perceptual" for SAMIC, None for the classical codecs
    quality: float  # the codec's own quality parameter that the search chose
    num_bytes: int  # size of the whole image's file
    bpp: float  # 8 * num_bytes / (H * W), the whole image
    psnr: float  # dB, on the crop
    lpips: float  # LPIPS-Alex v0.1, on the crop
    image_psnr: float  # dB, on the whole image
    image_lpips: float  # LPIPS-Alex, on the whole image
    crop: np.ndarray  # (h, w, 3) uint8, the box cut out of the reconstruction


class CropComparison(NamedTuple):
    """Every panel of one figure: the original crop and one panel per codec (display order)."""

    name: str  # what the image is called in the figure, e.g. "kodim04"
    image_size: tuple[int, int]  # (H, W) of the whole coded image
    box: Box
    target_bpp: float
    original: np.ndarray  # (h, w, 3) uint8, the box cut out of the original
    panels: tuple[CropPanel, ...]
    model: str  # e.g. "samic-lite sha256 3322439f" (weights file and hash, when known)
    thumbnail: np.ndarray  # the whole original, downscaled, with the box drawn on it

    def panel(self, codec: str, decoder: str | None = None) -> CropPanel:
        """The panel of ``codec`` (and SAMIC ``decoder``); KeyError if there is none."""
        for p in self.panels:
            if p.codec == codec and (decoder is None or p.decoder == decoder):
                return p
        raise KeyError(f"no panel for {codec} {decoder or ''}".strip())


def check_box(box: Sequence[int], size: tuple[int, int]) -> Box:
    """``box`` as ints (left, top, right, bottom), or ValueError if it is empty or leaves the image."""
    if len(box) != 4:
        raise ValueError(f"a crop box is (left, top, right, bottom), got {box!r}")
    left, top, right, bottom = (int(v) for v in box)
    height, width = size
    if not (0 <= left < right <= width and 0 <= top < bottom <= height):
        raise ValueError(f"crop box {box} is empty or outside the {width} x {height} image")
    return left, top, right, bottom


def _cut(rgb: np.ndarray, box: Box) -> np.ndarray:
    left, top, right, bottom = box
    return np.ascontiguousarray(rgb[top:bottom, left:right])


def _metrics(original: np.ndarray, reconstruction: np.ndarray) -> tuple[float, float]:
    # writable arrays: torch.from_numpy warns on read-only ones
    original, reconstruction = (np.require(a, requirements="W") for a in (original, reconstruction))
    return float(psnr(original, reconstruction)), float(lpips_distance(original, reconstruction, net="alex"))


def _panel(label, codec, decoder, quality, data: bytes, rgb, reconstruction, box) -> CropPanel:
    crop = _cut(reconstruction, box)
    crop_psnr, crop_lpips = _metrics(_cut(rgb, box), crop)
    image_psnr, image_lpips = _metrics(rgb, reconstruction)
    return CropPanel(label=label, codec=codec, decoder=decoder, quality=float(quality), num_bytes=len(data),
                     bpp=bits_per_pixel(data, rgb.shape), psnr=crop_psnr, lpips=crop_lpips,
                     image_psnr=image_psnr, image_lpips=image_lpips, crop=crop)


def _thumbnail(rgb: np.ndarray, box: Box, height: int) -> np.ndarray:
    scale = height / rgb.shape[0]
    image = Image.fromarray(rgb).resize((max(1, round(rgb.shape[1] * scale)), height), Image.LANCZOS)
    left, top, right, bottom = (round(v * scale) for v in box)
    draw = ImageDraw.Draw(image)
    for offset, colour in ((1, (0, 0, 0)), (0, (255, 40, 40))):  # red frame with a dark edge
        draw.rectangle([left - offset, top - offset, right - 1 + offset, bottom - 1 + offset], outline=colour,
                       width=3)
    return np.asarray(image)


def crop_comparison(image, target_bpp: float, box: Sequence[int], *, model: SAMIC | None = None,
                    decoders: Sequence[str] = ("mse", "perceptual"), classical: Sequence[str] = ("jpeg", "webp"),
                    name: str | None = None, rel_tol: float = 0.01) -> CropComparison:
    """Code ``image`` with SAMIC and the ``classical`` codecs at ``target_bpp`` and cut out ``box``.

    image: a path, PIL image or uint8 array (coded whole, as it is). box: (left, top, right,
    bottom) in pixels. model: a SAMIC with weights (None: the shipped default). decoders: the
    SAMIC decoders to show, all decoding the same .samic file (ValueError if the weights lack
    one). classical: names from samic.eval.CODECS. Each codec's quality is bisected until its
    file is within ``rel_tol`` of the target, or as near as the codec's quality steps and range
    allow (see find_quality_for_bpp): compare ``panel.bpp``, not the target.
    """
    model = default_model() if model is None else model
    decoders = [choose_decoder(model, d) for d in decoders]
    rgb = load_image(image)
    box = check_box(box, rgb.shape[:2])
    if name is None:
        name = Path(image).stem if isinstance(image, (str, Path)) else "image"

    panels = []
    if decoders:
        point = find_quality_for_bpp(SAMICCodec(model, decoders[0]), rgb, target_bpp, rel_tol=rel_tol)
        for decoder in decoders:  # the same file, decoded by each decoder
            panels.append(_panel(f"SAMIC, {decoder.upper() if decoder == 'mse' else decoder} decoder", "samic",
                                 decoder, point.quality, point.data, rgb,
                                 decompress_image(point.data, model, decoder), box))
    for codec_name in classical:
        codec = CODECS[codec_name]()
        point = find_quality_for_bpp(codec, rgb, target_bpp, rel_tol=rel_tol)
        panels.append(_panel(CODEC_LABELS.get(codec_name, codec_name), codec_name, None, point.quality, point.data,
                             rgb, codec.decode(point.data), box))

    identity = weights_identity(model)
    model_text = identity["preset"] + (f" sha256 {identity['sha256'][:8]}" if identity["sha256"] else "")
    crop_height = box[3] - box[1]
    return CropComparison(name=name, image_size=rgb.shape[:2], box=box, target_bpp=float(target_bpp),
                          original=_cut(rgb, box), panels=tuple(panels), model=model_text,
                          thumbnail=_thumbnail(rgb, box, min(rgb.shape[0], 2 * crop_height)))


# ------------------------------------------------------------------------------------ render
def _font(size: int, bold: bool = False) -> ImageFont.ImageFont:
    for name in (("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"), "DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def render_crop_comparison(result: CropComparison, scale: int = 2, thumbnail: bool = True, columns: int = 3,
                           gap: int = 8, title: str | None = None) -> np.ndarray:
    """The crops in a grid of ``columns`` (reading order: the whole image with the box when
    ``thumbnail``, the original crop, then the panels), each magnified ``scale`` times (nearest,
    so coding artefacts stay visible) and labelled underneath with codec, bpp, PSNR and
    LPIPS-Alex. Two title lines name the image, the box, the target rate and the weights
    (``title`` replaces the first). Returns uint8 (H, W, 3)."""
    crop_h, crop_w = result.original.shape[:2]
    panel_h, panel_w = crop_h * scale, crop_w * scale
    unit = max(1.0, panel_w / 320)  # text size follows the panel width
    font, bold = _font(round(13 * unit)), _font(round(14 * unit), bold=True)
    line_h, label_h = round(19 * unit), round(44 * unit)
    tiles: list[tuple[np.ndarray, str, str]] = []
    if thumbnail:
        thumb = result.thumbnail  # fitted into a panel's box, aspect kept
        fit = min(panel_w / thumb.shape[1], panel_h / thumb.shape[0])
        size = (max(1, round(thumb.shape[1] * fit)), max(1, round(thumb.shape[0] * fit)))
        height, width = result.image_size
        tiles.append((np.asarray(Image.fromarray(thumb).resize(size, Image.LANCZOS)),
                      f"{result.name}, {width} x {height}", "crop box in red"))
    tiles.append((np.repeat(np.repeat(result.original, scale, 0), scale, 1), "Original",
                  f"crop {crop_w} x {crop_h}, shown x{scale}"))
    for p in result.panels:
        tiles.append((np.repeat(np.repeat(p.crop, scale, 0), scale, 1), p.label,
                      f"{p.bpp:.3f} bpp  {p.psnr:.2f} dB  LPIPS {p.lpips:.3f}"))

    columns = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // columns)
    cell_w = panel_w
    cell_h = panel_h + label_h
    title_h = 2 * line_h + round(8 * unit)
    canvas = Image.new("RGB", (columns * cell_w + (columns + 1) * gap, title_h + rows * (cell_h + gap)),
                       (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    left, top, right, bottom = result.box
    if title is None:
        title = (f"{result.name}, crop ({left}, {top})-({right}, {bottom}), target {result.target_bpp:g} bpp; "
                 f"SAMIC {result.model}, both decoders read the same file")
    draw.text((gap, round(4 * unit)), title, fill=(0, 0, 0), font=font)
    draw.text((gap, round(4 * unit) + line_h), "bpp: the whole image's file; PSNR and LPIPS-Alex: on the crop",
              fill=(60, 60, 60), font=font)
    for i, (tile, label, numbers) in enumerate(tiles):
        x = gap + (i % columns) * (cell_w + gap)
        y = title_h + (i // columns) * (cell_h + gap)
        canvas.paste(Image.fromarray(tile), (x, y))
        draw.text((x, y + panel_h + round(4 * unit)), label, fill=(0, 0, 0), font=bold)
        draw.text((x, y + panel_h + round(23 * unit)), numbers, fill=(40, 40, 40), font=font)
    return np.asarray(canvas)


def save_crop_comparison(result: CropComparison, path: str | Path, scale: int = 2, thumbnail: bool = True,
                         columns: int = 3, max_bytes: int | None = None) -> Path:
    """Render ``result`` to a PNG at ``path`` (folders created). With ``max_bytes``, a PNG above
    it is written again at smaller magnifications (down to 1) until it fits; ValueError if
    even that does not. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for s in range(scale, 0, -1):
        Image.fromarray(render_crop_comparison(result, s, thumbnail, columns)).save(path, optimize=True)
        if max_bytes is None or path.stat().st_size <= max_bytes:
            return path
    raise ValueError(f"{path}: {path.stat().st_size} bytes even at magnification 1 (limit {max_bytes})")


__all__ = ["Box", "CropComparison", "CropPanel", "check_box", "crop_comparison", "render_crop_comparison",
           "save_crop_comparison"]
