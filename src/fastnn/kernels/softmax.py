"""Softmax and log-softmax over the rows of a 2-D array, forward and backward.

The operations (``fastnn.ops.softmax_ops``) move the softmax dim last and view the data
as rows (R, C). One kernel per direction covers both functions, chosen by the
``log`` flag (loop-invariant, so each case compiles to its own loop). Parallel
over rows (each thread owns its rows), serial below ``SERIAL_BELOW`` elements.
"""
import math

import numpy as np
from numba import prange

from ._jit import SERIAL_BELOW, inline, kernel, serial_kernel
from .activations import softmax_row


@inline
def log_softmax_row(out, x):
    # out = x - logsumexp(x) for one row (1-D views), shifted by the max for
    # stability; returns logsumexp(x). out may be x.
    m = x[0]
    for c in range(1, x.shape[0]):
        if x[c] > m:
            m = x[c]
    s = x.dtype.type(0)
    for c in range(x.shape[0]):
        s += math.exp(x[c] - m)
    lse = math.log(s) + m
    for c in range(x.shape[0]):
        out[c] = x[c] - lse
    return lse


@inline
def _forward_row(out, x, log):
    if log:
        log_softmax_row(out, x)
    else:
        softmax_row(out, x)


@inline
def _backward_row(dx, dout, y, log):
    # softmax:     dx = y * (dout - <dout, y>)
    # log_softmax: dx = dout - exp(y) * sum(dout)     (y = log_softmax(x))
    acc = y.dtype.type(0)
    if log:
        for c in range(y.shape[0]):
            acc += dout[c]
        for c in range(y.shape[0]):
            dx[c] = dout[c] - math.exp(y[c]) * acc
    else:
        for c in range(y.shape[0]):
            acc += dout[c] * y[c]
        for c in range(y.shape[0]):
            dx[c] = y[c] * (dout[c] - acc)


@serial_kernel
def _forward_rows(out, x, log, r0, r1):
    # rows r0..r1 of softmax_rows_forward: one compiled body for both of its branches
    for r in range(r0, r1):
        _forward_row(out[r], x[r], log)


@serial_kernel
def _backward_rows(dx, dout, y, log, r0, r1):
    # rows r0..r1 of softmax_rows_backward (see _forward_rows)
    for r in range(r0, r1):
        _backward_row(dx[r], dout[r], y[r], log)


@kernel
def softmax_rows_forward(out, x, log):
    """out[r] = softmax(x[r]), or log_softmax(x[r]) if ``log`` (overwrites out).

    x, out (R, C) C-contiguous, C >= 1. Parallel over rows."""
    R, C = x.shape
    if R * C < SERIAL_BELOW:
        _forward_rows(out, x, log, R - R, R)
    else:
        for r in prange(R):
            i = np.int64(r)  # (the prange index is unsigned: one compile of the callee)
            _forward_rows(out, x, log, i, i + 1)


@kernel
def softmax_rows_backward(dx, dout, y, log):
    """dx from the upstream dout and the forward output y (softmax, or log_softmax
    if ``log``); overwrites dx. All (R, C) C-contiguous. Parallel over rows."""
    R, C = y.shape
    if R * C < SERIAL_BELOW:
        _backward_rows(dx, dout, y, log, R - R, R)
    else:
        for r in prange(R):
            i = np.int64(r)
            _backward_rows(dx, dout, y, log, i, i + 1)
