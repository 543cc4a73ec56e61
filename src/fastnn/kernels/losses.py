"""Loss kernels: per-chunk or per-row partial results, reduced in a fixed order
by the caller, so a loss value never depends on the thread count."""
import math

import numpy as np
from numba import prange

from ._jit import BLOCK, RUNS, SERIAL_BELOW, inline, kernel, serial_kernel
from .activations import softmax_row
from .elementwise import CHUNK


@kernel
def mse_forward(partials, pred, target):
    """partials[c] = sum over chunk c of (pred - target)^2 (overwrites). Flat inputs."""
    n = pred.shape[0]
    for c in prange(partials.shape[0]):
        s = pred.dtype.type(0)
        p, t = pred[c * CHUNK:min((c + 1) * CHUNK, n)], target[c * CHUNK:min((c + 1) * CHUNK, n)]
        for i in range(p.shape[0]):  # from 0 over views: vectorises
            d = p[i] - t[i]
            s += d * d
        partials[c] = s


@kernel
def mse_backward(dpred, pred, target, scale):
    """dpred = scale * (pred - target), scale = 2 / n (overwrites). Flat."""
    n = pred.shape[0]
    for blk in prange((n + BLOCK - 1) // BLOCK):  # fixed blocks: see _jit.BLOCK
        lo, hi = blk * BLOCK, min(n, (blk + 1) * BLOCK)
        d, p, t = dpred[lo:hi], pred[lo:hi], target[lo:hi]  # views indexed from 0 vectorise
        for i in range(hi - lo):
            d[i] = scale * (p[i] - t[i])


@serial_kernel
def _ce_rows(losses, probs, logits, targets, r0, r1):
    # rows r0..r1 of cross_entropy_forward: one compiled body for both of its branches
    for r in range(r0, r1):
        losses[r] = softmax_row(probs[r], logits[r]) - logits[r, targets[r]]


@kernel
def cross_entropy_forward(losses, probs, logits, targets):
    """Fused log-softmax + NLL per row, stable log-sum-exp.

    losses[r] = logsumexp(logits[r]) - logits[r, t_r]; probs[r] = softmax(logits[r]),
    kept for backward (both overwritten). logits (N, C), targets (N,) int64. Rows run
    serially below SERIAL_BELOW elements (a parallel launch costs more than a
    training batch's rows).
    """
    N = logits.shape[0]
    if logits.size < SERIAL_BELOW:
        _ce_rows(losses, probs, logits, targets, N - N, N)  # (N - N: a variable 0, one compile of the callee)
    else:
        for r in prange(N):
            i = np.int64(r)  # (the prange index is unsigned: one compile of the callee)
            _ce_rows(losses, probs, logits, targets, i, i + 1)


@serial_kernel
def _ce_grad_rows(dlogits, probs, targets, scale, r0, r1):
    # rows r0..r1 of cross_entropy_backward
    for r in range(r0, r1):
        d, p = dlogits[r], probs[r]
        for c in range(p.shape[0]):
            d[c] = scale * p[c]
        d[targets[r]] -= scale


@kernel
def cross_entropy_backward(dlogits, probs, targets, scale):
    """dlogits[r] = scale * (probs[r] - onehot(t_r)), scale = 1/N (overwrites); serial
    below SERIAL_BELOW elements, as the forward."""
    N = probs.shape[0]
    if probs.size < SERIAL_BELOW:
        _ce_grad_rows(dlogits, probs, targets, scale, N - N, N)
    else:
        for r in prange(N):
            i = np.int64(r)
            _ce_grad_rows(dlogits, probs, targets, scale, i, i + 1)


@kernel
def bce_logits_forward(partials, x, target):
    """partials[c] = sum over chunk c of max(x,0) - x*t + log1p(exp(-|x|))."""
    n = x.shape[0]
    for c in prange(partials.shape[0]):
        s = x.dtype.type(0)
        xs, t = x[c * CHUNK:min((c + 1) * CHUNK, n)], target[c * CHUNK:min((c + 1) * CHUNK, n)]
        for i in range(xs.shape[0]):  # from 0 over views: vectorises
            v = xs[i]
            s += max(v, v * 0) - v * t[i] + math.log1p(math.exp(-abs(v)))
        partials[c] = s


@kernel
def bce_logits_backward(dx, x, target, scale):
    """dx = scale * (sigmoid(x) - t), scale = 1/n (overwrites). Flat."""
    n = x.shape[0]
    for blk in prange((n + BLOCK - 1) // BLOCK):  # fixed blocks: see _jit.BLOCK
        lo, hi = blk * BLOCK, min(n, (blk + 1) * BLOCK)
        d, xs, t = dx[lo:hi], x[lo:hi], target[lo:hi]  # views indexed from 0 vectorise
        for i in range(hi - lo):
            v = xs[i]
            if v >= 0:
                sig = 1 / (1 + math.exp(-v))
            else:
                e = math.exp(v)
                sig = e / (1 + e)
            d[i] = scale * (sig - t[i])


# ------------------------------------------------ class weights, ignore_index, smoothing
@serial_kernel
def _ce_full_rows(losses, row_weights, probs, logits, targets, weight, ignore_index, smoothing, r0, r1):
    # rows r0..r1 of cross_entropy_forward_full
    C = logits.shape[1]
    for r in range(r0, r1):
        t = targets[r]
        if t == ignore_index:
            losses[r] = 0
            row_weights[r] = 0
        else:
            x = logits[r]
            lse = softmax_row(probs[r], x)
            loss = (1 - smoothing) * weight[t] * (lse - x[t])
            if smoothing != 0:
                s = lse * 0
                for c in range(C):
                    s += weight[c] * (lse - x[c])
                loss += smoothing / C * s
            losses[r] = loss
            row_weights[r] = weight[t]


@kernel
def cross_entropy_forward_full(losses, row_weights, probs, logits, targets, weight, ignore_index, smoothing):
    """Cross-entropy per row with class ``weight`` (C,), ``ignore_index`` and label smoothing e:

    losses[r] = (1-e) w[t] (lse - x[t]) + e/C sum_c w[c] (lse - x[c]), row_weights[r] = w[t];
    both 0 for a row whose target is ``ignore_index`` (its probs row is left unwritten).
    probs[r] = softmax(logits[r]). All outputs overwritten; parallel over rows, serial
    below SERIAL_BELOW elements (as ``cross_entropy_forward``).
    """
    N = logits.shape[0]
    if logits.size < SERIAL_BELOW:
        _ce_full_rows(losses, row_weights, probs, logits, targets, weight, ignore_index, smoothing, N - N, N)
    else:
        runs = min(N, RUNS)
        for q in prange(runs):
            k = np.int64(q)  # (the prange index is unsigned: one compile of the callee)
            _ce_full_rows(losses, row_weights, probs, logits, targets, weight, ignore_index, smoothing, k * N // runs,
                          (k + 1) * N // runs)


@serial_kernel
def _ce_full_grad_rows(dlogits, probs, targets, weight, weight_total, scales, step, ignore_index, smoothing, r0, r1):
    # rows r0..r1 of cross_entropy_backward_full
    C = probs.shape[1]
    for r in range(r0, r1):
        t = targets[r]
        if t == ignore_index:
            for c in range(C):
                dlogits[r, c] = 0
        else:
            s = scales[r * step]
            a = s * (1 - smoothing) * weight[t]
            b = s * smoothing / C
            k = a + b * weight_total
            for c in range(C):
                dlogits[r, c] = k * probs[r, c] - b * weight[c]
            dlogits[r, t] -= a


@kernel
def cross_entropy_backward_full(dlogits, probs, targets, weight, weight_total, scales, step, ignore_index, smoothing):
    """d/dlogits of cross_entropy_forward_full, scaled by scales[r * step] (step 0: one scale):

    dx[r, c] = s ((1-e) w[t] (p[c] - [c == t]) + e/C (W p[c] - w[c])), W = weight_total = sum(w);
    ignored rows get 0. dlogits (N, C) overwritten; parallel over rows, serial below
    SERIAL_BELOW elements.
    """
    N = probs.shape[0]
    if probs.size < SERIAL_BELOW:
        _ce_full_grad_rows(dlogits, probs, targets, weight, weight_total, scales, step, ignore_index, smoothing,
                           N - N, N)
    else:
        runs = min(N, RUNS)
        for q in prange(runs):
            k = np.int64(q)  # (the prange index is unsigned: one compile of the callee)
            _ce_full_grad_rows(dlogits, probs, targets, weight, weight_total, scales, step, ignore_index, smoothing,
                               k * N // runs, (k + 1) * N // runs)


@serial_kernel
def _soft_rows(losses, lses, mass, probs, logits, target, weight, smoothing, r0, r1):
    # rows r0..r1 of soft_cross_entropy_forward
    C = logits.shape[1]
    for r in range(r0, r1):
        x = logits[r]
        lse = softmax_row(probs[r], x)
        loss = lse * 0
        m = lse * 0
        for c in range(C):
            wq = weight[c] * ((1 - smoothing) * target[r, c] + smoothing / C)
            loss += wq * (lse - x[c])
            m += wq
        losses[r] = loss
        lses[r] = lse
        mass[r] = m


@kernel
def soft_cross_entropy_forward(losses, lses, mass, probs, logits, target, weight, smoothing):
    """Cross-entropy with class probabilities ``target`` (N, C), smoothed to
    q = (1-e) target + e/C:  losses[r] = sum_c w[c] q[c] (lse - x[c]); lses[r] = lse,
    mass[r] = sum_c w[c] q[c] and probs[r] = softmax(x[r]) kept for backward.
    All outputs overwritten; parallel over rows, serial below SERIAL_BELOW elements."""
    N = logits.shape[0]
    if logits.size < SERIAL_BELOW:
        _soft_rows(losses, lses, mass, probs, logits, target, weight, smoothing, N - N, N)
    else:
        runs = min(N, RUNS)
        for q in prange(runs):
            k = np.int64(q)  # (the prange index is unsigned: one compile of the callee)
            _soft_rows(losses, lses, mass, probs, logits, target, weight, smoothing, k * N // runs, (k + 1) * N // runs)


@serial_kernel
def _soft_grad_rows(dlogits, probs, target, weight, mass, scales, step, smoothing, r0, r1):
    # rows r0..r1 of soft_cross_entropy_backward
    C = probs.shape[1]
    for r in range(r0, r1):
        s = scales[r * step]
        k = s * mass[r]
        for c in range(C):
            dlogits[r, c] = k * probs[r, c] - s * weight[c] * ((1 - smoothing) * target[r, c] + smoothing / C)


@kernel
def soft_cross_entropy_backward(dlogits, probs, target, weight, mass, scales, step, smoothing):
    """dx[r, c] = s (mass[r] p[c] - w[c] q[c]), s = scales[r * step] (overwrites);
    parallel over rows, serial below SERIAL_BELOW elements."""
    N = probs.shape[0]
    if probs.size < SERIAL_BELOW:
        _soft_grad_rows(dlogits, probs, target, weight, mass, scales, step, smoothing, N - N, N)
    else:
        runs = min(N, RUNS)
        for q in prange(runs):
            k = np.int64(q)  # (the prange index is unsigned: one compile of the callee)
            _soft_grad_rows(dlogits, probs, target, weight, mass, scales, step, smoothing, k * N // runs,
                            (k + 1) * N // runs)


@inline
def _nll_row(losses, row_weights, logp, targets, weight, ignore_index, r):
    t = targets[r]
    if t == ignore_index:
        losses[r] = 0
        row_weights[r] = 0
    else:
        losses[r] = -weight[t] * logp[r, t]
        row_weights[r] = weight[t]


@kernel
def nll_forward(losses, row_weights, logp, targets, weight, ignore_index):
    """losses[r] = -w[t] logp[r, t], row_weights[r] = w[t]; 0 for ignored rows (overwrites).
    Serial below SERIAL_BELOW elements of logp, else parallel over rows (a body this
    small is inlined in both loops: called by symbol, the parallel gather ran 2.7x slower)."""
    N = logp.shape[0]
    if logp.size < SERIAL_BELOW:
        for r in range(N):
            _nll_row(losses, row_weights, logp, targets, weight, ignore_index, r)
    else:
        for r in prange(N):
            _nll_row(losses, row_weights, logp, targets, weight, ignore_index, r)


@inline
def _nll_grad_row(dlogp, targets, weight, scales, step, ignore_index, r):
    for c in range(dlogp.shape[1]):
        dlogp[r, c] = 0
    t = targets[r]
    if t != ignore_index:
        dlogp[r, t] = -scales[r * step] * weight[t]


@kernel
def nll_backward(dlogp, targets, weight, scales, step, ignore_index):
    """dlogp[r] = -scales[r * step] w[t] onehot(t), 0 for ignored rows (overwrites);
    serial below SERIAL_BELOW elements, else parallel over rows."""
    N = dlogp.shape[0]
    if dlogp.size < SERIAL_BELOW:
        for r in range(N):
            _nll_grad_row(dlogp, targets, weight, scales, step, ignore_index, r)
    else:
        for r in prange(N):
            _nll_grad_row(dlogp, targets, weight, scales, step, ignore_index, r)
