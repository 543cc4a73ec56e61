"""The extremes and the orderings of a tensor, with PyTorch's semantics: max, min
(whole tensor, or ``(values, indices)`` along a dim), amax, amin, argmax, argmin,
sort, argsort, topk (differentiable values, gradient to the index returned; amax
and whole-tensor max share it among ties), nonzero and unique (no gradient)."""
from collections import namedtuple

import numpy as np

from ._axes import attach_float, keep_dims, reduce_axes
from ._util import Tensor, _wrap, as_tensor, attach, check_dim, recording

__all__ = ["max", "min", "amax", "amin", "argmax", "argmin", "sort", "argsort", "topk", "nonzero", "unique"]

# torch.return_types: (values, indices) pairs that also unpack as tuples
return_types = {name: namedtuple(name, ("values", "indices")) for name in ("max", "min", "sort", "topk")}


# ------------------------------------------------------------------ max, min, amax, amin
def _evenly(g, xd, value):
    """A whole-tensor max/min's gradient, split evenly among the entries equal to it."""
    mask = np.isnan(xd) if np.isnan(value) else xd == value
    return (np.where(mask, g / int(np.count_nonzero(mask)), 0)).astype(xd.dtype, copy=False)


def _extreme(input, dim, keepdim, op, pick, argpick):
    if isinstance(dim, (Tensor, np.ndarray)):  # max(a, b): the elementwise maximum
        from . import arith

        return getattr(arith, "maximum" if op == "max" else "minimum")(input, dim)
    x = as_tensor(input)
    xd = x.data
    if dim is None:
        if xd.size == 0:
            raise RuntimeError(f"{op}(): Expected reduction dim to be specified for input.numel() == 0. Specify "
                               "the reduction dim with the 'dim' argument.")
        result = np.asarray(pick(xd))
        out = _wrap(result)
        return attach_float(out, x, lambda g: (_evenly(g, xd, result),), f"{op.capitalize()}Backward1",
                            save_input=True)
    d = check_dim(dim, xd.ndim, op)
    if xd.ndim == 0:
        idx, values = np.zeros((), np.int64), xd.copy()
    else:
        if xd.shape[d] == 0:
            raise IndexError(f"{op}(): Expected reduction dim {d} to have non-zero size.")
        idx = argpick(xd, axis=d, keepdims=True)
        values = np.take_along_axis(xd, idx, d)
        if not keepdim:
            idx, values = np.squeeze(idx, d), np.squeeze(values, d)
    out = _wrap(values)
    if out.data.dtype.kind == "f" and recording(x):
        place = idx if keepdim or xd.ndim == 0 else np.expand_dims(idx, d)

        def backward(g):
            # values = x[idx] along d: the gradient goes to the index returned
            dx = np.zeros(xd.shape, xd.dtype)
            if xd.ndim == 0:
                dx[...] = g
            else:
                np.put_along_axis(dx, place, keep_dims(g, (d,), keepdim), d)
            return (dx,)

        attach(out, backward, (x,), f"{op.capitalize()}Backward0")
    return return_types[op](out, _wrap(idx.astype(np.int64, copy=False)))


def max(input, dim=None, keepdim=False):  # noqa: A001,A002
    """The largest entry (0-d); with ``dim``, ``(values, indices)`` along it; with a
    tensor as second argument, the elementwise ``maximum``."""
    return _extreme(input, dim, keepdim, "max", np.max, np.argmax)


def min(input, dim=None, keepdim=False):  # noqa: A001,A002
    """The smallest entry (0-d); with ``dim``, ``(values, indices)`` along it; with a
    tensor as second argument, the elementwise ``minimum``."""
    return _extreme(input, dim, keepdim, "min", np.min, np.argmin)


def _amax(input, dim, keepdim, op, pick):
    x = as_tensor(input)
    xd = x.data
    axes = reduce_axes(dim, xd.ndim, op)
    if xd.size == 0:
        if len(axes) == xd.ndim:
            raise RuntimeError(f"{op}(): Expected reduction dim to be specified for input.numel() == 0.")
        empty = [a for a in axes if xd.shape[a] == 0]
        if empty:
            raise IndexError(f"{op}(): Expected reduction dim {empty[0]} to have non-zero size.")
    result = np.asarray(pick(xd, axis=axes, keepdims=keepdim))
    out = _wrap(result)

    def backward(g):
        # ties share the gradient evenly
        mask = xd == keep_dims(result, axes, keepdim)
        count = np.sum(mask, axis=axes, keepdims=True).astype(xd.dtype)
        with np.errstate(invalid="ignore", divide="ignore"):  # a NaN max: no entry equals it -> NaN, as PyTorch
            return ((mask * (keep_dims(g, axes, keepdim) / count)).astype(xd.dtype, copy=False),)

    return attach_float(out, x, backward, f"{op.capitalize()}Backward0", save_input=True)


def amax(input, dim=(), keepdim=False):  # noqa: A002
    """The largest entries over ``dim`` (an int or tuple; () for all); ties share the gradient."""
    return _amax(input, dim, keepdim, "amax", np.max)


def amin(input, dim=(), keepdim=False):  # noqa: A002
    """The smallest entries over ``dim`` (an int or tuple; () for all); ties share the gradient."""
    return _amax(input, dim, keepdim, "amin", np.min)


