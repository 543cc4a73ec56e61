"""Batch normalisation kernels on x viewed as (N, C, L) (L = H*W, or 1), float32/float64.

Per-channel statistics are summed in float64, serially in a fixed order, by the one
iteration that owns the channel: results are bitwise independent of the thread
count. ``mean``/``invstd`` (float64, (C,)) carry the batch statistics from the
training forward to the backward.

The training forward and the backwards are parallel shells over channels, each
channel a call of a serial kernel of its loops (``noalias_kernel``: the arrays never
overlap). Compiled inside the parallel loop, the same loops cost about 0.2-0.3 CPU s
more (compile CPU s, each with a first parallel compile's fixed cost: training
forward 1.27-1.35 -> 1.03-1.08, backward 0.75 -> 0.60, eval backward 0.89 -> 0.73),
at the same speed.
"""
import math

import numpy as np
from numba import prange

from ._jit import inline, kernel, noalias_kernel


@inline
def _normalize_channel(out, x, c, mu, inv, weight, bias, affine):
    # out[:, c] = (x[:, c] - mu) * inv * weight[c] + bias[c]  (weight 1, bias 0 unless affine)
    scale = x.dtype.type(inv * weight[c] if affine else inv)
    shift = x.dtype.type(bias[c] if affine else 0)
    mu_t = x.dtype.type(mu)
    for n in range(x.shape[0]):
        for i in range(x.shape[2]):
            out[n, c, i] = (x[n, c, i] - mu_t) * scale + shift


@noalias_kernel
def _train_channels(out, mean, invstd, running_mean, running_var, x, weight, bias, eps, momentum, update_running,
                    affine, c0, c1):
    # channels c0..c1 of batch_norm_train_forward
    N, L = x.shape[0], x.shape[2]
    count = N * L
    for c in range(c0, c1):
        s = 0.0
        for n in range(N):
            for i in range(L):
                s += x[n, c, i]
        mu = s / count
        q = 0.0
        for n in range(N):
            for i in range(L):
                d = x[n, c, i] - mu
                q += d * d
        var = q / count
        inv = 1.0 / math.sqrt(var + eps)
        mean[c] = mu
        invstd[c] = inv
        if update_running:
            unbiased = q / (count - 1) if count > 1 else var
            running_mean[c] = (1 - momentum) * running_mean[c] + momentum * mu
            running_var[c] = (1 - momentum) * running_var[c] + momentum * unbiased
        _normalize_channel(out, x, c, mu, inv, weight, bias, affine)


@kernel
def batch_norm_train_forward(out, mean, invstd, running_mean, running_var, x, weight, bias,
                             eps, momentum, update_running, affine):
    """Batch statistics: out = (x - mean_c) * invstd_c * weight_c + bias_c (overwritten),
    mean/invstd (C,) overwritten with the batch mean and 1/sqrt(var + eps).

    With update_running: running_mean = (1 - momentum) * running_mean + momentum * mean,
    running_var likewise with the unbiased variance var * M / (M - 1), M = N * L.
    weight/bias are read only if affine. Parallel over channels.
    """
    for p in prange(x.shape[1]):
        c = np.int64(p)
        _train_channels(out, mean, invstd, running_mean, running_var, x, weight, bias, eps, momentum,
                        update_running, affine, c, c + 1)


@kernel
def batch_norm_eval_forward(out, x, running_mean, running_var, weight, bias, eps, affine):
    """Running statistics: out = (x - running_mean_c) / sqrt(running_var_c + eps)
    * weight_c + bias_c (overwritten). Parallel over (sample, channel) rows."""
    N, C, L = x.shape
    for row in prange(N * C):
        n = row // C
        c = row % C
        inv = 1.0 / math.sqrt(running_var[c] + eps)
        scale = x.dtype.type(inv * weight[c] if affine else inv)
        shift = x.dtype.type(bias[c] if affine else 0)
        mu = x.dtype.type(running_mean[c])
        for i in range(L):
            out[n, c, i] = (x[n, c, i] - mu) * scale + shift


