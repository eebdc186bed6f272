"""Run codecs over an image folder and collect RD results in CompressAI's format.

Any object with the :class:`~samic.eval.classical.ImageCodec` protocol can be evaluated:
the classical baselines and, with a quality in [0, 1], the SAMIC codec. Metrics are a
dict of ``fn(reference_uint8, reconstruction_uint8) -> float``; :func:`default_metrics`
takes them from :mod:`samic.metrics` when it imports.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from samic.codec.image_io import load_image
from samic.eval.classical import ImageCodec, bits_per_pixel, check_rgb
from samic.eval.results import RDResults

__all__ = ["IMAGE_SUFFIXES", "default_metrics", "evaluate", "list_images"]

Metric = Callable[[np.ndarray, np.ndarray], float]

IMAGE_SUFFIXES = (".png", ".ppm", ".bmp", ".tif", ".tiff")


def default_metrics(names: Sequence[str] = ("psnr-rgb", "ms-ssim-rgb", "lpips-alex", "dists")) -> dict[str, Metric]:
    """The named metrics of :mod:`samic.metrics` (imported only now: it loads network weights)."""
    from samic import metrics as m

    known = {
        "psnr-rgb": m.psnr,
        "ms-ssim-rgb": m.ms_ssim,
        "lpips-alex": partial(m.lpips_distance, net="alex"),
        "lpips-vgg": partial(m.lpips_distance, net="vgg"),
        "dists": m.dists,
    }
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; known: {', '.join(known)}")
    return {name: known[name] for name in names}


def list_images(dataset_dir: str | Path) -> list[Path]:
    """The lossless images directly inside ``dataset_dir``, sorted by name."""
    paths = sorted(p for p in Path(dataset_dir).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no {'/'.join(IMAGE_SUFFIXES)} images in {dataset_dir}")
    return paths


def evaluate(
    dataset_dir: str | Path,
    codecs: Mapping[str, ImageCodec],
    qualities: Mapping[str, Sequence[float]] | None = None,
    metrics: Mapping[str, Metric] | None = None,
    *,
    progress: bool = True,
    per_image: bool = False,
    limit: int | None = None,
    warmup: bool = True,
) -> dict[str, RDResults]:
    """Encode and decode every image at every quality of every codec.

    Args:
        dataset_dir: folder of lossless images (e.g. Kodak).
        codecs: name -> codec; the name becomes the result's name.
        qualities: name -> sweep; codecs missing here use their ``default_qualities``.
        metrics: name -> ``fn(ref, rec) -> float``; defaults to :func:`default_metrics`.
        progress: show a tqdm bar over all encodings.
        per_image: also keep each image's values (``RDResults.per_image``).
        limit: only the first ``limit`` images (sorted by name).
        warmup: one untimed encode/decode per codec first, so that one-off start-up
            costs (library loading, caches, a network's first pass) do not skew timings.
    Returns:
        name -> RDResults with, per quality, the mean over images of bpp (real file
        bytes), each metric, and the encoding/decoding wall-clock time in seconds.
    """
    from tqdm.auto import tqdm

    paths = list_images(dataset_dir)[:limit]
    images = [check_rgb(load_image(p)) for p in paths]
    metrics = default_metrics() if metrics is None else dict(metrics)
    sweeps = {name: list((qualities or {}).get(name, codec.default_qualities)) for name, codec in codecs.items()}
    if empty := [name for name, sweep in sweeps.items() if not sweep]:
        raise ValueError(f"no qualities to sweep for {', '.join(empty)}")
    keys = ["bpp", *metrics, "encoding_time", "decoding_time"]

    out: dict[str, RDResults] = {}
    with tqdm(total=len(images) * sum(map(len, sweeps.values())), disable=not progress, unit="img") as bar:
        for name, codec in codecs.items():
            bar.set_description(name)
            if warmup:
                codec.decode(codec.encode(images[0], sweeps[name][0]))
            # values[image][key][rate point]
            values = {p.stem: {key: [] for key in keys} for p in paths}
            for quality in sweeps[name]:
                for path, rgb in zip(paths, images):
                    row = values[path.stem]
                    start = time.perf_counter()
                    data = codec.encode(rgb, quality)
                    encoded = time.perf_counter()
                    rec = codec.decode(data)
                    decoded = time.perf_counter()
                    if rec.shape != rgb.shape or rec.dtype != np.uint8:
                        raise RuntimeError(
                            f"{name} decoded {path.name} to {rec.shape} {rec.dtype}, expected {rgb.shape} uint8")
                    row["bpp"].append(bits_per_pixel(data, rgb.shape))
                    for metric, fn in metrics.items():
                        row[metric].append(float(fn(rgb, rec)))
                    row["encoding_time"].append(encoded - start)
                    row["decoding_time"].append(decoded - encoded)
                    bar.update()
            means = {key: np.mean([values[p.stem][key] for p in paths], axis=0).tolist() for key in keys}
            out[name] = RDResults(
                name=name,
                description=getattr(codec, "description", ""),
                results=means,
                qualities=[float(q) for q in sweeps[name]],
                per_image=values if per_image else None,
            )
    return out
