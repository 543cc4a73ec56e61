"""Arguments shared by the loss operations (``ops.loss``, ``ops.nll_loss``) and modules
(``nn.loss``): PyTorch's reduction names, checked options, float operands, and the
reductions of per-row or per-element losses (summed in float64 in a fixed order, so
a value never depends on the thread count)."""
import operator

import numpy as np

from .._config import get_default_dtype
from ._util import Tensor, _wrap, as_tensor

REDUCTIONS = ("mean", "sum", "none")


class TargetIndexError(IndexError, ValueError):
    """A class index out of range: an IndexError as in PyTorch, and a ValueError."""


# ------------------------------------------------------------------ arguments
def reduction_arg(size_average, reduce, reduction, op):
    """``reduction``, or what PyTorch's legacy ``size_average``/``reduce`` pair means; checked."""
    if size_average is not None or reduce is not None:
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = ("mean" if size_average else "sum") if reduce else "none"
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: {reduction!r} is not a valid value for reduction; expected 'mean', 'sum' or 'none'")
    return reduction


def smoothing_arg(label_smoothing, op):
    value = float(label_smoothing)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be between 0.0 and 1.0, got {label_smoothing!r}")
    return value


def index_arg(ignore_index, op):
    if type(ignore_index) is int and -(1 << 63) <= ignore_index < (1 << 63):
        return ignore_index
    if isinstance(ignore_index, bool):
        raise TypeError(f"{op}: ignore_index must be an int, got {ignore_index!r}")
    try:
        value = operator.index(ignore_index)
    except TypeError:
        raise TypeError(f"{op}: ignore_index must be an int, got {ignore_index!r}") from None
    return min(max(value, -(1 << 63)), (1 << 63) - 1)  # beyond int64 it matches no target anyway


def float_arg(x, op, name, dtype=None):
    """``x`` as a float Tensor (of ``dtype`` if given: constants are converted, a
    Tensor that requires grad must have it already); TypeError naming ``op`` otherwise."""
    try:
        t = as_tensor(x)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{op}: {name} must be a real numeric tensor or array ({err})") from None
    dt = t.data.dtype
    if dt.kind == "f" and (dtype is None or dt == dtype):
        return t
    if dt.kind not in "fiub":
        raise TypeError(f"{op}: {name} must be a real float tensor, got dtype {dt}")
    if t.requires_grad:
        raise TypeError(f"{op}: {name} dtype {dt} does not match the input's {np.dtype(dtype)}")
    return _wrap(t.data.astype(dtype or get_default_dtype()))


def same_shape(x, t, op):
    if t.shape != x.shape:
        raise ValueError(f"{op}: target shape {t.shape} does not match input shape {x.shape}")


def flat_contiguous(a):
    return a.reshape(-1) if a.flags.c_contiguous else np.ascontiguousarray(a).reshape(-1)


def weight_arg(weight, dtype, op, name):
    """A constant ``weight`` (Tensor, array or list; None stays None) as an array of ``dtype``."""
    if weight is None:
        return None
    w = weight.data if isinstance(weight, Tensor) else np.asarray(weight)
    if w.dtype.kind not in "fiub":
        raise TypeError(f"{op}: {name} must be a real float tensor, got dtype {w.dtype}")
    return w.astype(dtype, copy=False)


def broadcast_weight(weight, shape, dtype, op, name):
    """``weight_arg``, checked to broadcast to ``shape`` (ValueError naming both shapes)."""
    w = weight_arg(weight, dtype, op, name)
    if w is not None and (w.ndim > len(shape) or any(a not in (1, b) for a, b in zip(w.shape[::-1], shape[::-1]))):
        raise ValueError(f"{op}: {name} of shape {w.shape} does not broadcast to the input shape {shape}")
    return w


# ------------------------------------------------------------------ reductions
def reduce_losses(losses, reduction, denom, shape, dtype):
    """Per-row (or per-element) ``losses`` -> the output array: summed in float64 in a
    fixed order, divided by ``denom`` for 'mean' (NaN when it is 0, as in PyTorch)."""
    if reduction == "none":
        return losses.reshape(shape)
    total = losses.sum(dtype=np.float64)
    if reduction == "mean":
        total = total / denom if denom else np.nan
    return np.array(total, dtype)


def upstream_scale(g, reduction, denom):
    """The upstream gradient of a 0-d loss per summed row: g / denom for 'mean' (NaN
    for denom 0: a zero total weight makes PyTorch's gradient NaN too), else g."""
    if reduction == "mean":
        return float(g) / denom if denom else float("nan")
    return float(g)


def row_scales(g, reduction, denom, dtype):
    """(scales, step): the upstream gradient per row as the kernels read it (scales[r * step])."""
    if reduction == "none":
        return np.ascontiguousarray(g, dtype).reshape(-1), 1
    return np.array([upstream_scale(g, reduction, denom)], dtype), 0
