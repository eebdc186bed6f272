"""Codec speed and memory engines behind ``samic bench-scaling`` / ``samic bench-models``
(front ends: samic/commands/bench_codec.py).

Every encode and every decode runs in a fresh Python process (``python -m samic.bench.codec
WORKER_JSON``), so that its peak memory is the resident-set high-water mark (VmHWM in
/proc/self/status) of that one job: libraries and weights included, nothing left over from a
previous size. Each worker first warms up on a 256x256 crop (numba compilation, float64
entropy-parameter copies, allocator) and then times ``compress_image`` / ``decompress_image``
with their phase timer: network (g_a/h_a, float64 h_s + ChARM, g_s) and entropy coding (the
range coder) separately. Wall-clock and process CPU time are both reported.

``profile_encode`` profiles one encode module by module (to depth 3): its CPU time and its
transient memory peak (before each module the high-water mark is reset with ``echo 5 >
/proc/self/clear_refs``, afterwards the peak above the resident set it started from is read).
Selective scans are inside their SAMB's row. ``count_flops`` counts one forward pass with
FlopCounterMode plus the scans it cannot see, found through forward hooks on the SAMBs.
"""
from __future__ import annotations

import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from samic.codec.image_io import load_image

REPO = Path(__file__).resolve().parents[2]
MALLOC_CHOICES = ("library", "glibc", "tcmalloc", "glibc-no-mmap")
FLAT_TARGET = 1.3  # time/MP at the largest size within this factor of time/MP at ~0.5 MP
MEMORY_TARGET_MB = 4096  # encoding 3840x2160


def fit_photo(path: Path, width: int, height: int):
    """The photo scaled (Lanczos) to cover width x height, centre-cropped: uint8 (H, W, 3)."""
    import numpy as np
    from PIL import Image

    im = Image.fromarray(load_image(path))
    scale = max(width / im.width, height / im.height)
    size = (max(width, round(im.width * scale)), max(height, round(im.height * scale)))
    im = im.resize(size, Image.LANCZOS)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    return np.array(im.crop((left, top, left + width, top + height)))



# ----------------------------------------------------------------------------- workers (fresh processes)
def _status_mb(field: str) -> float:
    """A field of /proc/self/status (VmRSS, VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def set_threads(n: int) -> None:
    """Threads of numba's pool (the selective-scan kernel) and of torch's intra-op pool.

    numba first: starting its OpenMP threading layer resets the process's OpenMP thread
    count, which is torch's, so torch's must be set after it.
    """
    import torch

    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass
    torch.set_num_threads(n)


def tcmalloc_path() -> str | None:
    """The tcmalloc shared library (Debian: libtcmalloc-minimal4), if installed."""
    import ctypes.util

    for name in ("tcmalloc_minimal", "tcmalloc"):
        if found := ctypes.util.find_library(name):
            return found
    return None


def glibc_no_mmap() -> None:
    """Serve large blocks from the heap and never trim it: freed tensors are reused in place
    instead of being unmapped and page-faulted in again at the next allocation."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    if not (libc.mallopt(m_trim_threshold, ctypes.c_int(2**31 - 1)) and libc.mallopt(m_mmap_max, 0)):
        raise RuntimeError("mallopt refused the settings")


def _worker_model(spec: dict):
    if spec.get("malloc") == "glibc-no-mmap":
        glibc_no_mmap()
    if spec.get("malloc", "library") != "library":  # the others replace the library's setting
        os.environ["SAMIC_REUSE_BUFFERS"] = "0"
    set_threads(spec["threads"])
    if spec.get("preset"):
        import torch

        from samic.models import SAMIC

        torch.manual_seed(0)
        return SAMIC(spec["preset"]).eval()
    from samic.weights import load_model

    return load_model(spec.get("weights"))


