"""Kodak encode/decode time on a GPU: mamba-ssm's selective-scan kernel against the
pure-PyTorch scan (samic.ops.scan's ``torch`` backend, the CUDA fallback).

    python benchmarks/cuda_kodak.py [--weights PATH] [--quality 0.5] [--limit N] [--device cuda]
                                    [--backends mamba_ssm,torch] [--json FILE]

Runs the real codec (compress_image / decompress_image) on the 24 Kodak images with the
network on the device; the entropy parameters (h_s, ChARM) stay float64 on the CPU by
design (docs/bitstream.md), so network time on the device is reported apart from them.
The device is synchronised at the end of g_a/h_a and g_s so that their time is theirs.
Each backend also decodes the other backend's files: the entropy parameters are computed
on the CPU, so files are interchangeable and only g_a/g_s rounding differs.

Without CUDA it prints a skip line and exits 0 (``--device cpu`` compares the CPU backends
instead, numba and torch, which is how this script is checked on a CPU-only machine).
"""
from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from samic.codec.api import compress_image, decompress_image
from samic.codec.image_io import load_image
from samic.entropy.latent_codec import PhaseTimer
from samic.ops.scan import available_backends
from samic.weights import load_model

KODAK = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "kodak"


def synchronized(fn, device: torch.device):
    """``fn`` followed by a device synchronisation, so a phase timer charges it its GPU time."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        out = fn(*args, **kwargs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out
    return run


def time_backend(model, images, quality: float, backend: str) -> dict:
    """Encode and decode every image with the device-side SAMB scans on ``backend``."""
    compress_image(images[0][1][:256, :256], quality, model, scan_backend=backend)  # warm-up: kernels, caches, cuDNN
    rows, files = [], {}
    for name, rgb in images:
        enc, dec = PhaseTimer(), PhaseTimer()
        start = time.perf_counter()
        data = compress_image(rgb, quality, model, timer=enc, scan_backend=backend)
        middle = time.perf_counter()
        rec = decompress_image(data, model, "mse", timer=dec, scan_backend=backend)
        end = time.perf_counter()
        files[name] = (data, rec)
        rows.append({"encode": middle - start, "decode": end - middle,
                     "encode_network": enc.seconds.get("analysis", 0.0),
                     "decode_network": dec.seconds.get("synthesis", 0.0),
                     "entropy_parameters": enc.seconds.get("entropy_parameters", 0.0)
                     + dec.seconds.get("entropy_parameters", 0.0),
                     "entropy_coding": enc.seconds.get("entropy_coding", 0.0)
                     + dec.seconds.get("entropy_coding", 0.0),
                     "bpp": 8 * len(data) / (rgb.shape[0] * rgb.shape[1])})
    summary = {k: statistics.mean(r[k] for r in rows) for k in rows[0]}
    return {"summary": summary, "files": files}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="weights file (default: shipped samic-lite)")
    parser.add_argument("--quality", type=float, default=0.5)
    parser.add_argument("--limit", type=int, default=None, help="first N Kodak images only")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (compares numba and torch)")
    parser.add_argument("--backends", default=None, help="comma-separated (default: all for the device "
                        "except the reference loop)")
    parser.add_argument("--json", default=None, help="also write the summary to this JSON file")
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("skipped: no CUDA device here (run on a GPU machine, or pass --device cpu)")
        return 0
    backends = args.backends.split(",") if args.backends else \
        [b for b in ("mamba_ssm", "numba", "torch") if b in available_backends(device)]
    if missing := [b for b in backends if b not in available_backends(device)]:
        print(f"backend(s) {', '.join(missing)} not available on {device} "
              f"(available: {', '.join(available_backends(device))})", file=sys.stderr)
        return 2
    paths = sorted(KODAK.glob("kodim*.png"))[:args.limit]
    if not paths:
        print(f"no Kodak images in {KODAK}", file=sys.stderr)
        return 2
    images = [(p.stem, load_image(p)) for p in paths]
    model = load_model(args.weights).to(device)
    model.analysis = synchronized(model.analysis, device)
    model.synthesis = synchronized(model.synthesis, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"

    runs = {b: time_backend(model, images, args.quality, b) for b in backends}
    print(f"{model.config.name} on {name}, {len(images)} Kodak images, quality {args.quality:g}; "
          "mean seconds per image")
    print("| scan backend | bpp | encode | decode | g_a+h_a (device) | g_s (device) "
          "| h_s+ChARM float64 CPU (enc+dec) | range coding (enc+dec) |\n" + "|---" * 8 + "|")
    for backend, run in runs.items():
        s = run["summary"]
        print(f"| {backend} | {s['bpp']:.4f} | {s['encode']:.4f} | {s['decode']:.4f} | {s['encode_network']:.4f} "
              f"| {s['decode_network']:.4f} | {s['entropy_parameters']:.4f} | {s['entropy_coding']:.4f} |")
    if len(runs) > 1:  # files are interchangeable: decode one backend's files with the other
        first, second = list(runs)[:2]
        diffs = [np.abs(decompress_image(data, model, "mse", scan_backend=second).astype(int) - rec.astype(int)).max()
                 for data, rec in runs[first]["files"].values()]
        same = sum(runs[first]["files"][k][0] == runs[second]["files"][k][0] for k in runs[first]["files"])
        print(f"{first} files decoded with {second}: max pixel difference {max(diffs)} (of 255); "
              f"{same}/{len(images)} files byte-identical between the backends")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "quality": args.quality, "images": len(images),
                                               "backends": {b: r["summary"] for b, r in runs.items()}},
                                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
