"""samic bench-scaling / samic bench-models: codec speed and memory against image size, and
the samic-paper and samic-lite presets side by side.

    samic bench-scaling [--sizes 256x256,...,3840x2160] [--image PHOTO] [--quality 0.5]
                        [--weights PATH | --model PRESET] [--threads 1] [--repeats 1]
                        [--malloc library,glibc,...] [--profile WxH,WxH] [--json FILE]
    samic bench-models  [--models samic-lite,samic-paper] [--size 768x512] [--image PHOTO]
                        [--threads 1] [--repeats 3] [--json FILE]

Every encode and every decode runs in a fresh Python process (``python -m
samic.commands.bench_codec WORKER_JSON``), so that its peak memory is the resident-set
high-water mark (VmHWM in /proc/self/status) of that one job: libraries and weights
included, nothing left over from a previous size. Each worker first warms up on a
256x256 crop (numba compilation, float64 entropy-parameter copies, allocator) and then
times ``compress_image`` / ``decompress_image`` with their phase timer: network (g_a/h_a,
float64 h_s + ChARM, g_s) and entropy coding (the range coder) separately. Wall-clock and
process CPU time are both reported: on a shared machine the wall clock also measures the
neighbours, while single-threaded CPU time measures the work.

``--malloc`` takes one or more allocator settings (comma-separated) and runs each size under
each of them before the next size, so that they are compared under the same load: ``library``
(the codec as shipped: glibc reusing large freed blocks during a codec call, see
samic/codec/memory.py), ``glibc`` (that reuse off), ``tcmalloc``, ``glibc-no-mmap``.

``--profile WxH,WxH`` profiles one encode at each size, module by module (and each
selective scan): its CPU time and its transient memory peak (before each module the
high-water mark is reset with ``echo 5 > /proc/self/clear_refs``, afterwards the peak above
the resident set it started from is read). The table ranks modules by how much CPU time per
megapixel they add from the first size to the last, which names what makes time/MP grow,
and the memory table names the layer that sets the process peak.
"""
from __future__ import annotations

import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from samic.errors import UserError

REPO = Path(__file__).resolve().parents[2]
TRAIN = REPO / ".." / "shared" / "data" / "train"
KODAK = REPO / ".." / "shared" / "data" / "kodak"
DEFAULT_PHOTO = TRAIN / "budgie_backgrounds__003d7af779fd.jpg"  # 1820x1024 photo, 16:9 like the large sizes
DEFAULT_SIZES = "256x256,512x512,768x512,1024x1024,1920x1080,2880x1620,3840x2160"
MALLOC_CHOICES = ("library", "glibc", "tcmalloc", "glibc-no-mmap")
FLAT_TARGET = 1.3  # time/MP at the largest size within this factor of time/MP at ~0.5 MP
MEMORY_TARGET_MB = 4096  # encoding 3840x2160


def register(subparsers) -> None:
    p = subparsers.add_parser("bench-scaling", help="encode/decode time and peak memory against image size",
                              description="Encode/decode time (network and entropy coding) and peak RSS "
                                          "against image size, each job in a fresh process.")
    p.add_argument("--sizes", default=DEFAULT_SIZES, help=f"WxH list (default {DEFAULT_SIZES})")
    p.add_argument("--image", default=None, help="photo to resize and crop to every size "
                   f"(default: {DEFAULT_PHOTO.name} from ../shared/data/train)")
    p.add_argument("--quality", type=float, default=0.5, help="rate knob in [0, 1] (default 0.5)")
    _model_arguments(p)
    p.add_argument("--repeats", type=int, default=1, help="timed runs per job, median kept (default 1)")
    p.add_argument("--malloc", default="library",
                   help="memory allocator setting(s) of the workers, comma-separated to measure them side by "
                        "side (each size runs under each before the next size): library (default: what the codec "
                        "does, samic/codec/memory.py: glibc reusing large freed blocks during a codec call), "
                        "glibc (plain glibc, SAMIC_REUSE_BUFFERS=0), tcmalloc (LD_PRELOAD of libtcmalloc_minimal), "
                        "glibc-no-mmap (mallopt for the whole process: large blocks from the heap, never trimmed)")
    p.add_argument("--profile", metavar="WxH,WxH", default=None,
                   help="also profile one encode per size, module by module: CPU time/MP and memory peak")
    p.add_argument("--json", default=None, help="also write the measurements to this JSON file")
    p.set_defaults(func=run_scaling)

    p = subparsers.add_parser("bench-models", help="samic-paper vs samic-lite: parameters, FLOPs/pixel, latency",
                              description="Parameters, FLOPs per pixel (FlopCounterMode plus the selective "
                                          "scans it cannot see) and codec latency of each preset.")
    p.add_argument("--models", default="samic-lite,samic-paper", help="presets (default samic-lite,samic-paper)")
    p.add_argument("--size", default="768x512", help="WxH of the latency and FLOP measurements (default 768x512)")
    p.add_argument("--image", default=None, help="photo resized/cropped to --size (default: Kodak kodim01)")
    p.add_argument("--quality", type=float, default=0.5, help="rate knob in [0, 1] (default 0.5)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per job, median kept (default 3)")
    p.add_argument("--json", default=None, help="also write the measurements to this JSON file")
    p.set_defaults(func=run_models)


