"""Shape and view operations: reshape, flatten, squeeze, permute, transpose, expand,
repeat, flip, roll, ... (NumPy does the work; no element loops). The indexing and
joining operations live in ``indexing`` and are re-exported here.

Views share memory with their input wherever NumPy allows, as PyTorch's do; their
backward reshapes or transposes the gradient back."""
import math

import numpy as np

from . import indexing
from ._util import _wrap, as_tensor, attach, check_dim, recording, size_args
from .indexing import *  # noqa: F401,F403

__all__ = ["reshape", "view", "view_as", "reshape_as", "flatten", "unflatten", "unsqueeze", "squeeze", "permute",
           "transpose", "swapaxes", "swapdims", "movedim", "moveaxis", "t", "expand", "expand_as", "repeat",
           "contiguous", "flip", "roll", "diagonal"] + indexing.__all__


def _unary(x, out, backward, name):
    """Wrap ``out`` and, when recording, attach ``backward`` (a factory: called only then)."""
    res = _wrap(out)
    if recording(x):
        attach(res, backward(), (x,), name)
    return res


def _sizes(first, more, op):
    return size_args((first,) + more if more else (first,), op)


def _dims_list(first, more, op):
    if more:
        return size_args((first,) + more, op)
    if isinstance(first, (int, np.integer)):
        return (int(first),)
    return size_args((first,), op)


# --------------------------------------------------------------- reshaping
def _infer(shape, numel, what, op):
    """``shape`` with its -1 (at most one) filled in so that it holds ``numel`` elements
    (``what``: the input's shape, or a description, for the error)."""
    if -1 not in shape:
        if math.prod(shape) == numel and all(s >= 0 for s in shape):
            return shape
        free, known = (), None
    else:
        free = [i for i, s in enumerate(shape) if s == -1]
        known = math.prod(s for s in shape if s != -1)
        if len(free) == 1 and known > 0 and numel % known == 0 and all(s >= -1 for s in shape):
            return shape[:free[0]] + (numel // known,) + shape[free[0] + 1:]
    what = f"input shape {what}" if isinstance(what, tuple) else what
    raise RuntimeError(f"{op}: shape {list(shape)} is invalid for input of size {numel} ({what})")


def _reshaped(x, shape, op, name="ViewBackward0"):
    x = as_tensor(x)
    xd = x.data
    in_shape = xd.shape
    out = xd.reshape(_infer(shape, xd.size, in_shape, op))
    return _unary(x, out, lambda: lambda g: (g.reshape(in_shape),), name)


def reshape(input, shape, *more):  # noqa: A002 (PyTorch's names)
    """``input`` with the given shape (one size may be -1); a view where NumPy can."""
    return _reshaped(input, _sizes(shape, more, "reshape"), "reshape", "ReshapeAliasBackward0")


def view(input, shape, *more):  # noqa: A002
    """As ``reshape`` (fastnn copies where PyTorch's ``view`` would refuse)."""
    return _reshaped(input, _sizes(shape, more, "view"), "view")


def view_as(input, other):  # noqa: A002
    return _reshaped(input, tuple(as_tensor(other).shape), "view_as")


def reshape_as(input, other):  # noqa: A002
    return _reshaped(input, tuple(as_tensor(other).shape), "reshape_as", "ReshapeAliasBackward0")


def flatten(input, start_dim=0, end_dim=-1):  # noqa: A002
    """Merge dims ``start_dim..end_dim`` into one (a 0-d input becomes shape (1,))."""
    x = as_tensor(input)
    shape = x.data.shape
    start, end = check_dim(start_dim, len(shape), "flatten"), check_dim(end_dim, len(shape), "flatten")
    if start > end:
        raise RuntimeError(f"flatten: start_dim ({start_dim}) cannot come after end_dim ({end_dim})")
    if not shape:
        return _reshaped(x, (1,), "flatten")
    if start == end:
        return x
    return _reshaped(x, shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:], "flatten")


def unflatten(input, dim, sizes):  # noqa: A002
    """Split dim ``dim`` into ``sizes`` (one may be -1)."""
    x = as_tensor(input)
    shape = x.data.shape
    d = check_dim(dim, len(shape), "unflatten")
    sizes = _infer(size_args((sizes,), "unflatten"), shape[d], f"size {shape[d]} of dim {d}, input shape {shape}",
                   "unflatten")
    return _reshaped(x, shape[:d] + sizes + shape[d + 1:], "unflatten")


