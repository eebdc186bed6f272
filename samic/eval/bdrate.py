"""Bjøntegaard deltas (BD-rate, BD-PSNR) through the ``bjontegaard`` package.

BD-rate is the average difference in log-rate between two RD curves, integrated over
the quality range both cover; BD-PSNR (or BD of any metric) the average metric
difference over the log-rate range both cover. Only the overlap is integrated, never
an extrapolation. Piecewise-cubic Hermite (``pchip``, the default) and ``akima``
interpolation are the modern choices (the VCEG cubic fit can oscillate).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from samic.eval.results import RDResults

__all__ = ["bd_psnr", "bd_rate", "bd_rate_table", "higher_is_better"]

MIN_POINTS = 4


def higher_is_better(metric: str) -> bool:
    """PSNR and MS-SSIM grow with quality; LPIPS, DISTS and times shrink."""
    return not metric.startswith(("lpips", "dists")) and not metric.endswith("_time")


def _curve(rate, dist, larger_better: bool, label: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate one RD curve and return it sorted by rate, quality made increasing."""
    rate, dist = np.asarray(rate, dtype=float), np.asarray(dist, dtype=float)
    if rate.shape != dist.shape or rate.ndim != 1:
        raise ValueError(f"{label}: rate and metric must be 1-D of equal length, got {rate.shape} and {dist.shape}")
    if len(rate) < MIN_POINTS:
        raise ValueError(f"{label}: BD needs at least {MIN_POINTS} RD points, got {len(rate)}")
    if not (np.all(np.isfinite(rate)) and np.all(np.isfinite(dist)) and np.all(rate > 0)):
        raise ValueError(f"{label}: rates must be positive and all values finite")
    order = np.argsort(rate)
    rate, dist = rate[order], dist[order] if larger_better else -dist[order]
    if np.any(np.diff(rate) <= 0) or np.any(np.diff(dist) <= 0):
        raise ValueError(f"{label}: metric is not strictly monotone in rate, BD is undefined")
    return rate, dist


def _check_overlap(a: np.ndarray, b: np.ndarray, axis: str) -> None:
    lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
    if lo >= hi:
        raise ValueError(
            f"RD curves do not overlap in {axis}: anchor [{a.min():.4g}, {a.max():.4g}], "
            f"test [{b.min():.4g}, {b.max():.4g}]"
        )


def bd_rate(rate_anchor, metric_anchor, rate_test, metric_test, *,
            method: str = "pchip", larger_better: bool = True) -> float:
    """Average bit-rate change of test against anchor at equal quality, in percent.

    Negative means the test codec needs fewer bits. ``larger_better=False`` is for
    metrics such as LPIPS and DISTS.
    """
    import bjontegaard

    ra, da = _curve(rate_anchor, metric_anchor, larger_better, "anchor")
    rt, dt = _curve(rate_test, metric_test, larger_better, "test")
    _check_overlap(da, dt, "quality")
    return float(bjontegaard.bd_rate(ra, da, rt, dt, method=method,
                                     require_matching_points=False, min_overlap=0))


def bd_psnr(rate_anchor, metric_anchor, rate_test, metric_test, *,
            method: str = "pchip", larger_better: bool = True) -> float:
    """Average metric change of test against anchor at equal rate (BD-PSNR for PSNR).

    Positive means better for PSNR-like metrics; for ``larger_better=False`` metrics
    the sign is that of the metric itself (negative LPIPS change = better).
    """
    import bjontegaard

    ra, da = _curve(rate_anchor, metric_anchor, larger_better, "anchor")
    rt, dt = _curve(rate_test, metric_test, larger_better, "test")
    _check_overlap(np.log10(ra), np.log10(rt), "log-rate")
    delta = float(bjontegaard.bd_psnr(ra, da, rt, dt, method=method,
                                      require_matching_points=False, min_overlap=0))
    return delta if larger_better else -delta


def bd_rate_table(
    test: RDResults,
    anchors: Sequence[RDResults],
    metrics: Sequence[str] = ("psnr-rgb", "ms-ssim-rgb", "lpips-alex", "dists"),
    *,
    method: str = "pchip",
) -> str:
    """Markdown table of BD-rate (%) of ``test`` against each anchor, one column per metric.

    Metrics the test curve lacks are left out; a cell that cannot be computed (metric
    missing from the anchor, too few points, no overlap, non-monotone curve) reads
    ``n/a`` and its reason is listed under the table.
    """
    metrics = [m for m in metrics if m in test.results]
    if not metrics:
        raise ValueError(f"{test.name} has none of the requested metrics")
    lines = [
        f"BD-rate of **{test.name}** against each anchor ({method}; negative = fewer bits at equal quality)",
        "",
        "| anchor | " + " | ".join(metrics) + " |",
        "|---|" + "---:|" * len(metrics),
    ]
    notes = []
    for anchor in anchors:
        cells = []
        for metric in metrics:
            try:
                value = bd_rate(anchor.metric("bpp"), anchor.metric(metric), test.metric("bpp"),
                                test.metric(metric), method=method, larger_better=higher_is_better(metric))
                cells.append(f"{value:+.1f} %")
            except (KeyError, ValueError) as err:
                cells.append("n/a")
                notes.append(f"- {anchor.name} / {metric}: {err.args[0]}")
        lines.append(f"| {anchor.name} | " + " | ".join(cells) + " |")
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"
