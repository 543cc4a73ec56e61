"""Row normalisation kernels shared by LayerNorm, GroupNorm and InstanceNorm.

Each op views its input as rows x (R, L) and normalises every row by its own mean
and biased variance, then applies an optional affine:

* per column (``per_column``, LayerNorm): weight/bias (L,), y[r, j] = xhat * w[j] + b[j];
* per channel (GroupNorm, InstanceNorm): row r holds K = L // S channels of S
  elements each, channels (r % G) * K ... (r % G) * K + K - 1 of weight/bias (G*K,).
  Without an affine weight/bias are never read (layer_norm then passes G = 1, S = L).

Forward: one sweep per row for the moments (sums of x - x[r, 0] in float64, robust
when the mean is large), one for the output; only mean and rstd (float64, (R,)) are
saved. Backward recomputes xhat = (x - mean) * rstd on the fly. Rows run in parallel;
the parameter gradients go to per-chunk partials (x's dtype; a fixed number of row
chunks, never the thread count) merged serially in chunk order, in float64: results
are bitwise the same at any thread count. Below ``SERIAL_BELOW`` elements everything runs serially.
"""
import math

import numpy as np
from numba import prange

from ._fnptr import call, handle
from ._jit import SERIAL_BELOW, inline, kernel, noalias_kernel, serial_kernel

ROW_BLOCKS = 256  # forward: rows are split into at most this many blocks (one call each)
ROW_CHUNKS = 32  # backward: rows are split into at most this many chunks, each with its own partials
PARTIAL_LIMIT = 1 << 19  # ... and fewer when chunks * P would pass this many partial values
_ZERO = np.int64(0)


@inline
def _row_moments(xr, eps):
    # (mean, 1 / sqrt(var + eps)) of one row, var biased; sums shifted by xr[0] in float64
    L = xr.shape[0]
    shift = 0.0
    if L > 0:
        shift = np.float64(xr[0])
    s1 = 0.0
    s2 = 0.0
    for j in range(L):
        d = xr[j] - shift
        s1 += d
        s2 += d * d
    m = s1 / L
    var = max(s2 / L - m * m, 0.0)
    return shift + m, 1.0 / math.sqrt(var + eps)


