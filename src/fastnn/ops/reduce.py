"""Reductions with PyTorch's semantics: sum, mean, var, std, prod, cumsum, norm,
logsumexp, trace, all, any; and, re-exported here so that ``fastnn.max`` etc. exist,
the extremes and sorting (``ops.extrema``) and the softmax family (``ops.softmax_ops``).

Reductions run in NumPy: float32 sums accumulate pairwise as NumPy's do, results
keep the input dtype and integer sums give int64. A ``dim`` is an int, a tuple of
ints (negative ones count from the end) or None for all dims.
"""
import numpy as np

from ._axes import attach_float, count, keep_dims, reduce_axes, spread, sum_dtype
from ._util import _wrap, as_tensor, attach, check_dim, float_tensor, recording
from .extrema import *  # noqa: F401,F403
from .extrema import __all__ as _extrema_all
from .softmax_ops import *  # noqa: F401,F403
from .softmax_ops import __all__ as _softmax_all

__all__ = ["sum", "mean", "var", "std", "prod", "cumsum", "norm", "logsumexp", "trace", "all",
           "any"] + _extrema_all + _softmax_all


# ------------------------------------------------------------------ sum, mean, var, std, prod
def sum(input, dim=None, keepdim=False, dtype=None):  # noqa: A001,A002 (PyTorch's names)
    """Sum over ``dim`` (an int, a tuple, or None for all); integers sum to int64."""
    x = as_tensor(input)
    xd = x.data
    axes = reduce_axes(dim, xd.ndim, "sum")
    out = _wrap(np.asarray(np.sum(xd, axis=axes, dtype=sum_dtype(xd, dtype), keepdims=keepdim)))
    shape, dt = xd.shape, xd.dtype
    return attach_float(out, x, lambda g: (spread(g, shape, dt, axes, keepdim),), "SumBackward1")


def mean(input, dim=None, keepdim=False, dtype=None):  # noqa: A002
    """Mean over ``dim`` (an int, a tuple, or None for all) of a float tensor."""
    x = as_tensor(input)
    xd = x.data
    if dtype is None and xd.dtype.kind != "f":
        raise RuntimeError(f"mean(): could not infer output dtype. Input dtype must be either a floating point "
                           f"or complex dtype. Got: {xd.dtype}")
    axes = reduce_axes(dim, xd.ndim, "mean")
    n = count(xd.shape, axes)
    total = np.asarray(np.sum(xd, axis=axes, dtype=dtype, keepdims=keepdim))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = _wrap(total / n)
    shape, dt = xd.shape, xd.dtype

    def backward(g):
        dx = spread(g, shape, dt, axes, keepdim)
        dx /= n
        return (dx,)

    return attach_float(out, x, backward, "MeanBackward1")


def _centered(xd, axes):
    with np.errstate(invalid="ignore", divide="ignore"):
        return xd - np.mean(xd, axis=axes, keepdims=True)


def _moments(input, dim, unbiased, keepdim, correction, op):
    if isinstance(dim, bool):  # x.var(False): the old (input, unbiased) overload
        dim, unbiased = None, dim
    x = float_tensor(input, op)
    xd = x.data
    axes = reduce_axes(dim, xd.ndim, op)
    ddof = (1 if unbiased else 0) if correction is None else correction
    dof = count(xd.shape, axes) - ddof  # the forward divides by max(0, dof), the backward by dof (PyTorch)
    centered = _centered(xd, axes)
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = np.asarray(np.sum(centered * centered, axis=axes, keepdims=keepdim) / (dof if dof > 0 else 0),
                              xd.dtype)
    return x, xd, axes, dof, variance


def var(input, dim=None, unbiased=True, keepdim=False, *, correction=None):  # noqa: A002
    """Variance over ``dim`` with Bessel's correction (``unbiased``) or ``correction``
    (PyTorch 2: the number subtracted from the count)."""
    x, xd, axes, dof, variance = _moments(input, dim, unbiased, keepdim, correction, "var")
    out = _wrap(variance)
    if recording(x):
        def backward(g):
            # var = sum((x - mean)^2) / dof
            scale = keep_dims(g, axes, keepdim) * (2 / dof if dof else np.inf)
            with np.errstate(invalid="ignore"):
                return ((scale * _centered(xd, axes)).astype(xd.dtype, copy=False),)

        attach(out, backward, (x,), "VarBackward0", saved=(x,))
    return out


