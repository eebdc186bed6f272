"""Training data: random multi-scale crops with flips from a folder of photos.

Sample k of a run is a pure function of (seed, k): resuming at step s reproduces exactly
the batches a non-interrupted run would have seen, with any number of loader workers.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from samic.codec.image_io import load_image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images in {folder}")
    return files


def split_train_val(files: list[Path], n_val: int) -> tuple[list[Path], list[Path]]:
    """Deterministic hold-out by a hash of the file name (stable when files are added)."""
    ranked = sorted(files, key=lambda p: zlib.crc32(p.name.encode()))
    val = sorted(ranked[:n_val])
    return [p for p in files if p not in set(val)], val


def _load_rgb(path: Path) -> Image.Image:
    """The codec's reading of an image file (samic.codec.image_io: EXIF orientation, alpha, 16-bit)."""
    return Image.fromarray(load_image(path))


class RandomCrops(torch.utils.data.Dataset):
    """Index k -> a (3, crop, crop) float tensor in [0, 1], deterministic in (seed, k).

    Multi-scale: a square region of side crop / s (s uniform in scale_range, limited by the
    image) is cut at a random place, resized to crop x crop, then flipped with p = 0.5.
    """

    def __init__(self, files: list[Path], crop: int = 256, scale_range=(0.5, 1.0), seed: int = 0,
                 length: int = 10 ** 9, cache_images: bool = True):
        self.files, self.crop, self.scale_range, self.seed = list(files), crop, tuple(scale_range), seed
        self.length = length
        self.cache_images = cache_images
        self._cache: dict[int, Image.Image] = {}

    def __len__(self) -> int:
        return self.length

    def _image(self, i: int) -> Image.Image:
        if i in self._cache:
            return self._cache[i]
        im = _load_rgb(self.files[i])
        if min(im.size) < self.crop:  # tiny images: upscale so one crop fits
            s = self.crop / min(im.size)
            im = im.resize((max(self.crop, round(im.width * s)), max(self.crop, round(im.height * s))),
                           Image.BICUBIC)
        if self.cache_images:
            self._cache[i] = im
        return im

    def __getitem__(self, k: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, k])
        im = self._image(int(rng.integers(len(self.files))))
        s_min = max(self.scale_range[0], self.crop / min(im.size))
        s = float(rng.uniform(s_min, max(s_min, self.scale_range[1])))
        side = min(min(im.size), int(round(self.crop / s)))
        x0 = int(rng.integers(im.width - side + 1))
        y0 = int(rng.integers(im.height - side + 1))
        patch = im.crop((x0, y0, x0 + side, y0 + side))
        if side != self.crop:
            patch = patch.resize((self.crop, self.crop), Image.BICUBIC, reducing_gap=3.0)
        arr = np.asarray(patch, dtype=np.uint8)
        if rng.random() < 0.5:
            arr = arr[:, ::-1]
        if rng.random() < 0.5:
            arr = arr[::-1]
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def validation_crops(files: list[Path], crop: int = 256, scales=(1.0, 0.5)) -> torch.Tensor:
    """A fixed set: the center crop of every validation image at each of ``scales`` (default
    full size and half size); views smaller than the crop are skipped."""
    crops = []
    for path in files:
        im = _load_rgb(path)
        for scale in scales:
            view = im if scale == 1.0 else im.resize((round(im.width * scale), round(im.height * scale)),
                                                     Image.BICUBIC, reducing_gap=3.0)
            if min(view.size) < crop:
                continue
            x0, y0 = (view.width - crop) // 2, (view.height - crop) // 2
            arr = np.asarray(view.crop((x0, y0, x0 + crop, y0 + crop)), dtype=np.uint8)
            crops.append(torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255.0)
    return torch.stack(crops)


def make_subset(src: str | Path, dst: str | Path, short_side: int = 512, quality: int = 90) -> int:
    """Write a compact copy of a training folder (short side resized, JPEG) for GPU machines.

    Returns the total size in bytes. 264 photos at short side 512 take about 20 MB.
    """
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    total = 0
    for path in list_images(src):
        im = _load_rgb(path)
        s = short_side / min(im.size)
        if s < 1:
            im = im.resize((round(im.width * s), round(im.height * s)), Image.BICUBIC, reducing_gap=3.0)
        out = dst / (path.stem + ".jpg")
        im.save(out, quality=quality, subsampling=0)
        total += out.stat().st_size
    return total
