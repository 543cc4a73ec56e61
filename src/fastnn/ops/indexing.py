"""Indexing and joining: ``x[index]``, ``narrow``, ``split``/``chunk``/``unbind``,
``cat``/``stack``, ``gather``, ``index_select``, ``one_hot`` (NumPy does the work).

Basic indexing (ints, slices, None, ``...``) and the pieces of ``split``/``unbind``
are views; their backward writes the gradient into zeros of the input's shape.
Integer-array indexing scatter-adds (``np.add.at``), so repeated indices add up."""
import numpy as np

from ._util import _wrap, as_tensor, attach, attach_multi, check_dim, index_of, recording, size_args

__all__ = ["narrow", "split", "chunk", "unbind", "cat", "concat", "concatenate", "stack", "gather", "index_select",
           "one_hot", "getitem"]


# --------------------------------------------------------------- pieces
def _write_back(shape, dtype, where):
    """A backward for outputs that are ``x[where[i]]``: gradients into zeros of x."""
    def backward(grads):
        full = all(g is not None for g in grads)
        dx = np.empty(shape, dtype) if full else np.zeros(shape, dtype)
        for index, g in zip(where, grads):
            if g is not None:
                dx[index] = g
        return (dx,)

    return backward


def _pieces(x, where, name):
    outs = tuple(_wrap(x.data[i + (Ellipsis,)]) for i in where)  # ...: 0-d views, not scalars
    if recording(x):
        attach_multi(outs, _write_back(x.data.shape, x.data.dtype, where), (x,), name)
    return outs


def narrow(input, dim, start, length):  # noqa: A002
    """``length`` entries of dim ``dim`` from ``start`` (a view)."""
    x = as_tensor(input)
    shape = x.data.shape
    if not shape:
        raise RuntimeError("narrow: cannot be applied to a 0-dim tensor")
    d = check_dim(dim, len(shape), "narrow")
    start, length = int(start), int(length)
    begin = start + shape[d] if start < 0 else start
    if not 0 <= begin <= shape[d] or length < 0 or begin + length > shape[d]:
        raise IndexError(f"narrow: start {start} and length {length} exceed dim {d} of shape {shape}")
    return getitem(x, (slice(None),) * d + (slice(begin, begin + length),))


def split(tensor, split_size_or_sections, dim=0):
    """Views of consecutive pieces along ``dim``: of size ``split_size_or_sections``
    (the last may be smaller), or of the listed sizes (which must add up to the dim)."""
    x = as_tensor(tensor)
    shape = x.data.shape
    d = check_dim(dim, len(shape), "split")
    n = shape[d] if shape else 0
    if isinstance(split_size_or_sections, (int, np.integer)):
        step = int(split_size_or_sections)
        if step < 0 or (step == 0 and n):
            raise RuntimeError(f"split: split_size must be positive, got {step} (shape {shape})")
        sizes = [min(step, n - i) for i in range(0, n, step)] if n else [0]
    else:
        sizes = list(size_args((split_size_or_sections,), "split"))
        if sum(sizes) != n or any(s < 0 for s in sizes):
            raise RuntimeError(f"split: sizes {sizes} do not add up to {n} (dim {d} of shape {shape})")
    bounds = np.cumsum([0] + sizes).tolist()
    pre = (slice(None),) * d
    return _pieces(x, [pre + (slice(a, b),) for a, b in zip(bounds, bounds[1:])], "SplitBackward0")


