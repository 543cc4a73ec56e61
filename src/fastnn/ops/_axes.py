"""What the reductions share: which axes a ``dim`` argument covers, and putting a
reduced gradient back into the input's shape."""
import numpy as np

from ._util import attach, check_dims, recording


def reduce_axes(dim, ndim, op):
    """The axes a reduction over ``dim`` covers: None or () means all of them."""
    if dim is None or (isinstance(dim, (tuple, list)) and len(dim) == 0):
        return tuple(range(ndim))
    dims = check_dims(dim, ndim, op)
    return dims if ndim else ()


def keep_dims(g, axes, keepdim):
    """``g`` with the reduced ``axes`` back as size 1, so it broadcasts against the input."""
    return g if keepdim or not axes else np.expand_dims(g, axes)


def spread(g, shape, dtype, axes, keepdim):
    """A new ``shape``/``dtype`` array holding ``g`` broadcast back over the reduced axes."""
    out = np.empty(shape, dtype)
    out[...] = keep_dims(g, axes, keepdim)
    return out


def count(shape, axes):
    """How many entries each reduction over ``axes`` covers."""
    n = 1
    for a in axes:
        n *= shape[a]
    return n


def sum_dtype(xd, dtype):
    """The dtype a sum-like reduction computes in: ``dtype``, int64 for integers, else None."""
    if dtype is not None:
        return np.dtype(dtype)
    return np.dtype(np.int64) if xd.dtype.kind in "iub" else None


def attach_float(out, x, backward, name, save_input=False):
    """Record ``backward`` for a float ``out`` made from ``x`` alone (when grad is
    recorded); ``save_input``: the backward reads ``x``, so changing it in place first raises."""
    if out.data.dtype.kind == "f" and recording(x):
        attach(out, backward, (x,), name, saved=(x,) if save_input else ())
    return out
