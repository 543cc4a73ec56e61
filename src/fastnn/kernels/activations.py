"""Activation kernels, forward and backward, on flat contiguous arrays.

One kernel per direction covers every pointwise activation, selected by an int
``kind`` (the constants below): the branch is loop-invariant, so LLVM hoists it
and each case compiles to its own vectorised loop, while CI compiles one kernel
per dtype instead of six. The further kinds (``RELU6`` and up: ELU, SELU, the tanh
GELU, SiLU, Mish, Softplus, the hard ones, ...) have loops of their own. Every kind
runs in serial kernels (``forward_block``/``backward_block``, and ``extra_`` ones for
the further kinds) that parallel shells call per block: their code is compiled once
per dtype (not inlined into both the serial and the parallel branch, which more than
doubled the compile time). ``activation_forward``/``activation_backward`` pick the
shell in Python, so a model that uses only the first kinds never compiles the further
kinds' code, and the layer kernels that inline ``_forward_range`` for their epilogue
do not grow with them.
"""
import math

import numpy as np
from numba import prange

from ._jit import BLOCK, SERIAL_BELOW, inline, kernel, linked_kernel, serial_kernel

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
def _positive_or_times(out, x, s):
    # out[i] = x[i] if x[i] > 0 else x[i] * s. In place (out is x) a loop over one array:
    # LLVM's run-time overlap check would send out is x to its scalar loop (3x slower)
    if out.ctypes.data == x.ctypes.data:
        for i in range(out.shape[0]):
            v = out[i]
            out[i] = v if v > 0 else v * s
    else:
        for i in range(out.shape[0]):
            v = x[i]
            out[i] = v if v > 0 else v * s


@inline
def _forward_range(out, x, kind, slope):
    # out[i] = act(x[i]) on 1-D views of one length. The kind switch sits outside the
    # loops: LLVM does not unswitch it from a generic loop, which then does not
    # vectorise (ReLU ran 16x slower than numpy.maximum that way). Loops run from 0
    # over views: an index range starting at an unknown offset does not vectorise
    # either (Numba's negative-index wraparound check stays in the loop).
    if kind == RELU:
        _positive_or_times(out, x, out.dtype.type(0))  # (0 of out's type: the loop stays in it)
    elif kind == LEAKY_RELU:
        _positive_or_times(out, x, slope)
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


# ------------------------------------------------------------------ the further kinds
# RELU6 clamps to [0, slope] (ReLU6: slope 6); ELU uses slope as alpha; SOFTPLUS reads
# beta * x and uses slope as the threshold (the caller scales by beta). The rest take
# no parameter. Formulas follow PyTorch's CPU kernels term by term.
RELU6, ELU, SELU, GELU_TANH, SILU, MISH, SOFTPLUS = 6, 7, 8, 9, 10, 11, 12
HARDSIGMOID, HARDSWISH, LOGSIGMOID, SOFTSIGN, TANHSHRINK = 13, 14, 15, 16, 17
FIRST_EXTRA = RELU6
_SELU_SCALE = 1.0507009873554804934193349852946
_SELU_NEG = 1.6732632423543772848170429916717 * 1.0507009873554804934193349852946  # alpha * scale
_GELU_BETA = 0.7978845608028654  # sqrt(2 / pi)
_GELU_KAPPA = 0.044715


@inline
def _extra_one(v, kind, p):
    if kind == ELU:
        return v if v > 0 else p * math.expm1(v)
    if kind == SELU:
        return v * _SELU_SCALE if v > 0 else _SELU_NEG * math.expm1(v)
    if kind == GELU_TANH:
        return 0.5 * v * (1 + math.tanh(_GELU_BETA * (v + _GELU_KAPPA * (v * v * v))))
    if kind == SILU:
        return v / (1 + math.exp(-v))
    if kind == MISH:
        return v * math.tanh(math.log1p(math.exp(v)))
    if kind == SOFTPLUS:
        return v if v > p else math.log1p(math.exp(v))
    if kind == LOGSIGMOID:
        return (v if v < 0 else 0.0) - math.log1p(math.exp(-abs(v)))
    if kind == SOFTSIGN:
        return v / (1 + abs(v))
    if kind == TANHSHRINK:
        return v - math.tanh(v)
    return v