def chunk(input, chunks, dim=0):  # noqa: A002
    """At most ``chunks`` pieces of equal size (the last may be smaller) along ``dim``."""
    x = as_tensor(input)
    if int(chunks) <= 0:
        raise RuntimeError(f"chunk: chunks must be positive, got {chunks}")
    n = x.data.shape[check_dim(dim, x.data.ndim, "chunk")] if x.data.ndim else 0
    return split(x, max(-(-n // int(chunks)), 1), dim)


def unbind(input, dim=0):  # noqa: A002
    """The slices of ``input`` along ``dim``, that dim removed (views)."""
    x = as_tensor(input)
    if x.data.ndim == 0:
        raise IndexError("unbind: dimension specified as 0 but tensor has no dimensions")
    d = check_dim(dim, x.data.ndim, "unbind")
    pre = (slice(None),) * d
    return _pieces(x, [pre + (i,) for i in range(x.data.shape[d])], "UnbindBackward0")


def _tensor_list(tensors, op):
    if not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{op}: expected a list or tuple of tensors, got {type(tensors).__name__}")
    if not tensors:
        raise ValueError(f"{op}: expected a non-empty list of tensors")
    return [as_tensor(v) for v in tensors]


def _check_same(ts, op, key):
    """One dtype, and one ``key(shape)`` for all tensors, or an error naming the shapes."""
    shapes = [v.data.shape for v in ts]
    if len({v.data.dtype for v in ts}) > 1:
        raise TypeError(f"{op}: expected tensors of one dtype, got {[str(v.data.dtype) for v in ts]} (shapes {shapes})")
    if len({key(s) for s in shapes}) > 1:
        detail = " except in the cat dim" if op == "cat" else ""
        raise RuntimeError(f"{op}: expected tensors of matching shapes{detail}, got shapes {shapes}")
    return shapes


def cat(tensors, dim=0):
    """The tensors joined along the existing dim ``dim``."""
    ts = _tensor_list(tensors, "cat")
    kept = [v for v in ts if v.data.shape != (0,)] or ts[:1]  # PyTorch skips legacy empty 1-d tensors
    if kept[0].data.ndim == 0:
        raise RuntimeError("cat: zero-dimensional tensors cannot be concatenated")
    d = check_dim(dim, kept[0].data.ndim, "cat")
    shapes = _check_same(kept, "cat", lambda s: (len(s), s[:d] + s[d + 1:]))
    res = _wrap(np.concatenate([v.data for v in kept], axis=d))
    if recording(*kept):
        bounds = np.cumsum([0] + [s[d] for s in shapes]).tolist()
        pre = (slice(None),) * d
        where = [pre + (slice(a, b),) for a, b in zip(bounds, bounds[1:])]
        attach(res, lambda g: tuple(g[i] for i in where), kept, "CatBackward0")
    return res


concat = concatenate = cat


def stack(tensors, dim=0):
    """The tensors (all of one shape) joined along a new dim ``dim``."""
    ts = _tensor_list(tensors, "stack")
    shapes = _check_same(ts, "stack", lambda s: s)
    d = check_dim(dim, len(shapes[0]) + 1, "stack")
    res = _wrap(np.stack([v.data for v in ts], axis=d))
    if recording(*ts):
        where = [(slice(None),) * d + (i, Ellipsis) for i in range(len(ts))]
        attach(res, lambda g: tuple(g[i] for i in where), ts, "StackBackward0")
    return res


# --------------------------------------------------------------- indexing
def _int_index(index, op):
    idx = np.asarray(index_of(index))
    if idx.dtype.kind not in "iu" and not (idx.size == 0 and idx.dtype.kind == "f"):
        raise TypeError(f"{op}: index must be an integer tensor, got dtype {idx.dtype}")
    return idx.astype(np.intp, copy=False)


def _check_range(idx, size, op, dim, shape):
    if idx.size and (idx.min() < 0 or idx.max() >= size):
        bad = idx.min() if idx.min() < 0 else idx.max()
        raise IndexError(f"{op}: index {bad} is out of bounds for dim {dim} with size {size} (input shape {shape})")


def _scatter_add(x, index, name, res):
    """Attach ``res = x.data[index]``'s backward: scatter-add into zeros of x."""
    shape, dtype = x.data.shape, x.data.dtype

    def backward(g):
        dx = np.zeros(shape, dtype)
        np.add.at(dx, index, g)
        return (dx,)

    return attach(res, backward, (x,), name)


def gather(input, dim, index):  # noqa: A002
    """out[i][j][k] = input[index[i][j][k]][j][k] (dim 0); ``index`` has input's ndim."""
    x = as_tensor(input)
    xd = x.data
    idx = _int_index(index, "gather")
    d = check_dim(dim, xd.ndim, "gather")
    if idx.ndim != xd.ndim or any(a > b for i, (a, b) in enumerate(zip(idx.shape, xd.shape)) if i != d):
        raise RuntimeError(f"gather: index shape {idx.shape} must have input's ndim and not exceed its shape "
                           f"{xd.shape} outside dim {d}")
    if xd.ndim == 0:
        return getitem(gather(getitem(x, None), 0, idx.reshape(1)), 0)
    _check_range(idx, xd.shape[d], "gather", d, xd.shape)
    where = tuple(idx if i == d else np.arange(n).reshape((-1,) + (1,) * (idx.ndim - i - 1))
                  for i, n in enumerate(idx.shape))
    res = _wrap(xd[where])
    return _scatter_add(x, where, "GatherBackward0", res) if recording(x) else res


def index_select(input, dim, index):  # noqa: A002
    """The entries ``index`` (1-D) of dim ``dim``."""
    x = as_tensor(input)
    xd = x.data
    idx = _int_index(index, "index_select")
    if idx.ndim > 1:
        raise IndexError(f"index_select: index must be 1-D, got shape {idx.shape}")
    idx = idx.reshape(-1)
    d = check_dim(dim, xd.ndim, "index_select")
    if xd.ndim == 0:
        return getitem(index_select(getitem(x, None), 0, idx), 0)
    _check_range(idx, xd.shape[d], "index_select", d, xd.shape)
    where = (slice(None),) * d + (idx,)
    res = _wrap(xd[where])
    return _scatter_add(x, where, "IndexSelectBackward0", res) if recording(x) else res


def one_hot(tensor, num_classes=-1):
    """int64 one-hot encoding: shape ``tensor.shape + (num_classes,)`` (-1: max + 1). No grad."""
    idx = as_tensor(tensor).data
    if idx.dtype.kind not in "iu":
        raise TypeError(f"one_hot: expected an integer (index) tensor, got dtype {idx.dtype}")
    num_classes = int(num_classes)
    if num_classes == -1:
        if idx.size == 0:
            raise RuntimeError("one_hot: can not infer the total number of classes from an empty tensor")
        num_classes = int(idx.max()) + 1
    if idx.size and idx.min() < 0:
        raise RuntimeError(f"one_hot: class values must be non-negative, got {idx.min()} (shape {idx.shape})")
    if idx.size and idx.max() >= num_classes:
        raise RuntimeError(f"one_hot: class values must be smaller than num_classes {num_classes}, got "
                           f"{idx.max()} (shape {idx.shape})")
    out = np.zeros((idx.size, num_classes), np.int64)
    out[np.arange(idx.size), idx.reshape(-1)] = 1
    return _wrap(out.reshape(idx.shape + (num_classes,)))


_BASIC = (int, np.integer, slice, type(None), type(Ellipsis))


def _normalize(index):
    """(index tuple for NumPy, basic?, may repeat entries?)"""
    parts = index_of(index)
    parts = parts if type(parts) is tuple else (parts,)
    if all(type(p) is not bool and isinstance(p, _BASIC) for p in parts):
        return parts, True, False
    out, repeats = [], False
    for p in parts:
        if isinstance(p, (list, np.ndarray)) or type(p) is bool or isinstance(p, np.bool_):
            p = np.asarray(index_of(p))
            if p.dtype.kind == "f" and p.size == 0:
                p = p.astype(np.intp)
            repeats = repeats or p.dtype.kind != "b"
        out.append(p)
    return tuple(out), False, repeats


def getitem(input, index):  # noqa: A002
    """``input[index]``: ints, slices, None and ``...`` give a view; integer arrays,
    lists, integer Tensors and boolean masks give a copy (NumPy's/PyTorch's rules)."""
    x = as_tensor(input)
    xd = x.data
    where, basic, repeats = _normalize(index)
    try:
        out = xd[where]
        if not isinstance(out, np.ndarray):  # an element: a 0-d view instead of a scalar
            out = xd[where + (Ellipsis,)]
    except (IndexError, TypeError, ValueError) as exc:
        raise type(exc)(f"getitem: {exc} (tensor of shape {xd.shape})") from None
    res = _wrap(out)
    if not recording(x):
        return res
    if repeats:
        return _scatter_add(x, where, "IndexBackward0", res)
    shape, dtype = xd.shape, xd.dtype

    def backward(g):
        dx = np.zeros(shape, dtype)
        dx[where] = g
        return (dx,)

    return attach(res, backward, (x,), "SliceBackward0" if basic else "IndexBackward0")