def worker(spec: dict) -> dict:
    """One timed encode or decode job (run in its own process); returns its measurements."""
    import numpy as np

    from samic.codec.api import compress_image, decompress_image
    from samic.entropy.latent_codec import PhaseTimer

    model = _worker_model(spec)
    quality = spec["quality"]
    if spec["mode"] == "encode":
        rgb = load_image(spec["image"])
        job = lambda timer: compress_image(rgb, quality, model, timer=timer)  # noqa: E731
        warm_rgb = rgb[:256, :256]
    else:
        data = Path(spec["data"]).read_bytes()
        job = lambda timer: decompress_image(data, model, "mse", timer=timer)  # noqa: E731
        warm_rgb = np.zeros((256, 256, 3), np.uint8)
    decompress_image(compress_image(warm_rgb, quality, model), model, "mse")  # warm-up
    baseline = _status_mb("VmRSS")
    runs = []
    for _ in range(spec["repeats"]):
        timer = PhaseTimer()
        start, cpu, usage = time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
        out = job(timer)
        end = resource.getrusage(resource.RUSAGE_SELF)
        runs.append((time.perf_counter() - start, timer.seconds, time.process_time() - cpu,
                     {"user_seconds": end.ru_utime - usage.ru_utime, "sys_seconds": end.ru_stime - usage.ru_stime,
                      "minor_faults": end.ru_minflt - usage.ru_minflt}))
    if spec["mode"] == "encode":
        Path(spec["data"]).write_bytes(out)
    total = statistics.median(r[0] for r in runs)
    entropy = statistics.median(r[1].get("entropy_coding", 0.0) for r in runs)
    return {"seconds": total, "entropy_coding": entropy, "network": total - entropy,
            "cpu_seconds": statistics.median(r[2] for r in runs),
            **{k: statistics.median(r[3][k] for r in runs) for k in runs[0][3]},
            "phases": {k: statistics.median(r[1].get(k, 0.0) for r in runs) for k in runs[0][1]},
            "peak_mb": _status_mb("VmHWM"), "baseline_mb": baseline,
            "bytes": Path(spec["data"]).stat().st_size}


def profile_encode(spec: dict) -> dict:
    """CPU seconds and transient memory peak of each module (to depth 3; a SAMB's selective
    scan is inside its row) during one encode, plus the codec's phases in CPU seconds."""
    import torch

    from samic.codec.api import compress_image
    from samic.entropy.latent_codec import PhaseTimer

    class CPUPhaseTimer(PhaseTimer):
        clock = staticmethod(time.process_time)

    model = _worker_model(spec)
    rgb = load_image(spec["image"])
    compress_image(rgb[:256, :256], spec["quality"], model)  # warm-up
    rows: dict[str, dict] = {}
    stack = []  # frames: [name, RSS at entry, highest RSS seen so far, CPU clock at entry]

    def enter(name):
        if stack:  # the reset below would hide the parent's peak so far: keep it in its frame
            stack[-1][2] = max(stack[-1][2], _status_mb("VmHWM"))
        _reset_peak()
        rss = _status_mb("VmRSS")
        stack.append([name, rss, rss, time.process_time()])

    def leave():
        name, start, peak, clock = stack.pop()
        peak = max(peak, _status_mb("VmHWM"))
        row = rows.setdefault(name, {"module": name, "calls": 0, "cpu_seconds": 0.0, "peak_above_start_mb": 0.0})
        row["calls"] += 1
        row["cpu_seconds"] += time.process_time() - clock
        if peak - start > row["peak_above_start_mb"]:
            row.update(peak_above_start_mb=peak - start, start_rss_mb=start, retained_mb=_status_mb("VmRSS") - start)
        if stack:
            stack[-1][2] = max(stack[-1][2], peak)

    hooks = []
    for name, module in model.named_modules():
        if name and name.count(".") <= 3:
            hooks.append(module.register_forward_pre_hook(lambda m, a, n=name: enter(n)))
            hooks.append(module.register_forward_hook(lambda m, a, o: leave()))
    timer = CPUPhaseTimer()
    try:
        enter("compress_image (whole encode)")
        with torch.no_grad():
            compress_image(rgb, spec["quality"], model, timer=timer)
        leave()
    finally:
        for h in hooks:
            h.remove()
    return {"modules": list(rows.values()), "phases": timer.seconds,
            "megapixels": rgb.shape[0] * rgb.shape[1] / 1e6, "size": [rgb.shape[1], rgb.shape[0]]}


