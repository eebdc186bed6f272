"""Selective scan: every fast backend against the float64 ``reference`` recurrence,
outputs and gradients, on fresh random inputs; backend selection; input validation."""
import os
import subprocess
import sys

import pytest
import torch

import samic.ops.scan as scan_mod
from conftest import relative_error
from samic.ops.scan import CHUNK, SEGMENT, available_backends, select_backend, selective_scan

pytestmark = pytest.mark.usefixtures("fresh_seed")

TOLERANCE = 1e-4  # float32 vs float64, relative L2 error, outputs and every gradient
CPU_BACKENDS = [b for b in ("numba", "torch") if b in available_backends("cpu")]
INPUTS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make_inputs(batch, dim, length, n_state, groups, *, D=True, z=True, delta_bias=True,
                delta_softplus=True, dtype=torch.float64, device="cpu"):
    """Random scan inputs in Mamba's ranges. groups=None: B, C as (batch, N, L)."""
    def randn(*shape):
        return torch.randn(*shape, dtype=dtype, device=device)

    bc_shape = (batch, n_state, length) if groups is None else (batch, groups, n_state, length)
    return dict(
        u=randn(batch, dim, length),
        # raw delta goes through softplus; without it, delta must already be a positive step
        delta=randn(batch, dim, length) - 1 if delta_softplus else 0.5 * torch.rand(
            batch, dim, length, dtype=dtype, device=device),
        A=-torch.exp(randn(dim, n_state)),  # A = -exp(A_log)
        B=randn(*bc_shape), C=randn(*bc_shape),
        D=randn(dim) if D else None, z=randn(batch, dim, length) if z else None,
        # without softplus the biased step must stay positive, or the state grows as exp(|A| t)
        delta_bias=(0.5 * randn(dim) if delta_softplus else 0.1 * torch.rand(dim, dtype=dtype, device=device))
        if delta_bias else None,
    )


def run_scan(inputs, backend, dtype, delta_softplus, grad_out=None):
    """Scan in ``dtype``; returns (output, {name: gradient}) with gradients of <output, grad_out>."""
    leaves = {k: v.detach().to(dtype).requires_grad_() for k, v in inputs.items() if v is not None}
    args = {k: leaves.get(k) for k in INPUTS}
    y = selective_scan(**args, delta_softplus=delta_softplus, backend=backend)
    if grad_out is None:
        return y, {}
    (y * grad_out.to(dtype)).sum().backward()
    return y, {k: v.grad for k, v in leaves.items()}


# (batch, D, L, N, groups, extras): L = 1, around CHUNK, not a multiple of CHUNK, past SEGMENT
CASES = [
    (2, 3, 1, 4, None, dict(D=False, z=False, delta_bias=False, delta_softplus=False)),
    (2, 6, CHUNK + 1, 5, None, dict()),
    (1, 8, 600, 16, 2, dict(z=False)),
    (2, 8, 2 * CHUNK - 3, 4, 4, dict(delta_softplus=False)),
    (3, 4, 300, 8, 1, dict(D=False, delta_bias=False)),
    (1, 4, SEGMENT + CHUNK + 37, 4, 2, dict()),  # several numba segments, ragged last chunk
]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"b{c[0]}d{c[1]}l{c[2]}n{c[3]}g{c[4]}")
def test_backend_matches_reference(backend, case):
    batch, dim, length, n_state, groups, extras = case
    delta_softplus = extras.get("delta_softplus", True)
    inputs = make_inputs(batch, dim, length, n_state, groups, **extras)
    grad_out = torch.randn(batch, dim, length, dtype=torch.float64)
    y_ref, g_ref = run_scan(inputs, "reference", torch.float64, delta_softplus, grad_out)
    y, grads = run_scan(inputs, backend, torch.float32, delta_softplus, grad_out)
    assert y.dtype == torch.float32 and y.shape == (batch, dim, length)
    errors = {"output": relative_error(y, y_ref)}
    errors.update({f"grad {k}": relative_error(grads[k], g_ref[k]) for k in g_ref})
    assert set(grads) == set(g_ref)
    bad = {k: e for k, e in errors.items() if not e <= TOLERANCE}
    assert not bad, f"{backend}: relative errors above {TOLERANCE}: {bad}"


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_backend_float64_inputs(backend):
    """float64 in, float64 out (numba computes in float32 and casts back)."""
    inputs = make_inputs(1, 4, 50, 4, None)
    y_ref, _ = run_scan(inputs, "reference", torch.float64, True)
    y, _ = run_scan(inputs, backend, torch.float64, True)
    assert y.dtype == torch.float64
    assert relative_error(y, y_ref) <= (1e-10 if backend == "torch" else TOLERANCE)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_gradient_of_some_inputs_only(backend):
    """Only u needs a gradient: the others stay None and u's gradient is still right."""
    inputs = make_inputs(2, 4, 70, 4, None)
    grad_out = torch.randn(2, 4, 70, dtype=torch.float64)
    u_ref = inputs["u"].clone().requires_grad_()
    (selective_scan(**{**inputs, "u": u_ref}, delta_softplus=True, backend="reference") * grad_out).sum().backward()
    u = inputs["u"].float().requires_grad_()
    others = {k: (v.float() if v is not None else None) for k, v in inputs.items() if k != "u"}
    (selective_scan(u, **others, delta_softplus=True, backend=backend) * grad_out.float()).sum().backward()
    assert relative_error(u.grad, u_ref.grad) <= TOLERANCE
    assert all(v is None or v.grad is None for v in others.values())