# ------------------------------------------------------------------ argmax, argmin
def _arg(input, dim, keepdim, op, argpick):
    xd = as_tensor(input).data
    if dim is None:
        if xd.size == 0:
            raise IndexError(f"{op}(): Expected reduction dim to be specified for input.numel() == 0.")
        idx = np.asarray(argpick(xd), np.int64)
        return _wrap(idx.reshape((1,) * xd.ndim) if keepdim else idx)
    d = check_dim(dim, xd.ndim, op)
    if xd.ndim == 0:
        return _wrap(np.zeros((), np.int64))
    if xd.shape[d] == 0:
        raise IndexError(f"{op}(): Expected reduction dim {d} to have non-zero size.")
    return _wrap(np.asarray(argpick(xd, axis=d, keepdims=keepdim), np.int64))


def argmax(input, dim=None, keepdim=False):  # noqa: A002
    """Index of the largest entry (of the flattened tensor when ``dim`` is None); no grad."""
    return _arg(input, dim, keepdim, "argmax", np.argmax)


def argmin(input, dim=None, keepdim=False):  # noqa: A002
    """Index of the smallest entry (of the flattened tensor when ``dim`` is None); no grad."""
    return _arg(input, dim, keepdim, "argmin", np.argmin)


# ------------------------------------------------------------------ sort, argsort, topk
def _order(xd, d, descending):
    """Stable sorting indices along axis ``d`` (NaN counts as the largest, as in PyTorch)."""
    if not descending:
        return np.argsort(xd, axis=d, kind="stable")
    # a stable ascending sort of the reversed axis, read backwards, is a stable
    # descending sort (equal entries keep their order)
    idx = np.argsort(np.flip(xd, d), axis=d, kind="stable")
    return (xd.shape[d] - 1) - np.flip(idx, d)


def _select(input, dim, descending, k, op):
    """(values, indices) of the first ``k`` (None: all) entries in sorted order along ``dim``."""
    x = as_tensor(input)
    xd = x.data
    d = check_dim(dim, xd.ndim, op)
    src = xd if xd.ndim else xd.reshape(1)
    if k is not None and not 0 <= k <= src.shape[d]:
        raise RuntimeError(f"{op}(): selected index k out of range (k={k}, dim {d} of shape {xd.shape})")
    idx = _order(src, d, descending)
    if k is not None and k < src.shape[d]:
        idx = np.ascontiguousarray(idx[(slice(None),) * d + (slice(0, k),)])
    values = np.take_along_axis(src, idx, d)
    if not xd.ndim:
        idx, values = idx.reshape(()), values.reshape(())
    out = _wrap(values)
    if values.dtype.kind == "f" and recording(x):
        def backward(g):
            # values = x[idx] along d: scatter the gradient back to where each came from
            dx = np.zeros(src.shape, xd.dtype)
            np.put_along_axis(dx, idx.reshape(values.shape or (1,)), g.reshape(values.shape or (1,)), d)
            return (dx.reshape(xd.shape),)

        attach(out, backward, (x,), "SortBackward0" if k is None else "TopkBackward0")
    return return_types[op](out, _wrap(idx.astype(np.int64, copy=False)))


def sort(input, dim=-1, descending=False, stable=False):  # noqa: A002
    """``(values, indices)`` sorted along ``dim``; always stable (equal entries keep
    their order), NaN sorts as the largest. The values are differentiable."""
    return _select(input, dim, bool(descending), None, "sort")


def argsort(input, dim=-1, descending=False, stable=False):  # noqa: A002
    """The indices that sort ``input`` along ``dim`` (see ``sort``)."""
    xd = as_tensor(input).data
    d = check_dim(dim, xd.ndim, "argsort")
    if not xd.ndim:
        return _wrap(np.zeros((), np.int64))
    return _wrap(_order(xd, d, bool(descending)).astype(np.int64, copy=False))


def topk(input, k, dim=-1, largest=True, sorted=True):  # noqa: A002
    """``(values, indices)`` of the ``k`` largest (``largest=False``: smallest) entries
    along ``dim``, in sorted order; ties keep index order. The values are differentiable."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"topk(): k must be an int, got {k!r}")
    return _select(input, dim, bool(largest), int(k), "topk")


# ------------------------------------------------------------------ nonzero, unique
def nonzero(input, *, as_tuple=False):  # noqa: A002
    """Indices of the non-zero entries: an (n, ndim) int64 tensor, or with ``as_tuple``
    one 1-D index tensor per dim."""
    xd = as_tensor(input).data
    flat = xd if xd.ndim else xd.reshape(1)
    found = np.nonzero(flat)
    if as_tuple:
        return tuple(_wrap(i.astype(np.int64, copy=False)) for i in found)
    if not xd.ndim:
        return _wrap(np.zeros((len(found[0]), 0), np.int64))
    return _wrap(np.stack(found, axis=1).astype(np.int64, copy=False))


def unique(input, sorted=True, return_inverse=False, return_counts=False, dim=None):  # noqa: A002
    """The distinct entries in ascending order (of the flattened tensor, or distinct
    slices along ``dim``), with the inverse indices (input's shape) and counts if asked."""
    xd = as_tensor(input).data
    axis = None if dim is None else check_dim(dim, xd.ndim, "unique")
    found = np.unique(xd, return_inverse=True, return_counts=True, axis=axis)
    values, inverse, counts = found
    inverse = inverse.reshape(xd.shape if axis is None else (-1,)).astype(np.int64, copy=False)
    result = [_wrap(values)]
    if return_inverse:
        result.append(_wrap(inverse))
    if return_counts:
        result.append(_wrap(counts.astype(np.int64, copy=False)))
    return result[0] if len(result) == 1 else tuple(result)