def _run_worker(spec: dict) -> dict:
    env = dict(os.environ)
    env.pop("SAMIC_REUSE_BUFFERS", None)  # the spec's malloc decides
    if spec.get("malloc") == "tcmalloc":
        env["LD_PRELOAD"] = " ".join(filter(None, (tcmalloc_path(), env.get("LD_PRELOAD"))))
    proc = subprocess.run([sys.executable, "-m", "samic.bench.codec", json.dumps(spec)],
                          capture_output=True, text=True, cwd=REPO, env=env)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        raise RuntimeError(f"benchmark worker failed ({spec['mode']}): {lines[-1] if lines else proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _load_text(load) -> str:
    return "/".join(f"{v:.2f}" for v in load) + " (1/5/15 min)"


def _scaling_header() -> str:
    return ("| allocator | size | MP | bpp | encode s | enc network | enc entropy coding | enc s/MP | enc CPU s/MP | decode s "
            "| dec network | dec entropy coding | dec s/MP | dec CPU s/MP | enc peak RSS MB | dec peak RSS MB |\n"
            + "|---" * 16 + "|")


def _scaling_row(r: dict) -> str:
    enc, dec, mp = r["encode"], r["decode"], r["megapixels"]
    return (f"| {r.get('malloc', 'glibc')} | {r['width']}x{r['height']} | {mp:.2f} | {r['bpp']:.3f} | {enc['seconds']:.2f} | {enc['network']:.2f} "
            f"| {enc['entropy_coding']:.2f} | {enc['seconds'] / mp:.2f} | {enc['cpu_seconds'] / mp:.2f} "
            f"| {dec['seconds']:.2f} | {dec['network']:.2f} | {dec['entropy_coding']:.2f} | {dec['seconds'] / mp:.2f} "
            f"| {dec['cpu_seconds'] / mp:.2f} | {enc['peak_mb']:.0f} | {dec['peak_mb']:.0f} |")


def _kernel_table(rows: list[dict]) -> str:
    """User vs kernel CPU time and page faults per MP: kernel time that grows with size is
    the allocator handing memory back and faulting it in again, not computation."""
    lines = ["CPU time split and minor page faults per MP", "",
             "| allocator | size | enc user s/MP | enc sys s/MP | enc faults/MP | dec user s/MP | dec sys s/MP "
             "| dec faults/MP |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        cells = [f"{r[side][key] / r['megapixels']:{fmt}}" for side in ("encode", "decode")
                 for key, fmt in (("user_seconds", ".2f"), ("sys_seconds", ".2f"), ("minor_faults", ",.0f"))]
        lines.append(f"| {r.get('malloc', 'glibc')} | {r['width']}x{r['height']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _scaling_summary(rows: list[dict]) -> dict:
    """time/MP at the largest size against the size nearest 0.5 MP (log scale); the memory target."""
    ref = min(rows, key=lambda r: abs(math.log(r["megapixels"] / 0.5)))
    big = max(rows, key=lambda r: r["megapixels"])
    ratios = {f"{side} {clock}": (big[side][key] / big["megapixels"]) / (ref[side][key] / ref["megapixels"])
              for side in ("encode", "decode") for clock, key in (("wall", "seconds"), ("CPU", "cpu_seconds"))}
    lines = [f"time/MP at {big['width']}x{big['height']} ({big['megapixels']:.1f} MP) over time/MP at "
             f"{ref['width']}x{ref['height']} ({ref['megapixels']:.2f} MP): "
             + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()) + f" (target <= {FLAT_TARGET}x)"]
    uhd = next((r for r in rows if (r["width"], r["height"]) == (3840, 2160)), None)
    if uhd:
        peak = uhd["encode"]["peak_mb"]
        lines.append(f"peak RSS encoding 3840x2160: {peak:.0f} MB "
                     f"({'within' if peak <= MEMORY_TARGET_MB else 'OVER'} the {MEMORY_TARGET_MB} MB target); "
                     f"decoding: {uhd['decode']['peak_mb']:.0f} MB")
    return {"text": "\n".join(lines), "time_per_mp_ratio": ratios,
            "reference_size": [ref["width"], ref["height"]], "largest_size": [big["width"], big["height"]]}


def _profile_tables(profiles: list[dict], top: int = 15) -> str:
    """Modules ranked by the CPU time per MP they add from the first profiled size to the
    last, then by their memory peak at the last size."""
    first, last = profiles[0], profiles[-1]

    def label(p):
        return f"{p['size'][0]}x{p['size'][1]}"

    lines = []
    if len(profiles) > 1:
        before = {r["module"]: r["cpu_seconds"] / first["megapixels"] for r in first["modules"]}
        rows = [(r["module"], before.get(r["module"], 0.0), r["cpu_seconds"] / last["megapixels"])
                for r in last["modules"]]
        rows.sort(key=lambda r: r[1] - r[2])
        lines += [f"CPU seconds per MP of one encode, {label(first)} -> {label(last)}: the {top} modules whose "
                  "time/MP grows most (nested: a parent includes its children)",
                  f"| module / op | {label(first)} s/MP | {label(last)} s/MP | added s/MP | ratio |",
                  "|---|---:|---:|---:|---:|"]
        lines += [f"| {name} | {a:.3f} | {b:.3f} | {b - a:+.3f} | {b / a if a else math.inf:.2f}x |"
                  for name, a, b in rows[:top]]
        phases = sorted(set(first["phases"]) | set(last["phases"]))
        lines += ["", "codec phases, CPU s/MP: " + ", ".join(
            f"{k} {first['phases'].get(k, 0) / first['megapixels']:.3f} -> "
            f"{last['phases'].get(k, 0) / last['megapixels']:.3f}" for k in phases), ""]
    worst = sorted(last["modules"], key=lambda r: -r["peak_above_start_mb"])[:top]
    lines += [f"memory of one encode at {label(last)}: the {top} largest transient peaks",
              "| module / op | RSS before MB | peak above it MB | retained MB |", "|---|---:|---:|---:|"]
    lines += [f"| {r['module']} | {r['start_rss_mb']:.0f} | {r['peak_above_start_mb']:.0f} | {r['retained_mb']:.0f} |"
              for r in worst]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- bench-models
def count_flops(model, x) -> dict:
    """FLOPs of one forward pass: FlopCounterMode's count (convolutions and matrix products;
    elementwise ops are not counted) plus the selective scans, which run in numba kernels that
    FlopCounterMode cannot see, at ~9 flops per state update (samic.ops.scan.scan_flops). Each
    SAMB runs one grouped scan over (B, directions * d_inner, H * W) with d_state states; a
    forward hook on every SAMB sees its input size."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from samic.layers.samb import SAMB
    from samic.ops.scan import scan_flops

    scans = []

    def counted(block, args, output):
        batch, _, height, width = args[0].shape
        scans.append(scan_flops(batch, block.directions * block.d_inner, height * width, block.d_state))

    hooks = [m.register_forward_hook(counted) for m in model.modules() if isinstance(m, SAMB)]
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x, 0.5)
    finally:
        for h in hooks:
            h.remove()
    return {"counted": counter.get_total_flops(), "scan": sum(scans), "scans": len(scans)}


if __name__ == "__main__":  # worker entry point: one JSON job spec in, one JSON line out
    job = json.loads(sys.argv[1])
    result = profile_encode(job) if job["mode"] == "profile" else worker(job)
    print(json.dumps(result))
