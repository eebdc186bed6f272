"""samic bench scan: time the selective-scan backends on image-sized problems.

Times every backend available on the device, forward and forward+backward, at the two
shapes SAMIC meets: one 768x512 image at H/2 (1, 96, 98304, 16) and a training batch of
crops at H/8 (4, 192, 4096, 16). Ratios are speed-ups over the ``reference`` backend (a
Python loop over tokens) and, when the package is installed, over mambapy's pure-PyTorch
parallel scan. The reference is timed on a prefix of the sequence and extrapolated
linearly (its cost is exactly linear in L; such numbers are marked with '*').

Each number is the best of ``--repeat`` runs, in wall time and in CPU time of the process;
the load average is recorded because on a shared machine other processes stretch the wall
time of the multi-threaded backends most.
"""
from __future__ import annotations

import json
import os
import time

from samic.errors import UserError

SHAPES = ((1, 96, 98304, 16), (4, 192, 4096, 16))  # (batch, D, L, N)
MODES = ("forward", "forward_backward")
SLOW_RUN_S = 5.0  # a run slower than this is not repeated


def register(subparsers) -> None:
    from samic.commands import bench_semantic, bench_train

    p = subparsers.add_parser("bench", help="benchmarks (selective scan backends; cluster maps and scan ablations; "
                              "training recipes side by side)")
    p.add_argument("what", choices=["scan", "train", *bench_semantic.WHAT],
                   help="what to benchmark (train: see samic.commands.bench_train; "
                        "clusters, scan-ablation: see samic.commands.bench_semantic)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--repeat", type=int, default=3, help="runs per measurement, best kept (default 3; "
                   f"runs slower than {SLOW_RUN_S:g} s are not repeated)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--backends", nargs="+", default=None, metavar="NAME",
                   help="backends to time (default: all available here, plus mambapy if installed)")
    p.add_argument("--threads", type=int, default=None, help="torch and numba threads (default: as configured)")
    p.add_argument("--reference-tokens", type=int, default=4096, metavar="L",
                   help="time the reference backend on the first L tokens and extrapolate (default 4096)")
    bench_train.add_arguments(p)
    bench_semantic.add_arguments(p)
    p.set_defaults(func=run)


def _mambapy_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("mambapy") is not None


def _mambapy_scan(u, delta, A, B, C, D, delta_bias):
    """mambapy's Mamba.selective_scan (its Blelloch pscan, layout (batch, L, D, N)), on our layout."""
    import torch
    import torch.nn.functional as F
    from mambapy.pscan import pscan

    dt = F.softplus(delta + delta_bias[:, None]).transpose(1, 2)  # (batch, L, D)
    x = u.transpose(1, 2)
    decay = torch.exp(dt.unsqueeze(-1) * A)  # (batch, L, D, N)
    drive = (dt * x).unsqueeze(-1) * B.transpose(1, 2).unsqueeze(2)
    h = pscan(decay, drive)
    y = (h @ C.transpose(1, 2).unsqueeze(-1)).squeeze(-1) + D * x
    return y.transpose(1, 2)


def _scan_fn(backend: str):
    from samic.ops.scan import selective_scan

    if backend == "mambapy":
        return _mambapy_scan
    return lambda u, delta, A, B, C, D, delta_bias: selective_scan(
        u, delta, A, B, C, D=D, delta_bias=delta_bias, delta_softplus=True, backend=backend)


def _inputs(batch, dim, length, n_state, device, seed=0):
    """Inputs in the ranges a SAMB produces (Mamba's dt init, S4D-real A)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, dim, length, generator=g)
    delta = 0.5 * torch.randn(batch, dim, length, generator=g) - 3.0  # softplus -> dt ~ 0.05
    A = -torch.arange(1, n_state + 1, dtype=torch.float32).repeat(dim, 1)
    B, C = (torch.randn(batch, n_state, length, generator=g) for _ in range(2))
    D, delta_bias = torch.ones(dim), 0.1 * torch.randn(dim, generator=g)
    return [t.to(device) for t in (u, delta, A, B, C, D, delta_bias)]


def _prefix(inputs, length):
    u, delta, A, B, C, D, delta_bias = inputs
    return [u[..., :length], delta[..., :length], A, B[..., :length], C[..., :length], D, delta_bias]


def _time(fn, inputs, mode, repeat, sync) -> dict[str, float]:
    """Best wall and CPU time (all threads of this process) of ``repeat`` runs; a slow
    first run is not repeated. On a shared machine the CPU time is the steadier number:
    other processes stretch the wall time, not the work done."""
    import torch

    best = {"wall_s": float("inf"), "cpu_s": float("inf")}
    for _ in range(max(1, repeat)):
        args = [t.detach().requires_grad_(mode == "forward_backward") for t in inputs]
        sync()
        wall, cpu = time.perf_counter(), time.process_time()
        y = fn(*args)
        if mode == "forward_backward":
            y.backward(torch.ones_like(y))
        sync()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        best = {"wall_s": min(best["wall_s"], wall), "cpu_s": min(best["cpu_s"], cpu)}
        del y, args
        if wall > SLOW_RUN_S:
            break
    return best


def _parity(backends, device) -> dict[str, float]:
    """Relative error of each backend's float32 output vs the float64 reference (sanity check
    that what is timed computes the right thing, mambapy's wrapper included)."""
    import torch

    inputs = _inputs(2, 8, 300, 16, device, seed=1)
    ref = _scan_fn("reference")(*[t.double() for t in inputs])
    errors = {}
    for backend in backends:
        with torch.no_grad():
            y = _scan_fn(backend)(*inputs).double()
        errors[backend] = ((y - ref).norm() / ref.norm()).item()
    return errors


