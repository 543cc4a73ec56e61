"""Elementwise losses (L1, smooth L1, Huber, binary cross-entropy, KL divergence):
one forward and one backward kernel, the loss picked by an int ``kind`` (the
constants below), so CI compiles two kernels per dtype for all of them.

The forward writes per-chunk partial sums, reduced by the caller in a fixed order
(as ``losses.mse_forward``), so a loss value never depends on the thread count.
Formulas follow PyTorch's CPU kernels term by term.
"""
import math

import numpy as np

from numba import prange

from ._jit import SERIAL_BELOW, inline, kernel, serial_kernel
from .elementwise import CHUNK

L1, SMOOTH_L1, HUBER, BCE, KL_DIV, KL_DIV_LOG = 0, 1, 2, 3, 4, 5


@inline
def _loss_one(x, t, kind, p):
    # the loss of one element; p: beta (smooth L1) or delta (Huber)
    if kind == L1:
        return abs(x - t)
    if kind == SMOOTH_L1:
        z = abs(x - t)
        return 0.5 * z * z / p if z < p else z - 0.5 * p
    if kind == HUBER:
        z = abs(x - t)
        return 0.5 * z * z if z < p else p * (z - 0.5 * p)
    if kind == BCE:  # -(t log x + (1 - t) log(1 - x)), each log clamped at -100
        return (t - 1) * max(math.log1p(-x), -100.0) - t * max(math.log(x), -100.0)
    if kind == KL_DIV:  # t (log t - x), 0 where t = 0
        return (t * math.log(t) if t > 0 else t * 0) - t * x
    return math.exp(t) * (t - x)  # KL_DIV_LOG: the target given as log-probabilities


@inline
def _grads_one(x, t, kind, p):
    # (d loss / dx, d loss / dt) of one element
    if kind == L1:
        d = x - t
        s = 1.0 if d > 0 else (-1.0 if d < 0 else 0.0)
        return s, -s
    if kind == SMOOTH_L1:
        d = x - t
        s = 1.0 if d > p else (-1.0 if d < -p else d / p)
        return s, -s
    if kind == HUBER:
        d = x - t
        s = p if d > p else (-p if d < -p else 1.0 * d)
        return s, -s
    if kind == BCE:  # (x - t) / max(x (1 - x), 1e-12); d/dt = log(1 - x) - log(x), clamped
        dx = (x - t) / max((1 - x) * x, 1e-12)
        return dx, max(math.log(1 - x), -100.0) - max(math.log(x), -100.0)
    if kind == KL_DIV:
        return -1.0 * t, ((math.log(t) + 1.0 - x) if t > 0 else 0.0)
    e = math.exp(t)  # KL_DIV_LOG
    return -1.0 * e, e * (t + 1.0 - x)


@inline
def _forward_chunk(partials, losses, x, t, c, kind, p, store):
    n = x.shape[0]
    lo, hi = c * CHUNK, min((c + 1) * CHUNK, n)
    xs, ts = x[lo:hi], t[lo:hi]  # views indexed from 0
    s = x.dtype.type(0)
    if store:
        out = losses[lo:hi]
        for i in range(hi - lo):
            v = _loss_one(xs[i], ts[i], kind, p)
            out[i] = v
            s += v
    else:
        for i in range(hi - lo):
            s += _loss_one(xs[i], ts[i], kind, p)
    partials[c] = s


@serial_kernel
def forward_chunks(partials, losses, x, t, kind, p, store, c0, c1):
    """Chunks c0 .. c1 - 1 of ``pointwise_loss_forward``: compiled on its own and
    called by it, so the loss code is built once per dtype, not once per branch."""
    for c in range(c0, c1):
        _forward_chunk(partials, losses, x, t, c, kind, p, store)


@kernel
def pointwise_loss_forward(partials, losses, x, t, kind, p, store):
    """partials[c] = sum over chunk c of loss(x[i], t[i]); with ``store`` also
    losses[i] = loss(x[i], t[i]). Flat inputs of one length; all outputs overwritten
    (``losses`` may be empty without ``store``). Parallel over chunks."""
    chunks = partials.shape[0]
    if x.shape[0] < SERIAL_BELOW:  # (chunks - chunks: a variable 0, so both calls share one compile)
        forward_chunks(partials, losses, x, t, kind, p, store, chunks - chunks, chunks)
    else:
        for c in prange(chunks):
            forward_chunks(partials, losses, x, t, kind, p, store, np.int64(c), c + 1)


@serial_kernel
def backward_chunks(dx, dt, x, t, scales, step, kind, p, need_x, need_t, c0, c1):
    """Chunks c0 .. c1 - 1 of ``pointwise_loss_backward`` (compiled once, as forward_chunks)."""
    n = x.shape[0]
    for c in range(c0, c1):
        for i in range(c * CHUNK, min((c + 1) * CHUNK, n)):
            s = scales[i * step]
            gx, gt = _grads_one(x[i], t[i], kind, p)
            if need_x:
                dx[i] = s * gx
            if need_t:
                dt[i] = s * gt


@kernel
def pointwise_loss_backward(dx, dt, x, t, scales, step, kind, p, need_x, need_t):
    """dx[i] = s_i * dloss/dx, dt[i] = s_i * dloss/dt with s_i = scales[i * step]
    (step 0: one upstream scale; 1: one per element), each only when asked
    (``need_x``, ``need_t``; the other may be empty). Overwrites; parallel over chunks."""
    n = x.shape[0]
    chunks = (n + CHUNK - 1) // CHUNK
    if n < SERIAL_BELOW:
        backward_chunks(dx, dt, x, t, scales, step, kind, p, need_x, need_t, chunks - chunks, chunks)
    else:
        for c in prange(chunks):
            backward_chunks(dx, dt, x, t, scales, step, kind, p, need_x, need_t, np.int64(c), c + 1)