@inline
def _forward_row(outr, xr, weight, bias, mu, rstd, c0, S, affine, per_column):
    # outr = (xr - mu) * rstd * w + b, w/b per column or per channel (1 and 0 unless affine)
    mu_t = xr.dtype.type(mu)
    if per_column:
        r_t = xr.dtype.type(rstd)
        for j in range(xr.shape[0]):
            outr[j] = (xr[j] - mu_t) * r_t * weight[j] + bias[j]
    else:
        for k in range(xr.shape[0] // S):
            scale = xr.dtype.type(rstd * weight[c0 + k] if affine else rstd)
            shift = bias[c0 + k] if affine else xr.dtype.type(0)
            for j in range(k * S, k * S + S):
                outr[j] = (xr[j] - mu_t) * scale + shift


@serial_kernel
def _forward_rows(out, mean, rstd, x, weight, bias, lo, hi, G, S, eps, affine, per_column):
    # rows lo..hi-1 of norm_rows_forward (one compiled body for the serial and parallel paths)
    for r in range(lo, hi):
        mu, inv = _row_moments(x[r], eps)
        mean[r] = mu
        rstd[r] = inv
        _forward_row(out[r], x[r], weight, bias, mu, inv, (r % G) * (x.shape[1] // S), S, affine, per_column)


@kernel
def norm_rows_forward(out, mean, rstd, x, weight, bias, groups, spatial, eps, affine, per_column, fn):
    """out = (x - mean_r) * rstd_r * weight + bias (overwritten); mean, rstd (R,) float64
    overwritten with each row's mean and 1 / sqrt(var + eps).

    x, out (R, L) C-contiguous; weight/bias (L,) if per_column, else (C,) read per
    channel (see the module docstring: groups G, spatial S >= 1), only if affine.
    Parallel over blocks of rows. ``fn``: :func:`norm_rows_handle` of these arguments
    (the rows' kernel called through its address, see ``rows_handle``)."""
    R, L = x.shape
    if R * L < SERIAL_BELOW:
        call(fn, (out, mean, rstd, x, weight, bias, _ZERO, R, groups, spatial, eps, affine, per_column))
    else:
        blocks = min(R, ROW_BLOCKS)
        for blk in prange(blocks):
            b = np.int64(blk)
            call(fn, (out, mean, rstd, x, weight, bias, b * R // blocks, (b + 1) * R // blocks, groups, spatial, eps,
                      affine, per_column))


def rows_handle(rows_kernel, args, at):
    """The handle (``_fnptr``) of ``rows_kernel`` for a parallel kernel's ``args``, its
    row bounds inserted at ``at``.

    The forward kernels call their rows' serial kernel through its address, never
    directly: LLVM would inline it and vectorise its sums anew for each caller (a
    reduction's lanes follow the context), so the same row would round differently
    in the batch's kernel and in a fused block that normalises one sequence's rows
    (``kernels.encoder``). Called through one address, it is one machine code."""
    return handle(rows_kernel, args[:at] + (0, 0) + args[at:])


def norm_rows_handle(out, mean, rstd, x, weight, bias, groups, spatial, eps, affine, per_column):
    """``fn`` for :func:`norm_rows_forward` with these arguments (their types, not values)."""
    return rows_handle(_forward_rows, (out, mean, rstd, x, weight, bias, groups, spatial, eps, affine, per_column), 6)


@inline
def _sum_at(xr, yr, ybias, j, has_ybias):
    # x + (y + ybias): the residual add of a Linear's output whose bias was left out
    if has_ybias:
        return xr[j] + (yr[j] + ybias[j])
    return xr[j] + yr[j]


@serial_kernel
def _add_forward_rows(out, total, x, y, ybias, weight, bias, lo, hi, eps, keep_sum, has_ybias):
    # rows lo..hi-1 of add_norm_rows_forward: _row_moments and _forward_row's arithmetic
    # on t = x + y, recomputed in each sweep (no store-then-load of the sum)
    L = x.shape[1]
    for r in range(lo, hi):
        xr = x[r]
        yr = y[r]
        shift = np.float64(_sum_at(xr, yr, ybias, 0, has_ybias))
        s1 = 0.0
        s2 = 0.0
        for j in range(L):
            d = _sum_at(xr, yr, ybias, j, has_ybias) - shift
            s1 += d
            s2 += d * d
        m = s1 / L
        mu_t = xr.dtype.type(shift + m)
        r_t = xr.dtype.type(1.0 / math.sqrt(max(s2 / L - m * m, 0.0) + eps))
        outr = out[r]
        for j in range(L):
            outr[j] = (_sum_at(xr, yr, ybias, j, has_ybias) - mu_t) * r_t * weight[j] + bias[j]
        if keep_sum:
            tr = total[r]
            for j in range(L):
                tr[j] = _sum_at(xr, yr, ybias, j, has_ybias)


@kernel
def add_norm_rows_forward(out, total, x, y, ybias, weight, bias, eps, keep_sum, has_ybias, fn):
    """out = LayerNorm(x + y) per row, weight/bias (L,) per column, and total = x + y
    if keep_sum (both overwritten); with has_ybias, y + ybias (L,) in place of y (a
    Linear's output whose bias was left out of its GEMM). A transformer block's
    residual add and LayerNorm in one pass, the arithmetic of the bias, ``add`` and
    ``norm_rows_forward`` (no mean/rstd kept: inference; equal within rounding: the
    sums may vectorise differently).

    All (R, L) C-contiguous, L >= 1 (``total`` is not touched unless keep_sum).
    Parallel over blocks of rows. ``fn``: :func:`add_norm_handle` of these arguments
    (see ``rows_handle``)."""
    R, L = x.shape
    if R * L < SERIAL_BELOW:
        call(fn, (out, total, x, y, ybias, weight, bias, _ZERO, R, eps, keep_sum, has_ybias))
    else:
        blocks = min(R, ROW_BLOCKS)
        for blk in prange(blocks):
            b = np.int64(blk)
            call(fn, (out, total, x, y, ybias, weight, bias, b * R // blocks, (b + 1) * R // blocks, eps, keep_sum,
                      has_ybias))


def add_norm_handle(out, total, x, y, ybias, weight, bias, eps, keep_sum, has_ybias):
    """``fn`` for :func:`add_norm_rows_forward` with these arguments (their types)."""
    return rows_handle(_add_forward_rows, (out, total, x, y, ybias, weight, bias, eps, keep_sum, has_ybias), 7)


@inline
def _row_sums(pw, pb, gr, xr, weight, mu, rstd, c0, S, affine, per_column, need_params):
    # (sum dxhat, sum dxhat * (x - mu)) over the row, dxhat = dout * w; adds the row's
    # dweight (dout * xhat) and dbias (dout) terms into the partial rows pw, pb.
    # Per column, the sums run in x's dtype (float32 vectors: twice as fast; the row and
    # chunk sums are short), per channel in float64 (a channel may hold many elements).
    mu_t = xr.dtype.type(mu)
    s1 = 0.0
    s2 = 0.0
    if per_column:
        a1 = xr.dtype.type(0)
        a2 = xr.dtype.type(0)
        if need_params:
            r_t = xr.dtype.type(rstd)
            for j in range(xr.shape[0]):
                g = gr[j]
                gd = g * (xr[j] - mu_t)
                a1 += g * weight[j]
                a2 += gd * weight[j]
                pw[j] += gd * r_t
                pb[j] += g
        else:
            for j in range(xr.shape[0]):
                g = gr[j] * weight[j]
                a1 += g
                a2 += g * (xr[j] - mu_t)
        s1 = np.float64(a1)
        s2 = np.float64(a2)
    else:
        for k in range(xr.shape[0] // S):
            t1 = 0.0
            t2 = 0.0
            for j in range(k * S, k * S + S):
                g = gr[j]
                t1 += g
                t2 += g * (xr[j] - mu_t)
            if affine:
                w = weight[c0 + k]
                s1 += w * t1
                s2 += w * t2
                if need_params:
                    pw[c0 + k] += t2 * rstd
                    pb[c0 + k] += t1
            else:
                s1 += t1
                s2 += t2
    return s1, s2


@inline
def _put(target, i, value, accumulate):
    if accumulate:
        target[i] += value
    else:
        target[i] = value


@inline
def _dx_row(dxr, gr, xr, weight, mu, rstd, s1, s2, c0, S, affine, per_column, accumulate):
    # dx (+)= rstd * dxhat - rstd^3 * s2 / L * (x - mu) - rstd * s1 / L
    # (the forward: xhat = (x - mu) * rstd, out = xhat * w + b, with mu and rstd of x)
    L = xr.shape[0]
    mu_t = xr.dtype.type(mu)
    b = xr.dtype.type(-rstd * rstd * rstd * s2 / L)
    c = xr.dtype.type(-rstd * s1 / L)
    if per_column:
        r_t = xr.dtype.type(rstd)
        for j in range(L):
            _put(dxr, j, r_t * weight[j] * gr[j] + b * (xr[j] - mu_t) + c, accumulate)
    else:
        for k in range(L // S):
            a = xr.dtype.type(rstd * weight[c0 + k] if affine else rstd)
            for j in range(k * S, k * S + S):
                _put(dxr, j, a * gr[j] + b * (xr[j] - mu_t) + c, accumulate)


@serial_kernel
def _backward_chunk(dx, partial, dout, x, mean, rstd, weight, ch, chunks, G, S, affine, per_column,
                    need_dx, need_params, accumulate_x):
    # rows of chunk ch: their dx, and their parameter-gradient terms into partial[ch]
    R, L = x.shape
    pw = partial[ch, 0]
    pb = partial[ch, 1]
    for r in range(ch * R // chunks, (ch + 1) * R // chunks):
        c0 = (r % G) * (L // S)
        s1, s2 = _row_sums(pw, pb, dout[r], x[r], weight, mean[r], rstd[r], c0, S, affine, per_column,
                           need_params)
        if need_dx:
            _dx_row(dx[r], dout[r], x[r], weight, mean[r], rstd[r], s1, s2, c0, S, affine, per_column,
                    accumulate_x)


@inline
def _store(target, values, accumulate):
    for p in range(values.shape[0]):
        _put(target, p, values[p], accumulate)


@noalias_kernel
def _merge_partials(dweight, dbias, partial, accumulate_w, accumulate_b):
    # dweight, dbias (+)= the chunks' partial sums, added in chunk order in float64. A
    # kernel of its own: in norm_rows_backward's parallel shell these loops cost about
    # 0.3 compile CPU s more (a LayerNorm's first backward 2.67-2.77 -> 2.29-2.47 s)
    P = partial.shape[2]
    total = np.zeros((2, P), np.float64)
    for ch in range(partial.shape[0]):
        for i in range(2):
            for p in range(P):
                total[i, p] += partial[ch, i, p]
    _store(dweight, total[0], accumulate_w)
    _store(dbias, total[1], accumulate_b)


@kernel
def norm_rows_backward(dx, dweight, dbias, dout, x, mean, rstd, weight, groups, spatial, affine,
                       per_column, need_dx, need_params, accumulate_x, accumulate_w, accumulate_b, fn):
    """Backward of ``norm_rows_forward`` from the saved mean and rstd (R,):

        dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dout * w
            (if need_dx; accumulated if accumulate_x; all (R, L) C-contiguous)
        dweight (+)= sum dout * xhat; dbias (+)= sum dout, per column or per channel
            (if affine and need_params; accumulated if accumulate_w / accumulate_b)

    Parallel over fixed row chunks with partials (x's dtype), merged serially in float64.
    ``fn``: :func:`backward_handle` of these arguments, ``_backward_chunk`` called
    through its address, so its body is not compiled again in here (``_fnptr``)."""
    R, L = x.shape
    P = 0
    if affine and need_params:
        P = dweight.shape[0]
    chunks = max(1, min(R, ROW_CHUNKS, PARTIAL_LIMIT // max(P, 1)))
    partial = np.zeros((chunks, 2, P), x.dtype)
    if R * L < SERIAL_BELOW:
        for ch in range(chunks):
            call(fn, (dx, partial, dout, x, mean, rstd, weight, ch, chunks, groups, spatial, affine, per_column,
                      need_dx, need_params, accumulate_x))
    else:
        for c in prange(chunks):
            call(fn, (dx, partial, dout, x, mean, rstd, weight, np.int64(c), chunks, groups, spatial, affine,
                      per_column, need_dx, need_params, accumulate_x))
    if P > 0:
        _merge_partials(dweight, dbias, partial, accumulate_w, accumulate_b)


def backward_handle(dx, dweight, dbias, dout, x, mean, rstd, weight, groups, spatial, affine, per_column, need_dx,
                    need_params, accumulate_x):
    """``fn`` for :func:`norm_rows_backward` with these arguments (their types, not values)."""
    partial = _PARTIAL.get(x.dtype)
    if partial is None:
        partial = _PARTIAL[x.dtype] = np.zeros((1, 2, 1), x.dtype)  # (stands for the kernel's own partials)
    return handle(_backward_chunk, (dx, partial, dout, x, mean, rstd, weight, 0, 0, groups, spatial, affine,
                                    per_column, need_dx, need_params, accumulate_x))


_PARTIAL = {}
