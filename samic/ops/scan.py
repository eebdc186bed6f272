"""Selective scan (Mamba's S6 recurrence) with per-device backends.

Semantics follow mamba-ssm's ``selective_scan_fn``::

    delta' = softplus(delta + delta_bias)        (softplus only if delta_softplus)
    h_t    = exp(delta'_t * A) * h_{t-1} + delta'_t * B_t * u_t        h_{-1} = 0
    y_t    = <C_t, h_t> + D * u_t ;   y *= silu(z)   (when z is given)

Shapes: u, delta, z: (batch, D, L); A: (D, N); B, C: (batch, N, L) or grouped
(batch, G, N, L) with D divisible by G (channel d reads group d // (D // G));
D, delta_bias: (D,). Output: (batch, D, L).

Backends (``backend=`` overrides; ``"auto"`` decides from the tensors' device and
dtype at every call, never from what happened to import):

- ``reference``: the plain recurrence in PyTorch, one Python step per token, in the
  input dtype (use float64 for ground truth). Differentiable through autograd.
- ``numba``: CPU. The whole op (softplus, recurrence, D u, z gate) fused into one kernel
  that keeps the N-dim state in a small buffer and never materializes a (batch, D, L, N)
  tensor nor any (batch, D, L) temporary; a vectorizable exp makes it close to the cost
  floor. Training uses a hand-written fused backward that recomputes states from
  per-chunk checkpoints (memory (batch, D, L/CHUNK, N)).
- ``torch``: pure PyTorch, any device (the CUDA fallback). Materializes (batch, D, L, N)
  for the states and solves the linear recurrence with a log-depth doubling scan;
  a custom backward runs the same scan in reverse.
- ``mamba_ssm``: mamba-ssm's CUDA kernel, used for CUDA tensors when installed.
"""
from __future__ import annotations

import functools
import importlib.util
import threading

import torch
import torch.nn.functional as F

BACKENDS = ("reference", "numba", "torch", "mamba_ssm")
CHUNK = 256  # tokens between saved states in the numba training path
SEGMENT = 16 * CHUNK  # tokens per numba call; B and C are transposed one segment at a time


