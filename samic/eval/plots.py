"""Rate-distortion plots: bpp against each metric, one panel per metric.

Interactive HTML through plotly (plotly.js embedded, so the page works offline) and a
PNG of the same figure. Plotly's PNG export (kaleido) drives a Chrome/Chromium, which
works here once Debian's ``chromium`` is installed; where none is found the PNG is drawn
with matplotlib instead, with the same colours and panels.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from samic.eval.results import RDResults

__all__ = ["LABELS", "plot_metrics", "rd_figure", "save_rd_plots", "save_rd_png_matplotlib"]

LABELS = {
    "psnr-rgb": "PSNR-RGB (dB)",
    "ms-ssim-rgb": "MS-SSIM-RGB (dB)",
    "lpips-alex": "LPIPS-Alex (lower is better)",
    "lpips-vgg": "LPIPS-VGG (lower is better)",
    "dists": "DISTS (lower is better)",
    "encoding_time": "encoding time (s)",
    "decoding_time": "decoding time (s)",
}


def plot_metrics(results: Sequence[RDResults]) -> list[str]:
    """The quality metrics present in any of ``results``, times and bpp left out."""
    seen = dict.fromkeys(key for r in results for key in r.results)
    return [key for key in seen if key != "bpp" and not key.endswith("_time")]


def _curve(result: RDResults, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """bpp and the metric as plotted (MS-SSIM in dB, like CompressAI), sorted by bpp."""
    bpp, values = result.metric("bpp"), result.metric(metric)
    if metric.startswith("ms-ssim"):
        values = -10 * np.log10(1 - values)
    order = np.argsort(bpp)
    return bpp[order], values[order]


def _layout(results: Sequence[RDResults], metrics: Sequence[str] | None) -> tuple[list[str], int, int]:
    metrics = list(metrics) if metrics is not None else plot_metrics(results)
    if not metrics:
        raise ValueError("nothing to plot: the results have no metric besides bpp")
    cols = min(2, len(metrics))
    return metrics, math.ceil(len(metrics) / cols), cols


def _palette() -> list[str]:
    import plotly.colors

    return plotly.colors.qualitative.Plotly


def rd_figure(results: Sequence[RDResults], metrics: Sequence[str] | None = None, title: str = ""):
    """A plotly figure with one bpp-vs-metric panel per metric, one line per codec."""
    from plotly.subplots import make_subplots

    metrics, rows, cols = _layout(results, metrics)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[LABELS.get(m, m) for m in metrics])
    palette = _palette()
    for i, metric in enumerate(metrics):
        row, col = divmod(i, cols)
        for j, result in enumerate(results):
            if metric not in result.results:
                continue
            x, y = _curve(result, metric)
            fig.add_scatter(x=x, y=y, mode="lines+markers", name=result.name, legendgroup=result.name,
                            showlegend=i == 0, line_color=palette[j % len(palette)],
                            hovertext=result.description, row=row + 1, col=col + 1)
        fig.update_xaxes(title_text="bpp", row=row + 1, col=col + 1)
    fig.update_layout(title=title, width=560 * cols, height=420 * rows, template="plotly_white")
    return fig


def save_rd_png_matplotlib(results: Sequence[RDResults], path: str | Path,
                           metrics: Sequence[str] | None = None, title: str = "") -> Path:
    """The figure of :func:`rd_figure` drawn with matplotlib (no browser needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metrics, rows, cols = _layout(results, metrics)
    # A bare Figure with its own Agg canvas: no pyplot state, no display needed.
    fig = Figure(figsize=(5.6 * cols, 4.2 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    palette = _palette()
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, metric in zip(axes, metrics):
        for j, result in enumerate(results):
            if metric in result.results:
                ax.plot(*_curve(result, metric), "o-", ms=3, color=palette[j % len(palette)], label=result.name)
        ax.set(title=LABELS.get(metric, metric), xlabel="bpp")
        ax.grid(alpha=0.3)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    axes[0].legend()
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def save_rd_plots(
    results: Sequence[RDResults],
    stem: str | Path,
    metrics: Sequence[str] | None = None,
    *,
    title: str = "",
    html: bool = True,
    png: bool = True,
    png_backend: str = "auto",
) -> dict[str, Path]:
    """Write ``stem.html`` and/or ``stem.png``; return the paths by format.

    ``png_backend``: ``"plotly"`` (kaleido, needs Chrome), ``"matplotlib"``, or
    ``"auto"``: plotly, falling back to matplotlib with a warning when export fails.
    """
    if png_backend not in ("auto", "plotly", "matplotlib"):
        raise ValueError(f"png_backend must be auto, plotly or matplotlib, got {png_backend!r}")
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    fig = rd_figure(results, metrics, title) if html or png_backend != "matplotlib" else None
    if html:
        written["html"] = stem.with_suffix(".html")
        fig.write_html(written["html"], include_plotlyjs=True)
    if png:
        written["png"] = stem.with_suffix(".png")
        if png_backend == "matplotlib":
            save_rd_png_matplotlib(results, written["png"], metrics, title)
        else:
            try:
                fig.write_image(written["png"])
            # kaleido raises assorted errors (no Chrome, no kaleido, browser crash).
            except Exception as err:
                if png_backend == "plotly":
                    raise
                warnings.warn(f"plotly PNG export failed ({type(err).__name__}); drawing it with matplotlib",
                              stacklevel=2)
                save_rd_png_matplotlib(results, written["png"], metrics, title)
    return written
