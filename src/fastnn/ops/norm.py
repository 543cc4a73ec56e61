"""``batch_norm``: per-channel normalisation of x viewed as (N, C, L), with batch
statistics (training: running statistics updated in place) or running statistics
(evaluation: still differentiable, for fine-tuning with frozen statistics)."""
import numpy as np

from ..kernels import norm as norm_k
from ._util import Tensor, _wrap, attach, direct_grad, float_tensor, recording
from .conv import same_dtype_input

__all__ = ["batch_norm"]


def _param(p, name, C, dtype):
    """weight/bias as a Tensor of shape (C,) and ``dtype``, or None."""
    if p is None:
        return None
    if isinstance(p, Tensor) and p.data.dtype == dtype and p.data.shape == (C,):
        return p  # the common case: a module's parameter
    p = float_tensor(p, "batch_norm")
    if p.data.shape != (C,):
        raise ValueError(f"batch_norm: expected {name} of shape ({C},), got {p.data.shape}")
    if p.data.dtype != dtype:
        if p.requires_grad:
            raise TypeError(f"batch_norm: {name} dtype {p.data.dtype} does not match the input's {dtype}")
        p = _wrap(p.data.astype(dtype))
    return p


def _stat(s, name, C):
    """A running statistic's array (updated in place in training), or None."""
    if s is None:
        return None
    data = s.data if isinstance(s, Tensor) else np.asarray(s)
    if data.shape != (C,) or data.dtype.kind != "f":
        raise ValueError(f"batch_norm: expected a float {name} of shape ({C},), got {data.dtype} {data.shape}")
    return data


_UNUSED = {}


def unused(dtype):
    """An empty array standing for weight/bias that a kernel never reads (no affine);
    one per dtype, shared by the batch and layer/group/instance norms."""
    a = _UNUSED.get(dtype)
    if a is None:
        a = _UNUSED[dtype] = np.empty(0, dtype)
    return a


def _grad_target(p, C, dtype):
    """``(buffer, accumulate, returned)`` for a parameter's gradient: its ``.grad``
    (direct_grad), else a new array that the backward returns."""
    if p is None or not p.requires_grad:
        return np.empty(C, dtype), False, None
    target = direct_grad(p)
    if target is None:
        buf = np.empty(C, dtype)
        return buf, False, buf
    return target[0], target[1], None


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,  # noqa: A002
               momentum=0.1, eps=1e-05):
    """Batch normalisation over all dims but 1, like ``torch.nn.functional.batch_norm``.

    y = (x - mean) / sqrt(var + eps) * weight + bias per channel. Training: the batch
    mean and biased variance; ``running_mean``/``running_var`` (if given) updated in
    place as ``(1 - momentum) * running + momentum * batch`` (unbiased variance).
    Otherwise the running statistics, as constants.

    Shape: input (N, C, *); running_mean, running_var, weight, bias (C,).

    Example:
        >>> F.batch_norm(x, None, None, training=True)  # x (N, C, H, W)
    """
    if weight is not None:
        weight = float_tensor(weight, "batch_norm")
        x = same_dtype_input(input, weight, "batch_norm")
    else:
        x = float_tensor(input, "batch_norm")
    xd = x.data
    if xd.ndim < 2 or xd.size == 0:
        raise ValueError(f"batch_norm: expected a non-empty input of shape (N, C, *), got shape {xd.shape}")
    N, C = xd.shape[:2]
    dt = xd.dtype
    weight = _param(weight, "weight", C, dt)
    bias = _param(bias, "bias", C, dt)
    running_mean = _stat(running_mean, "running_mean", C)
    running_var = _stat(running_var, "running_var", C)
    x3 = xd.reshape(N, C, -1) if xd.flags.c_contiguous else np.ascontiguousarray(xd).reshape(N, C, -1)
    affine = weight is not None or bias is not None
    w = weight.data if weight is not None else np.ones(C, dt) if affine else unused(dt)
    b = bias.data if bias is not None else np.zeros(C, dt) if affine else w
    out3 = np.empty(x3.shape, dt)
    if training:
        if N * x3.shape[2] < 2:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input of "
                             f"shape {xd.shape}")
        mean = np.empty(C, np.float64)
        invstd = np.empty(C, np.float64)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float, np.floating, np.integer)):
            raise TypeError(f"batch_norm: momentum must be a number, got {momentum!r}")
        update = running_mean is not None and running_var is not None
        norm_k.batch_norm_train_forward(out3, mean, invstd, running_mean if update else mean,
                                        running_var if update else invstd, x3, w, b, float(eps),
                                        float(momentum), update, affine)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: running_mean and running_var must be given when not training")
        norm_k.batch_norm_eval_forward(out3, x3, running_mean, running_var, w, b, float(eps), affine)
    out = _wrap(out3.reshape(xd.shape))
    if recording(x, weight, bias):
        if training:
            fn = _train_backward(x, weight, bias, x3, w, affine, mean, invstd)
        else:  # the statistics as they are now: a later update must not change this gradient
            fn = _eval_backward(x, weight, bias, x3, w, affine, running_mean.copy(), running_var.copy(), float(eps))
        attach(out, fn, (x, weight, bias), "NativeBatchNormBackward0", saved=(x,))
    return out


def _train_backward(x, weight, bias, x3, w, affine, mean, invstd):
    need_x, in_shape, C, dt = x.requires_grad, x.data.shape, x3.shape[1], x3.dtype

    def backward(g):
        # forward: out = (x - mean) * invstd * weight + bias, mean and invstd of x
        g3 = np.ascontiguousarray(g.reshape(x3.shape), dtype=dt)
        dw, acc_w, dw_out = _grad_target(weight, C, dt)
        db, acc_b, db_out = _grad_target(bias, C, dt)
        dx = np.empty(x3.shape, dt)
        norm_k.batch_norm_backward(dx, dw, db, g3, x3, mean, invstd, w, affine, acc_w, acc_b)
        return (dx.reshape(in_shape) if need_x else None), dw_out, db_out

    return backward


def _eval_backward(x, weight, bias, x3, w, affine, running_mean, running_var, eps):
    need_x, in_shape, C, dt = x.requires_grad, x.data.shape, x3.shape[1], x3.dtype
    need_w = weight is not None and weight.requires_grad
    need_b = bias is not None and bias.requires_grad

    def backward(g):
        # forward: out = (x - running_mean) / sqrt(running_var + eps) * weight + bias
        g3 = np.ascontiguousarray(g.reshape(x3.shape), dtype=dt)
        dw, acc_w, dw_out = _grad_target(weight, C, dt)
        db, acc_b, db_out = _grad_target(bias, C, dt)
        dx = np.empty(x3.shape, dt) if need_x else g3
        norm_k.batch_norm_eval_backward(dx, dw, db, g3, x3, running_mean, running_var, w, eps, affine,
                                        need_x, need_w, need_b, acc_w, acc_b)
        return (dx.reshape(in_shape) if need_x else None), dw_out, db_out

    return backward
