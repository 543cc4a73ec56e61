"""More losses, by ``torch.nn.functional``'s names: the elementwise ``l1_loss``,
``smooth_l1_loss``, ``huber_loss``, ``binary_cross_entropy`` and ``kl_div`` run the
shared kernels of ``kernels.losses_extra`` (one kind switch); the per-sample
``cosine_embedding_loss`` and ``margin_ranking_loss`` are a few NumPy passes.

Each returns a Tensor: 0-d for reduction ``'mean'``/``'sum'`` (and kl_div's
``'batchmean'``), the elementwise (or per-sample) losses for ``'none'``.
"""
import numpy as np

from ..kernels import losses_extra as loss_k
from ..kernels.elementwise import CHUNK
from ._util import _wrap, as_tensor, attach, recording, unbroadcast
from .loss_args import (broadcast_weight, float_arg, flat_contiguous, reduce_losses, reduction_arg, row_scales,
                        same_shape, upstream_scale)

__all__ = ["l1_loss", "smooth_l1_loss", "huber_loss", "binary_cross_entropy", "kl_div", "cosine_embedding_loss",
           "margin_ranking_loss"]


class ProbabilityRangeError(RuntimeError, ValueError):
    """Values outside [0, 1] where probabilities are expected: a RuntimeError, as
    PyTorch raises, and a ValueError."""


# ------------------------------------------------------------------ elementwise, on the kernels
def _pointwise(input, target, reduction, kind, p, op, name, weight=None, denom=None, check=None,  # noqa: A002
               by_weight=False):
    """loss(input, target) elementwise by kernel ``kind``, times ``weight``, reduced
    ('mean' divides by ``denom``, default the element count, or with ``by_weight`` the
    summed weights, as PyTorch's l1_loss). Both operands differentiable."""
    x = float_arg(input, op, "input")
    dt = x.data.dtype
    t = float_arg(target, op, "target", dt)
    same_shape(x, t, op)
    w = broadcast_weight(weight, x.shape, dt, op, "weight")
    xd, td = flat_contiguous(x.data), flat_contiguous(t.data)
    if check is not None:
        check(xd, td, x.shape)
    n = xd.shape[0]
    denom = n if denom is None else denom
    if by_weight and w is not None:
        denom = float(np.broadcast_to(w, x.shape).sum(dtype=np.float64))
    store = reduction == "none" or w is not None
    partials = np.empty((n + CHUNK - 1) // CHUNK, dt)
    losses = np.empty(n if store else 0, dt)
    loss_k.pointwise_loss_forward(partials, losses, xd, td, kind, p, store)
    if w is not None:
        out = _wrap(reduce_losses((losses.reshape(x.shape) * w).astype(dt, copy=False), reduction, denom, x.shape, dt))
    elif reduction == "none":
        out = _wrap(losses.reshape(x.shape))
    else:
        out = _wrap(reduce_losses(partials, reduction, denom, (), dt))
    if recording(x, t):
        need_x, need_t, shape = x.requires_grad, t.requires_grad, x.shape

        def backward(g):
            if w is None:
                scales, step = row_scales(g, reduction, denom, dt)
            else:  # the upstream gradient of each element, times its weight
                base = np.asarray(g, dt) if reduction == "none" else upstream_scale(g, reduction, denom)
                scales, step = np.ascontiguousarray(np.broadcast_to(base * w, shape), dtype=dt).reshape(-1), 1
            dx, dtt = np.empty(n if need_x else 0, dt), np.empty(n if need_t else 0, dt)
            loss_k.pointwise_loss_backward(dx, dtt, xd, td, scales, step, kind, p, need_x, need_t)
            return (dx.reshape(shape) if need_x else None), (dtt.reshape(shape) if need_t else None)

        attach(out, backward, (x, t), name, saved=(x, t))
    return out


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):  # noqa: A002
    """|input - target|, reduced; with an elementwise ``weight`` 'mean' divides the
    weighted sum by the summed weights (as PyTorch)."""
    reduction = reduction_arg(size_average, reduce, reduction, "l1_loss")
    return _pointwise(input, target, reduction, loss_k.L1, 0.0, "l1_loss", "L1LossBackward0", weight,
                      by_weight=True)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):  # noqa: A002
    """0.5 z^2 / beta where z = |input - target| < beta, else z - 0.5 beta; reduced."""
    reduction = reduction_arg(size_average, reduce, reduction, "smooth_l1_loss")
    beta = float(beta)
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be >= 0, got {beta}")
    if beta == 0:  # PyTorch: plain L1 (its gradient at 0 is 0, not 0/0)
        return _pointwise(input, target, reduction, loss_k.L1, 0.0, "smooth_l1_loss", "L1LossBackward0")
    return _pointwise(input, target, reduction, loss_k.SMOOTH_L1, beta, "smooth_l1_loss", "SmoothL1LossBackward0")


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):  # noqa: A002
    """0.5 z^2 where z = |input - target| < delta, else delta (z - 0.5 delta); reduced."""
    reduction = reduction_arg(None, None, reduction, "huber_loss")
    delta = float(delta)
    if not delta > 0:
        raise ValueError(f"huber_loss: delta must be > 0, got {delta}")
    return _pointwise(input, target, reduction, loss_k.HUBER, delta, "huber_loss", "HuberLossBackward0", weight)


