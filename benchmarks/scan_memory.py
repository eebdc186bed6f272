"""Peak extra memory of one selective-scan forward, as a function of the sequence length L.

The numba backend runs the sequence in segments of SEGMENT tokens, so beyond its output
(batch, D, L) it should need a workspace independent of L; the torch backend materializes
(batch, D, L, N) states. torch's CPU tensors are invisible to tracemalloc, so every
measurement runs in a fresh subprocess that reads the kernel's peak resident set size
(VmHWM in /proc/self/status), reset to the current RSS just before the call by writing
"5" to /proc/self/clear_refs (Linux >= 4.0). The child fixes glibc's mmap threshold, so
every large buffer is its own mapping, unmapped when freed: otherwise buffers freed by the
warm-up are recycled from the heap and the small lengths read as needing nothing.

    python benchmarks/scan_memory.py [--json] [--lengths 4096 16384 ...] [--backends numba torch]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys

DIM, N_STATE, BATCH = 96, 16, 1  # the SAMB at H/2 of samic-paper
DEFAULT_LENGTHS = (4096, 16384, 65536, 262144)
TORCH_MAX_LENGTH = 65536  # the torch backend's (batch, D, L, N) tensors: ~0.4 GB each at this L


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(backend: str, length: int) -> dict:
    """In this (fresh) process: peak RSS growth during one forward, in MiB."""
    import torch

    from samic.ops.scan import selective_scan

    def inputs(n):
        g = torch.Generator().manual_seed(0)
        return (torch.randn(BATCH, DIM, n, generator=g), 0.05 * torch.rand(BATCH, DIM, n, generator=g),
                -torch.rand(DIM, N_STATE, generator=g), torch.randn(BATCH, N_STATE, n, generator=g),
                torch.randn(BATCH, N_STATE, n, generator=g))

    # warm-up on small inputs (one segment and several): loads the numba kernels and starts
    # its threads, so that neither counts as memory of the scan
    for n in (64, 2 * 4096 + 64):
        selective_scan(*inputs(n), backend=backend)
    args = inputs(length)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    before = _status_kib("VmRSS")
    y = selective_scan(*args, backend=backend)  # delta given directly: the output is the only L-sized result
    peak = _status_kib("VmHWM")
    output_mib = y.numel() * y.element_size() / 2 ** 20
    extra_mib = (peak - before) / 1024
    return {"backend": backend, "length": length, "extra_peak_mib": round(extra_mib, 2),
            "output_mib": round(output_mib, 2), "workspace_mib": round(extra_mib - output_mib, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=list(DEFAULT_LENGTHS))
    parser.add_argument("--backends", nargs="+", default=["numba", "torch"])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("BACKEND", "L"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]))))
        return 0

    rows = []
    for backend in args.backends:
        for length in args.lengths:
            if backend == "torch" and length > TORCH_MAX_LENGTH:
                rows.append({"backend": backend, "length": length, "skipped": f"L > {TORCH_MAX_LENGTH}"})
                continue
            env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
            out = subprocess.run([sys.executable, __file__, "--child", backend, str(length)],
                                 capture_output=True, text=True, check=True, env=env)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    if args.json:
        print(json.dumps({"batch": BATCH, "D": DIM, "N": N_STATE, "results": rows}, indent=2))
        return 0
    print(f"peak extra memory of one selective-scan forward, (batch, D, N) = ({BATCH}, {DIM}, {N_STATE}), float32")
    print(f"{'backend':8s} {'L':>8s} {'peak extra':>12s} {'output':>10s} {'workspace':>11s}")
    for r in rows:
        if "skipped" in r:
            print(f"{r['backend']:8s} {r['length']:8d}   skipped ({r['skipped']})")
        else:
            print(f"{r['backend']:8s} {r['length']:8d} {r['extra_peak_mib']:10.1f}MiB {r['output_mib']:8.1f}MiB"
                  f" {r['workspace_mib']:9.1f}MiB")
    print("workspace = peak extra - output (the (batch, D, L) result itself)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