@inline
def _extra_grad(v, kind, p):
    # d act(v) / dv for the kinds of _extra_one
    if kind == ELU:
        return 1.0 if v > 0 else p * math.exp(v)
    if kind == SELU:
        return _SELU_SCALE if v > 0 else _SELU_NEG * math.exp(v)
    if kind == GELU_TANH:
        v2 = v * v
        t = math.tanh(_GELU_BETA * (v + _GELU_KAPPA * (v2 * v)))
        return 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * (_GELU_BETA * (1 + 3 * _GELU_KAPPA * v2))
    if kind == SILU:
        s = 1 / (1 + math.exp(-v))
        return s * (1 + v * (1 - s))
    if kind == MISH:
        s = 1 / (1 + math.exp(-v))
        t = math.tanh(math.log1p(math.exp(v)))
        return t + v * s * (1 - t * t)
    if kind == SOFTPLUS:
        if v > p:
            return 1.0
        z = math.exp(v)
        return z / (z + 1)
    if kind == LOGSIGMOID:
        z = math.exp(-abs(v))
        return 1 - z / (1 + z) if v < 0 else z / (1 + z)
    if kind == SOFTSIGN:
        d = 1 + abs(v)
        return 1 / (d * d)
    if kind == TANHSHRINK:
        t = math.tanh(v)
        return t * t
    return 1.0


@inline
def _extra_forward_range(out, x, kind, p):
    # the cheap clamps get their own loops (they vectorise); the rest share one
    if kind == RELU6:
        for i in range(out.shape[0]):
            v = x[i]
            out[i] = 0.0 if v <= 0 else (p if v >= p else v)
    elif kind == HARDSIGMOID:  # min(max(v + 3, 0), 6) / 6
        for i in range(out.shape[0]):
            t = x[i] + 3
            out[i] = 0.0 if t <= 0 else (1.0 if t >= 6 else t / 6)
    elif kind == HARDSWISH:  # v * min(max(v + 3, 0), 6) / 6
        for i in range(out.shape[0]):
            v = x[i]
            t = v + 3
            out[i] = v * (0.0 if t <= 0 else (6.0 if t >= 6 else t)) / 6
    else:
        for i in range(out.shape[0]):
            out[i] = _extra_one(x[i], kind, p)


@inline
def _extra_backward_range(dx, dout, x, kind, p):
    if kind == RELU6:  # as PyTorch's hardtanh: no gradient at the corners
        for i in range(dx.shape[0]):
            v = x[i]
            dx[i] = dout[i] if v > 0 and v < p else 0.0
    elif kind == HARDSIGMOID:
        for i in range(dx.shape[0]):
            v = x[i]
            dx[i] = dout[i] * (1.0 / 6.0) if v > -3 and v < 3 else 0.0
    elif kind == HARDSWISH:
        for i in range(dx.shape[0]):
            v = x[i]
            dx[i] = 0.0 if v < -3 else (dout[i] * (v / 3 + 0.5) if v <= 3 else dout[i])
    else:
        for i in range(dx.shape[0]):
            dx[i] = dout[i] * _extra_grad(x[i], kind, p)


@linked_kernel
def forward_block(out, x, kind, slope, lo, hi):
    """out[lo:hi] = act(x[lo:hi]) for a kind below FIRST_EXTRA. A kernel of its own,
    called by both branches of its parallel shell (and per block in its parallel loop),
    so its code is compiled once per dtype instead of once per branch."""
    _forward_range(out[lo:hi], x[lo:hi], kind, slope)


@linked_kernel
def extra_forward_block(out, x, kind, slope, lo, hi):
    """forward_block for the further kinds (RELU6 and up)."""
    _extra_forward_range(out[lo:hi], x[lo:hi], kind, slope)


@linked_kernel
def backward_block(dx, dout, x, y, kind, slope, lo, hi):
    """dx[lo:hi] = dout * act'(x) on [lo, hi) for a kind below FIRST_EXTRA (see
    forward_block)."""
    _backward_range(dx[lo:hi], dout[lo:hi], x[lo:hi], y[lo:hi], kind, slope)


@linked_kernel
def extra_backward_block(dx, dout, x, y, kind, slope, lo, hi):
    """backward_block for the further kinds, which differentiate from their input x."""
    _extra_backward_range(dx[lo:hi], dout[lo:hi], x[lo:hi], kind, slope)


