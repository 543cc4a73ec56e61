"""Helpers every operation shares: turning arguments into tensors, checking dims,
and summing a gradient back over broadcast dimensions."""
import numpy as np

from .._config import get_default_dtype
from ..autograd.engine import attach, attach_multi, direct_grad, recording  # noqa: F401 (re-exported)
from ..tensor import Tensor, _data_of, _wrap  # noqa: F401 (re-exported)

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_tensor(x, dtype=None):
    """``x`` if it is a Tensor, else a constant Tensor (no grad) around its array."""
    if type(x) is Tensor or isinstance(x, Tensor):
        return x
    array = _data_of(x, dtype)
    if dtype is None and array.dtype == np.float64 and not isinstance(x, np.ndarray):
        array = array.astype(get_default_dtype())  # Python floats: the default dtype, as in PyTorch
    return _wrap(array)


def float_tensor(x, op, dtype=None):
    """``x`` as a Tensor of a float dtype (ints and bools become ``dtype`` or the
    default dtype); ``TypeError`` naming ``op`` for complex, object or string data."""
    t = as_tensor(x)
    kind = t.data.dtype.kind
    if kind == "f":
        if dtype is not None and t.data.dtype != dtype:
            raise TypeError(f"{op}: expected a {np.dtype(dtype)} tensor, got {t.data.dtype}")
        return t
    if kind in "iub":
        return _wrap(t.data.astype(dtype or get_default_dtype()))
    raise TypeError(f"{op}: expected a real float tensor, got dtype {t.data.dtype}")


def check_dim(dim, ndim, op):
    """``dim`` in ``[-ndim, ndim)`` as a non-negative int, or IndexError naming ``op``."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: dim must be an int, got {dim!r}")
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"{op}: dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})")
    return int(dim) % n


def check_dims(dims, ndim, op):
    """A dim, a sequence of dims or None (all) -> a sorted tuple of distinct dims."""
    if dims is None:
        return tuple(range(ndim))
    if isinstance(dims, (int, np.integer)):
        dims = (dims,)
    out = tuple(sorted({check_dim(d, ndim, op) for d in dims}))
    if len(out) != len(tuple(dims)):
        raise RuntimeError(f"{op}: dim {tuple(dims)} appears multiple times in the list of dims")
    return out


def unbroadcast(g, shape):
    """Sum ``g`` over the dims that broadcasting added or stretched to reach ``shape``."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    if lead:
        g = g.sum(axis=tuple(range(lead)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if stretched:
        g = g.sum(axis=stretched, keepdims=True)
    return g.reshape(shape)


def index_of(index):
    """An index with Tensors replaced by their arrays (for ndarray indexing)."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    if isinstance(index, list) and any(isinstance(i, Tensor) for i in index):
        return [i.data if isinstance(i, Tensor) else i for i in index]
    return index


def size_args(size, op):
    """``f(2, 3)``, ``f((2, 3))`` or ``f([2, 3])`` -> (2, 3)."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    elif len(size) == 1 and isinstance(size[0], Tensor):
        size = tuple(int(v) for v in size[0].data.reshape(-1))
    try:
        return tuple(int(s) for s in size)
    except (TypeError, ValueError):
        raise TypeError(f"{op}: sizes must be ints, got {size!r}") from None
