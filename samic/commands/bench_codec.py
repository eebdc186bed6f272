"""samic bench-scaling / samic bench-models: codec speed and memory against image size, and
the samic-paper and samic-lite presets side by side.

    samic bench-scaling [--sizes 256x256,...,3840x2160] [--image PHOTO] [--quality 0.5]
                        [--weights PATH | --model PRESET] [--threads 1] [--repeats 1]
                        [--malloc library,glibc,...] [--profile WxH,WxH] [--json FILE]
    samic bench-models  [--models samic-lite,samic-paper] [--size 768x512] [--image PHOTO]
                        [--threads 1] [--repeats 3] [--json FILE]

The engines live in samic/bench/codec.py. Every encode and every decode runs in a fresh
Python process (``python -m samic.bench.codec WORKER_JSON``), so that its peak memory is the resident-set
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
import os
import sys
import tempfile
from pathlib import Path

from samic.bench.codec import (MALLOC_CHOICES, _kernel_table, _load_text, _profile_tables, _run_worker,
                               _scaling_header, _scaling_row, _scaling_summary, count_flops, fit_photo,
                               set_threads, tcmalloc_path)
from samic.errors import UserError

REPO = Path(__file__).resolve().parents[2]
TRAIN = REPO / ".." / "shared" / "data" / "train"
KODAK = REPO / ".." / "shared" / "data" / "kodak"
DEFAULT_PHOTO = TRAIN / "budgie_backgrounds__003d7af779fd.jpg"  # 1820x1024 photo, 16:9 like the large sizes
DEFAULT_SIZES = "256x256,512x512,768x512,1024x1024,1920x1080,2880x1620,3840x2160"


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