def unsqueeze(input, dim):  # noqa: A002
    """A new dim of size 1 at ``dim`` (in ``[-ndim-1, ndim]``)."""
    x = as_tensor(input)
    shape = x.data.shape
    d = check_dim(dim, len(shape) + 1, "unsqueeze")
    return _reshaped(x, shape[:d] + (1,) + shape[d:], "unsqueeze", "UnsqueezeBackward0")


def squeeze(input, dim=None):  # noqa: A002
    """Drop the dims of size 1 (all, or those of ``dim``: an int or a tuple; others stay)."""
    x = as_tensor(input)
    shape = x.data.shape
    dims = range(len(shape))
    if dim is not None:
        dims = {check_dim(d, len(shape), "squeeze") for d in _dims_list(dim, (), "squeeze")}
    new = tuple(n for i, n in enumerate(shape) if not (i in dims and n == 1))
    return _reshaped(x, new, "squeeze", "SqueezeBackward0")


# --------------------------------------------------------------- dims
def permute(input, dims, *more):  # noqa: A002
    """The dims of ``input`` reordered as ``dims`` (a view)."""
    x = as_tensor(input)
    ndim = x.data.ndim
    raw = _dims_list(dims, more, "permute")
    order = tuple(d + ndim if d < 0 else d for d in raw)
    if sorted(order) != list(range(ndim)):
        for d in raw:
            check_dim(d, ndim, "permute")  # IndexError for a dim out of range
        raise RuntimeError(f"permute: dims {list(raw)} are no permutation of the {ndim} dims of shape {x.data.shape}")

    def make():
        inverse = tuple(sorted(range(ndim), key=order.__getitem__))
        return lambda g: (g.transpose(inverse),)

    return _unary(x, x.data.transpose(order), make, "PermuteBackward0")


def transpose(input, dim0, dim1):  # noqa: A002
    """``input`` with dims ``dim0`` and ``dim1`` swapped (a view)."""
    x = as_tensor(input)
    n = x.data.ndim
    a, b = check_dim(dim0, n, "transpose"), check_dim(dim1, n, "transpose")
    if n == 0:
        return _unary(x, x.data.view(), lambda: lambda g: (g,), "TransposeBackward0")
    return _unary(x, x.data.swapaxes(a, b), lambda: lambda g: (g.swapaxes(a, b),), "TransposeBackward0")


def swapaxes(input, axis0, axis1):  # noqa: A002
    return transpose(input, axis0, axis1)


def swapdims(input, dim0, dim1):  # noqa: A002
    return transpose(input, dim0, dim1)


def movedim(input, source, destination):  # noqa: A002
    """Dims ``source`` moved to positions ``destination`` (ints or sequences; a view)."""
    x = as_tensor(input)
    n = x.data.ndim
    src = tuple(check_dim(d, n, "movedim") for d in _dims_list(source, (), "movedim"))
    dst = tuple(check_dim(d, n, "movedim") for d in _dims_list(destination, (), "movedim"))
    if len(src) != len(dst) or len(set(src)) != len(src) or len(set(dst)) != len(dst):
        raise RuntimeError(f"movedim: invalid source {source} / destination {destination} for shape {x.data.shape}")
    return _unary(x, np.moveaxis(x.data, src, dst), lambda: lambda g: (np.moveaxis(g, dst, src),), "MovedimBackward0")


moveaxis = movedim


def t(input):  # noqa: A002
    """The transpose of a matrix (0-d and 1-d inputs are returned as they are)."""
    x = as_tensor(input)
    if x.data.ndim > 2:
        raise RuntimeError(f"t: expects a tensor with <= 2 dimensions, but got shape {x.data.shape}")
    return transpose(x, 0, -1) if x.data.ndim == 2 else x


def contiguous(input, memory_format=None):  # noqa: A002
    """``input`` itself if C-contiguous, else a C-contiguous copy."""
    x = as_tensor(input)
    if x.data.flags.c_contiguous:
        return x
    return _unary(x, np.ascontiguousarray(x.data), lambda: lambda g: (g,), "CloneBackward0")