def test_auto_backend_selection(monkeypatch):
    assert select_backend(torch.zeros(1, 1, 1)) == ("numba" if scan_mod.numba_available() else "torch")
    assert select_backend(torch.zeros(1, 1, 1, dtype=torch.float64)) == "torch"
    assert select_backend(torch.zeros(1, 1, 1, device="meta")) == "torch"
    # and selective_scan really dispatches there
    calls = []
    for name in ("_scan_torch", "_scan_reference"):
        original = getattr(scan_mod, name)
        monkeypatch.setattr(scan_mod, name, lambda *a, _f=original, _n=name: calls.append(_n) or _f(*a))
    original_apply = scan_mod._NumbaScan.apply
    monkeypatch.setattr(scan_mod._NumbaScan, "apply", lambda *a: calls.append("numba") or original_apply(*a))
    inputs = make_inputs(1, 2, 5, 3, None)
    selective_scan(**{k: v.float() if v is not None else None for k, v in inputs.items()})
    selective_scan(**inputs)
    expected_f32 = "numba" if scan_mod.numba_available() else "_scan_torch"
    assert calls == [expected_f32, "_scan_torch"]


def test_available_backends():
    cpu = available_backends("cpu")
    assert {"reference", "torch"} <= set(cpu) and "mamba_ssm" not in cpu
    assert ("numba" in cpu) == scan_mod.numba_available()
    assert "numba" not in available_backends("cuda")


def _valid(**changes):
    inputs = {k: v.float() if v is not None else None for k, v in make_inputs(2, 4, 10, 3, None).items()}
    inputs.update(changes)
    return inputs


BAD_INPUTS = [
    ("u rank", lambda: _valid(u=torch.randn(4, 10)), ValueError, r"u must have shape \(batch, D, L\)"),
    ("delta shape", lambda: _valid(delta=torch.randn(2, 4, 9)), ValueError,
     r"delta must have shape \(batch, D, L\)=\(2, 4, 10\)"),
    ("A shape", lambda: _valid(A=torch.randn(5, 3)), ValueError, r"A must have shape \(D, N\)=\(4, N\)"),
    ("A rank", lambda: _valid(A=torch.randn(4)), ValueError, r"A must have shape \(D, N\)"),
    ("B state size", lambda: _valid(B=torch.randn(2, 2, 10)), ValueError,
     r"B must have shape \(batch, N, L\)=\(2, 3, 10\) or \(batch, G, N, L\)"),
    ("C groups", lambda: _valid(C=torch.randn(2, 3, 3, 10)), ValueError, r"C must have shape .*divisible by G"),
    ("C rank", lambda: _valid(C=torch.randn(3, 10)), ValueError, r"C must have shape"),
    ("D shape", lambda: _valid(D=torch.randn(5)), ValueError, r"D must have shape \(D,\)=\(4,\)"),
    ("delta_bias shape", lambda: _valid(delta_bias=torch.randn(4, 1)), ValueError,
     r"delta_bias must have shape \(D,\)=\(4,\)"),
    ("z shape", lambda: _valid(z=torch.randn(2, 4, 11)), ValueError, r"z must have shape \(batch, D, L\)"),
    ("integer u", lambda: _valid(u=torch.ones(2, 4, 10, dtype=torch.int64)), TypeError,
     r"u must be a floating-point tensor"),
    ("integer B", lambda: _valid(B=torch.ones(2, 3, 10, dtype=torch.int32)), TypeError,
     r"B must be a floating-point tensor"),
    ("not a tensor", lambda: _valid(delta=torch.randn(2, 4, 10).numpy()), TypeError,
     r"delta must be a torch.Tensor"),
    ("mixed devices", lambda: _valid(A=torch.randn(4, 3, device="meta")), ValueError, r"A is on meta but u is on cpu"),
]


