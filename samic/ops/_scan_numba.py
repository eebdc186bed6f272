"""Numba CPU kernels of the selective scan core (see ``samic.ops.scan``).

Both kernels work on float32 with delta already biased/softplus'ed:
    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t ;  y_t = <C_t, h_t>
u, delta: (batch, D, L); A: (D, N); B, C: (batch, G, N, L).

Parallel over (batch, channel) rows; each row runs the recurrence with its N-dim state
in a small local buffer. B and C arrive token-major, (batch, G, T, N), so the inner loop
over N is contiguous and vectorizes; the caller transposes them one segment of T tokens
at a time, which keeps the extra memory independent of L. exp is a Cody-Waite range
reduction plus a degree-6 polynomial (max relative error ~2e-7 on [-87, 88]) written so
that LLVM can vectorize it; libm's scalar expf is the bottleneck otherwise.
"""
import math

import numba as nb
import numpy as np

_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)  # ln 2 split in two so that k * _LN2_HI is exact
_LN2_LO = np.float32(-2.12194440e-4)
# No 'reassoc': reassociation would undo the Cody-Waite split. The rest is safe here.
_FASTMATH = {"nnan", "ninf", "nsz", "arcp", "contract", "afn"}


@nb.njit(inline="always", fastmath=_FASTMATH)
def _exp_mantissa(x, exponent_bits, n):
    """exp(x) = mantissa * 2^k: returns the mantissa, writes 2^k's float bits to exponent_bits[n]."""
    x = min(max(x, np.float32(-87.0)), np.float32(88.0))
    k = math.floor(x * _LOG2E + np.float32(0.5))
    r = (x - k * _LN2_HI) - k * _LN2_LO
    exponent_bits[n] = (np.int32(k) + 127) << 23
    return np.float32(1.0) + r * (np.float32(1.0) + r * (np.float32(0.5) + r * (
        np.float32(1 / 6) + r * (np.float32(1 / 24) + r * (np.float32(1 / 120) + r * np.float32(1 / 720))))))


@nb.njit(fastmath=_FASTMATH, cache=True)
def _exps(dt, A_d, a, bits):
    """a[n] * 2^k[n] = exp(dt * A_d[n]) for every state n (k's float bits in bits[n]).

    A function of its own so that its instructions keep _FASTMATH's flags (no 'reassoc')
    when LLVM inlines it into a kernel compiled with 'reassoc'."""
    for n in range(A_d.shape[0]):
        a[n] = _exp_mantissa(dt * A_d[n], bits, n)


# 'reassoc' lets LLVM vectorize the <C_t, h_t> reduction; a scalar chain of N dependent
# adds per token was the forward's bottleneck (2x slower). The exp is protected in _exps.
@nb.njit(parallel=True, fastmath=_FASTMATH | {"reassoc"}, cache=True)
def scan_forward(u, delta, A, B, C, h_state, y, checkpoints, chunk):
    """One segment of the scan: y = scan(...) starting from h_state (updated in place).

    u, delta, y: (batch, D, T); B, C token-major (batch, G, T, N); h_state (batch, D, N).
    If checkpoints has chunks, saves h at the start of each chunk of ``chunk`` tokens:
    checkpoints[b, d, c] = state before token c * chunk of this segment.
    """
    batch, dim, length = u.shape
    n_state = A.shape[1]
    per_group = dim // B.shape[1]
    save = checkpoints.shape[2] > 0
    for row in nb.prange(batch * dim):
        b, d = row // dim, row % dim
        g = d // per_group
        h = h_state[b, d]
        a = np.empty(n_state, np.float32)
        bits = np.zeros(n_state, np.int32)
        scale = bits.view(np.float32)
        A_d = A[d]
        for t in range(length):
            if save and t % chunk == 0:
                checkpoints[b, d, t // chunk, :] = h
            dt = delta[b, d, t]
            x = dt * u[b, d, t]
            B_t = B[b, g, t]
            C_t = C[b, g, t]
            _exps(dt, A_d, a, bits)
            acc = np.float32(0.0)
            for n in range(n_state):
                h[n] = a[n] * scale[n] * h[n] + x * B_t[n]
                acc += C_t[n] * h[n]
            y[b, d, t] = acc


@nb.njit(parallel=True, fastmath=_FASTMATH, cache=True)
def scan_backward(u, delta, A, B, C, grad_y, checkpoints, chunk, carry_state,
                  grad_u, grad_delta, grad_A, grad_B, grad_C):
    """Gradients of one segment of y = scan(...) w.r.t. u, delta, A, B, C.

    Segments are processed last to first; carry_state (batch, D, N) holds
    a_{t+1} * dL/dh_{t+1} across the segment boundary and is updated in place.
    Rows are split into ``grad_A.shape[0]`` contiguous blocks, one per thread; A, B and
    C are shared between rows, so each block accumulates into its own slice
    grad_A[blk] (D, N), grad_B[blk], grad_C[blk] (batch, G, T, N), summed by the caller.
    Per chunk (in reverse) the states are recomputed from the checkpoint, then
        g_t     = grad_y_t * C_t + a_{t+1} * g_{t+1}     (dL/dh_t)
        dL/da_t = g_t * h_{t-1},   a_t = exp(delta_t A)
    """
    batch, dim, length = u.shape
    n_state = A.shape[1]
    per_group = dim // B.shape[1]
    blocks = grad_A.shape[0]
    rows = batch * dim
    for blk in nb.prange(blocks):
        h_buf = np.empty((chunk + 1, n_state), np.float32)  # h_buf[i] = state before token t0 + i
        a_buf = np.empty((chunk, n_state), np.float32)
        bits = np.zeros(n_state, np.int32)
        scale = bits.view(np.float32)
        for row in range(blk * rows // blocks, (blk + 1) * rows // blocks):
            b, d = row // dim, row % dim
            g = d // per_group
            A_d = A[d]
            carry = carry_state[b, d]
            for c in range((length + chunk - 1) // chunk - 1, -1, -1):
                t0 = c * chunk
                t1 = min(t0 + chunk, length)
                h_buf[0, :] = checkpoints[b, d, c, :]
                for t in range(t0, t1):
                    i = t - t0
                    dt = delta[b, d, t]
                    x = dt * u[b, d, t]
                    B_t = B[b, g, t]
                    for n in range(n_state):
                        a_buf[i, n] = _exp_mantissa(dt * A_d[n], bits, n)
                    for n in range(n_state):
                        a_buf[i, n] *= scale[n]
                        h_buf[i + 1, n] = a_buf[i, n] * h_buf[i, n] + x * B_t[n]
                for t in range(t1 - 1, t0 - 1, -1):
                    i = t - t0
                    gy = grad_y[b, d, t]
                    dt = delta[b, d, t]
                    ut = u[b, d, t]
                    B_t = B[b, g, t]
                    C_t = C[b, g, t]
                    g_delta = np.float32(0.0)
                    g_u = np.float32(0.0)
                    for n in range(n_state):
                        gh = gy * C_t[n] + carry[n]
                        grad_C[blk, b, g, t, n] += gy * h_buf[i + 1, n]
                        ga = gh * h_buf[i, n] * a_buf[i, n]  # dL/d(delta*A) through exp
                        g_delta += ga * A_d[n] + gh * B_t[n] * ut
                        grad_A[blk, d, n] += ga * dt
                        grad_B[blk, b, g, t, n] += gh * dt * ut
                        g_u += gh * dt * B_t[n]
                        carry[n] = gh * a_buf[i, n]
                    grad_delta[b, d, t] = g_delta
                    grad_u[b, d, t] = g_u
