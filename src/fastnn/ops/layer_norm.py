"""``layer_norm``, ``group_norm``, ``instance_norm``: normalisation of each row of x
viewed as (R, L) by the row's own mean and biased variance, then an affine per
column (layer_norm) or per channel (group/instance norm). One pair of fused kernels
(``kernels.layer_norm``) serves all three; the backward recomputes the normalised
input from the saved per-row mean and rstd and writes the gradients of leaves (the
parameters, a leaf input) straight into their ``.grad`` buffers."""
import math

import numpy as np

from ..kernels import layer_norm as ln_k
from .arith import add
from ._util import Tensor, _wrap, attach, direct_grad, float_tensor, recording
from .conv import same_dtype_input
from .norm import batch_norm, unused

__all__ = ["layer_norm", "add_layer_norm", "group_norm", "instance_norm"]

def _input(input, weight, bias, op):  # noqa: A002
    """``input`` as a float Tensor, of the parameters' dtype when there are any."""
    p = weight if weight is not None else bias
    if p is None:
        return float_tensor(input, op)
    return same_dtype_input(input, float_tensor(p, op), op)


def _param(p, name, shape, dtype, op):
    """weight/bias as a Tensor of ``shape`` and ``dtype``, or None."""
    if p is None:
        return None
    if isinstance(p, Tensor) and p.data.dtype == dtype and p.data.shape == shape:
        return p  # the common case: a module's parameter
    p = float_tensor(p, op)
    if p.data.shape != shape:
        raise ValueError(f"{op}: expected {name} of shape {shape}, got {p.data.shape}")
    if p.data.dtype != dtype:
        if p.requires_grad:
            raise TypeError(f"{op}: {name} dtype {p.data.dtype} does not match the input's {dtype}")
        p = _wrap(p.data.astype(dtype))
    return p


def _flat(p, size, dtype, fill):
    """A parameter's array as a contiguous (size,) vector; ``fill`` if p is None."""
    if p is None:
        return np.full(size, fill, dtype)
    return np.ascontiguousarray(p.data).reshape(size)


def _grad_target(p, need, size, dtype):
    """``(flat buffer, accumulate, returned)`` for a parameter's gradient: its ``.grad``
    (direct_grad), else a new array that the backward returns (None if not needed)."""
    if not need:
        return np.empty(size, dtype), False, None
    target = direct_grad(p)
    if target is not None and target[0].flags.c_contiguous:
        return target[0].reshape(size), target[1], None
    buf = np.empty(size, dtype)
    return buf, False, buf.reshape(p.data.shape)


def _eps(eps, op):
    try:
        return float(eps)
    except (TypeError, ValueError):
        raise TypeError(f"{op}: eps must be a number, got {eps!r}") from None


def _normalize(x, weight, bias, rows, length, size, groups, spatial, per_column, eps, name):
    """Run the forward kernel on x viewed as (rows, length), weight/bias of ``size``
    elements; attach the backward. Returns (output Tensor, mean, rstd), the last two
    float64 (rows,)."""
    xd = x.data
    dt = xd.dtype
    x2 = (xd if xd.flags.c_contiguous else np.ascontiguousarray(xd)).reshape(rows, length)
    affine = weight is not None or bias is not None
    w = _flat(weight, size, dt, 1) if affine else unused(dt)
    b = _flat(bias, size, dt, 0) if affine else unused(dt)
    out2 = np.empty((rows, length), dt)
    mean = np.empty(rows, np.float64)
    rstd = np.empty(rows, np.float64)
    args = (out2, mean, rstd, x2, w, b, groups, spatial, eps, affine, per_column)
    ln_k.norm_rows_forward(*args, ln_k.norm_rows_handle(*args))
    out = _wrap(out2.reshape(xd.shape))
    if recording(x, weight, bias):
        fn = _backward(x, weight, bias, x2, w, mean, rstd, groups, spatial, per_column, affine)
        attach(out, fn, (x, weight, bias), name, saved=(x,))
    return out, mean, rstd


def _backward(x, weight, bias, x2, w, mean, rstd, groups, spatial, per_column, affine):
    need_x, dt, size = x.requires_grad, x2.dtype, w.shape[0]
    need_w = weight is not None and weight.requires_grad
    need_b = bias is not None and bias.requires_grad

    def backward(g):
        # forward: out = (x - mean) * rstd * weight + bias, mean and rstd per row of x
        g2 = np.ascontiguousarray(g.reshape(x2.shape), dtype=dt)
        dw, acc_w, dw_out = _grad_target(weight, need_w, size, dt)
        db, acc_b, db_out = _grad_target(bias, need_b, size, dt)
        dx, acc_x, dx_out = _grad_target(x, need_x, x2.size, dt) if need_x else (g2, False, None)
        args = (dx.reshape(x2.shape), dw, db, g2, x2, mean, rstd, w, groups, spatial, affine, per_column, need_x,
                need_w or need_b, acc_x)
        ln_k.norm_rows_backward(*args, acc_w, acc_b, ln_k.backward_handle(*args))
        return dx_out, dw_out, db_out

    return backward


