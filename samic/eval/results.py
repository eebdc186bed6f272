"""Rate-distortion results in CompressAI's JSON format.

On disk a result is ``{"name", "description", "results": {"bpp": [...], "psnr-rgb": [...],
...}}``, one value per rate point averaged over the images, which is what CompressAI's
``eval_model`` writes and its plotting scripts read. Two optional keys travel with it:
``"qualities"`` (the codec setting of each rate point) and ``"per_image"``
(``{image_name: {metric: [...]}}``, same rate points); readers that ignore them still work.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["METRICS", "RDResults", "load_results_dir"]

# The keys CompressAI's evaluation writes, in its order (the metrics are optional here).
METRICS = ("bpp", "psnr-rgb", "ms-ssim-rgb", "lpips-alex", "dists", "encoding_time", "decoding_time")


def _check_table(table: dict, where: str) -> int:
    """Validate ``{metric: [values]}``; return the common number of rate points."""
    if not isinstance(table, dict) or "bpp" not in table:
        raise ValueError(f"{where}: needs a 'bpp' list")
    lengths = {key: len(values) for key, values in table.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{where}: lists differ in length {lengths}")
    return lengths["bpp"]


def _plain(values) -> list[float]:
    # JSON has no NaN: a metric that failed on one point is written as null.
    return [None if math.isnan(v) else v for v in map(float, values)]


def _floats(values) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


@dataclass
class RDResults:
    """One codec's RD curve: metric name -> one value per rate point."""

    name: str
    results: dict[str, list[float]]
    description: str = ""
    qualities: list[float] | None = None
    per_image: dict[str, dict[str, list[float]]] | None = field(default=None, repr=False)

    def __post_init__(self):
        n = _check_table(self.results, self.name)
        if self.qualities is not None and len(self.qualities) != n:
            raise ValueError(f"{self.name}: {len(self.qualities)} qualities for {n} rate points")
        for image, table in (self.per_image or {}).items():
            if _check_table(table, f"{self.name}/{image}") != n:
                raise ValueError(f"{self.name}/{image}: per-image results have a different number of rate points")

    def __len__(self) -> int:
        return len(self.results["bpp"])

    def metric(self, name: str) -> np.ndarray:
        """The values of one metric as a float array, or KeyError naming the ones present."""
        if name not in self.results:
            raise KeyError(f"{self.name} has no '{name}' (has {', '.join(self.results)})")
        return np.asarray(self.results[name], dtype=float)

    def to_dict(self) -> dict:
        out = {
            "name": self.name,
            "description": self.description,
            "results": {key: _plain(values) for key, values in self.results.items()},
        }
        if self.qualities is not None:
            out["qualities"] = list(self.qualities)
        if self.per_image is not None:
            out["per_image"] = {
                image: {key: _plain(values) for key, values in table.items()}
                for image, table in self.per_image.items()
            }
        return out

    @classmethod
    def from_dict(cls, data: dict) -> RDResults:
        if "results" not in data:
            raise ValueError("not a CompressAI results file: no 'results' key")
        per_image = data.get("per_image")
        return cls(
            name=data.get("name", ""),
            description=data.get("description", ""),
            results={key: _floats(values) for key, values in data["results"].items()},
            qualities=data.get("qualities"),
            per_image=None if per_image is None else {
                image: {key: _floats(values) for key, values in table.items()}
                for image, table in per_image.items()
            },
        )

    def save(self, path: str | Path) -> Path:
        """Write the JSON file (parents created); return its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> RDResults:
        """Read a results JSON file; a nameless one is named after the file."""
        path = Path(path)
        try:
            result = cls.from_dict(json.loads(path.read_text()))
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        result.name = result.name or path.stem
        return result


def load_results_dir(directory: str | Path) -> dict[str, RDResults]:
    """Every ``*.json`` results file in ``directory``, by codec name."""
    return {r.name: r for r in map(RDResults.load, sorted(Path(directory).glob("*.json")))}
