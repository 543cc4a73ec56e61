"""Losses as differentiable operations, by ``torch.nn.functional``'s names.

Each returns a Tensor: 0-d for reduction ``'mean'``/``'sum'``, one value per
element (or per sample) for ``'none'``. Here: the elementwise losses ``mse_loss``
and ``binary_cross_entropy_with_logits``; ``cross_entropy`` and ``nll_loss`` live in
``ops.nll_loss``. The fused kernels are in ``kernels.losses``.
"""
import numpy as np

from ..kernels import losses as loss_k
from ..kernels.elementwise import CHUNK
from ._util import _wrap, attach, recording
from .loss_args import (broadcast_weight, float_arg, flat_contiguous, reduce_losses, reduction_arg, row_scales,
                        same_shape, upstream_scale)
from .nll_loss import cross_entropy, nll_loss

__all__ = ["mse_loss", "cross_entropy", "nll_loss", "binary_cross_entropy_with_logits"]


# ------------------------------------------------------------------ mse
def mse_loss(input, target, size_average=None, reduce=None, reduction="mean"):  # noqa: A002 (PyTorch's names)
    """(input - target)^2, reduced. input and target the same shape; both differentiable."""
    op = "mse_loss"
    reduction = reduction_arg(size_average, reduce, reduction, op)
    x = float_arg(input, op, "input")
    dt = x.data.dtype
    t = float_arg(target, op, "target", dt)
    same_shape(x, t, op)
    xd, td = flat_contiguous(x.data), flat_contiguous(t.data)
    n = xd.shape[0]
    if reduction == "none":
        diff = xd - td
        out = _wrap((diff * diff).reshape(x.shape))
    else:
        partials = np.empty((n + CHUNK - 1) // CHUNK, dt)
        loss_k.mse_forward(partials, xd, td)
        out = _wrap(reduce_losses(partials, reduction, n, (), dt))
    if recording(x, t):
        need_x, need_t, shape = x.requires_grad, t.requires_grad, x.shape

        def backward(g):
            if reduction == "none":  # d/dx (x - t)^2 = 2 (x - t)
                d = (2 * np.asarray(g, dt).reshape(-1)) * diff
            else:
                d = np.empty(n, dt)
                loss_k.mse_backward(d, xd, td, 2 * upstream_scale(g, reduction, n))
            return (d.reshape(shape) if need_x else None), ((-d).reshape(shape) if need_t else None)

        attach(out, backward, (x, t), "MseLossBackward0", saved=(x, t))
    return out


# ------------------------------------------------------------------ bce with logits
def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,  # noqa: A002
                                     reduction="mean", pos_weight=None):
    """Sigmoid + binary cross-entropy, stable:
    w * [(1 - t) x + (1 + (pos_weight - 1) t) log(1 + exp(-x))], reduced.

    input and target the same shape (both differentiable); ``weight`` and
    ``pos_weight`` (constants) broadcast to it, ``pos_weight`` along the last dim."""
    op = "binary_cross_entropy_with_logits"
    reduction = reduction_arg(size_average, reduce, reduction, op)
    x = float_arg(input, op, "input")
    dt = x.data.dtype
    t = float_arg(target, op, "target", dt)
    same_shape(x, t, op)
    w, pw = (broadcast_weight(v, x.shape, dt, op, name) for v, name in ((weight, "weight"), (pos_weight, "pos_weight")))
    n = x.data.size
    fused = w is None and pw is None and reduction != "none"
    xd, td = (flat_contiguous(x.data), flat_contiguous(t.data)) if fused else (x.data, t.data)
    if fused:
        partials = np.empty((n + CHUNK - 1) // CHUNK, dt)
        loss_k.bce_logits_forward(partials, xd, td)
        out = _wrap(reduce_losses(partials, reduction, n, (), dt))
    else:
        out = _wrap(reduce_losses(_bce_terms(xd, td, w, pw, False)[0], reduction, n, x.shape, dt))
    if recording(x, t):
        need_x, need_t, shape = x.requires_grad, t.requires_grad, x.shape

        def backward(g):
            if not fused:
                scales, step = row_scales(g, reduction, n, dt)
                s = scales.reshape(shape) if step else scales[0]
                _, dloss_dx, dloss_dt = _bce_terms(xd, td, w, pw, True)
                return (s * dloss_dx if need_x else None), (s * dloss_dt if need_t else None)
            s = upstream_scale(g, reduction, n)
            dx = None
            if need_x:  # s (sigmoid(x) - t)
                dx = np.empty(n, dt)
                loss_k.bce_logits_backward(dx, xd, td, s)
                dx = dx.reshape(shape)
            return dx, ((-s * xd).astype(dt, copy=False).reshape(shape) if need_t else None)  # d/dt = -x

        attach(out, backward, (x, t), "BinaryCrossEntropyWithLogitsBackward0", saved=(x, t))
    return out


def _bce_terms(x, t, w, pw, grads):
    """(loss, d loss/dx, d loss/dt) elementwise (the derivatives only with ``grads``), in
    x's dtype; softplus(-x) = log1p(exp(-|x|)) + max(-x, 0) stays finite for any x."""
    e = np.exp(-np.abs(x))
    softplus_neg = np.log1p(e) + np.maximum(-x, 0)
    lw = 1 if pw is None else 1 + (pw - 1) * t
    loss = (1 - t) * x + lw * softplus_neg
    if w is not None:
        loss = loss * w
    if not grads:
        return (loss.astype(x.dtype, copy=False),)
    sigmoid_neg = np.where(x >= 0, e / (1 + e), 1 / (1 + e))
    dx = (1 - t) - lw * sigmoid_neg
    dt_ = -x if pw is None else (pw - 1) * softplus_neg - x
    if w is not None:
        dx, dt_ = dx * w, dt_ * w
    return tuple(a.astype(x.dtype, copy=False) for a in (loss, dx, dt_))