def diagonal(input, offset=0, dim1=0, dim2=1):  # noqa: A002
    """The diagonal of dims (dim1, dim2), appended as the last dim (a read-only view)."""
    x = as_tensor(input)
    xd = x.data
    d1, d2 = check_dim(dim1, xd.ndim, "diagonal"), check_dim(dim2, xd.ndim, "diagonal")
    if d1 == d2:
        raise RuntimeError(f"diagonal: dim1 and dim2 cannot be identical ({dim1}, {dim2})")

    def make():
        shape, dtype = xd.shape, xd.dtype

        def backward(g):
            dx = np.zeros(shape, dtype)
            k = np.arange(g.shape[-1])
            np.moveaxis(dx, (d1, d2), (-2, -1))[..., k + max(-offset, 0), k + max(offset, 0)] = g
            return (dx,)

        return backward

    return _unary(x, np.diagonal(xd, offset, d1, d2), make, "DiagonalBackward0")


# --------------------------------------------------------------- copies of the data
def expand(input, size, *more):  # noqa: A002
    """``input`` broadcast to ``size`` (-1 keeps a dim; new dims go first); a read-only view."""
    x = as_tensor(input)
    shape = x.data.shape
    sizes = _sizes(size, more, "expand")
    lead = len(sizes) - len(shape)
    ok, target = lead >= 0, []
    for i, n in enumerate(sizes):
        old = shape[i - lead] if i >= lead else 1
        n = old if n == -1 and i >= lead else n
        ok = ok and n >= 0 and old in (1, n)
        target.append(n)
    if not ok:
        raise RuntimeError(f"expand: the size {list(sizes)} is invalid for a tensor of shape {shape} (a dim may "
                           "only grow from size 1, and new leading dims cannot be -1)")
    return _unary(x, np.broadcast_to(x.data, target), lambda: _sum_to(shape), "ExpandBackward0")


def _sum_to(shape):
    lead_shape = shape

    def backward(g):
        lead = g.ndim - len(lead_shape)
        if lead:
            g = g.sum(axis=tuple(range(lead)))
        stretched = tuple(i for i, n in enumerate(lead_shape) if n == 1 and g.shape[i] != 1)
        return ((g.sum(axis=stretched, keepdims=True) if stretched else g),)

    return backward


def expand_as(input, other):  # noqa: A002
    return expand(input, tuple(as_tensor(other).shape))


def repeat(input, repeats, *more):  # noqa: A002
    """``input`` tiled ``repeats`` times along each dim (new leading dims allowed)."""
    x = as_tensor(input)
    shape = x.data.shape
    reps = _sizes(repeats, more, "repeat")
    if len(reps) < len(shape) or any(r < 0 for r in reps):
        raise RuntimeError(f"repeat: invalid repeats {list(reps)} for a tensor of shape {shape} (need >= {len(shape)} "
                           "non-negative counts)")
    padded = (1,) * (len(reps) - len(shape)) + shape
    out = np.tile(x.data.reshape(padded), reps)

    def make():
        pairs = tuple(v for r, n in zip(reps, padded) for v in (r, n))
        return lambda g: (g.reshape(pairs).sum(axis=tuple(range(0, len(pairs), 2))).reshape(shape),)

    return _unary(x, out, make, "RepeatBackward0")


def flip(input, dims, *more):  # noqa: A002
    """``input`` reversed along ``dims`` (a copy, as in PyTorch)."""
    x = as_tensor(input)
    axes = tuple(check_dim(d, x.data.ndim, "flip") for d in _dims_list(dims, more, "flip"))
    if len(set(axes)) != len(axes):
        raise RuntimeError(f"flip: dims {list(axes)} has duplicates")
    return _unary(x, np.flip(x.data, axes).copy(), lambda: lambda g: (np.flip(g, axes),), "FlipBackward0")


def roll(input, shifts, dims=None):  # noqa: A002
    """``input`` rolled by ``shifts`` along ``dims`` (None: over the flattened tensor)."""
    x = as_tensor(input)
    sh = _dims_list(shifts, (), "roll")
    if dims is None:
        if len(sh) != 1:
            raise RuntimeError(f"roll: expected one shift without dims, got {list(sh)}")
        axes, sh = None, sh[0]
    else:
        axes = tuple(check_dim(d, x.data.ndim, "roll") for d in _dims_list(dims, (), "roll"))
        if len(axes) != len(sh):
            raise RuntimeError(f"roll: shifts {list(sh)} and dims {list(axes)} must have the same length")
    back = -sh if axes is None else tuple(-s for s in sh)
    return _unary(x, np.roll(x.data, sh, axes), lambda: lambda g: (np.roll(g, back, axes),), "RollBackward0")
