"""Benchmark reporting (docs/results.md generator, bench-scaling summaries) and the codec's
large-buffer reuse (samic/codec/memory.py); fast, no codec runs."""
import importlib.util
import json
import platform
import resource
import sys
from pathlib import Path

import numpy as np
import pytest

from samic.codec import memory
from samic.bench.codec import _scaling_summary

REPO = Path(__file__).resolve().parents[1]


def _rd_report():
    spec = importlib.util.spec_from_file_location("rd_report", REPO / "benchmarks" / "rd_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(malloc, width, height, seconds_per_mp, peak):
    mp = width * height / 1e6
    side = {"seconds": seconds_per_mp * mp, "cpu_seconds": seconds_per_mp * mp, "network": seconds_per_mp * mp,
            "entropy_coding": 0.0, "user_seconds": seconds_per_mp * mp, "sys_seconds": 0.0, "minor_faults": 10,
            "peak_mb": peak}
    return {"malloc": malloc, "width": width, "height": height, "megapixels": mp, "bpp": 0.1,
            "encode": dict(side), "decode": dict(side)}


def test_scaling_summary_and_markdown_per_allocator():
    rows = [_row("library", 768, 512, 2.0, 600), _row("glibc", 768, 512, 2.0, 600),
            _row("library", 3840, 2160, 2.2, 3300), _row("glibc", 3840, 2160, 3.0, 2300)]
    summaries = {m: _scaling_summary([r for r in rows if r["malloc"] == m]) for m in ("library", "glibc")}
    assert summaries["library"]["time_per_mp_ratio"]["encode wall"] == pytest.approx(1.1)
    assert summaries["glibc"]["time_per_mp_ratio"]["decode CPU"] == pytest.approx(1.5)
    assert "3300 MB (within the 4096 MB target)" in summaries["library"]["text"]
    data = {"settings": {"quality": 0.5, "threads": 1, "repeats": 3, "malloc": ["library", "glibc"],
                         "photo": "p.jpg", "cpus": 2},
            "load_average": {"start": [1.0, 1.0, 1.0], "end": [2.0, 2.0, 2.0]}, "rows": rows,
            "summary": {m: {k: v for k, v in s.items() if k != "text"} for m, s in summaries.items()}}
    text = _rd_report().scaling_markdown(data)
    assert "| library | 1.10x | 1.10x | 1.10x | 1.10x | 3300 | 3300 |" in text
    assert "| glibc | 1.50x |" in text and "1.00/1.00/1.00" in text


def test_results_doc_is_generated_from_the_measurement_files(tmp_path):
    rd = _rd_report()
    folder = REPO / "results" / "kodak"
    if not (folder / "jpeg.json").is_file():
        pytest.skip("no results/kodak")
    from samic.eval.results import load_results_dir

    results = load_results_dir(folder)
    tests = [r for n, r in results.items() if n.startswith("samic")]
    anchors = [r for n, r in results.items() if not n.startswith("samic")]
    report = rd.kodak_markdown(results, tests, anchors, [0.1, 0.2])
    doc = tmp_path / "docs" / "results.md"
    doc.parent.mkdir()
    rd.write_results_doc(doc, folder, tests, anchors, report, REPO / "results" / "bench-scaling.json",
                         REPO / "results" / "bench-models.json", plot=folder / "rd")
    text = doc.read_text()
    for heading in ("## Kodak", "### Rate points", "### BD-rate", "### Metrics at fixed bit rates",
                    "## Speed and memory against image size", "## samic-paper vs samic-lite",
                    "## Selective-scan backends"):
        assert heading in text
    assert rd.DOC_COMMAND in text and rd.KODAK_COMMAND in text
    for result in [*tests, *anchors]:
        assert f"**{result.name}**" in text and f"BD-rate of **{tests[0].name}**" in text
    jpeg = json.loads((folder / "jpeg.json").read_text())["results"]
    assert f"{sorted(jpeg['bpp'])[0]:.3f}" in text  # a rate point, as measured


@pytest.mark.skipif(not memory.enabled(), reason="glibc only (or SAMIC_REUSE_BUFFERS=0)")
def test_large_buffers_are_reused_within_a_codec_call_and_returned_after():
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    def status_mb(field):
        line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field))
        return int(line.split()[1]) / 1024

    size = 200 << 20  # far above glibc's 32 MiB mmap ceiling
    # numpy asks for transparent huge pages, which would hide the page faults counted here
    set_hugepage = getattr(getattr(np, "_core", np.core).multiarray, "_set_madvise_hugepage")
    hugepage = set_hugepage(False)
    try:
        _check_reuse(size, faults, status_mb)
    finally:
        set_hugepage(hugepage)


def _check_reuse(size, faults, status_mb):
    baseline = status_mb("VmRSS")  # what earlier tests left in this process
    with memory.reuse_large_buffers():
        a = np.ones(size, np.uint8)
        del a
        before = faults()
        b = np.ones(size, np.uint8)  # the same pages again: no fresh zero-filled memory
        reused = faults() - before
        del b
        with memory.reuse_large_buffers():  # nested calls keep the outer setting
            c = np.ones(2 * size, np.uint8)
            del c
        assert status_mb("VmRSS") - baseline > 1.5 * size / 2**20  # kept within the call
    assert reused < 0.05 * size / 4096
    assert status_mb("VmRSS") - baseline < 0.5 * size / 2**20  # handed back after the outermost call
    before = faults()
    d = np.ones(size, np.uint8)  # outside a codec call: glibc's usual mmap again
    assert faults() - before > 0.5 * size / 4096
    del d
