"""Evaluation: classical baseline codecs, RD sweeps, BD-rate, results files and plots.

See docs/eval-design.md. Heavy or optional libraries (plotly, matplotlib, pillow-heif,
samic.metrics) are imported only when used.
"""

from samic.eval.bdrate import bd_psnr, bd_rate, bd_rate_table, higher_is_better
from samic.eval.classical import (
    CODECS,
    ImageCodec,
    RatePoint,
    available_codecs,
    bits_per_pixel,
    find_quality_for_bpp,
    missing_codecs,
)
from samic.eval.plots import rd_figure, save_rd_plots
from samic.eval.results import RDResults, load_results_dir
from samic.eval.runner import default_metrics, evaluate

__all__ = [
    "CODECS",
    "ImageCodec",
    "RDResults",
    "RatePoint",
    "available_codecs",
    "bd_psnr",
    "bd_rate",
    "bd_rate_table",
    "bits_per_pixel",
    "default_metrics",
    "evaluate",
    "find_quality_for_bpp",
    "higher_is_better",
    "load_results_dir",
    "missing_codecs",
    "rd_figure",
    "save_rd_plots",
]
