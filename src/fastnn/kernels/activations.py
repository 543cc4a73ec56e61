"""Activation kernels, forward and backward, on flat contiguous arrays.

One kernel per direction covers every pointwise activation, selected by an int
``kind`` (the constants below): the branch is loop-invariant, so LLVM hoists it
and each case compiles to its own vectorised loop, while CI compiles one kernel
per dtype instead of six.
"""
import math

from numba import prange

from ._jit import BLOCK, SERIAL_BELOW, inline, kernel

IDENTITY, RELU, LEAKY_RELU, SIGMOID, TANH, GELU = 0, 1, 2, 3, 4, 5
_INV_SQRT2 = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327


@inline
def _forward_one(v, kind, slope):
    if kind == RELU:
        return v if v > 0 else v * 0
    if kind == LEAKY_RELU:
        return v if v > 0 else v * slope
    if kind == SIGMOID:
        # stable for large |v|: exp of a non-positive number only
        if v >= 0:
            return 1 / (1 + math.exp(-v))
        e = math.exp(v)
        return e / (1 + e)
    if kind == TANH:
        return math.tanh(v)
    if kind == GELU:
        return 0.5 * v * (1 + math.erf(v * _INV_SQRT2))
    return v


@inline
def _backward_one(g, v, y, kind, slope):
    # g: upstream gradient, v: forward input, y: forward output
    if kind == RELU:
        return g if v > 0 else g * 0
    if kind == LEAKY_RELU:
        return g if v > 0 else g * slope
    if kind == SIGMOID:
        return g * y * (1 - y)
    if kind == TANH:
        return g * (1 - y * y)
    if kind == GELU:
        cdf = 0.5 * (1 + math.erf(v * _INV_SQRT2))
        return g * (cdf + v * _INV_SQRT_2PI * math.exp(-0.5 * v * v))
    return g


@inline
def _forward_range(out, x, kind, slope):
    # out[i] = act(x[i]) on 1-D views of one length. The kind switch sits outside the
    # loops: LLVM does not unswitch it from a generic loop, which then does not
    # vectorise (ReLU ran 16x slower than numpy.maximum that way). Loops run from 0
    # over views: an index range starting at an unknown offset does not vectorise
    # either (Numba's negative-index wraparound check stays in the loop).
    if kind == RELU:
        for i in range(out.shape[0]):
            v = x[i]
            out[i] = v if v > 0 else v * 0
    elif kind == LEAKY_RELU:
        for i in range(out.shape[0]):
            v = x[i]
            out[i] = v if v > 0 else v * slope
    elif kind == SIGMOID:
        for i in range(out.shape[0]):
            out[i] = _forward_one(x[i], SIGMOID, slope)
    elif kind == TANH:
        for i in range(out.shape[0]):
            out[i] = math.tanh(x[i])
    elif kind == GELU:
        for i in range(out.shape[0]):
            out[i] = _forward_one(x[i], GELU, slope)
    else:
        for i in range(out.shape[0]):
            out[i] = x[i]


@inline
def _backward_range(dx, dout, x, y, kind, slope):
    # dx[i] = dout[i] * act'(x[i]) on 1-D views; one loop per kind from 0, as above
    if kind == RELU:
        for i in range(dx.shape[0]):
            dx[i] = dout[i] if x[i] > 0 else dout[i] * 0
    elif kind == LEAKY_RELU:
        for i in range(dx.shape[0]):
            dx[i] = dout[i] if x[i] > 0 else dout[i] * slope
    elif kind == SIGMOID:
        for i in range(dx.shape[0]):
            dx[i] = dout[i] * y[i] * (1 - y[i])
    elif kind == TANH:
        for i in range(dx.shape[0]):
            dx[i] = dout[i] * (1 - y[i] * y[i])
    elif kind == GELU:
        for i in range(dx.shape[0]):
            dx[i] = _backward_one(dout[i], x[i], y[i], GELU, slope)
    else:
        for i in range(dx.shape[0]):
            dx[i] = dout[i]


@kernel
def activation_forward(out, x, kind, slope):
    """out[i] = act(x[i]) (overwrites out; out may be x). Parallel over elements."""
    n = x.shape[0]
    if n < SERIAL_BELOW:
        _forward_range(out, x, kind, slope)
    else:
        for blk in prange((n + BLOCK - 1) // BLOCK):  # fixed blocks: see _jit.BLOCK
            lo, hi = blk * BLOCK, min(n, (blk + 1) * BLOCK)
            _forward_range(out[lo:hi], x[lo:hi], kind, slope)


@kernel
def activation_backward(dx, dout, x, y, kind, slope):
    """dx[i] = dout[i] * act'(x[i]) (overwrites dx), using x and/or y = act(x).
    For ReLU, LeakyReLU with a slope >= 0, Sigmoid and Tanh, x may be y."""
    n = dout.shape[0]
    if n < SERIAL_BELOW:
        _backward_range(dx, dout, x, y, kind, slope)
    else:
        for blk in prange((n + BLOCK - 1) // BLOCK):  # fixed blocks: see _jit.BLOCK
            lo, hi = blk * BLOCK, min(n, (blk + 1) * BLOCK)
            _backward_range(dx[lo:hi], dout[lo:hi], x[lo:hi], y[lo:hi], kind, slope)


@inline
def bias_activation_row(row, bias, kind, slope, has_bias):
    # row[j] = act(row[j] + bias[j]) on one 1-D row
    if has_bias:
        for j in range(row.shape[0]):
            row[j] += bias[j]
    if kind != IDENTITY:
        _forward_range(row, row, kind, slope)


@kernel
def bias_activation_forward(out, bias, kind, slope, has_bias):
    """out[i, j] = act(out[i, j] + bias[j]) in place: the epilogue of Linear.

    out (M, N); bias (N,) (ignored unless has_bias). Parallel over rows.
    """
    M, N = out.shape
    if M * N < SERIAL_BELOW:
        for i in range(M):
            bias_activation_row(out[i], bias, kind, slope, has_bias)
    else:
        for i in prange(M):
            bias_activation_row(out[i], bias, kind, slope, has_bias)


@inline
def softmax_row(out, x):
    # out = softmax(x) for one row (1-D views), shifted by the max for stability;
    # returns logsumexp(x), which the fused cross-entropy needs.
    m = x[0]
    for c in range(1, x.shape[0]):
        if x[c] > m:
            m = x[c]
    s = x.dtype.type(0)
    for c in range(x.shape[0]):
        e = math.exp(x[c] - m)
        out[c] = e
        s += e
    inv = 1 / s
    for c in range(x.shape[0]):
        out[c] *= inv
    return math.log(s) + m
