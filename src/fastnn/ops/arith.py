"""Differentiable elementwise arithmetic with NumPy broadcasting: + - * / **, unary
math, clamp, maximum/minimum, where, masked_fill, dtype conversion and clone.

Generic elementwise work runs in NumPy (one vectorised pass each, no kernel
launch: the per-op cost is a few attribute checks and one ufunc); gradients are
summed back over broadcast dimensions and cast to the input's dtype. Dtypes follow
PyTorch (see ``ops.broadcasting``). Matrix products live in ``ops.products`` and the
non-differentiable comparisons and rounding in ``ops.compare``; both are
re-exported here, so ``fastnn.matmul`` and ``fastnn.eq`` exist.
"""
import math

import numpy as np

from .._planstate import plan_state
from ..kernels._jit import SERIAL_BELOW
from ..kernels.elementwise import add as add_kernel
from . import compare, products
from ._util import Tensor, _wrap, as_tensor, attach, float_tensor, recording
from .broadcasting import apply2, compute, float_result, needs, operand, operands, reduce_grad, spec
from .compare import *  # noqa: F401,F403
from .products import *  # noqa: F401,F403

__all__ = ["add", "sub", "mul", "div", "true_divide", "neg", "negative", "pow", "exp", "log", "sqrt",
           "multiply", "subtract", "divide", "abs", "absolute", "log1p", "log2", "log10", "rsqrt", "sin", "cos",
           "square", "reciprocal", "clamp", "clip", "maximum", "minimum", "where", "masked_fill", "to_dtype",
           "clone"] + compare.__all__ + products.__all__

_LN2, _LN10 = math.log(2.0), math.log(10.0)


def _binary(input, other, ufunc, op):  # noqa: A002
    a, b, ad, bd = operands(input, other)
    return a, b, ad, bd, apply2(ufunc, op, ad, bd)


def _record(res, a, b, grads, name, saved=False):
    """Attach ``res = op(a, b)``; ``grads(g, need_a, need_b)`` gives the full-size
    gradients, summed here over broadcast dims and cast to each input's dtype."""
    na, nb = needs(a), needs(b)
    sa = spec(a) if na else None
    sb = spec(b) if nb else None

    def backward(g):
        da, db = grads(g, na, nb)
        return (reduce_grad(da, *sa) if na else None), (reduce_grad(db, *sb) if nb else None)

    if saved:  # the Tensor operands, whose in-place change before backward must raise
        saved = (a, b) if isinstance(a, Tensor) and isinstance(b, Tensor) else (a,) if isinstance(a, Tensor) else (b,)
    attach(res, backward, (a, b), name, saved=saved or ())
    return res


def _large_same_shape(ad, bd):
    """Two float arrays of one shape, dtype and C layout, big enough that the
    parallel ``elementwise.add`` kernel beats NumPy's single-threaded add (a residual
    connection's sum)."""
    return (type(ad) is np.ndarray and type(bd) is np.ndarray and ad.size >= SERIAL_BELOW
            and ad.shape == bd.shape and ad.dtype == bd.dtype and ad.dtype.kind == "f"
            and ad.flags.c_contiguous and bd.flags.c_contiguous)


ADD = "add"  # the name an inference plan records a call of ``add`` under


def add(input, other, alpha=1):  # noqa: A002 (PyTorch's names)
    """input + alpha * other, broadcasting."""
    plan = plan_state.plan
    if plan is not None and alpha == 1:  # an inference plan may fuse it (fastnn.inference)
        return plan.op_call(ADD, add, (input, other))
    if alpha != 1:
        other = other * alpha if isinstance(other, (int, float)) else mul(other, alpha)
    a, b, ad, bd = operands(input, other)
    if _large_same_shape(ad, bd):
        out = np.empty_like(ad)
        add_kernel(out.reshape(-1), ad.reshape(-1), bd.reshape(-1))
    else:
        out = apply2(np.add, "add", ad, bd)
    res = _wrap(out)
    if recording(a, b):
        _record(res, a, b, lambda g, na, nb: (g, g), "AddBackward0")
    return res


def sub(input, other, alpha=1):  # noqa: A002
    """input - alpha * other, broadcasting."""
    if alpha != 1:
        other = other * alpha if isinstance(other, (int, float)) else mul(other, alpha)
    a, b, ad, bd, out = _binary(input, other, np.subtract, "sub")
    res = _wrap(out)
    if recording(a, b):
        _record(res, a, b, lambda g, na, nb: (g, np.negative(g) if nb else None), "SubBackward0")
    return res


def mul(input, other):  # noqa: A002
    """input * other, broadcasting."""
    a, b, ad, bd, out = _binary(input, other, np.multiply, "mul")
    res = _wrap(out)
    if recording(a, b):
        _record(res, a, b, lambda g, na, nb: (g * bd if na else None, g * ad if nb else None),
                "MulBackward0", saved=True)
    return res


