"""Making tensors, as PyTorch does: from data (``tensor`` copies, ``from_numpy`` and
``as_tensor`` share), filled (``zeros``, ``full``, ``eye``, ranges), random (from
fastnn's default generator unless ``generator=`` is given; ``fastnn.manual_seed``
reseeds it), ``*_like`` variants, and the differentiable ``tril`` / ``triu``.

Dtypes: Python floats give the default dtype (``fastnn.get_default_dtype()``),
Python ints int64, bools bool; NumPy arrays keep theirs. ``device`` is accepted
for ported code: None or 'cpu'.
"""
import numpy as np

from .._config import get_default_dtype
from ..random import resolve
from ._util import Tensor, _data_of, _wrap, attach, recording, size_args
from ._util import as_tensor as _constant

__all__ = ["tensor", "from_numpy", "as_tensor", "is_tensor", "zeros", "ones", "full", "empty", "eye", "arange",
           "linspace", "rand", "randn", "randint", "zeros_like", "ones_like", "full_like", "empty_like",
           "rand_like", "randn_like", "tril", "triu"]


# ------------------------------------------------------------------ helpers
def _dtype(dtype, op, default=None):
    """``dtype`` as a NumPy dtype; None gives ``default`` (the default float dtype)."""
    if dtype is None:
        return np.dtype(default if default is not None else get_default_dtype())
    try:
        return np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{op}: expected a dtype, got {dtype!r}") from None


def _leaf(array, requires_grad, device=None, op="tensor"):
    if device is not None and not str(device).startswith("cpu"):
        raise RuntimeError(f"{op}: fastnn runs on the CPU only, got device {device!r}")
    t = _wrap(array)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _is_python(data):
    """True for Python numbers and (nested) lists of them: PyTorch's inference applies."""
    while isinstance(data, (list, tuple)) and data:
        data = data[0]
    return isinstance(data, (bool, int, float, list, tuple))


def _infer(data, dtype, op):
    """The array for ``data``: ``dtype`` if given, else PyTorch's inference."""
    dt = None if dtype is None else _dtype(dtype, op)
    try:
        array = _data_of(data, dt)
    except ValueError as exc:  # ragged lists
        raise ValueError(f"{op}: {exc}") from None
    if dt is not None and array.dtype != dt:  # a Tensor's data comes as it is
        array = array.astype(dt)
    if dtype is None and _is_python(data):
        if array.dtype.kind == "f" and array.dtype != get_default_dtype():
            array = array.astype(get_default_dtype())
        elif array.dtype.kind in "iu" and array.dtype != np.int64:
            array = array.astype(np.int64)
    return array


def _shape(size, op):
    shape = size_args(size, op)
    if any(n < 0 for n in shape):
        raise ValueError(f"{op}: negative dimension in size {shape}")
    return shape


# ------------------------------------------------------------------ from data
def tensor(data, dtype=None, requires_grad=False, device=None):
    """A new leaf tensor holding a copy of ``data`` (number, nested list, array, Tensor).

    Example:
        >>> fastnn.tensor([[1.0, 2.0]], requires_grad=True).dtype
        dtype('float32')
    """
    array = _infer(data, dtype, "tensor")
    if not _is_python(data):  # Python data was converted into a new array already
        array = np.array(array, order="C", copy=True)
    return _leaf(array, requires_grad, device, "tensor")


def from_numpy(ndarray):
    """A tensor sharing ``ndarray``'s memory (writes show through both ways)."""
    if not isinstance(ndarray, np.ndarray):
        raise TypeError(f"from_numpy: expected np.ndarray, got {type(ndarray).__name__}")
    if ndarray.dtype.kind not in "biuf":
        raise TypeError(f"from_numpy: can't convert an array of dtype {ndarray.dtype}")
    return _wrap(ndarray)


def as_tensor(data, dtype=None, device=None):
    """``data`` as a tensor, sharing memory when it already is a tensor or an array of
    ``dtype`` (a tensor converted to another dtype stays in the graph)."""
    if isinstance(data, Tensor):
        if dtype is None or np.dtype(dtype) == data.data.dtype:
            return data
        from .arith import to_dtype

        return to_dtype(data, dtype)
    if isinstance(data, np.ndarray) and data.dtype.kind in "biuf":
        return _wrap(data if dtype is None else data.astype(_dtype(dtype, "as_tensor"), copy=False))
    return _leaf(_infer(data, dtype, "as_tensor"), False, device, "as_tensor")


def is_tensor(obj):
    return isinstance(obj, Tensor)


# ------------------------------------------------------------------ filled
def zeros(*size, dtype=None, requires_grad=False, device=None):
    return _leaf(np.zeros(_shape(size, "zeros"), _dtype(dtype, "zeros")), requires_grad, device, "zeros")


def ones(*size, dtype=None, requires_grad=False, device=None):
    return _leaf(np.ones(_shape(size, "ones"), _dtype(dtype, "ones")), requires_grad, device, "ones")


def empty(*size, dtype=None, requires_grad=False, device=None):
    return _leaf(np.empty(_shape(size, "empty"), _dtype(dtype, "empty")), requires_grad, device, "empty")


def full(size, fill_value, dtype=None, requires_grad=False, device=None):
    """A tensor of ``size`` filled with ``fill_value``; the dtype follows the value
    (bool, int64, or the default float dtype) unless given."""
    value = _infer(fill_value, dtype, "full")
    if value.ndim:
        raise ValueError(f"full: fill_value must be a number, got shape {value.shape}")
    return _leaf(np.full(_shape((size,), "full"), value, value.dtype), requires_grad, device, "full")