def _shape_tuple(normalized_shape, op):
    """An int or a sequence of ints -> a tuple of non-negative Python ints."""
    items = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else normalized_shape
    try:
        items = tuple(items)
    except TypeError:
        raise TypeError(f"{op}: normalized_shape must be an int or a sequence of ints, "
                        f"got {normalized_shape!r}") from None
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0 for v in items):
        raise TypeError(f"{op}: normalized_shape must be an int or a sequence of non-negative ints, "
                        f"got {normalized_shape!r}")
    return tuple(int(v) for v in items)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-05):  # noqa: A002
    """Layer normalisation over the last dims, like ``torch.nn.functional.layer_norm``.

    y = (x - mean) / sqrt(var + eps) * weight + bias, mean and biased var over the
    trailing ``normalized_shape`` dims of each sample.

    Shape: input (*, normalized_shape); weight, bias normalized_shape -> input's shape.

    Example:
        >>> F.layer_norm(fastnn.randn(4, 10, 16), (16,)).shape
        (4, 10, 16)
    """
    shape = _shape_tuple(normalized_shape, "layer_norm")
    x = _input(input, weight, bias, "layer_norm")
    xd = x.data
    k = len(shape)
    if xd.ndim < k or xd.shape[xd.ndim - k:] != shape:
        dims = ", ".join(str(n) for n in shape)
        raise ValueError(f"layer_norm: given normalized_shape={shape}, expected input with shape (*, {dims}), "
                         f"but got input of shape {xd.shape}")
    weight = _param(weight, "weight", shape, xd.dtype, "layer_norm")
    bias = _param(bias, "bias", shape, xd.dtype, "layer_norm")
    length = math.prod(shape)
    rows = math.prod(xd.shape[:xd.ndim - k])
    affine = weight is not None or bias is not None
    spatial = 1 if affine else max(length, 1)
    return _normalize(x, weight, bias, rows, length, length, 1, spatial, affine, _eps(eps, "layer_norm"),
                      "NativeLayerNormBackward0")[0]


def add_layer_norm(x, y, weight, bias, eps=1e-05, keep_sum=False, y_bias=None):
    """``layer_norm(x + y)`` over the last dim in one pass (a transformer block's
    residual add and LayerNorm), and ``x + y`` too when ``keep_sum``: returns
    (normalised, sum or None). x, y: Tensors of one shape and float dtype; weight,
    bias: the last dim's parameters or None; ``y_bias``: a bias (last dim) to add to
    y first (a Linear run without its bias). ``add`` (and the bias) then
    ``layer_norm`` within rounding; when autograd records (or x is empty), those ops."""
    if recording(x, y, weight, bias, y_bias) or x.data.size == 0:
        total = add(x, y if y_bias is None else add(y, y_bias))
        return layer_norm(total, total.data.shape[-1:], weight, bias, eps), (total if keep_sum else None)
    xd, yd = x.data, y.data
    if xd.shape != yd.shape or xd.dtype != yd.dtype or xd.ndim < 1 or xd.dtype.kind != "f":
        raise ValueError(f"add_layer_norm: expected two float tensors of one shape and dtype, got "
                         f"{xd.shape} {xd.dtype} and {yd.shape} {yd.dtype}")
    L = xd.shape[-1]
    dt = xd.dtype
    for p, name in ((weight, "weight"), (bias, "bias"), (y_bias, "y_bias")):
        if p is not None and (p.data.shape != (L,) or p.data.dtype != dt):
            raise ValueError(f"add_layer_norm: expected {name} of shape ({L},) and dtype {dt}, "
                             f"got {p.data.shape} {p.data.dtype}")
    x2 = np.ascontiguousarray(xd).reshape(-1, L)
    y2 = np.ascontiguousarray(yd).reshape(-1, L)
    out2 = np.empty_like(x2)
    total2 = np.empty_like(x2) if keep_sum else out2  # not written unless keep_sum
    args = (out2, total2, x2, y2, _flat(y_bias, L, dt, 0), _flat(weight, L, dt, 1), _flat(bias, L, dt, 0),
            _eps(eps, "add_layer_norm"), bool(keep_sum), y_bias is not None)
    ln_k.add_norm_rows_forward(*args, ln_k.add_norm_handle(*args))
    return _wrap(out2.reshape(xd.shape)), (_wrap(total2.reshape(xd.shape)) if keep_sum else None)