def std(input, dim=None, unbiased=True, keepdim=False, *, correction=None):  # noqa: A002
    """Standard deviation: ``sqrt(var(input, dim, unbiased, keepdim, correction=...))``."""
    x, xd, axes, dof, variance = _moments(input, dim, unbiased, keepdim, correction, "std")
    result = np.sqrt(variance)
    out = _wrap(result)
    if recording(x):
        def backward(g):
            # std = sqrt(var): dx = g * (x - mean) / (dof * std), 0 where std == 0
            with np.errstate(invalid="ignore", divide="ignore"):
                scale = np.where(result == 0, 0, g / result) / dof
                return ((keep_dims(scale, axes, keepdim) * _centered(xd, axes)).astype(xd.dtype, copy=False),)

        attach(out, backward, (x,), "StdBackward0", saved=(x,))
    return out


def prod(input, dim=None, keepdim=False, dtype=None):  # noqa: A002
    """Product over ``dim`` (None: all); integers multiply in int64."""
    x = as_tensor(input)
    xd = x.data
    axes = reduce_axes(dim, xd.ndim, "prod")
    out = _wrap(np.asarray(np.prod(xd, axis=axes, dtype=sum_dtype(xd, dtype), keepdims=keepdim)))

    def backward(g):
        # d prod / d x_i = product of the others: prod / x_i without zeros; with one
        # zero, only the zero gets the product of the rest; with two, all get 0
        zero = xd == 0
        nonzero = np.where(zero, 1, xd)
        rest = np.prod(nonzero, axis=axes, keepdims=True)
        zeros = np.sum(zero, axis=axes, keepdims=True)
        dx = np.where(zeros == 0, rest / nonzero, np.where(zero & (zeros == 1), rest, 0))
        return ((dx * keep_dims(g, axes, keepdim)).astype(xd.dtype, copy=False),)

    return attach_float(out, x, backward, "ProdBackward1", save_input=True)


def cumsum(input, dim, *, dtype=None):  # noqa: A002
    """Running sum along ``dim``; integers sum to int64."""
    x = as_tensor(input)
    xd = x.data
    d = check_dim(dim, xd.ndim, "cumsum")
    acc = sum_dtype(xd, dtype)
    if xd.ndim == 0:
        out = _wrap(xd.astype(acc or xd.dtype))
        return attach_float(out, x, lambda g: (np.array(g, xd.dtype),), "CumsumBackward0")
    out = _wrap(np.cumsum(xd, axis=d, dtype=acc))

    def backward(g):
        # y_j = sum_{i <= j} x_i  ->  dx_i = sum_{j >= i} g_j
        return (np.flip(np.cumsum(np.flip(g, d), axis=d), d).astype(xd.dtype, copy=False),)

    return attach_float(out, x, backward, "CumsumBackward0")


# ------------------------------------------------------------------ norm, logsumexp, trace, all, any
def _norm_backward(g, xd, result, p, axes, keepdim):
    """d ||x||_p / dx (PyTorch's rules: 0 where the norm is 0; ties of inf-norms share)."""
    gk, norm_k = keep_dims(g, axes, keepdim), keep_dims(result, axes, keepdim)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if p == 0:
            return np.zeros(xd.shape, xd.dtype)
        if p == 1:
            return np.sign(xd) * gk
        if np.isinf(p):
            mask = np.abs(xd) == norm_k
            return np.sign(xd) * mask * (gk / np.sum(mask, axis=axes, keepdims=True))
        if p < 1:
            scaled = np.sign(xd) * np.where(xd == 0, 0, np.abs(xd) ** (p - 1))
            return scaled * gk * norm_k ** (1 - p)
        scaled = np.sign(xd) * np.abs(xd) ** (p - 1) if p < 2 else xd * np.abs(xd) ** (p - 2)
        return scaled * np.where(norm_k == 0, 0, gk / norm_k ** (p - 1))