def _model_arguments(p) -> None:
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--weights", default=None, help="weights file (default: the shipped samic-lite weights)")
    weights.add_argument("--model", default=None, help="preset with random weights (seed 0) instead of weights")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")


# ----------------------------------------------------------------------------- argument checks
def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (width, height)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"sizes look like WIDTHxHEIGHT (e.g. 768x512), got {text!r}") from None
    if width < 16 or height < 16:
        raise UserError(f"size {text} is too small (at least 16x16)")
    return width, height


def _check_common(args) -> Path:
    from samic.models import PRESETS

    if not 0.0 <= args.quality <= 1.0:
        raise UserError(f"--quality must be in [0, 1], got {args.quality}")
    if args.threads < 1 or args.repeats < 1:
        raise UserError("--threads and --repeats must be at least 1")
    if getattr(args, "model", None) and args.model not in PRESETS:
        raise UserError(f"unknown model {args.model!r}; available: {', '.join(PRESETS)}")
    if getattr(args, "weights", None) and not Path(args.weights).is_file():
        raise UserError(f"weights file not found: {args.weights}")
    default = DEFAULT_PHOTO if hasattr(args, "sizes") else KODAK / "kodim01.png"
    image = Path(args.image) if args.image else default
    if not image.is_file():
        raise UserError(f"image not found: {image}" + ("" if args.image else " (give one with --image)"))
    return image


def fit_photo(path: Path, width: int, height: int):
    """The photo scaled (Lanczos) to cover width x height, centre-cropped: uint8 (H, W, 3)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
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
    from PIL import Image

    from samic.codec.api import compress_image, decompress_image
    from samic.entropy.latent_codec import PhaseTimer

    model = _worker_model(spec)
    quality = spec["quality"]
    if spec["mode"] == "encode":
        rgb = np.array(Image.open(spec["image"]).convert("RGB"))
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
    """CPU seconds and transient memory peak of each module (to depth 3) and each selective
    scan during one encode, plus the codec's phases in CPU seconds."""
    import numpy as np
    import torch
    from PIL import Image

    import samic.layers.samb as samb
    from samic.codec.api import compress_image
    from samic.entropy.latent_codec import PhaseTimer

    class CPUPhaseTimer(PhaseTimer):
        @contextmanager
        def phase(self, name):
            start = time.process_time()
            try:
                yield
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.process_time() - start

    model = _worker_model(spec)
    rgb = np.array(Image.open(spec["image"]).convert("RGB"))
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
    scan = samb.selective_scan

    def traced_scan(u, *args, **kwargs):
        enter(f"{stack[-1][0]}.selective_scan" if stack else "selective_scan")
        try:
            return scan(u, *args, **kwargs)
        finally:
            leave()

    timer = CPUPhaseTimer()
    samb.selective_scan = traced_scan
    try:
        enter("compress_image (whole encode)")
        with torch.no_grad():
            compress_image(rgb, spec["quality"], model, timer=timer)
        leave()
    finally:
        samb.selective_scan = scan
        for h in hooks:
            h.remove()
    return {"modules": list(rows.values()), "phases": timer.seconds,
            "megapixels": rgb.shape[0] * rgb.shape[1] / 1e6, "size": [rgb.shape[1], rgb.shape[0]]}


