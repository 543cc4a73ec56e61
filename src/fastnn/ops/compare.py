"""Elementwise operations without a gradient: comparisons (bool results), logical and
bitwise operations, rounding, integer division and remainder, NaN/inf tests, and
the whole-tensor ``allclose`` / ``equal`` (Python bools). Broadcasting and dtypes as
in ``ops.arith``; results are Tensors that do not require grad."""
import numpy as np

from ._util import _wrap, as_tensor
from .broadcasting import compute, float_result, operands

__all__ = ["eq", "ne", "lt", "le", "gt", "ge", "greater", "less", "greater_equal", "less_equal", "not_equal",
           "logical_not", "logical_and", "logical_or", "logical_xor", "bitwise_not", "bitwise_and",
           "bitwise_or", "bitwise_xor", "sign", "floor", "ceil", "round", "trunc", "floor_divide", "remainder",
           "isnan", "isinf", "isfinite", "allclose", "equal"]


def _binary(input, other, ufunc, op):  # noqa: A002 (PyTorch's names)
    _, _, ad, bd = operands(input, other)
    return _wrap(compute(ufunc, op, ad, bd))


def _is_int(x):
    """An integer or bool array, or a Python int/bool."""
    return x.dtype.kind in "biu" if isinstance(x, np.ndarray) else isinstance(x, int)


def _unary(input, ufunc):  # noqa: A002
    out = ufunc(as_tensor(input).data)
    return _wrap(out if type(out) is np.ndarray else np.asarray(out))


# ------------------------------------------------------------------ comparisons
def eq(input, other):  # noqa: A002
    """input == other elementwise (bool); ``x == None`` is False, as for any object."""
    if other is None:
        return False
    return _binary(input, other, np.equal, "eq")


def ne(input, other):  # noqa: A002
    if other is None:
        return True
    return _binary(input, other, np.not_equal, "ne")


def lt(input, other):  # noqa: A002
    return _binary(input, other, np.less, "lt")


def le(input, other):  # noqa: A002
    return _binary(input, other, np.less_equal, "le")


def gt(input, other):  # noqa: A002
    return _binary(input, other, np.greater, "gt")


def ge(input, other):  # noqa: A002
    return _binary(input, other, np.greater_equal, "ge")


greater, less, greater_equal, less_equal, not_equal = gt, lt, ge, le, ne


# ------------------------------------------------------------------ logical and bitwise
def logical_not(input):  # noqa: A002
    return _unary(input, np.logical_not)


def logical_and(input, other):  # noqa: A002
    return _binary(input, other, np.logical_and, "logical_and")


def logical_or(input, other):  # noqa: A002
    return _binary(input, other, np.logical_or, "logical_or")


def logical_xor(input, other):  # noqa: A002
    return _binary(input, other, np.logical_xor, "logical_xor")


def _bitwise(input, other, ufunc, op):  # noqa: A002
    _, _, ad, bd = operands(input, other)
    for x in (ad, bd):
        if not _is_int(x):
            raise TypeError(f"{op}: expected integer or bool tensors, got {getattr(x, 'dtype', type(x).__name__)}")
    return _wrap(compute(ufunc, op, ad, bd))


def bitwise_not(input):  # noqa: A002
    x = as_tensor(input).data
    if x.dtype.kind not in "biu":
        raise TypeError(f"bitwise_not: expected an integer or bool tensor, got {x.dtype}")
    return _unary(x, np.invert)


def bitwise_and(input, other):  # noqa: A002
    return _bitwise(input, other, np.bitwise_and, "bitwise_and")


def bitwise_or(input, other):  # noqa: A002
    return _bitwise(input, other, np.bitwise_or, "bitwise_or")


def bitwise_xor(input, other):  # noqa: A002
    return _bitwise(input, other, np.bitwise_xor, "bitwise_xor")


# ------------------------------------------------------------------ rounding
def sign(input):  # noqa: A002
    return _unary(input, np.sign)


def _rounding(input, ufunc):  # noqa: A002
    x = as_tensor(input).data
    return _wrap(x.copy()) if x.dtype.kind in "biu" else _unary(x, ufunc)


def floor(input):  # noqa: A002
    return _rounding(input, np.floor)


def ceil(input):  # noqa: A002
    return _rounding(input, np.ceil)


def trunc(input):  # noqa: A002
    return _rounding(input, np.trunc)


def round(input, decimals=0):  # noqa: A001,A002
    """Round half to even (as PyTorch), to ``decimals`` places."""
    return _rounding(input, np.round if decimals == 0 else lambda x: np.round(x, decimals))


# ------------------------------------------------------------------ integer division
def _divide(input, other, ufunc, op):  # noqa: A002
    _, _, ad, bd = operands(input, other)
    if _is_int(ad) and _is_int(bd) and np.any(np.equal(bd, 0)):
        raise RuntimeError(f"{op}: integer division by zero")
    with np.errstate(divide="ignore", invalid="ignore"):
        return ad, bd, float_result(compute(ufunc, op, ad, bd), ad, bd)


def floor_divide(input, other):  # noqa: A002
    """floor(input / other), broadcasting (integers stay integers)."""
    return _wrap(_divide(input, other, np.floor_divide, "floor_divide")[2])


def remainder(input, other):  # noqa: A002
    """input - floor(input / other) * other: the sign of ``other``, as Python's %."""
    return _wrap(_divide(input, other, np.remainder, "remainder")[2])


def rounded_divide(input, other, rounding_mode):  # noqa: A002
    """``div(input, other, rounding_mode=...)``: 'floor' or 'trunc' (integers stay integers)."""
    if rounding_mode == "floor":
        return floor_divide(input, other)
    if rounding_mode != "trunc":
        raise ValueError(f"div: rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}")
    ad, bd, q = _divide(input, other, np.floor_divide, "div")
    if q.dtype.kind in "iu":  # floor -> trunc: one up where the exact quotient is negative and inexact
        inexact = np.not_equal(np.remainder(ad, bd), 0) & np.not_equal(np.less(ad, 0), np.less(bd, 0))
        return _wrap(q + inexact)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _wrap(float_result(np.asarray(np.trunc(np.true_divide(ad, bd))), ad, bd))


# ------------------------------------------------------------------ tests
def isnan(input):  # noqa: A002
    return _unary(input, np.isnan)


def isinf(input):  # noqa: A002
    return _unary(input, np.isinf)


def isfinite(input):  # noqa: A002
    return _unary(input, np.isfinite)


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):  # noqa: A002
    """True when |input - other| <= atol + rtol * |other| everywhere (broadcasting)."""
    _, _, ad, bd = operands(input, other)
    try:
        return bool(np.allclose(ad, bd, rtol=rtol, atol=atol, equal_nan=equal_nan))
    except ValueError:
        raise ValueError(f"allclose: shapes {np.shape(ad)} and {np.shape(bd)} cannot be broadcast together") from None


def equal(input, other):  # noqa: A002
    """True when both have the same shape and the same values."""
    a, b = as_tensor(input).data, as_tensor(other).data
    return a.shape == b.shape and bool(np.array_equal(a, b))