def div(input, other, rounding_mode=None):  # noqa: A002
    """input / other, broadcasting: true division (integers give the default float
    dtype); ``rounding_mode`` 'trunc' or 'floor' rounds the quotient (no gradient)."""
    if rounding_mode is not None:
        return compare.rounded_divide(input, other, rounding_mode)
    a, b, ad, bd, out = _binary(input, other, np.true_divide, "div")
    res = _wrap(out)
    if recording(a, b):
        _record(res, a, b, lambda g, na, nb: (g / bd if na else None, -g * out / bd if nb else None),
                "DivBackward0", saved=True)
    return res


true_divide = divide = div
multiply = mul
subtract = sub


def pow(input, exponent):  # noqa: A001,A002
    """input ** exponent, broadcasting (either may be a tensor or a number)."""
    a, b, ad, bd, out = _binary(input, exponent, np.power, "pow")
    res = _wrap(out)
    if recording(a, b):
        def grads(g, na, nb):
            da = db = None
            with np.errstate(divide="ignore", invalid="ignore"):
                if na and isinstance(bd, (int, float)):  # x ** 2 and the like
                    da = g * (bd * np.power(ad, bd - 1)) if bd != 0 else np.zeros_like(g)
                elif na:  # d/da a**b = b * a**(b-1), 0 where b == 0
                    da = np.where(np.equal(bd, 0), 0, g * (bd * np.power(ad, bd - 1)))
                if nb:  # d/db a**b = a**b * log(a), 0 where a == 0 and b >= 0
                    db = np.where(np.equal(ad, 0) & np.greater_equal(bd, 0), 0, g * (out * np.log(ad)))
            return da, db

        _record(res, a, b, grads, "PowBackward0", saved=True)
    return res


# ------------------------------------------------------------------ unary
def _unary(input, op, name, forward, derivative, keep="x", floats=True):  # noqa: A002
    """y = forward(x); ``derivative(g, kept)`` with kept x or y (``keep``). ``floats``:
    integer input becomes the default float dtype first (sqrt, exp, ...)."""
    x = float_tensor(input, op) if floats else as_tensor(input)
    xd = x.data
    y = forward(xd)
    if type(y) is not np.ndarray:
        y = np.asarray(y)
    res = _wrap(y)
    if recording(x):
        kept = y if keep == "y" else xd if keep == "x" else None

        def backward(g):
            d = derivative(g, kept)
            return (d if type(d) is np.ndarray else np.asarray(d),)

        attach(res, backward, (x,), name, saved=(x,) if keep == "x" else ())
    return res


def neg(input):  # noqa: A002
    """-input."""
    return _unary(input, "neg", "NegBackward0", np.negative, lambda g, _: np.negative(g), None, False)


negative = neg


def abs(input):  # noqa: A001,A002
    """|input| (gradient sign(input), 0 at 0)."""
    return _unary(input, "abs", "AbsBackward0", np.abs, lambda g, x: g * np.sign(x), "x", False)


absolute = abs


def square(input):  # noqa: A002
    return _unary(input, "square", "PowBackward0", np.square, lambda g, x: g * (2 * x), "x", False)


def exp(input):  # noqa: A002
    return _unary(input, "exp", "ExpBackward0", np.exp, lambda g, y: g * y, "y")


def log(input):  # noqa: A002
    return _unary(input, "log", "LogBackward0", np.log, lambda g, x: g / x)


def log1p(input):  # noqa: A002
    return _unary(input, "log1p", "Log1PBackward0", np.log1p, lambda g, x: g / (x + 1))


def log2(input):  # noqa: A002
    return _unary(input, "log2", "Log2Backward0", np.log2, lambda g, x: g / (x * _LN2))


def log10(input):  # noqa: A002
    return _unary(input, "log10", "Log10Backward0", np.log10, lambda g, x: g / (x * _LN10))


def sqrt(input):  # noqa: A002
    return _unary(input, "sqrt", "SqrtBackward0", np.sqrt, lambda g, y: g / (2 * y), "y")


def rsqrt(input):  # noqa: A002
    """1 / sqrt(input)."""
    return _unary(input, "rsqrt", "RsqrtBackward0", lambda x: np.reciprocal(np.sqrt(x)),
                  lambda g, y: g * (y * y * y) * -0.5, "y")


def reciprocal(input):  # noqa: A002
    return _unary(input, "reciprocal", "ReciprocalBackward0", np.reciprocal, lambda g, y: g * (y * y) * -1, "y")


def sin(input):  # noqa: A002
    return _unary(input, "sin", "SinBackward0", np.sin, lambda g, x: g * np.cos(x))


def cos(input):  # noqa: A002
    return _unary(input, "cos", "CosBackward0", np.cos, lambda g, x: g * np.negative(np.sin(x)))


# ------------------------------------------------------------------ selection
def maximum(input, other):  # noqa: A002
    """Elementwise max, broadcasting; NaN propagates; ties split the gradient in half."""
    return _select(input, other, np.maximum, np.greater, "maximum", "MaximumBackward0")


def minimum(input, other):  # noqa: A002
    """Elementwise min, broadcasting; NaN propagates; ties split the gradient in half."""
    return _select(input, other, np.minimum, np.less, "minimum", "MinimumBackward0")