def _run_worker(spec: dict) -> dict:
    env = dict(os.environ)
    env.pop("SAMIC_REUSE_BUFFERS", None)  # the spec's malloc decides
    if spec.get("malloc") == "tcmalloc":
        env["LD_PRELOAD"] = " ".join(filter(None, (tcmalloc_path(), env.get("LD_PRELOAD"))))
    proc = subprocess.run([sys.executable, "-m", "samic.commands.bench_codec", json.dumps(spec)],
                          capture_output=True, text=True, cwd=REPO, env=env)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        raise RuntimeError(f"benchmark worker failed ({spec['mode']}): {lines[-1] if lines else proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- bench-scaling
def run_scaling(args) -> int:
    from PIL import Image

    photo = _check_common(args)
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes:
        raise UserError("--sizes is empty")
    profile = [parse_size(v) for v in args.profile.split(",") if v.strip()] if args.profile else []
    mallocs = [m.strip() for m in args.malloc.split(",") if m.strip()]
    if not mallocs or any(m not in MALLOC_CHOICES for m in mallocs):
        raise UserError(f"--malloc: choose from {', '.join(MALLOC_CHOICES)} (comma-separated), got {args.malloc!r}")
    if "tcmalloc" in mallocs and tcmalloc_path() is None:
        raise UserError("--malloc tcmalloc: libtcmalloc_minimal not found (apt install libtcmalloc-minimal4)")
    base = {"quality": args.quality, "threads": args.threads, "repeats": args.repeats,
            "weights": args.weights, "preset": args.model}
    origin = f"random weights of {args.model} (seed 0)" if args.model else f"weights {args.weights or 'samic-lite (shipped)'}"
    load_start = os.getloadavg()
    print(f"bench-scaling: {origin}, quality {args.quality:g}, {args.threads} torch thread(s), "
          f"median of {args.repeats}, photo {photo.name}, allocator(s) {', '.join(mallocs)}; every job in a fresh "
          f"process; load average at start {_load_text(load_start)}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for width, height in sizes:
            image, data = Path(tmp, f"{width}x{height}.png"), Path(tmp, f"{width}x{height}.samic")
            Image.fromarray(fit_photo(photo, width, height)).save(image)
            for malloc in mallocs:  # side by side: the same neighbours' load for every setting
                spec = {**base, "malloc": malloc}
                enc = _run_worker({**spec, "mode": "encode", "image": str(image), "data": str(data)})
                dec = _run_worker({**spec, "mode": "decode", "data": str(data)})
                rows.append({"malloc": malloc, "width": width, "height": height, "megapixels": width * height / 1e6,
                             "bpp": 8 * enc["bytes"] / (width * height), "encode": enc, "decode": dec,
                             "load_average": list(os.getloadavg())})
                if len(rows) == 1:
                    print(_scaling_header())
                print(_scaling_row(rows[-1]), flush=True)
        summaries = {m: _scaling_summary([r for r in rows if r["malloc"] == m]) for m in mallocs}
        for m, summary in summaries.items():
            print(f"[{m}] " + summary["text"].replace("\n", f"\n[{m}] "))
        print(_kernel_table(rows))
        profiles = []
        for width, height in profile:
            image = Path(tmp, "profile.png")
            Image.fromarray(fit_photo(photo, width, height)).save(image)
            profiles.append(_run_worker({**base, "malloc": mallocs[0], "mode": "profile", "image": str(image)}))
        if profiles:
            print(_profile_tables(profiles))
    load_end = os.getloadavg()
    print(f"load average at end {_load_text(load_end)} ({os.cpu_count()} CPUs)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "command": "samic " + " ".join(sys.argv[1:]),
            "settings": {**base, "malloc": mallocs, "photo": photo.name, "cpus": os.cpu_count()},
            "load_average": {"start": list(load_start), "end": list(load_end)}, "rows": rows,
            "summary": {m: {k: v for k, v in s.items() if k != "text"} for m, s in summaries.items()},
            "profiles": profiles}, indent=2) + "\n")
    return 0


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
    FlopCounterMode cannot see, at ~9 flops per state update (samic.ops.scan.scan_flops)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import samic.layers.samb as samb
    from samic.ops.scan import scan_flops

    scans = []
    scan = samb.selective_scan

    def counted(u, delta, A, *args, **kwargs):
        scans.append(scan_flops(u.shape[0], u.shape[1], u.shape[2], A.shape[1]))
        return scan(u, delta, A, *args, **kwargs)

    samb.selective_scan = counted
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x, 0.5)
    finally:
        samb.selective_scan = scan
    return {"counted": counter.get_total_flops(), "scan": sum(scans), "scans": len(scans)}


