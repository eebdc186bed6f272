"""Numba CPU kernels of the selective scan (see ``samic.ops.scan``), float32.

The whole of mamba-ssm's op is fused, so no (batch, D, L) temporary is materialized:
    dt_t = softplus(delta_t + delta_bias)            (or delta_t + delta_bias)
    h_t  = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t ;   y_t = (<C_t, h_t> + D u_t) * silu(z_t)
u, delta, z, y: (batch, D, L); A: (D, N); D, delta_bias: (D,); B, C: one segment, tokens
[start, start + T), token-major (batch, G, T, N). Absent options arrive as zeros (D, delta_bias)
or an empty z (batch, D, 0). The (batch, D, L) arrays are passed whole, not sliced per segment:
numba compiles a slice for unknown strides, and the token loops would not vectorize.

Parallel over (batch, channel) rows. Each row goes through the sequence a chunk of tokens at
a time: the elementwise prologue (softplus) and epilogue (D, z gate) are loops over tokens
that vectorize; the recurrence keeps the N-dim state in a small buffer and vectorizes over N
(B and C arrive token-major, so that loop is contiguous; the caller transposes them one
segment at a time, which keeps the extra memory independent of L).

Why it is fast: libm's scalar expf/log1pf and numba's ZeroDivisionError checks
(``error_model="numpy"`` drops them) keep loops from vectorizing. exp here is a range
reduction to [-ln2/2, ln2/2] plus a degree-5 minimax polynomial (max relative error 1.7e-7
on [-20, 0], 4e-7 on [-87, 88]) times 2^k made from exponent bits.
"""
import numba as nb
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

_LOG2E = np.float32(1.4426950408889634)
_LN2 = np.float32(0.6931471805599453)
_ROUND = np.float32(12582912.0)  # 1.5 * 2^23: y + _ROUND rounds y to an integer k, kept in the low bits
_P1, _P2, _P3, _P4, _P5 = (np.float32(c) for c in (  # exp(r) ~ 1 + r P(r), minimax relative error
    0.9999997019767761, 0.4999915063381195, 0.1666763573884964, 0.04189793020486832, 0.008290315046906471))
_F0, _F1, _F2 = np.float32(0.0), np.float32(1.0), np.float32(2.0)
# No 'reassoc' in the helpers: it would fold (y + _ROUND) - _ROUND. They are separate functions
# (inlined by LLVM, not by numba) so that their instructions keep these flags inside kernels
# compiled with 'reassoc' (which vectorizes the <C, h> reduction).
_FASTMATH = {"nnan", "ninf", "nsz", "arcp", "contract", "afn"}
# Helpers are not cached on disk: a cached helper is linked as machine code, which LLVM cannot
# inline (and the kernels would not vectorize); the cached kernels contain them already.
_JIT = dict(fastmath=_FASTMATH, error_model="numpy")
_KERNEL = dict(_JIT, parallel=True, fastmath=_FASTMATH | {"reassoc"}, cache=True)


@intrinsic
def _pow2_of_rounded(typingctx, y):
    """2^k from y = k + _ROUND, k an integer in [-126, 127]: k sits in y's low mantissa bits, so
    (bits(y) + 127) << 23 are 2^k's bits (_ROUND's own bits shift out). A bitcast vectorizes."""
    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        bits = builder.shl(builder.add(builder.bitcast(args[0], i32), i32(127)), i32(23))
        return builder.bitcast(bits, ir.FloatType())
    return types.float32(types.float32), codegen


@nb.njit(**_JIT)
def _exp(x):
    x = min(max(x, np.float32(-87.0)), np.float32(88.0))
    y = x * _LOG2E + _ROUND
    r = x - (y - _ROUND) * _LN2  # one fused multiply-add; ln2's rounding costs |k| * 2e-9 relative
    return (_F1 + r * (_P1 + r * (_P2 + r * (_P3 + r * (_P4 + r * _P5))))) * _pow2_of_rounded(y)


@nb.njit(**_JIT)
def _sigmoid(v):
    e = _exp(-abs(v))  # never overflows
    return (_F1 if v >= _F0 else e) / (_F1 + e)


