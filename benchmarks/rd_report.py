"""Summaries of a `samic eval` output folder (markdown on stdout), and docs/results.md.

    python benchmarks/rd_report.py results/kodak [--test samic-lite-mse] [--at 0.1,0.15,0.2,0.3]
                                   [--plots results/kodak/rd] [--doc docs/results.md]

``--doc FILE`` writes the whole results page from the measurement files: the Kodak part from
the folder's JSON (rate points, BD-rate, fixed-rate tables, where SAMIC wins, the RD plot),
the scaling part from results/bench-scaling.json and the model comparison from
results/bench-models.json (``--scaling`` / ``--models`` to point elsewhere). Re-run it after
``samic eval --resume`` has re-measured SAMIC with new weights; every number on the page then
follows.

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
import json
import os
import sys
from pathlib import Path

import numpy as np
from scipy.interpolate import PchipInterpolator

from samic.eval.bdrate import bd_rate_table, higher_is_better
from samic.eval.plots import rd_figure, save_rd_plots
from samic.eval.results import RDResults, load_results_dir

REPO = Path(__file__).resolve().parents[1]
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


def rate_points(result: RDResults) -> str:
    """The measured rate points of one codec: quality, bpp and every metric, mean over images."""
    metrics = [m for m in METRICS if m in result.results]
    qualities = result.qualities or [None] * len(result.metric("bpp"))
    lines = [f"**{result.name}** ({result.description})", "",
             "| quality | bpp | " + " | ".join(SHORT[m] for m in metrics) + " | encode s | decode s |",
             "|---:|---:|" + "---:|" * len(metrics) + "---:|---:|"]
    columns = [result.metric(m) for m in ("bpp", *metrics)]
    times = [result.metric(k) if k in result.results else [float("nan")] * len(columns[0])
             for k in ("encoding_time", "decoding_time")]
    for i in np.argsort(columns[0]):
        q = qualities[i]
        cells = ["-" if q is None else f"{q:g}", f"{columns[0][i]:.3f}"]
        cells += [FORMAT[m].format(c[i]) if np.isfinite(c[i]) else "-" for m, c in zip(metrics, columns[1:])]
        cells += [f"{t[i]:.3f}" if np.isfinite(t[i]) else "-" for t in times]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def kodak_markdown(results: dict[str, RDResults], tests: list[RDResults], anchors: list[RDResults],
                   rates: list[float]) -> str:
    """BD-rate tables, fixed-rate tables and where-SAMIC-wins tables (the stdout report)."""
    metrics = [m for m in METRICS if any(m in t.results for t in tests)]
    out = ["## BD-rate\n"]
    out += [bd_rate_table(test, anchors, metrics) for test in tests]
    out += ["## Metrics at fixed bit rates\n"]
    out += [at_rates([*tests, *anchors], metric, rates) for metric in metrics]
    for test in tests:
        out.append(f"## Where {test.name} is better and where it is not (bpp intervals of the common range)\n")
        rows = ["| anchor | " + " | ".join(SHORT[m] for m in metrics) + " |", "|---|" + "---|" * len(metrics)]
        rows += [f"| {a.name} | " + " | ".join(wins(test, a, m) for m in metrics) + " |" for a in anchors]
        out.append("\n".join(rows) + "\n")
    out.append("measured ranges: " + "; ".join(f"{r.name} {r.metric('bpp').min():.3f}-{r.metric('bpp').max():.3f} bpp"
                                              for r in [*tests, *anchors]) + "\n")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="output folder of samic eval")
    parser.add_argument("--test", action="append", default=None,
                        help="a SAMIC result to report (repeatable; default: every samic-* result)")
    parser.add_argument("--at", default="0.1,0.15,0.2,0.3", help="bit rates for the fixed-rate tables")
    parser.add_argument("--plots", default=None, metavar="STEM", help="write STEM.png and a CDN-linked STEM.html")
    parser.add_argument("--doc", default=None, metavar="FILE",
                        help="write the whole results page (e.g. docs/results.md) instead of printing the report")
    parser.add_argument("--scaling", default=str(REPO / "results" / "bench-scaling.json"),
                        help="samic bench-scaling JSON for --doc (default results/bench-scaling.json)")
    parser.add_argument("--models", default=str(REPO / "results" / "bench-models.json"),
                        help="samic bench-models JSON for --doc (default results/bench-models.json)")
    args = parser.parse_args()

    results = load_results_dir(args.folder)
    names = args.test or [n for n in results if n.startswith("samic")]
    if not names or any(n not in results for n in names):
        print(f"no SAMIC result {names or ''} in {args.folder}", file=sys.stderr)
        return 2
    tests = [results[n] for n in names]
    anchors = [r for n, r in results.items() if not n.startswith("samic")]
    rates = [float(r) for r in args.at.split(",")]

    report = kodak_markdown(results, tests, anchors, rates)
    if args.plots:
        title = "Kodak, 24 images: SAMIC vs classical codecs"
        save_rd_plots([*tests, *anchors], args.plots, html=False, title=title)
        rd_figure([*tests, *anchors], title=title).write_html(Path(args.plots).with_suffix(".html"),
                                                            include_plotlyjs="cdn")
    if args.doc:
        write_results_doc(Path(args.doc), Path(args.folder), tests, anchors, report,
                          Path(args.scaling), Path(args.models), plot=Path(args.plots or Path(args.folder) / "rd"))
        print(f"wrote {args.doc}", file=sys.stderr)
    else:
        print(report)
    return 0

# ----------------------------------------------------------------------------- docs/results.md
KODAK_COMMAND = "samic eval --dataset ../shared/data/kodak --out results/kodak --resume"
DOC_COMMAND = "python benchmarks/rd_report.py results/kodak --plots results/kodak/rd --doc docs/results.md"
SCALING_COMMAND = "samic bench-scaling --repeats 3 --malloc library,glibc --json results/bench-scaling.json"
MODELS_COMMAND = "samic bench-models --json results/bench-models.json"


def _rel(path: Path, doc: Path) -> str:
    return os.path.relpath(path.resolve(), doc.resolve().parent)


def _repo_rel(path: Path) -> str:
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return path.as_posix()


def scaling_markdown(data: dict) -> str:
    """Tables of a samic bench-scaling JSON (one or more allocator settings side by side)."""
    from samic.bench.codec import FLAT_TARGET, MEMORY_TARGET_MB, _kernel_table, _scaling_header, _scaling_row

    settings, rows = data["settings"], data["rows"]
    mallocs = settings["malloc"] if isinstance(settings["malloc"], list) else [settings["malloc"]]
    load = data.get("load_average", {})
    out = [f"Shipped samic-lite weights, quality {settings['quality']:g}, {settings['threads']} torch thread(s), "
           f"median of {settings['repeats']} runs, the photo {settings['photo']} resized and cropped to each size; "
           "every encode and decode in a fresh process (peak = VmHWM of that process, weights and libraries "
           "included). Allocator settings side by side, size by size: "
           + ", ".join(f"`{m}`" for m in mallocs) + (f". Load average (1/5/15 min) at start "
           + "/".join(f"{v:.2f}" for v in load["start"]) + ", at end " + "/".join(f"{v:.2f}" for v in load["end"])
           + f" on {settings.get('cpus', '?')} CPUs (a training run shared the machine): wall times are "
           "inflated and noisy, CPU time is the steadier figure." if load else "."), "",
           _scaling_header()] + [_scaling_row(r) for r in rows] + [""]
    out += ["| allocator | enc wall ratio | enc CPU ratio | dec wall ratio | dec CPU ratio | enc peak MB at 3840x2160 "
            "| dec peak MB at 3840x2160 |", "|---|---:|---:|---:|---:|---:|---:|"]
    for m in mallocs:
        summary = data["summary"][m] if m in data["summary"] else data["summary"]
        ratio = summary["time_per_mp_ratio"]
        uhd = next((r for r in rows if r.get("malloc", m) == m and (r["width"], r["height"]) == (3840, 2160)), None)
        peaks = [f"{uhd[k]['peak_mb']:.0f}" if uhd else "-" for k in ("encode", "decode")]
        out.append(f"| {m} | " + " | ".join(f"{ratio[k]:.2f}x" for k in ("encode wall", "encode CPU", "decode wall",
                                                                           "decode CPU")) + f" | {peaks[0]} | {peaks[1]} |")
    ref, big = summary["reference_size"], summary["largest_size"]
    out += ["", f"Ratio = time per megapixel at {big[0]}x{big[1]} over time per megapixel at {ref[0]}x{ref[1]} "
            f"(targets: ratio <= {FLAT_TARGET}, encode peak at 3840x2160 <= {MEMORY_TARGET_MB} MB).", "",
            _kernel_table(rows), ""]
    return "\n".join(out)


def models_markdown(data: dict) -> str:
    """Table of a samic bench-models JSON."""
    width, height = data["size"]
    pixels = width * height
    out = [f"{width}x{height} ({data['photo']}), random weights (seed 0: latency does not depend on the weights), "
           "quality 0.5, 1 torch thread, median of 3, each job in a fresh process.", "",
           "| model | params | of which entropy model | kFLOPs/px (conv+matmul) | kFLOPs/px (scans) | kFLOPs/px total "
           "| encode s (network / entropy coding) | decode s (network / entropy coding) | encode CPU s | decode CPU s "
           "| encode peak RSS MB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in data["rows"]:
        f, enc, dec = r["flops"], r["encode"], r["decode"]
        out.append(f"| {r['model']} | {r['params'] / 1e6:.2f}M | {r['params_by_part']['entropy'] / 1e6:.2f}M "
                   f"| {f['counted'] / pixels / 1e3:.1f} | {f['scan'] / pixels / 1e3:.1f} "
                   f"| {(f['counted'] + f['scan']) / pixels / 1e3:.1f} "
                   f"| {enc['seconds']:.2f} ({enc['network']:.2f} / {enc['entropy_coding']:.2f}) "
                   f"| {dec['seconds']:.2f} ({dec['network']:.2f} / {dec['entropy_coding']:.2f}) "
                   f"| {enc['cpu_seconds']:.2f} | {dec['cpu_seconds']:.2f} | {enc['peak_mb']:.0f} |")
    out += ["", "FLOPs: torch.utils.flop_counter.FlopCounterMode on one forward pass (convolutions and matrix "
            "products, 2 per multiply-add) plus ~9 per state update of each selective scan, which runs in a numba "
            "kernel the counter cannot see. Latency: compress_image / decompress_image with real entropy coding.", ""]
    return "\n".join(out)


def write_results_doc(doc: Path, folder: Path, tests: list[RDResults], anchors: list[RDResults], report: str,
                      scaling: Path, models: Path, plot: Path) -> None:
    """docs/results.md from the measurement files (see the module docstring)."""
    png = plot.with_suffix(".png")
    parts = ["# Results", "",
             f"<!-- Generated by `{DOC_COMMAND}` from {_repo_rel(folder)}/*.json, {_repo_rel(scaling)} and "
             f"{_repo_rel(models)}. Do not edit by hand: re-measure, then re-run that command. -->", "",
             "Every table on this page is generated from a measurement file in `results/`; each section names the "
             "command that measured it. After new weights: re-run the SAMIC evaluation "
             f"(`{KODAK_COMMAND}` re-encodes only the SAMIC points whose weights digest changed), then regenerate "
             f"this page with `{DOC_COMMAND}`.", "",
             f"## Kodak (24 images, {len(tests)} SAMIC decoder(s), {len(anchors)} classical codecs)", "",
             f"Measured by `{KODAK_COMMAND}` (default codecs {', '.join(a.name for a in anchors)} and every decoder "
             "of the shipped samic-lite weights; metrics PSNR, MS-SSIM, LPIPS-Alex; real files, bpp counts every "
             "byte; times are per image on one thread, on a shared machine). BD-rate: `samic.eval.bdrate` "
             "(pchip, only over the rate range both curves cover). The same tables on stdout: "
             f"`python benchmarks/rd_report.py {_repo_rel(folder)}`.", ""]
    if png.is_file():
        parts += [f"![RD curves on Kodak]({_rel(png, doc)})", "",
                  f"Interactive: `{_rel(plot.with_suffix('.html'), doc)}`.", ""]
    parts += ["### Rate points", ""] + [rate_points(r) for r in [*tests, *anchors]]
    parts += [report.replace("\n## ", "\n### ").replace("## BD-rate", "### BD-rate", 1)]
    parts += samb_markdown(SAMB_RESULTS)
    parts += ["## Speed and memory against image size", "",
              f"Measured by `OMP_WAIT_POLICY=PASSIVE {SCALING_COMMAND}` ({_repo_rel(scaling)}).", ""]
    if scaling.is_file():
        parts += [scaling_markdown(json.loads(scaling.read_text())), SCALING_NOTES]
    else:
        parts += ["(not measured yet)", ""]
    parts += ["## samic-paper vs samic-lite", "",
              f"Measured by `OMP_WAIT_POLICY=PASSIVE {MODELS_COMMAND}` ({_repo_rel(models)}).", ""]
    parts += [models_markdown(json.loads(models.read_text())) if models.is_file() else "(not measured yet)\n"]
    parts += ["## Selective-scan backends", "",
              "`samic bench scan` times the scan backends (reference, numba, torch, mamba-ssm on CUDA) at the "
              "shapes SAMIC meets; the measured table and its command are in docs/architecture.md "
              "(\"Measured cost\"), the CUDA run over Kodak in `benchmarks/cuda_kodak.py`, the scan's memory in "
              "`benchmarks/scan_memory.py`.", ""]
    doc.write_text("\n".join(parts).rstrip() + "\n")


SAMB_RESULTS = REPO / "results" / "samb"  # not in results/kodak, whose every JSON is an RD curve
CLUSTERS_COMMAND = "samic bench clusters --dataset ../shared/data/kodak --json > results/samb/clusters-kodak.json"
ABLATION_COMMAND = "samic bench scan-ablation --dataset ../shared/data/kodak --json > results/samb/scan-ablation-kodak.json"
SAMB_TRAINING = SAMB_RESULTS / "training"  # report.json files of samic bench train


def samb_markdown(folder: Path) -> list[str]:
    """The SAMB section (issue 13): cluster statistics, the scan ablation with the shipped
    weights, and the training comparisons (results/samb/training/*.json, from samic bench train)."""
    from samic.bench import clusters, scan_ablation

    parts = ["## SAMB: clusters and scan order", ""]
    cluster_file, ablation_file = folder / "clusters-kodak.json", folder / "scan-ablation-kodak.json"
    if cluster_file.is_file():
        report = clusters.ClusterReport.from_dict(json.loads(cluster_file.read_text()))
        parts += [f"Measured by `OMP_WAIT_POLICY=PASSIVE {CLUSTERS_COMMAND}` (every SAMB's cluster map of "
                  f"{len(report.images)} Kodak photos, shipped weights). Cross-image kappa: agreement of two photos' "
                  "maps at equal grid positions (a positional lattice gives 1); shift test: the photo shifted by one "
                  "token, kappa with the map realigned (follows the content) and at fixed positions (locked to the "
                  "grid); NMI against K-means (K = 16) on each token's mean Lab colour, with its chance level; "
                  "clusters used: exp of the entropy of the cluster usage.", "",
                  clusters.format_table(report), ""]
    if ablation_file.is_file():
        report = scan_ablation.ScanAblationReport.from_dict(json.loads(ablation_file.read_text()))
        parts += [f"Measured by `OMP_WAIT_POLICY=PASSIVE {ABLATION_COMMAND}`: the same weights run with every "
                  "SAMB in another scan order, without its recurrence (y = D·u, the state removed) or with the "
                  "scan's output zeroed. The same orders with real files: `samic compress --scan-order`.", "",
                  scan_ablation.format_table(report), ""]
    for path in sorted(SAMB_TRAINING.glob("*.json")):
        from samic.bench import train as bench_train

        report = json.loads(path.read_text())
        parts += [f"Training comparison `{path.stem}` ({_repo_rel(path)}, the report of `samic bench train`; "
                  "the same start, data, seed and steps; validation on held-out training-pool crops, never "
                  "Kodak; cost = bpp + λ·255²·MSE over the quality sweep, lower is better):", "",
                  "```", bench_train.format_table(report), "```", ""]
        if report.get("note"):
            parts += [report["note"], ""]
    if len(parts) == 2:
        parts += ["(not measured yet)", ""]
    return parts


SCALING_NOTES = """### Why the large sizes were slower per megapixel, and the fix

With plain glibc (`glibc` rows) the user CPU time per megapixel is flat from 0.07 to 8.3 MP;
what grows is **system** time, with the minor page faults. glibc serves every block above its
mmap threshold (dynamic, capped at 32 MiB on 64-bit) with a fresh `mmap` and unmaps it on
`free`, so the kernel zero-fills every page of it again on first touch. At 768x512 almost
every temporary is below 32 MiB and is reused from the heap; at 3840x2160 the feature maps at
H/2 and H/4 (130-510 MB) and the im2col buffers of the float64 ChARM convolutions of the
entropy-parameter path (150-750 MB) are all above it: about half of the faults come from each.
Transparent huge pages (`THP_MEM_ALLOC_ENABLE=1`) cut the number of faults 40x but not the
system time (zero-filling the memory is the cost, not the faults); tcmalloc (`LD_PRELOAD`,
measured earlier: ratio 1.16) avoids it by keeping freed memory; not from a pip package.

The codec now does the same within glibc (`library` rows, the default; `samic/codec/memory.py`):
during `compress_image` / `decompress_image` large blocks come from the heap (`M_MMAP_MAX = 0`)
and nothing is trimmed, so a temporary reuses the pages of the previous one; when the call
returns, glibc's steady-state settings are put back and the free heap is handed back
(`malloc_trim`) when it exceeds 256 MiB. The blocks' inference paths also work in place where
that computes the same values (GDN, LeakyReLU, residual sums, SiLU, the router's sum, the
single-direction scan's inputs), which removes several full-size temporaries. Bytes and pixels
are bit-identical (checked on 7 sizes from 200x136 to 2880x1620, and by the codec tests).
Both settings' rows include these in-place paths; before them, plain glibc measured ratios
of 1.55x (encode) and 1.54x (decode) and a 3054 MB peak encoding 3840x2160.

The cost is memory: heap fragmentation makes the in-call peak higher than with mmap (compare
the peak columns; it also varies from run to run with the allocation history of the process:
3.3-3.9 GB for a 3840x2160 encode in our runs, within the 4 GB target but with little margin,
and about 4.5 GB for the decode, against about 2.6 GB with plain glibc). Where memory matters
more than time, `SAMIC_REUSE_BUFFERS=0` in the environment switches the reuse off. Not tried
yet: a smaller live set at H/2 (the 500 MB maps of g_a's first block and their oneDNN
reorders), which would lower both settings' peaks.
"""


if __name__ == "__main__":
    sys.exit(main())