def _select(input, other, ufunc, wins, op, name):  # noqa: A002
    a, b, ad, bd, out = _binary(input, other, ufunc, op)
    res = _wrap(out)
    if recording(a, b):
        def grads(g, na, nb):
            tie = np.where(np.equal(ad, bd), g * 0.5, 0)
            da = np.where(wins(ad, bd), g, tie) if na else None
            db = np.where(wins(bd, ad), g, tie) if nb else None
            return da, db

        _record(res, a, b, grads, name, saved=True)
    return res


def where(condition, input=None, other=None):  # noqa: A002
    """input where condition else other, broadcasting all three; ``where(condition)``
    alone is ``nonzero(condition, as_tuple=True)``."""
    c = as_tensor(condition).data
    if c.dtype != np.bool_:
        c = c.astype(bool)
    if input is None and other is None:
        return tuple(_wrap(i) for i in np.nonzero(c))
    a, b, ad, bd = operands(input, other)
    out = float_result(compute(np.where, "where", c, ad, bd), ad, bd)
    res = _wrap(out)
    if recording(a, b):
        _record(res, a, b, lambda g, na, nb: (np.where(c, g, 0) if na else None, np.where(c, 0, g) if nb else None),
                "WhereBackward0")
    return res


def masked_fill(input, mask, value):  # noqa: A002
    """input with ``value`` (a number or a 0-d tensor) where ``mask`` (bool,
    broadcastable to input) is True; the result keeps input's dtype."""
    x = as_tensor(input)
    m = as_tensor(mask).data
    if m.dtype != np.bool_:
        if m.dtype.kind not in "iu":
            raise TypeError(f"masked_fill: expected a bool mask, got dtype {m.dtype}")
        m = m.astype(bool)
    v = operand(value)
    if isinstance(v, Tensor) and v.data.ndim != 0:
        raise ValueError(f"masked_fill: only a 0-d value tensor is supported, got shape {v.data.shape}")
    xd = x.data
    fill = np.asarray(v.data if isinstance(v, Tensor) else v).astype(xd.dtype)
    res = _wrap(compute(np.where, "masked_fill", m, fill, xd))
    if recording(x, v):
        def grads(g, nx, nv):  # value's gradient: the sum over the filled places
            return (np.where(m, 0, g) if nx else None), (np.where(m, g, 0).sum() if nv else None)

        _record(res, x, v, grads, "MaskedFillBackward0")
    return res


def clamp(input, min=None, max=None):  # noqa: A001,A002
    """input limited to [min, max] (numbers or tensors, broadcasting); gradients as
    PyTorch's: input's where min <= input <= max, min's/max's where they were taken."""
    if min is None and max is None:
        raise ValueError("clamp: at least one of 'min' or 'max' must not be None")
    x = as_tensor(input)
    xd = x.data
    lo = None if min is None else operand(min)
    hi = None if max is None else operand(max)
    lod = lo.data if isinstance(lo, Tensor) else lo
    hid = hi.data if isinstance(hi, Tensor) else hi
    out = float_result(compute(np.clip, "clamp", xd, lod, hid), xd, lod, hid)
    res = _wrap(out)
    if recording(x, lo, hi):
        nx, nlo, nhi = x.requires_grad, needs(lo), needs(hi)
        specs = [spec(t) if needs(t) else None for t in (x, lo, hi)]

        def backward(g):
            grads = [None, None, None]
            if nx:
                keep = True if lo is None else np.greater_equal(xd, lod)
                keep = keep if hi is None else np.logical_and(keep, np.less_equal(xd, hid))
                grads[0] = np.where(keep, g, 0)
            if nlo:
                took = np.less(xd, lod) if hi is None else np.less(xd, lod) & np.less(lod, hid)
                grads[1] = np.where(took, g, 0)
            if nhi:
                took = np.greater(xd, hid) if lo is None else np.greater(xd, hid) | np.less(hid, lod)
                grads[2] = np.where(took, g, 0)
            return tuple(None if d is None else reduce_grad(d, *s) for d, s in zip(grads, specs))

        saved = tuple(t for t in (x, lo, hi) if isinstance(t, Tensor))
        attach(res, backward, (x, lo, hi), "ClampBackward1", saved=saved)
    return res


clip = clamp


# ------------------------------------------------------------------ copies
def to_dtype(input, dtype, copy=False):  # noqa: A002
    """input converted to ``dtype`` (itself if it already has it, unless ``copy``);
    differentiable between float dtypes (the gradient is cast back)."""
    x = as_tensor(input)
    try:
        if dtype is None:
            raise TypeError
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"to: expected a dtype, got {dtype!r}") from None
    src = x.data.dtype
    if src == dt and not copy:
        return x
    res = _wrap(x.data.astype(dt))
    if dt.kind == "f" and recording(x):
        attach(res, lambda g: (g.astype(src),), (x,), "ToCopyBackward0")
    return res


def clone(input, memory_format=None):  # noqa: A002
    """A copy of input (C-contiguous) that stays in the graph."""
    x = as_tensor(input)
    res = _wrap(x.data.copy())
    if recording(x):
        attach(res, lambda g: (g,), (x,), "CloneBackward0")
    return res
