"""Summaries of a `samic eval` output folder for docs/results.md (markdown on stdout).

    python benchmarks/rd_report.py results/kodak [--test samic-lite-mse] [--at 0.1,0.15,0.2,0.3]
                                   [--plots results/kodak/rd]

Prints, for each SAMIC result against every classical result in the folder:
  1. BD-rate tables (PSNR, MS-SSIM, LPIPS-Alex, DISTS; pchip, overlap only);
  2. each codec's metrics interpolated at fixed bit rates (pchip in log-bpp, never
     extrapolated: outside a codec's measured range the cell reads "-");
  3. where SAMIC is better and where it is not: the bit-rate intervals, within the range
     both curves cover, on which SAMIC's interpolated curve beats the anchor's.
``--plots STEM`` redraws STEM.png and writes STEM.html with plotly.js linked from its CDN
(a few hundred kB instead of the 5 MB self-contained page that samic eval writes).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.interpolate import PchipInterpolator

from samic.eval.bdrate import bd_rate_table, higher_is_better
from samic.eval.plots import rd_figure, save_rd_plots
from samic.eval.results import RDResults, load_results_dir

METRICS = ("psnr-rgb", "ms-ssim-rgb", "lpips-alex", "dists")
SHORT = {"psnr-rgb": "PSNR", "ms-ssim-rgb": "MS-SSIM", "lpips-alex": "LPIPS", "dists": "DISTS"}
FORMAT = {"psnr-rgb": "{:.2f}", "ms-ssim-rgb": "{:.4f}", "lpips-alex": "{:.4f}", "dists": "{:.4f}"}


def curve(result: RDResults, metric: str):
    """pchip of the metric against log(bpp), and the log-bpp range it covers; None if absent."""
    if metric not in result.results:
        return None
    bpp, values = result.metric("bpp"), result.metric(metric)
    keep = np.isfinite(bpp) & np.isfinite(values)
    order = np.argsort(bpp[keep])
    x, y = np.log(bpp[keep][order]), values[keep][order]
    if len(x) < 2 or np.any(np.diff(x) <= 0):
        return None
    return PchipInterpolator(x, y, extrapolate=False), (x[0], x[-1])


def at_rates(results: list[RDResults], metric: str, rates: list[float]) -> str:
    lines = [f"{SHORT[metric]} at fixed bit rates (interpolated; '-' = outside the codec's measured range)", "",
             "| codec | " + " | ".join(f"{r:g} bpp" for r in rates) + " |", "|---|" + "---:|" * len(rates)]
    for result in results:
        c = curve(result, metric)
        cells = []
        for rate in rates:
            value = float(c[0](np.log(rate))) if c else float("nan")
            cells.append(FORMAT[metric].format(value) if np.isfinite(value) else "-")
        lines.append(f"| {result.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def wins(test: RDResults, anchor: RDResults, metric: str, grid: int = 400) -> str:
    """Bit-rate intervals of the common range where ``test`` is better than ``anchor``."""
    ct, ca = curve(test, metric), curve(anchor, metric)
    if ct is None or ca is None:
        return "n/a"
    lo, hi = max(ct[1][0], ca[1][0]), min(ct[1][1], ca[1][1])
    if lo >= hi:
        return "no common bit-rate range"
    x = np.linspace(lo, hi, grid)
    diff = ct[0](x) - ca[0](x)
    better = diff > 0 if higher_is_better(metric) else diff < 0
    runs, start = [], 0  # [better?, first index, last index]
    for i in range(1, grid + 1):
        if i == grid or better[i] != better[start]:
            runs.append([bool(better[start]), start, i - 1])
            start = i
    # A run shorter than 2 % of the range is a touch at a crossing, not a regime: merge it.
    merged = []
    for run in runs:
        if merged and (run[2] - run[1] < grid // 50 or merged[-1][0] == run[0]):
            merged[-1][2] = run[2]
        else:
            merged.append(run)
    if len(merged) > 1 and merged[0][2] - merged[0][1] < grid // 50:
        merged[1][1] = merged[0][1]
        merged.pop(0)
    return "; ".join(f"{'**better**' if b else 'worse'} {np.exp(x[i]):.3f}-{np.exp(x[j]):.3f}" for b, i, j in merged)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="output folder of samic eval")
    parser.add_argument("--test", action="append", default=None,
                        help="a SAMIC result to report (repeatable; default: every samic-* result)")
    parser.add_argument("--at", default="0.1,0.15,0.2,0.3", help="bit rates for the fixed-rate tables")
    parser.add_argument("--plots", default=None, metavar="STEM", help="write STEM.png and a CDN-linked STEM.html")
    args = parser.parse_args()

    results = load_results_dir(args.folder)
    names = args.test or [n for n in results if n.startswith("samic")]
    if not names or any(n not in results for n in names):
        print(f"no SAMIC result {names or ''} in {args.folder}", file=sys.stderr)
        return 2
    tests = [results[n] for n in names]
    anchors = [r for n, r in results.items() if not n.startswith("samic")]
    metrics = [m for m in METRICS if any(m in t.results for t in tests)]
    rates = [float(r) for r in args.at.split(",")]

    print("## BD-rate\n")
    for test in tests:
        print(bd_rate_table(test, anchors, metrics))
    print("## Metrics at fixed bit rates\n")
    for metric in metrics:
        print(at_rates([*tests, *anchors], metric, rates))
    for test in tests:
        print(f"## Where {test.name} is better and where it is not (bpp intervals of the common range)\n")
        print("| anchor | " + " | ".join(SHORT[m] for m in metrics) + " |")
        print("|---|" + "---|" * len(metrics))
        for anchor in anchors:
            print(f"| {anchor.name} | " + " | ".join(wins(test, anchor, m) for m in metrics) + " |")
        print()
    if args.plots:
        title = "Kodak, 24 images: SAMIC vs classical codecs"
        save_rd_plots([*tests, *anchors], args.plots, html=False, title=title)
        rd_figure([*tests, *anchors], title=title).write_html(Path(args.plots).with_suffix(".html"),
                                                            include_plotlyjs="cdn")
    print("measured ranges: " + "; ".join(f"{r.name} {r.metric('bpp').min():.3f}-{r.metric('bpp').max():.3f} bpp"
                                          for r in [*tests, *anchors]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