@nb.njit(**_JIT)
def _softplus(v):
    """log(1 + e^v) = max(v, 0) + log1p(e^-|v|); for v > 20 this is v in float32, like torch."""
    e = _exp(-abs(v))
    s = e / (_F2 + e)  # log1p(e) = 2 atanh(s), s in (0, 1/3]: an odd series, error < 2e-8
    s2 = s * s
    return max(v, _F0) + _F2 * s * (_F1 + s2 * (np.float32(1 / 3) + s2 * (np.float32(1 / 5) + s2 * (
        np.float32(1 / 7) + s2 * (np.float32(1 / 9) + s2 * (np.float32(1 / 11) + s2 * np.float32(1 / 13)))))))


@nb.njit(**_JIT)
def _step_sizes(delta, bias, softplus, dt):
    if softplus:
        for i in range(delta.shape[0]):
            dt[i] = _softplus(delta[i] + bias)
    else:
        for i in range(delta.shape[0]):
            dt[i] = delta[i] + bias


@nb.njit(**_KERNEL)
def scan_forward(u, delta, A, B, C, D, z, delta_bias, softplus, h_state, y, checkpoints, chunk, start):
    """One segment of the scan, tokens [start, start + T): y = scan(...) from h_state (updated in place).

    If checkpoints has chunks, saves h at the start of each chunk of ``chunk`` tokens:
    checkpoints[b, d, c] = state before token c * chunk (start is a multiple of chunk).
    """
    n_state = A.shape[1]
    batch, dim = u.shape[:2]
    length = B.shape[2]
    per_group = dim // B.shape[1]
    save = checkpoints.shape[2] > 0
    gated = z.shape[2] > 0
    for row in nb.prange(batch * dim):
        b, d = row // dim, row % dim
        g = d // per_group
        h = h_state[b, d]
        A_d, D_d = A[d], D[d]
        dt = np.empty(chunk, np.float32)
        for t0 in range(0, length, chunk):
            t1 = min(t0 + chunk, length)
            s0, s1 = start + t0, start + t1  # in u, delta, z, y
            if save:
                checkpoints[b, d, s0 // chunk, :] = h
            # 0-based views of the chunk: the token loop then needs no index arithmetic
            u_c, y_c, B_c, C_c = u[b, d, s0:s1], y[b, d, s0:s1], B[b, g, t0:t1], C[b, g, t0:t1]
            _step_sizes(delta[b, d, s0:s1], delta_bias[d], softplus, dt)
            for i in range(t1 - t0):
                dt_i = dt[i]
                x = dt_i * u_c[i]
                B_i, C_i = B_c[i], C_c[i]
                acc = _F0
                for n in range(n_state):
                    h[n] = _exp(dt_i * A_d[n]) * h[n] + x * B_i[n]
                    acc += C_i[n] * h[n]
                y_c[i] = acc + D_d * u_c[i]
            if gated:
                z_c = z[b, d, s0:s1]
                for i in range(t1 - t0):
                    y_c[i] *= z_c[i] * _sigmoid(z_c[i])


@nb.njit(**_KERNEL)
def scan_backward(u, delta, A, B, C, D, z, delta_bias, softplus, grad_y, checkpoints, chunk, start, carry_state,
                  grad_u, grad_delta, grad_z, grad_A, grad_B, grad_C, grad_D, grad_bias):
    """Gradients of one segment of y = scan(...), tokens [start, start + T), w.r.t. every input
    (delta: the raw one; grad_u, grad_delta, grad_z, grad_y whole like u; grad_B, grad_C as B).


    Segments are processed last to first; carry_state (batch, D, N) holds
    a_{t+1} * dL/dh_{t+1} across the segment boundary and is updated in place.
    Rows are split into ``grad_A.shape[0]`` contiguous blocks, one per thread; A, B, C, D and
    delta_bias are shared between rows, so each block accumulates into its own slice
    grad_A[blk] (D, N), grad_B[blk], grad_C[blk] (batch, G, T, N), grad_D[blk], grad_bias[blk]
    (D,), summed by the caller. Per chunk (in reverse) the states are recomputed from the
    checkpoint, then
        g_t     = gy_t * C_t + a_{t+1} * g_{t+1}     (dL/dh_t; gy_t = grad_y_t * silu(z_t))
        dL/da_t = g_t * h_{t-1},   a_t = exp(dt_t A)
    """
    n_state = A.shape[1]
    batch, dim = u.shape[:2]
    length = B.shape[2]
    per_group = dim // B.shape[1]
    blocks = grad_A.shape[0]
    rows = batch * dim
    gated = z.shape[2] > 0
    for blk in nb.prange(blocks):
        h_buf = np.empty((chunk + 1, n_state), np.float32)  # h_buf[i] = state before token t0 + i
        a_buf = np.empty((chunk, n_state), np.float32)
        dt = np.empty(chunk, np.float32)
        dsoftplus = np.empty(chunk, np.float32)  # d dt / d delta = sigmoid(delta + bias)
        sig_z = np.empty(chunk, np.float32)
        for row in range(blk * rows // blocks, (blk + 1) * rows // blocks):
            b, d = row // dim, row % dim
            g = d // per_group
            A_d, D_d = A[d], D[d]
            carry = carry_state[b, d]
            g_D = g_bias = _F0
            for t0 in range((length - 1) // chunk * chunk, -1, -chunk):
                t1 = min(t0 + chunk, length)
                s0, s1 = start + t0, start + t1  # in u, delta, z and their gradients
                u_c, B_c, C_c, gy_c = u[b, d, s0:s1], B[b, g, t0:t1], C[b, g, t0:t1], grad_y[b, d, s0:s1]
                delta_c, z_c = delta[b, d, s0:s1], z[b, d, s0:s1]
                gu_c, gdelta_c, gz_c = grad_u[b, d, s0:s1], grad_delta[b, d, s0:s1], grad_z[b, d, s0:s1]
                _step_sizes(delta_c, delta_bias[d], softplus, dt)
                if softplus:
                    for i in range(t1 - t0):
                        dsoftplus[i] = _sigmoid(delta_c[i] + delta_bias[d])
                if gated:
                    for i in range(t1 - t0):
                        sig_z[i] = _sigmoid(z_c[i])
                h_buf[0, :] = checkpoints[b, d, s0 // chunk, :]
                for i in range(t1 - t0):
                    x = dt[i] * u_c[i]
                    for n in range(n_state):
                        a_buf[i, n] = _exp(dt[i] * A_d[n])
                        h_buf[i + 1, n] = a_buf[i, n] * h_buf[i, n] + x * B_c[i, n]
                for i in range(t1 - t0 - 1, -1, -1):
                    gy, dt_i, u_i = gy_c[i], dt[i], u_c[i]
                    B_i, C_i = B_c[i], C_c[i]
                    if gated:  # y = out * silu(z), out = <C, h> + D u
                        z_i, s = z_c[i], sig_z[i]
                        out = D_d * u_i
                        for n in range(n_state):
                            out += C_i[n] * h_buf[i + 1, n]
                        gz_c[i] = gy * out * s * (_F1 + z_i * (_F1 - s))
                        gy *= z_i * s
                    g_D += gy * u_i
                    g_delta = _F0
                    g_u = gy * D_d
                    for n in range(n_state):
                        gh = gy * C_i[n] + carry[n]
                        grad_C[blk, b, g, t0 + i, n] += gy * h_buf[i + 1, n]
                        ga = gh * h_buf[i, n] * a_buf[i, n]  # dL/d(dt*A) through exp
                        g_delta += ga * A_d[n] + gh * B_i[n] * u_i
                        grad_A[blk, d, n] += ga * dt_i
                        grad_B[blk, b, g, t0 + i, n] += gh * dt_i * u_i
                        g_u += gh * dt_i * B_i[n]
                        carry[n] = gh * a_buf[i, n]
                    if softplus:
                        g_delta *= dsoftplus[i]
                    g_bias += g_delta
                    gdelta_c[i] = g_delta
                    gu_c[i] = g_u
            grad_D[blk, d] += g_D
            grad_bias[blk, d] += g_bias