def _check_probabilities(xd, td, shape):
    for values, name in ((xd, "input"), (td, "target")):
        if values.size and not (values.min() >= 0 and values.max() <= 1):
            raise ProbabilityRangeError(f"binary_cross_entropy: all elements of {name} (shape {shape}) should be "
                                        f"between 0 and 1, got values in [{values.min()}, {values.max()}]")


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):  # noqa: A002
    """-w [t log(x) + (1 - t) log(1 - x)], each log clamped at -100 as in PyTorch;
    input and target probabilities of one shape; ``weight`` broadcasts to it."""
    reduction = reduction_arg(size_average, reduce, reduction, "binary_cross_entropy")
    return _pointwise(input, target, reduction, loss_k.BCE, 0.0, "binary_cross_entropy", "BinaryCrossEntropyBackward0",
                      weight, check=_check_probabilities)


def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):  # noqa: A002
    """Kullback-Leibler divergence of ``target`` from ``input`` (log-probabilities):
    t (log t - input) (0 where t = 0), or exp(t) (t - input) with ``log_target``.
    reduction 'batchmean' divides the sum by the batch size (dim 0), as the maths wants."""
    denom = None
    if reduction == "batchmean":
        shape = as_tensor(input).shape
        reduction, denom = "mean", (shape[0] if len(shape) else 1)
    else:
        reduction = reduction_arg(size_average, reduce, reduction, "kl_div")
    kind = loss_k.KL_DIV_LOG if log_target else loss_k.KL_DIV
    return _pointwise(input, target, reduction, kind, 0.0, "kl_div", "KlDivBackward0", denom=denom)


# ------------------------------------------------------------------ per sample, NumPy
def _reduce_rows(losses, reduction, dt):
    return _wrap(reduce_losses(losses, reduction, losses.size, losses.shape, dt))


def _row_grads(g, reduction, shape, dt):
    """The upstream gradient of each per-sample loss, as an array of ``shape``."""
    if reduction == "none":
        return np.asarray(g, dt)
    return np.full(shape, upstream_scale(g, reduction, int(np.prod(shape))), dt)