def bench_scan(backends, device="cpu", repeat=3, reference_tokens=4096) -> dict:
    import numba
    import torch

    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    # Warm-up: numba compiles (or loads from its cache) its kernels, forward and backward,
    # on one segment and on several.
    for length in (8, 4096 + 8):
        warm = _inputs(1, 2, length, 16, device)
        for backend in backends:
            if backend != "reference" or length == 8:
                _time(_scan_fn(backend), warm, "forward_backward", 1, sync)

    load_before = os.getloadavg()[0]
    results = []
    for shape in SHAPES:
        inputs = _inputs(*shape, device)
        length = shape[2]
        for backend in backends:
            row = {"shape": list(shape), "backend": backend, "extrapolated_from_tokens": None}
            timed = inputs
            if backend == "reference" and length > reference_tokens:
                timed = _prefix(inputs, reference_tokens)
                row["extrapolated_from_tokens"] = reference_tokens
            scale = length / timed[0].shape[-1]
            for mode in MODES:
                times = _time(_scan_fn(backend), timed, mode, repeat, sync)
                row[mode] = {k: scale * v for k, v in times.items()}
            results.append(row)
    for row in results:
        for base in ("reference", "mambapy"):
            base_row = next((r for r in results if r["backend"] == base and r["shape"] == row["shape"]), None)
            if base_row is not None:
                row[f"speedup_vs_{base}"] = {
                    m: {k: base_row[m][k] / max(row[m][k], 1e-9) for k in ("wall_s", "cpu_s")} for m in MODES}
    return {"device": str(device), "dtype": "float32", "torch_threads": torch.get_num_threads(),
            "numba_threads": numba.get_num_threads(), "call": "delta_softplus=True, delta_bias, D",
            # other processes on the machine slow the multi-threaded backends most: say how busy it was
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)], "cpu_count": os.cpu_count(),
            "parity_vs_float64_reference": _parity(backends, device), "results": results}


def _format(report: dict) -> str:
    lines = [f"selective scan on {report['device']} ({report['dtype']}, {report['call']}; "
             f"torch threads {report['torch_threads']}, numba threads {report['numba_threads']})",
             f"machine: {report['cpu_count']} CPUs, 1-min load average {report['load_average_1min'][0]} before, "
             f"{report['load_average_1min'][1]} after",
             "parity (relative error vs float64 reference): "
             + ", ".join(f"{b} {e:.1e}" for b, e in report["parity_vs_float64_reference"].items()), ""]
    bases = [b for b in ("reference", "mambapy") if any(r["backend"] == b for r in report["results"])]
    header = f"{'(batch, D, L, N)':20s} {'backend':10s} {'pass':8s} {'wall':>9s} {'cpu':>9s}"
    for base in bases:
        header += f"  {'speed-up vs ' + base + ' wall/cpu':>30s}"
    lines.append(header)
    shown = None
    for r in report["results"]:
        mark = "*" if r["extrapolated_from_tokens"] else " "
        for mode, label in zip(MODES, ("fwd", "fwd+bwd")):
            shape = str(tuple(r["shape"])) if r["shape"] != shown else ""
            backend = r["backend"] if mode == MODES[0] else ""
            shown = r["shape"]
            t = r[mode]
            line = f"{shape:20s} {backend:10s} {label:8s} {t['wall_s']:8.3f}s{mark}{t['cpu_s']:8.3f}s{mark}"
            for base in bases:
                x = r.get(f"speedup_vs_{base}", {}).get(mode)
                line += f"  {x['wall_s']:21.1f}x /{x['cpu_s']:6.1f}x" if x else f"  {'':30s}"
            lines.append(line.rstrip())
    extrapolated = {r["extrapolated_from_tokens"] for r in report["results"] if r["extrapolated_from_tokens"]}
    for tokens in sorted(extrapolated):
        lines.append(f"* timed on the first {tokens} tokens and extrapolated linearly in L")
    return "\n".join(lines)


def run(args) -> int:
    if args.what == "train":
        from samic.commands import bench_train

        return bench_train.run(args)
    if args.what in ("clusters", "scan-ablation"):
        from samic.commands import bench_semantic

        return bench_semantic.run(args)
    import torch

    from samic.ops.scan import available_backends

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device here")
    if args.repeat < 1 or args.reference_tokens < 1 or (args.threads is not None and args.threads < 1):
        raise UserError("--repeat, --threads and --reference-tokens must be positive")
    if args.threads:
        import numba

        torch.set_num_threads(args.threads)
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    known = available_backends(device) + (["mambapy"] if _mambapy_available() else [])
    backends = args.backends or known
    unknown = [b for b in backends if b not in known]
    if unknown:
        raise UserError(f"backend(s) {', '.join(unknown)} not available on {device}; available: {', '.join(known)}")
    if "reference" not in backends:
        backends = ["reference", *backends]  # the ratios need it (it is cheap: timed on a prefix)
    report = bench_scan(backends, device, args.repeat, args.reference_tokens)
    print(json.dumps(report, indent=2) if args.json else _format(report))
    return 0
