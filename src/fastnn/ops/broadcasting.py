"""What the elementwise operations share: operands, PyTorch's dtype promotion on top
of NumPy's, broadcast errors that name the op, and gradients summed back to an
input's shape and dtype.

PyTorch's promotion differs from NumPy 2's in three places, fixed here:

* a 0-d tensor does not raise the dtype of a dimensioned tensor of its category
  (bool < integer < float): float32 array op float64 0-d tensor is float32;
* integer op float32 is float32 (NumPy: float64);
* integers that become floats (int / int, int * 0.5) give the default dtype.

Python numbers (and NumPy scalars, turned into Python numbers) stay numbers, so
they keep the tensor's dtype: float32 tensor * 2.5 is float32.
"""
import numpy as np

from .._config import get_default_dtype
from ._util import Tensor, as_tensor, unbroadcast

__all__ = []  # helpers for ops/arith.py, ops/compare.py and ops/products.py; nothing public

_CATEGORY = {"b": 0, "i": 1, "u": 1, "f": 2}


def operand(x):
    """A Tensor or a Python number stays; a NumPy scalar becomes a Python number;
    anything else (array, list) becomes a constant Tensor."""
    if isinstance(x, Tensor) or isinstance(x, (int, float, bool)):
        return x
    if isinstance(x, np.generic) and x.dtype.kind in "biuf":
        return x.item()
    return as_tensor(x)


def operands(input, other):  # noqa: A002 (PyTorch's names)
    """(a, b, a_data, b_data): the operands (at least one a Tensor) and what to
    compute with (arrays or Python numbers), with PyTorch's 0-d promotion applied."""
    a, b = operand(input), operand(other)
    if isinstance(a, Tensor):
        ad = a.data
        if isinstance(b, Tensor):
            bd = b.data
            if (ad.ndim == 0) != (bd.ndim == 0) and ad.dtype != bd.dtype:
                ad, bd = promote_zero_dim(ad, bd)
            return a, b, ad, bd
        return a, b, ad, b
    if not isinstance(b, Tensor):
        a = as_tensor(a)  # two numbers: the first becomes a 0-d tensor
        return a, b, a.data, b
    return a, b, a, b.data


def promote_zero_dim(ad, bd):
    """Cast the 0-d one of two arrays (exactly one 0-d) as PyTorch promotes: to the
    other's dtype unless its category is higher, else the other to its dtype."""
    zero_first = ad.ndim == 0
    zero, dim = (ad, bd) if zero_first else (bd, ad)
    if _CATEGORY.get(zero.dtype.kind, 3) <= _CATEGORY.get(dim.dtype.kind, 3):
        zero = zero.astype(dim.dtype)
    elif dim.dtype.kind != "f":  # float 0-d with an integer/bool tensor: the 0-d's dtype
        dim = dim.astype(zero.dtype)
    return (zero, dim) if zero_first else (dim, zero)


def compute(fn, op, *args):
    """``fn(*args)`` as an ndarray; a broadcast failure becomes a ValueError naming
    ``op`` and the shapes, another ValueError a RuntimeError naming ``op``."""
    try:
        out = fn(*args)
    except ValueError as exc:
        raise failure(op, args, exc) from None
    return out if type(out) is np.ndarray else np.asarray(out)


def apply2(ufunc, op, ad, bd):
    """``ufunc(ad, bd)`` as an ndarray with PyTorch's result dtype (the hot path of
    + - * /: errors as :func:`compute`, dtype fix-up as :func:`float_result`)."""
    try:
        out = ufunc(ad, bd)
    except ValueError as exc:
        raise failure(op, (ad, bd), exc) from None
    if type(out) is not np.ndarray:
        out = np.asarray(out)
    dt = out.dtype
    if dt.kind != "f" or (type(ad) is np.ndarray and ad.dtype == dt):
        return out
    return float_result(out, ad, bd)


def failure(op, args, exc):
    """The exception for a ValueError ``exc`` of ``op`` on ``args``."""
    shapes = [np.shape(x) for x in args]
    try:
        np.broadcast_shapes(*shapes)
    except ValueError:
        listed = " and ".join(str(s) for s in shapes)
        return ValueError(f"{op}: shapes {listed} cannot be broadcast together")
    return RuntimeError(f"{op}: {exc}")


def float_result(out, *args):
    """``out``, recast where NumPy promoted integers to float64 but PyTorch would
    not: to the float operand's dtype, or to the default dtype if none is float."""
    dt = out.dtype
    if dt.kind != "f":
        return out
    for x in args:
        if isinstance(x, np.ndarray) and x.dtype == dt:  # (np.dtype == None is True: check the type)
            return out
    for x in args:
        if isinstance(x, np.ndarray) and x.dtype.kind == "f":
            return out.astype(x.dtype)
    default = np.dtype(get_default_dtype())
    return out if dt == default else out.astype(default)


def needs(t):
    """True when ``t`` is a Tensor that requires grad."""
    return isinstance(t, Tensor) and t.requires_grad


def spec(t):
    """(shape, dtype) of a Tensor's data, for summing a gradient back: ``reduce_grad``."""
    return t.data.shape, t.data.dtype


def reduce_grad(g, shape, dtype):
    """``g`` summed over broadcast dims to ``shape``, as an ndarray of ``dtype``."""
    if g.shape != shape:
        g = unbroadcast(g, shape)
    if type(g) is not np.ndarray:
        g = np.asarray(g)
    return g if g.dtype == dtype else g.astype(dtype)