def eye(n, m=None, dtype=None, requires_grad=False, device=None):
    """n x m (m = n by default) with ones on the diagonal."""
    n, m = _shape((n, n if m is None else m), "eye")
    return _leaf(np.eye(n, m, dtype=_dtype(dtype, "eye")), requires_grad, device, "eye")


def arange(start, end=None, step=1, dtype=None, requires_grad=False, device=None):
    """Values from start (0 if only one bound is given) up to, not including, end:
    int64 when every bound is an int, else the default float dtype."""
    if end is None:
        start, end = 0, start
    bounds = [b.item() if isinstance(b, (Tensor, np.generic)) else b for b in (start, end, step)]
    start, end, step = bounds
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    if (end - start) * step < 0:
        raise ValueError(f"arange: upper bound and lower bound inconsistent with step sign "
                         f"(start={start}, end={end}, step={step})")
    ints = all(isinstance(b, int) for b in bounds)
    dt = _dtype(dtype, "arange", np.int64 if ints else None)
    return _leaf(np.arange(start, end, step).astype(dt, copy=False), requires_grad, device, "arange")


def linspace(start, end, steps, dtype=None, requires_grad=False, device=None):
    """``steps`` evenly spaced values from start to end, both included."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"linspace: steps must be a non-negative int, got {steps!r}")
    start, end = (float(b) for b in (start, end))
    array = np.linspace(start, end, int(steps)).astype(_dtype(dtype, "linspace"), copy=False)
    return _leaf(array, requires_grad, device, "linspace")


# ------------------------------------------------------------------ random
def _float_dtype(dtype, op):
    dt = _dtype(dtype, op)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"{op}: expected float32 or float64, got {dt}")
    return dt


def rand(*size, generator=None, dtype=None, requires_grad=False, device=None):
    """Uniform on [0, 1)."""
    array = resolve(generator).random(_shape(size, "rand"), dtype=_float_dtype(dtype, "rand"))
    return _leaf(array, requires_grad, device, "rand")


def randn(*size, generator=None, dtype=None, requires_grad=False, device=None):
    """Standard normal."""
    array = resolve(generator).standard_normal(_shape(size, "randn"), dtype=_float_dtype(dtype, "randn"))
    return _leaf(array, requires_grad, device, "randn")


def randint(low=0, high=None, size=None, *, generator=None, dtype=None, requires_grad=False, device=None):
    """Integers uniform on [low, high) (int64 unless ``dtype``): ``randint(high, size)``
    or ``randint(low, high, size)``, as PyTorch's overloads."""
    if size is None:
        if not isinstance(high, (tuple, list)):
            raise TypeError("randint: expected randint(high, size) or randint(low, high, size)")
        low, high, size = 0, low, high
    elif high is None:
        low, high = 0, low
    low, high = int(low), int(high)
    if low >= high:
        raise ValueError(f"randint: expected low < high, got low={low}, high={high}")
    array = resolve(generator).integers(low, high, _shape((size,), "randint"), dtype=np.int64)
    return _leaf(array.astype(_dtype(dtype, "randint", np.int64), copy=False), requires_grad, device, "randint")


# ------------------------------------------------------------------ like another tensor
def _like(input, dtype, op):  # noqa: A002
    x = _data_of(input)
    return x.shape, (x.dtype if dtype is None else _dtype(dtype, op))


def zeros_like(input, dtype=None, requires_grad=False):  # noqa: A002
    return _leaf(np.zeros(*_like(input, dtype, "zeros_like")), requires_grad)


def ones_like(input, dtype=None, requires_grad=False):  # noqa: A002
    return _leaf(np.ones(*_like(input, dtype, "ones_like")), requires_grad)


def empty_like(input, dtype=None, requires_grad=False):  # noqa: A002
    return _leaf(np.empty(*_like(input, dtype, "empty_like")), requires_grad)


def full_like(input, fill_value, dtype=None, requires_grad=False):  # noqa: A002
    shape, dt = _like(input, dtype, "full_like")
    return _leaf(np.full(shape, _data_of(fill_value), dt), requires_grad)


def rand_like(input, dtype=None, requires_grad=False, generator=None):  # noqa: A002
    shape, dt = _like(input, dtype, "rand_like")
    return rand(shape, generator=generator, dtype=_float_dtype(dt, "rand_like"), requires_grad=requires_grad)


def randn_like(input, dtype=None, requires_grad=False, generator=None):  # noqa: A002
    shape, dt = _like(input, dtype, "randn_like")
    return randn(shape, generator=generator, dtype=_float_dtype(dt, "randn_like"), requires_grad=requires_grad)


# ------------------------------------------------------------------ triangles
def _triangle(input, diagonal, keep, op, name):  # noqa: A002
    x = _constant(input)
    if x.data.ndim < 2:
        raise ValueError(f"{op}: input must have at least 2 dimensions, got shape {x.data.shape}")
    k = int(diagonal)
    res = _wrap(keep(x.data, k))
    if recording(x):
        attach(res, lambda g: (keep(g, k),), (x,), name)
    return res


def tril(input, diagonal=0):  # noqa: A002
    """The lower triangle (of the last two dims): elements on and below ``diagonal``
    (0 the main diagonal, > 0 above it, < 0 below it); the rest zero."""
    return _triangle(input, diagonal, np.tril, "tril", "TrilBackward0")


def triu(input, diagonal=0):  # noqa: A002
    """The upper triangle (of the last two dims): on and above ``diagonal``; the rest zero."""
    return _triangle(input, diagonal, np.triu, "triu", "TriuBackward0")