def run_models(args) -> int:
    import torch
    from PIL import Image

    from samic.models import PRESETS, SAMIC

    photo = _check_common(args)
    presets = [m.strip() for m in args.models.split(",") if m.strip()]
    if unknown := [m for m in presets if m not in PRESETS]:
        raise UserError(f"unknown model {unknown[0]!r}; available: {', '.join(PRESETS)}")
    width, height = parse_size(args.size)
    set_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        image, data = Path(tmp, "image.png"), Path(tmp, "image.samic")
        Image.fromarray(fit_photo(photo, width, height)).save(image)
        x = torch.from_numpy(fit_photo(photo, width, height)).permute(2, 0, 1)[None].float() / 255
        for name in presets:
            torch.manual_seed(0)
            model = SAMIC(name).eval()
            params = model.params_by_part()
            flops = count_flops(model, x)
            del model
            base = {"quality": args.quality, "threads": args.threads, "repeats": args.repeats, "preset": name}
            enc = _run_worker({**base, "mode": "encode", "image": str(image), "data": str(data)})
            dec = _run_worker({**base, "mode": "decode", "data": str(data)})
            rows.append({"model": name, "params": sum(params.values()), "params_by_part": params,
                         "flops": flops, "encode": enc, "decode": dec})
    pixels = width * height
    print(f"bench-models: {width}x{height} ({photo.name}), random weights (seed 0), quality {args.quality:g}, "
          f"{args.threads} torch thread(s), median of {args.repeats}; every job in a fresh process")
    print("| model | params | of which entropy model | kFLOPs/px counted | kFLOPs/px scans | kFLOPs/px total "
          "| encode s (net / EC) | decode s (net / EC) | encode CPU s | decode CPU s | enc peak RSS MB |\n"
          + "|---" * 11 + "|")
    for r in rows:
        f, enc, dec = r["flops"], r["encode"], r["decode"]
        print(f"| {r['model']} | {r['params'] / 1e6:.2f}M | {r['params_by_part']['entropy'] / 1e6:.2f}M "
              f"| {f['counted'] / pixels / 1e3:.1f} | {f['scan'] / pixels / 1e3:.1f} "
              f"| {(f['counted'] + f['scan']) / pixels / 1e3:.1f} "
              f"| {enc['seconds']:.2f} ({enc['network']:.2f} / {enc['entropy_coding']:.2f}) "
              f"| {dec['seconds']:.2f} ({dec['network']:.2f} / {dec['entropy_coding']:.2f}) "
              f"| {enc['cpu_seconds']:.2f} | {dec['cpu_seconds']:.2f} | {enc['peak_mb']:.0f} |")
    print("FLOPs: torch.utils.flop_counter.FlopCounterMode on one forward pass (conv/matmul only, 2 per MAC), "
          "plus ~9*B*L*D*N per selective scan, which runs in a numba kernel the counter does not see. "
          "Latency: compress_image/decompress_image (real entropy coding) with random weights.")
    if args.json:
        Path(args.json).write_text(json.dumps({"size": [width, height], "photo": photo.name, "rows": rows},
                                              indent=2) + "\n")
    return 0


if __name__ == "__main__":  # worker entry point: one JSON job spec in, one JSON line out
    job = json.loads(sys.argv[1])
    result = profile_encode(job) if job["mode"] == "profile" else worker(job)
    print(json.dumps(result))
