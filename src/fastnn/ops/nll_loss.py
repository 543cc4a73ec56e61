"""``cross_entropy`` and ``nll_loss``: class-index (and class-probability) losses.

An input (C,), (N, C) or (N, C, d1, ...) becomes a contiguous (R, C) array of rows
with the class axis last, its targets (R,) int64; the fused kernels of
``kernels.losses`` write one loss per row, summed here in a fixed order. The
common case (class indices, no weight, no smoothing, nothing ignored) runs the
same two kernels as before autograd: one pass forward, one backward.
"""
import numpy as np

from ..kernels import losses as loss_k
from ._util import Tensor, _wrap, attach, recording
from .loss_args import (TargetIndexError, float_arg, index_arg, reduce_losses, reduction_arg, row_scales,
                        smoothing_arg, upstream_scale, weight_arg)

__all__ = ["cross_entropy", "nll_loss"]


def _classes(input, op):
    """The input Tensor, its rows (R, C) contiguous with the class axis last, and C."""
    x = float_arg(input, op, "input")
    xd = x.data
    if xd.ndim == 0:
        raise ValueError(f"{op}: expected input of shape (C,), (N, C) or (N, C, d1, ...), got shape {xd.shape}")
    C = xd.shape[0] if xd.ndim == 1 else xd.shape[1]
    if xd.ndim <= 2:
        rows = np.ascontiguousarray(xd).reshape(-1, C)
    else:
        rows = np.ascontiguousarray(np.moveaxis(xd, 1, -1)).reshape(-1, C)
    return x, rows, C


def _unrows(d2, shape):
    """A (R, C) row gradient back in the input's layout."""
    if len(shape) <= 2:
        return d2.reshape(shape)
    return np.ascontiguousarray(np.moveaxis(d2.reshape((shape[0],) + shape[2:] + (shape[1],)), -1, 1))


def _target_shape(shape):
    return () if len(shape) == 1 else (shape[0],) + shape[2:]


def _class_targets(target, shape, C, ignore_index, op):
    """(targets (R,) int64, whether any equals ignore_index), checked against ``shape``."""
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    if t.dtype.kind not in "iu":
        if t.dtype.kind == "f" and np.all(np.isfinite(t)) and np.all(t == np.round(t)):
            t = t.astype(np.int64)
        else:
            raise TypeError(f"{op}: target must be an integer array of class indices (or float class "
                            f"probabilities of the input's shape {shape}), got dtype {t.dtype}")
    want = _target_shape(shape)
    if t.shape != want:
        raise ValueError(f"{op}: expected {len(want)}-D target of shape {want} for input of shape {shape}, "
                         f"got shape {t.shape}")
    t = np.ascontiguousarray(t, dtype=np.int64).reshape(-1)
    if not t.size:
        return t, False
    lo, hi = int(t.min()), int(t.max())
    ignored = lo <= ignore_index <= hi and bool(np.any(t == ignore_index))
    if lo < 0 or hi >= C:
        valid = t[t != ignore_index] if ignored else t
        if valid.size and (valid.min() < 0 or valid.max() >= C):
            raise TargetIndexError(
                f"{op}: target values must be in [0, {C}) (C = {C} classes) or equal ignore_index={ignore_index}, "
                f"got range [{int(valid.min())}, {int(valid.max())}] (input shape {shape}, target shape {want})")
    return t, ignored