# The parallel shells: one over the first kinds' blocks and one over the further
# kinds', picked in Python, so that a model using only the first kinds (ReLU, say)
# never compiles the further kinds' code (the mlp demo, cold: the four activation
# kernels 4.9 -> 3.1 CPU s).
@kernel
def _forward(out, x, kind, slope):
    n = x.shape[0]
    if n < SERIAL_BELOW:
        forward_block(out, x, kind, slope, n - n, n)  # (n - n: a variable 0, one compile of the callee)
    else:
        for blk in prange((n + BLOCK - 1) // BLOCK):  # fixed blocks: see _jit.BLOCK
            forward_block(out, x, kind, slope, blk * BLOCK, min(n, (blk + 1) * BLOCK))


@kernel
def _extra_forward(out, x, kind, slope):
    n = x.shape[0]
    if n < SERIAL_BELOW:
        extra_forward_block(out, x, kind, slope, n - n, n)
    else:
        for blk in prange((n + BLOCK - 1) // BLOCK):
            extra_forward_block(out, x, kind, slope, blk * BLOCK, min(n, (blk + 1) * BLOCK))


@kernel
def _backward(dx, dout, x, y, kind, slope):
    n = dout.shape[0]
    if n < SERIAL_BELOW:
        backward_block(dx, dout, x, y, kind, slope, n - n, n)
    else:
        for blk in prange((n + BLOCK - 1) // BLOCK):
            backward_block(dx, dout, x, y, kind, slope, blk * BLOCK, min(n, (blk + 1) * BLOCK))


@kernel
def _extra_backward(dx, dout, x, y, kind, slope):
    n = dout.shape[0]
    if n < SERIAL_BELOW:
        extra_backward_block(dx, dout, x, y, kind, slope, n - n, n)
    else:
        for blk in prange((n + BLOCK - 1) // BLOCK):
            extra_backward_block(dx, dout, x, y, kind, slope, blk * BLOCK, min(n, (blk + 1) * BLOCK))


def activation_forward(out, x, kind, slope):
    """out[i] = act(x[i]) (overwrites out; out may be x): flat contiguous arrays of one
    dtype. Parallel over elements."""
    (_extra_forward if kind >= FIRST_EXTRA else _forward)(out, x, kind, slope)


def activation_backward(dx, dout, x, y, kind, slope):
    """dx[i] = dout[i] * act'(x[i]) (overwrites dx), using x and/or y = act(x).
    For ReLU, LeakyReLU with a slope >= 0, Sigmoid and Tanh, x may be y; the
    further kinds (RELU6 and up) need x."""
    (_extra_backward if kind >= FIRST_EXTRA else _backward)(dx, dout, x, y, kind, slope)


@inline
def activation_row(row, kind, slope):
    # row = act(row) in place on one 1-D row, for the epilogues of layer kernels: a call
    # of forward_block (typed once per dtype), not its loops inlined here: inlined, they
    # were most of the compile time of each kernel that has such an epilogue
    if kind != IDENTITY:
        n = row.shape[0]
        forward_block(row, row, kind, slope, n - n, n)  # (n - n: a variable 0, one compile)


@inline
def bias_activation_row(row, bias, kind, slope, has_bias):
    # row[j] = act(row[j] + bias[j]) on one 1-D row
    if has_bias:
        for j in range(row.shape[0]):
            row[j] += bias[j]
    activation_row(row, kind, slope)


@serial_kernel
def _bias_activation_rows(out, bias, kind, slope, has_bias, r0, r1):
    # rows r0..r1 of bias_activation_forward: one compiled body for both of its branches
    for i in range(r0, r1):
        bias_activation_row(out[i], bias, kind, slope, has_bias)


@kernel
def bias_activation_forward(out, bias, kind, slope, has_bias):
    """out[i, j] = act(out[i, j] + bias[j]) in place: the epilogue of Linear.

    out (M, N); bias (N,) (ignored unless has_bias). Parallel over rows.
    """
    M, N = out.shape
    if M * N < SERIAL_BELOW:
        _bias_activation_rows(out, bias, kind, slope, has_bias, M - M, M)
    else:
        for r in prange(M):
            i = np.int64(r)  # (the prange index is unsigned: one compile of the callee)
            _bias_activation_rows(out, bias, kind, slope, has_bias, i, i + 1)


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