# ----------------------------------------------------------------------------- checks
def _check_inputs(u, delta, A, B, C, D, z, delta_bias):
    tensors = dict(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias)
    for name, t in tensors.items():
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"selective_scan: {name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"selective_scan: {name} must be a floating-point tensor, got {t.dtype}")
        if t.device != u.device:
            raise ValueError(f"selective_scan: {name} is on {t.device} but u is on {u.device}; "
                             "all tensors must be on one device")
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must have shape (batch, D, L), got {tuple(u.shape)}")
    batch, dim, length = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"selective_scan: delta must have shape (batch, D, L)={tuple(u.shape)}, "
                         f"got {tuple(delta.shape)}")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"selective_scan: A must have shape (D, N)=({dim}, N), got {tuple(A.shape)}")
    n_state = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.dim() == 3:
            ok = t.shape == (batch, n_state, length)
        elif t.dim() == 4:
            ok = (t.shape[0], t.shape[2], t.shape[3]) == (batch, n_state, length) and t.shape[1] > 0 \
                and dim % t.shape[1] == 0
        else:
            ok = False
        if not ok:
            raise ValueError(f"selective_scan: {name} must have shape (batch, N, L)=({batch}, {n_state}, "
                             f"{length}) or (batch, G, N, L) with D={dim} divisible by G, got {tuple(t.shape)}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (dim,):
            raise ValueError(f"selective_scan: {name} must have shape (D,)=({dim},), got {tuple(t.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"selective_scan: z must have shape (batch, D, L)={tuple(u.shape)}, got {tuple(z.shape)}")


def _grouped(t: torch.Tensor) -> torch.Tensor:
    """(batch, N, L) -> (batch, 1, N, L); grouped tensors pass through."""
    return t.unsqueeze(1) if t.dim() == 3 else t


def _per_channel(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(batch, G, N, L) -> (batch, D, N, L) view, channel d reading group d // (D/G)."""
    batch, groups, n_state, length = t.shape
    return t.unsqueeze(2).expand(batch, groups, dim // groups, n_state, length).reshape(batch, dim, n_state, length)


# ----------------------------------------------------------------------------- availability
@functools.lru_cache(maxsize=None)
def numba_available() -> bool:
    return importlib.util.find_spec("numba") is not None


@functools.lru_cache(maxsize=None)
def mamba_ssm_available() -> bool:
    if importlib.util.find_spec("mamba_ssm") is None:
        return False
    try:  # the package imports its CUDA extension eagerly; a broken build must not break us
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: F401
    except Exception:
        return False
    return True


def available_backends(device: str | torch.device = "cpu") -> list[str]:
    """Backends usable for tensors on ``device``."""
    device = torch.device(device)
    names = ["reference", "torch"]
    if device.type == "cpu" and numba_available():
        names.append("numba")
    if device.type == "cuda" and mamba_ssm_available():
        names.append("mamba_ssm")
    return names


def select_backend(u: torch.Tensor) -> str:
    """The backend ``auto`` picks for this tensor (device and dtype decide)."""
    if u.device.type == "cuda":
        return "mamba_ssm" if mamba_ssm_available() else "torch"
    if u.device.type == "cpu" and numba_available() and u.dtype != torch.float64:
        return "numba"
    return "torch"


# ----------------------------------------------------------------------------- public op
def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   backend: str = "auto") -> torch.Tensor:
    """Selective scan with mamba-ssm's semantics; see the module docstring for shapes.

    Returns y of shape (batch, D, L) in u's dtype.
    """
    _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    if backend == "auto":
        backend = select_backend(u)
    if backend not in BACKENDS:
        raise ValueError(f"selective_scan: unknown backend {backend!r}; choose one of {BACKENDS} or 'auto'")
    if backend == "mamba_ssm":
        if not (u.is_cuda and mamba_ssm_available()):
            raise ValueError("selective_scan: backend 'mamba_ssm' needs CUDA tensors and the mamba-ssm package")
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
        return selective_scan_fn(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
                                 delta_softplus=delta_softplus)
    if backend == "numba" and (u.device.type != "cpu" or not numba_available()):
        raise ValueError("selective_scan: backend 'numba' needs CPU tensors and the numba package")

    B, C = _grouped(B), _grouped(C)
    if backend == "numba":  # its kernels fuse delta_bias, softplus, D and the z gate
        return _NumbaScan.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    if delta_bias is not None:
        delta = delta + delta_bias[None, :, None].to(delta.dtype)
    if delta_softplus:
        delta = F.softplus(delta)
    y = (_scan_reference if backend == "reference" else _scan_torch)(u, delta, A, B, C)
    if D is not None:
        y = y + u * D[None, :, None].to(u.dtype)
    if z is not None:
        y = y * F.silu(z)
    return y


# ----------------------------------------------------------------------------- reference
def _scan_reference(u, delta, A, B, C):
    """The recurrence, token by token (ground truth; differentiable through autograd)."""
    batch, dim, _ = u.shape
    B, C = _per_channel(B, dim).to(u.dtype), _per_channel(C, dim).to(u.dtype)
    h = u.new_zeros(batch, dim, A.shape[1])
    ys = []
    # unbind once: indexing [..., t] per token would make the backward O(L^2) (one
    # zero-filled full-size gradient per token); unbind's backward is a single stack.
    for u_t, dt, B_t, C_t in zip(u.unbind(-1), delta.unsqueeze(-1).unbind(-2), B.unbind(-1), C.unbind(-1)):
        h = torch.exp(dt * A) * h + dt * B_t * u_t[..., None]
        ys.append((h * C_t).sum(-1))
    if not ys:
        return u.new_zeros(batch, dim, 0)
    return torch.stack(ys, dim=-1)


# ----------------------------------------------------------------------------- pure torch
def _doubling_scan(a: torch.Tensor, b: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """Solve h_t = a_t h_{t-1} + b_t (h_{-1} = 0) along dim 2 in log2(L) steps.

    Hillis-Steele doubling: after step k every position holds the composition of the
    2^k maps ending at it. Only products of the a's (|a| <= 1 in Mamba) appear, so it is
    stable, unlike cumsum-in-log-space formulations. ``reverse`` scans from the end.
    """
    if reverse:
        return _doubling_scan(a.flip(2), b.flip(2)).flip(2)
    length = a.shape[2]
    step = 1
    while step < length:
        b = torch.cat([b[:, :, :step], b[:, :, step:] + a[:, :, step:] * b[:, :, :-step]], dim=2)
        a = torch.cat([a[:, :, :step], a[:, :, step:] * a[:, :, :-step]], dim=2)
        step *= 2
    return b


class _LinearScan(torch.autograd.Function):
    """h = scan(a, b) with the adjoint scan as backward (stores a and h only)."""

    @staticmethod
    def forward(ctx, a, b):
        h = _doubling_scan(a, b)
        ctx.save_for_backward(a, h)
        return h

    @staticmethod
    def backward(ctx, grad_h):
        a, h = ctx.saved_tensors
        # dL/db_t = g_t + a_{t+1} dL/db_{t+1}: the same recurrence run backwards in time.
        a_next = torch.cat([a[:, :, 1:], torch.zeros_like(a[:, :, :1])], dim=2)
        grad_b = _doubling_scan(a_next, grad_h, reverse=True)
        h_prev = torch.cat([torch.zeros_like(h[:, :, :1]), h[:, :, :-1]], dim=2)
        return grad_b * h_prev, grad_b


def _scan_torch(u, delta, A, B, C):
    """Materializing pure-PyTorch scan, states as (batch, D, L, N)."""
    dim = u.shape[1]
    B = _per_channel(B, dim).to(u.dtype).transpose(2, 3)  # (batch, D, L, N)
    C = _per_channel(C, dim).to(u.dtype).transpose(2, 3)
    a = torch.exp(delta.unsqueeze(-1) * A[None, :, None, :].to(u.dtype))
    b = (delta * u).unsqueeze(-1) * B
    h = _LinearScan.apply(a, b)
    return (h * C).sum(-1)


# ----------------------------------------------------------------------------- numba (CPU)
_numba_lock = threading.Lock()


def _segments(length: int) -> list[tuple[int, int]]:
    return [(t0, min(t0 + SEGMENT, length)) for t0 in range(0, length, SEGMENT)]


def _token_major(t: torch.Tensor, t0: int, t1: int) -> torch.Tensor:
    """(batch, G, N, L) -> contiguous float32 (batch, G, t1 - t0, N) for one segment."""
    return t[..., t0:t1].detach().transpose(2, 3).to(torch.float32).contiguous()


@functools.lru_cache(maxsize=None)
def _numba_kernels():
    """Compile (or load from numba's on-disk cache) the CPU kernels on first use."""
    with _numba_lock:
        import numba

        from samic.ops import _scan_numba
        # Start numba's OpenMP pool now and keep torch's thread count: the pool's start calls
        # omp_set_num_threads in the libgomp that torch shares, which silently changed torch's
        # intra-op threads (1 -> all cores) and with them its summation order, so a process's
        # first network call differed in the last bits from every later one.
        torch_threads = torch.get_num_threads()
        numba.get_num_threads()
        torch.set_num_threads(torch_threads)
        return _scan_numba.scan_forward, _scan_numba.scan_backward


def _f32(t: torch.Tensor | None, empty_shape: tuple[int, ...]) -> torch.Tensor:
    """Contiguous float32 (a no-op for contiguous float32); an absent input becomes zeros of
    ``empty_shape`` (D, delta_bias: adding 0 is exact) or, for z, a (batch, D, 0) "no gate"."""
    if t is None:
        return torch.zeros(empty_shape)
    return t.detach().to(torch.float32).contiguous()


class _NumbaScan(torch.autograd.Function):
    """The whole op on CPU, fused: softplus(delta + delta_bias), the recurrence, D u, silu(z).

    Runs segment by segment (SEGMENT tokens) carrying the (batch, D, N) state, so the
    only L-sized buffers are the inputs, the output and (training only) the per-chunk
    state checkpoints.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        forward_kernel, _ = _numba_kernels()
        batch, dim, length = u.shape
        u32, delta32, A32 = (_f32(t, ()) for t in (u, delta, A))
        D32, bias32, z32 = _f32(D, (dim,)), _f32(delta_bias, (dim,)), _f32(z, (batch, dim, 0))
        y = torch.empty(batch, dim, length, dtype=torch.float32)
        h_state = torch.zeros(batch, dim, A.shape[1], dtype=torch.float32)
        save = any(ctx.needs_input_grad)
        checkpoints = torch.empty(batch, dim, -(-length // CHUNK) if save else 0, A.shape[1])
        for t0, t1 in _segments(length):
            forward_kernel(u32.numpy(), delta32.numpy(), A32.numpy(), _token_major(B, t0, t1).numpy(),
                           _token_major(C, t0, t1).numpy(), D32.numpy(), z32.numpy(), bias32.numpy(),
                           delta_softplus, h_state.numpy(), y.numpy(), checkpoints.numpy(), CHUNK, t0)
        if save:
            ctx.save_for_backward(u32, delta32, A32, B, C, D32, z32, bias32, checkpoints)
            ctx.delta_softplus = delta_softplus
            ctx.dtypes = [t.dtype if t is not None else None for t in (u, delta, A, B, C, D, z, delta_bias)]
        return y.to(u.dtype)

    @staticmethod
    def backward(ctx, grad_y):
        import numba

        _, backward_kernel = _numba_kernels()
        u, delta, A, B, C, D, z, delta_bias, checkpoints = ctx.saved_tensors
        batch, dim, length = u.shape
        groups, n_state = B.shape[1], A.shape[1]
        blocks = max(1, min(numba.get_num_threads(), batch * dim))
        grad_y = grad_y.to(torch.float32).contiguous()
        grad_u, grad_delta, grad_z = torch.empty_like(u), torch.empty_like(delta), torch.empty_like(z)
        grad_A = torch.zeros(blocks, dim, n_state)
        grad_D, grad_bias = torch.zeros(blocks, dim), torch.zeros(blocks, dim)
        grad_B = torch.empty(batch, groups, n_state, length)
        grad_C = torch.empty(batch, groups, n_state, length)
        carry = torch.zeros(batch, dim, n_state)
        for t0, t1 in reversed(_segments(length)):
            # per-thread partial sums (token-major, so the kernel writes contiguously)
            part_B = torch.zeros(blocks, batch, groups, t1 - t0, n_state)
            part_C = torch.zeros(blocks, batch, groups, t1 - t0, n_state)
            backward_kernel(u.numpy(), delta.numpy(), A.numpy(), _token_major(B, t0, t1).numpy(),
                            _token_major(C, t0, t1).numpy(), D.numpy(), z.numpy(), delta_bias.numpy(),
                            ctx.delta_softplus, grad_y.numpy(), checkpoints.numpy(), CHUNK, t0, carry.numpy(),
                            grad_u.numpy(), grad_delta.numpy(), grad_z.numpy(), grad_A.numpy(), part_B.numpy(),
                            part_C.numpy(), grad_D.numpy(), grad_bias.numpy())
            grad_B[..., t0:t1] = part_B.sum(0).transpose(2, 3)
            grad_C[..., t0:t1] = part_C.sum(0).transpose(2, 3)
        grads = (grad_u, grad_delta, grad_A.sum(0), grad_B, grad_C, grad_D.sum(0), grad_z, grad_bias.sum(0))
        return (*(g.to(dt) if dt is not None else None for g, dt in zip(grads, ctx.dtypes)), None)


def scan_flops(batch: int, dim: int, length: int, n_state: int) -> int:
    """Approximate flops of one scan (the cost floor quoted in docs: ~9 per state update)."""
    return 9 * batch * dim * length * n_state


__all__ = ["selective_scan", "available_backends", "select_backend", "BACKENDS", "scan_flops",
           "numba_available", "mamba_ssm_available"]