def norm(input, p="fro", dim=None, keepdim=False, dtype=None):  # noqa: A002
    """The vector p-norm over ``dim`` (None: all entries): p = 'fro' (= 2), 1, 2,
    inf, -inf, 0 (count of non-zeros) or any other number."""
    x = float_tensor(input, "norm")
    xd = x.data if dtype is None else x.data.astype(dtype)
    if p is None:
        p = "fro"
    if isinstance(p, str):
        if p != "fro":
            raise ValueError(f"norm: p must be 'fro' or a number, got {p!r} (matrix norms are not supported)")
        p = 2.0
    p = float(p)
    axes = reduce_axes(dim, xd.ndim, "norm")
    if p < 0 and count(xd.shape, axes) == 0 or np.isinf(p) and xd.size == 0:
        raise RuntimeError(f"norm: the {p}-norm of an empty tensor (shape {xd.shape}) is undefined")
    a = np.abs(xd)
    with np.errstate(divide="ignore", over="ignore"):
        if p == 2:
            result = np.sqrt(np.sum(xd * xd, axis=axes, keepdims=keepdim))
        elif p == 1:
            result = np.sum(a, axis=axes, keepdims=keepdim)
        elif np.isinf(p):
            result = (np.max if p > 0 else np.min)(a, axis=axes, keepdims=keepdim)
        elif p == 0:
            result = np.sum(xd != 0, axis=axes, keepdims=keepdim).astype(xd.dtype)
        else:
            result = np.sum(a ** p, axis=axes, keepdims=keepdim) ** (1 / p)
    out = _wrap(np.asarray(result, xd.dtype))
    if recording(x):
        def backward(g):
            return (_norm_backward(g, xd, out.data, p, axes, keepdim).astype(x.data.dtype, copy=False),)

        attach(out, backward, (x,), "NormBackward1", saved=(x,))
    return out


def logsumexp(input, dim, keepdim=False):  # noqa: A002
    """log(sum(exp(input))) over ``dim`` (an int or tuple), shifted by the max for stability."""
    x = float_tensor(input, "logsumexp")
    xd = x.data
    axes = reduce_axes(dim, xd.ndim, "logsumexp")
    with np.errstate(divide="ignore", invalid="ignore"):
        if xd.size:
            shift = np.max(xd, axis=axes, keepdims=True)
            shift = np.where(np.isfinite(shift), shift, 0).astype(xd.dtype, copy=False)
        else:
            shift = np.zeros([1 if a in axes else n for a, n in enumerate(xd.shape)], xd.dtype)
        lse = np.log(np.sum(np.exp(xd - shift), axis=axes, keepdims=True)) + shift
    out = _wrap(lse if keepdim else lse.reshape([n for a, n in enumerate(lse.shape) if a not in axes]))

    def backward(g):
        # d lse / dx = exp(x - lse) = softmax(x) over the reduced axes
        with np.errstate(invalid="ignore"):
            return ((keep_dims(g, axes, keepdim) * np.exp(xd - lse)).astype(xd.dtype, copy=False),)

    return attach_float(out, x, backward, "LogsumexpBackward0", save_input=True)


def trace(input):  # noqa: A002
    """Sum of the main diagonal of a 2-D tensor; integers sum to int64."""
    x = as_tensor(input)
    xd = x.data
    if xd.ndim != 2:
        raise RuntimeError(f"trace: expected a matrix (2-D), but got a tensor of shape {xd.shape}")
    out = _wrap(np.asarray(np.trace(xd, dtype=sum_dtype(xd, None))))

    def backward(g):
        dx = np.zeros(xd.shape, xd.dtype)
        np.fill_diagonal(dx, g)
        return (dx,)

    return attach_float(out, x, backward, "TraceBackward0")


def all(input, dim=None, keepdim=False):  # noqa: A001,A002
    """True where every entry over ``dim`` (None: all) is non-zero; a bool tensor."""
    xd = as_tensor(input).data
    return _wrap(np.asarray(np.all(xd, axis=reduce_axes(dim, xd.ndim, "all"), keepdims=keepdim)))


def any(input, dim=None, keepdim=False):  # noqa: A001,A002
    """True where some entry over ``dim`` (None: all) is non-zero; a bool tensor."""
    xd = as_tensor(input).data
    return _wrap(np.asarray(np.any(xd, axis=reduce_axes(dim, xd.ndim, "any"), keepdims=keepdim)))