def _class_weight(weight, C, dtype, op):
    w = weight_arg(weight, dtype, op, "weight")
    if w is not None and w.shape != (C,):
        raise ValueError(f"{op}: expected weight of shape ({C},) for {C} classes, got shape {w.shape}")
    return None if w is None else np.ascontiguousarray(w)


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,  # noqa: A002
                  reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy on logits, fused and stable (PyTorch's numerics).

    Shape: input (N, C), (C,) or (N, C, d1, ...); target class indices (N,), () or
    (N, d1, ...), or class probabilities of the input's shape. ``weight`` (C,);
    'mean' divides by the summed weights of the non-ignored targets (by the number
    of rows for probability targets)."""
    op = "cross_entropy"
    reduction = reduction_arg(size_average, reduce, reduction, op)
    smoothing = smoothing_arg(label_smoothing, op)
    ignore_index = index_arg(ignore_index, op)
    x, X2, C = _classes(input, op)
    shape, dt = x.shape, X2.dtype
    w = _class_weight(weight, C, dt, op)
    if tuple(np.shape(target)) == shape and shape:
        if ignore_index >= 0:
            raise ValueError(f"{op}: ignore_index={ignore_index} is not supported with class-probability targets")
        return _soft_cross_entropy(x, X2, target, w, reduction, smoothing, op)
    t, ignored = _class_targets(target, shape, C, ignore_index, op)
    R = X2.shape[0]
    probs, losses = np.empty_like(X2), np.empty(R, dt)
    simple = w is None and smoothing == 0 and not ignored
    if simple:  # the training hot path
        loss_k.cross_entropy_forward(losses, probs, X2, t)
        denom = R
    else:
        w = np.ones(C, dt) if w is None else w
        row_weights = np.empty(R, dt)
        loss_k.cross_entropy_forward_full(losses, row_weights, probs, X2, t, w, ignore_index, smoothing)
        denom = row_weights.sum(dtype=np.float64)
    out = _wrap(reduce_losses(losses, reduction, denom, _target_shape(shape), dt))
    if recording(x):
        def backward(g):
            d2 = np.empty_like(probs)
            if simple and reduction != "none":  # d/dx = s (softmax - onehot)
                loss_k.cross_entropy_backward(d2, probs, t, upstream_scale(g, reduction, denom))
            else:
                wk = np.ones(C, dt) if w is None else w
                scales, step = row_scales(g, reduction, denom, dt)
                loss_k.cross_entropy_backward_full(d2, probs, t, wk, wk.sum(dtype=np.float64), scales, step,
                                                   ignore_index, smoothing)
            return (_unrows(d2, shape),)

        attach(out, backward, (x,), "NllLossBackward0")
    return out


def _soft_cross_entropy(x, X2, target, w, reduction, smoothing, op):
    """Cross-entropy with class probabilities (the input's shape; differentiable too)."""
    shape, dt = x.shape, X2.dtype
    tdt = (target.data if isinstance(target, Tensor) else np.asarray(target)).dtype
    if tdt.kind != "f":
        raise TypeError(f"{op}: a target of the input's shape {shape} holds class probabilities and must be "
                        f"a float tensor, got dtype {tdt}; class indices have shape {_target_shape(shape)}")
    q = float_arg(target, op, "target", dt)
    Q2 = _classes(q, op)[1]
    R, C = X2.shape
    wk = np.ones(C, dt) if w is None else w
    probs = np.empty_like(X2)
    losses, lses, mass = np.empty(R, dt), np.empty(R, dt), np.empty(R, dt)
    loss_k.soft_cross_entropy_forward(losses, lses, mass, probs, X2, Q2, wk, smoothing)
    out = _wrap(reduce_losses(losses, reduction, R, _target_shape(shape), dt))
    if recording(x, q):
        need_x, need_q = x.requires_grad, q.requires_grad

        def backward(g):
            scales, step = row_scales(g, reduction, R, dt)
            dx = dq = None
            if need_x:  # s (mass p - w q')
                d2 = np.empty_like(probs)
                loss_k.soft_cross_entropy_backward(d2, probs, Q2, wk, mass, scales, step, smoothing)
                dx = _unrows(d2, shape)
            if need_q:  # d/dq = -(1 - e) w log_softmax(x)
                s = scales.reshape(-1, 1) if step else scales[0]
                dq = _unrows(((smoothing - 1) * s * wk * (X2 - lses[:, None])).astype(dt, copy=False), shape)
            return dx, dq

        attach(out, backward, (x, q), "CrossEntropyLossBackward0", saved=(x,) if need_q else ())
    return out


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,  # noqa: A002
             reduction="mean"):
    """Negative log-likelihood of log-probabilities: -weight[t] * input[t], reduced.

    Shape: input (N, C), (C,) or (N, C, d1, ...); target (N,), () or (N, d1, ...)."""
    op = "nll_loss"
    reduction = reduction_arg(size_average, reduce, reduction, op)
    ignore_index = index_arg(ignore_index, op)
    x, X2, C = _classes(input, op)
    shape, dt = x.shape, X2.dtype
    w = _class_weight(weight, C, dt, op)
    t, ignored = _class_targets(target, shape, C, ignore_index, op)
    R = X2.shape[0]
    wk = np.ones(C, dt) if w is None else w
    losses, row_weights = np.empty(R, dt), np.empty(R, dt)
    loss_k.nll_forward(losses, row_weights, X2, t, wk, ignore_index)
    denom = row_weights.sum(dtype=np.float64) if (w is not None or ignored) else R
    out = _wrap(reduce_losses(losses, reduction, denom, _target_shape(shape), dt))
    if recording(x):
        def backward(g):
            scales, step = row_scales(g, reduction, denom, dt)
            d2 = np.empty((R, C), dt)
            loss_k.nll_backward(d2, t, wk, scales, step, ignore_index)
            return (_unrows(d2, shape),)

        attach(out, backward, (x,), "NllLossBackward0")
    return out