@noalias_kernel
def _backward_channels(dx, dweight, dbias, dout, x, mean, invstd, weight, affine, accumulate_w, accumulate_b,
                       c0, c1):
    # channels c0..c1 of batch_norm_backward
    N, C, L = x.shape
    count = N * L
    for c in range(c0, c1):
        mu = mean[c]
        inv = invstd[c]
        s_dy = 0.0
        s_dyx = 0.0
        for n in range(N):
            for i in range(L):
                g = dout[n, c, i]
                s_dy += g
                s_dyx += g * (x[n, c, i] - mu)
        s_dyxhat = s_dyx * inv
        if affine:
            if accumulate_b:
                dbias[c] += s_dy
            else:
                dbias[c] = s_dy
            if accumulate_w:
                dweight[c] += s_dyxhat
            else:
                dweight[c] = s_dyxhat
        k = inv * weight[c] if affine else inv
        # dx = k * dout - k * inv * mean(dout * xhat) * (x - mu) - k * mean(dout)
        a_t = x.dtype.type(k)
        b_t = x.dtype.type(k * (s_dyxhat / count) * inv)
        c_t = x.dtype.type(k * (s_dy / count))
        mu_t = x.dtype.type(mu)
        for n in range(N):
            for i in range(L):
                dx[n, c, i] = a_t * dout[n, c, i] - b_t * (x[n, c, i] - mu_t) - c_t


@kernel
def batch_norm_backward(dx, dweight, dbias, dout, x, mean, invstd, weight, affine,
                        accumulate_w, accumulate_b):
    """Backward of the batch-statistics forward, with xhat = (x - mean) * invstd:

        dbias_c (+)= sum dout;  dweight_c (+)= sum dout * xhat   (only if affine)
        dx = weight_c * invstd_c * (dout - mean(dout) - xhat * mean(dout * xhat))  (overwritten)

    Sums over n and l of each channel. Parallel over channels.
    """
    for p in prange(x.shape[1]):
        c = np.int64(p)
        _backward_channels(dx, dweight, dbias, dout, x, mean, invstd, weight, affine, accumulate_w, accumulate_b,
                           c, c + 1)


@noalias_kernel
def _eval_backward_channels(dx, dweight, dbias, dout, x, running_mean, running_var, weight, eps, affine, need_dx,
                            need_dw, need_db, accumulate_w, accumulate_b, c0, c1):
    # channels c0..c1 of batch_norm_eval_backward
    N, C, L = dout.shape
    for c in range(c0, c1):
        inv = 1.0 / math.sqrt(running_var[c] + eps)
        if need_dw or need_db:
            mu = running_mean[c]
            s_dy = 0.0
            s_dyx = 0.0
            for n in range(N):
                for i in range(L):
                    g = dout[n, c, i]
                    s_dy += g
                    s_dyx += g * (x[n, c, i] - mu)
            if need_db:
                if accumulate_b:
                    dbias[c] += s_dy
                else:
                    dbias[c] = s_dy
            if need_dw:
                if accumulate_w:
                    dweight[c] += s_dyx * inv
                else:
                    dweight[c] = s_dyx * inv
        if need_dx:
            k = dout.dtype.type(inv * weight[c] if affine else inv)
            for n in range(N):
                for i in range(L):
                    dx[n, c, i] = dout[n, c, i] * k


@kernel
def batch_norm_eval_backward(dx, dweight, dbias, dout, x, running_mean, running_var, weight, eps, affine,
                             need_dx, need_dw, need_db, accumulate_w, accumulate_b):
    """Backward of the running-statistics forward (the statistics are constants), with
    invstd = 1/sqrt(running_var + eps) and xhat = (x - running_mean) * invstd:

        dx = dout * weight_c * invstd_c   (overwritten, if need_dx; weight 1 unless affine)
        dweight_c (+)= sum dout * xhat (if need_dw);  dbias_c (+)= sum dout (if need_db)

    Sums over n and l of each channel, in float64. Parallel over channels.
    """
    for p in prange(x.shape[1]):
        c = np.int64(p)
        _eval_backward_channels(dx, dweight, dbias, dout, x, running_mean, running_var, weight, eps, affine, need_dx,
                                need_dw, need_db, accumulate_w, accumulate_b, c, c + 1)