def _channels_input(input, weight, bias, op):  # noqa: A002
    x = _input(input, weight, bias, op)
    if x.data.ndim < 2:
        raise ValueError(f"{op}: expected input of shape (N, C, *), got shape {x.data.shape}")
    return x


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-05):  # noqa: A002
    """Group normalisation, like ``torch.nn.functional.group_norm``: the C channels
    are split into ``num_groups`` groups, each (sample, group) normalised by its own
    mean and biased variance, then scaled and shifted per channel.

    Shape: input (N, C, *) with C divisible by num_groups; weight, bias (C,).

    Example:
        >>> F.group_norm(fastnn.randn(2, 6, 5), 3).shape
        (2, 6, 5)
    """
    x = _channels_input(input, weight, bias, "group_norm")
    xd = x.data
    if isinstance(num_groups, bool) or not isinstance(num_groups, (int, np.integer)) or num_groups < 1:
        raise ValueError(f"group_norm: num_groups must be a positive int, got {num_groups!r}")
    N, C = xd.shape[:2]
    G = int(num_groups)
    if C % G:
        raise ValueError(f"group_norm: expected input with channels divisible by num_groups={G}, got input of "
                         f"shape {xd.shape}")
    weight = _param(weight, "weight", (C,), xd.dtype, "group_norm")
    bias = _param(bias, "bias", (C,), xd.dtype, "group_norm")
    S = math.prod(xd.shape[2:])
    return _normalize(x, weight, bias, N * G, C // G * S, C, G, max(S, 1), False, _eps(eps, "group_norm"),
                      "NativeGroupNormBackward0")[0]


def _stat(s, name, C):
    """A running statistic's array (updated in place), or None."""
    if s is None:
        return None
    data = s.data if isinstance(s, Tensor) else np.asarray(s)
    if data.shape != (C,) or data.dtype.kind != "f":
        raise ValueError(f"instance_norm: expected a float {name} of shape ({C},), got {data.dtype} {data.shape}")
    return data


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,  # noqa: A002
                  use_input_stats=True, momentum=0.1, eps=1e-05):
    """Instance normalisation, like ``torch.nn.functional.instance_norm``: each
    (sample, channel) normalised over its spatial dims, then scaled and shifted per channel.

    With ``use_input_stats`` and running statistics given, these are updated in place as
    ``(1 - momentum) * running + momentum * batch`` (the batch mean over samples of each
    instance's mean and unbiased variance). ``use_input_stats=False`` normalises with
    the running statistics instead.

    Shape: input (N, C, *); running_mean, running_var, weight, bias (C,).

    Example:
        >>> F.instance_norm(fastnn.randn(2, 3, 8, 8)).shape
        (2, 3, 8, 8)
    """
    x = _channels_input(input, weight, bias, "instance_norm")
    xd = x.data
    N, C = xd.shape[:2]
    running_mean = _stat(running_mean, "running_mean", C)
    running_var = _stat(running_var, "running_var", C)
    if not use_input_stats:
        if running_mean is None or running_var is None:
            raise ValueError("instance_norm: running_mean and running_var must be given when use_input_stats=False")
        return batch_norm(x, running_mean, running_var, weight, bias, False, 0.0, eps)
    S = math.prod(xd.shape[2:])
    if S <= 1:
        raise ValueError(f"instance_norm: expected more than 1 spatial element when training, got input of "
                         f"shape {xd.shape}")
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float, np.floating, np.integer)):
        raise TypeError(f"instance_norm: momentum must be a number, got {momentum!r}")
    weight = _param(weight, "weight", (C,), xd.dtype, "instance_norm")
    bias = _param(bias, "bias", (C,), xd.dtype, "instance_norm")
    eps = _eps(eps, "instance_norm")
    out, mean, rstd = _normalize(x, weight, bias, N * C, S, C, C, S, False, eps, "InstanceNormBackward0")
    if N and (running_mean is not None or running_var is not None):
        m = float(momentum)
        if running_mean is not None:
            running_mean[...] = (1 - m) * running_mean + m * mean.reshape(N, C).mean(axis=0)
        if running_var is not None:  # var + eps = 1 / rstd^2; unbiased: * S / (S - 1)
            var = (1.0 / (rstd * rstd) - eps) * (S / (S - 1))
            running_var[...] = (1 - m) * running_var + m * var.reshape(N, C).mean(axis=0)
    return out