def cosine_embedding_loss(input1, input2, target, margin=0, size_average=None, reduce=None,  # noqa: A002
                          reduction="mean"):
    """1 - cos(x1, x2) for target 1, max(0, cos(x1, x2) - margin) for target -1
    (0 for other targets); cos over the last dim with PyTorch's 1e-12 guard.

    Shape: input1, input2 (N, D) with target (N,), or (D,) with a 0-d target."""
    op = "cosine_embedding_loss"
    reduction = reduction_arg(size_average, reduce, reduction, op)
    a = float_arg(input1, op, "input1")
    dt = a.data.dtype
    b = float_arg(input2, op, "input2", dt)
    y = as_tensor(target).data
    if a.shape != b.shape or a.data.ndim not in (1, 2) or y.shape != a.shape[:-1]:
        raise ValueError(f"{op}: expected input1 and input2 of one shape (N, D) with target (N,), or (D,) with a "
                         f"0-d target; got input1 {a.shape}, input2 {b.shape}, target {y.shape}")
    ad, bd, margin = a.data, b.data, float(margin)
    eps = dt.type(1e-12)
    prod = np.sum(ad * bd, axis=-1)
    m1, m2 = np.sum(ad * ad, axis=-1) + eps, np.sum(bd * bd, axis=-1) + eps
    denom = np.sqrt(m1 * m2)
    cos = prod / denom
    pos, neg = y == 1, (y == -1) & (cos - margin >= 0)
    losses = np.where(pos, 1 - cos, 0) + np.where(y == -1, np.maximum(cos - margin, 0), 0)
    out = _reduce_rows(np.asarray(losses, dt), reduction, dt)
    if recording(a, b):
        def backward(g):  # cos = <a, b> / sqrt(|a|^2 |b|^2): dcos/da = b / denom - cos a / |a|^2
            k = (_row_grads(g, reduction, cos.shape, dt) * (neg.astype(dt) - pos))[..., None]
            c, d = cos[..., None], denom[..., None]
            da = (k * (bd / d - c * ad / m1[..., None])).astype(dt, copy=False) if a.requires_grad else None
            db = (k * (ad / d - c * bd / m2[..., None])).astype(dt, copy=False) if b.requires_grad else None
            return da, db

        attach(out, backward, (a, b), "CosineEmbeddingLossBackward0", saved=(a, b))
    return out


def margin_ranking_loss(input1, input2, target, margin=0, size_average=None, reduce=None,  # noqa: A002
                        reduction="mean"):
    """max(0, -target (input1 - input2) + margin), broadcasting; target holds 1 or -1.
    All three need the same number of dims (as in PyTorch) and are differentiable."""
    op = "margin_ranking_loss"
    reduction = reduction_arg(size_average, reduce, reduction, op)
    a = float_arg(input1, op, "input1")
    dt = a.data.dtype
    b, y = float_arg(input2, op, "input2", dt), float_arg(target, op, "target", dt)
    if not a.data.ndim == b.data.ndim == y.data.ndim:
        raise ValueError(f"{op}: all input tensors should have the same number of dims, got input1 {a.shape}, "
                         f"input2 {b.shape}, target {y.shape}")
    try:
        shape = np.broadcast_shapes(a.shape, b.shape, y.shape)
    except ValueError:
        raise ValueError(f"{op}: shapes input1 {a.shape}, input2 {b.shape} and target {y.shape} do not "
                         "broadcast together") from None
    diff = a.data - b.data
    inner = -y.data * diff + dt.type(margin)
    out = _reduce_rows(np.maximum(inner, 0).astype(dt, copy=False), reduction, dt)
    if recording(a, b, y):
        def backward(g):  # loss = max(inner, 0): d inner/d a = -y, /d b = y, /d y = -(a - b)
            gm = np.where(inner >= 0, _row_grads(g, reduction, shape, dt), 0)
            grads = (-y.data * gm, y.data * gm, -diff * gm)
            return tuple(unbroadcast(d, t.shape).astype(dt, copy=False) if t.requires_grad else None
                         for d, t in zip(grads, (a, b, y)))

        attach(out, backward, (a, b, y), "ClampMinBackward0", saved=(a, b, y))
    return out