@pytest.mark.parametrize("make, error, message", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_named(make, error, message):
    with pytest.raises(error, match=message):
        selective_scan(**make())


def test_bad_backend():
    with pytest.raises(ValueError, match=r"unknown backend 'cuda'"):
        selective_scan(**_valid(), backend="cuda")
    meta = {k: v.to("meta") if v is not None else None for k, v in _valid().items()}
    with pytest.raises(ValueError, match=r"'numba' needs CPU tensors"):
        selective_scan(**meta, backend="numba")
    with pytest.raises(ValueError, match=r"'mamba_ssm' needs CUDA tensors"):
        selective_scan(**_valid(), backend="mamba_ssm")


def test_meta_device_shapes():
    """auto on 'meta' tensors goes through the torch backend and only propagates shapes."""
    meta = {k: v.to("meta") if v is not None else None for k, v in _valid().items()}
    y = selective_scan(**meta)
    assert y.device.type == "meta" and y.shape == (2, 4, 10)


@pytest.mark.skipif(not (torch.cuda.is_available() and scan_mod.mamba_ssm_available()),
                    reason="needs CUDA and an importable mamba-ssm")
@pytest.mark.parametrize("groups", [None, 2])
def test_mamba_ssm_matches_reference_on_cuda(groups):
    inputs = make_inputs(2, 8, 300, 16, groups, device="cuda")
    grad_out = torch.randn(2, 8, 300, dtype=torch.float64, device="cuda")
    y_ref, g_ref = run_scan(inputs, "reference", torch.float64, True, grad_out)
    for backend in ("mamba_ssm", "torch"):
        y, grads = run_scan(inputs, backend, torch.float32, True, grad_out)
        assert relative_error(y, y_ref) <= TOLERANCE, backend
        for k in g_ref:
            assert relative_error(grads[k], g_ref[k]) <= 1e-3, (backend, k)  # CUDA atomics reorder sums
    assert select_backend(inputs["u"].float()) == "mamba_ssm"


def test_bench_scan_smoke(monkeypatch):
    """`samic bench scan` end to end on tiny shapes: rows for every backend and pass, the
    reference extrapolated from a prefix (and marked so), ratios to it."""
    from samic.commands import bench

    monkeypatch.setattr(bench, "SHAPES", ((1, 4, 64, 4), (2, 4, 16, 4)))
    report = bench.bench_scan(["reference", *CPU_BACKENDS], repeat=1, reference_tokens=32)
    assert [(tuple(r["shape"]), r["backend"]) for r in report["results"]] == \
        [(s, b) for s in bench.SHAPES for b in ["reference", *CPU_BACKENDS]]
    for row in report["results"]:
        prefix = row["shape"][2] == 64 and row["backend"] == "reference"
        assert row["extrapolated_from_tokens"] == (32 if prefix else None)
        for mode in bench.MODES:
            assert row[mode]["wall_s"] > 0 and row[mode]["cpu_s"] >= 0
            assert row["speedup_vs_reference"][mode]["wall_s"] > 0
    assert all(e <= TOLERANCE for e in report["parity_vs_float64_reference"].values())
    text = bench._format(report)
    assert "extrapolated linearly" in text and "*" in text


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_extreme_delta_and_gate(backend):
    """numba fuses softplus and silu with its own exp: check them where they saturate
    (softplus(v) = v past 20, ~e^v far below 0; silu(z) -> z or 0) against the reference."""
    inputs = make_inputs(1, 6, 400, 4, None)
    spread = torch.linspace(-30, 30, 400, dtype=torch.float64)
    inputs["delta"] = spread[torch.randperm(400)].expand(1, 6, 400).clone() / torch.arange(1, 7)[:, None]
    inputs["z"] = spread[torch.randperm(400)].expand(1, 6, 400).clone()
    inputs["A"] = -torch.rand(6, 4, dtype=torch.float64)  # keep exp(delta A) away from float32 underflow
    grad_out = torch.randn(1, 6, 400, dtype=torch.float64)
    y_ref, g_ref = run_scan(inputs, "reference", torch.float64, True, grad_out)
    y, grads = run_scan(inputs, backend, torch.float32, True, grad_out)
    errors = {"output": relative_error(y, y_ref), **{k: relative_error(grads[k], g_ref[k]) for k in g_ref}}
    assert all(e <= TOLERANCE for e in errors.values()), errors


@pytest.mark.skipif(not scan_mod.numba_available(), reason="numba not installed")
def test_numba_pool_start_keeps_torch_threads():
    """numba's OpenMP pool shares libgomp with torch; starting it must not change torch's
    thread count (it did: 1 -> all cores, so a process's first call summed differently)."""
    script = """
import torch
from samic.ops.scan import selective_scan
g = torch.Generator().manual_seed(0)
u, dt = torch.randn(1, 8, 256, generator=g), torch.rand(1, 8, 256, generator=g)
A, B, C = -torch.rand(8, 4, generator=g), torch.randn(1, 4, 256, generator=g), torch.randn(1, 4, 256, generator=g)
selective_scan(u, dt, A, B, C, backend="numba")
print(torch.get_num_threads())
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as `OMP_NUM_THREADS=1 samic ...` would run it
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == "1"
