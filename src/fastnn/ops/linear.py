"""``linear``: y = act(x @ weight.T + bias), the product and the bias/activation
epilogue in the in-house GEMM; backward writes the parameter gradients straight
into their ``.grad`` buffers."""
import functools

import numpy as np

from .._planstate import plan_state
from ..kernels import activations as act_k
from ..kernels.elementwise import column_sum
from ..kernels.matmul import GEMV_SPLIT_FLOPS, linear_serial, matmul
from ._util import Tensor, _wrap, attach, direct_grad, recording
from .activation import fused_activation_grad

__all__ = ["linear", "product_into", "weight_input"]


def weight_input(x, weight, op, trailing):
    """``x`` as a Tensor with ``weight``'s dtype and ``trailing`` last dims checked.

    Constants (arrays, lists, Tensors without grad) of another real dtype are
    converted (booleans are refused, as PyTorch does); a Tensor that requires grad
    must already have the weight's dtype."""
    dt = weight.data.dtype
    kind = type(x)
    if kind is Tensor or kind is np.ndarray:  # the common cases: nothing to convert
        data = x.data if kind is Tensor else x
        if data.dtype == dt and data.ndim == len(trailing) + 1 and data.shape[1:] == trailing:
            return x if kind is Tensor else _wrap(x)
    if kind is np.ndarray:
        data = x
        if data.dtype != dt:
            if data.dtype.kind not in "fiu":
                raise TypeError(f"{op}: input must be a real float or integer array, got dtype {data.dtype}")
            data = data.astype(dt)
        x = _wrap(data)
    elif not hasattr(x, "grad_fn"):
        try:
            data = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{op}: input must be a numeric array, got {type(x).__name__}") from exc
        if data.dtype.kind not in "fiu":
            raise TypeError(f"{op}: input must be a real float or integer array, got dtype {data.dtype}")
        x = _wrap(data.astype(dt, copy=False))
    elif x.data.dtype != dt:
        if x.requires_grad:
            raise TypeError(f"{op}: input dtype {x.data.dtype} does not match the weight's {dt}; "
                            f"convert the input or the module (.double()/.float())")
        if x.data.dtype.kind not in "fiu":
            raise TypeError(f"{op}: input must be a real float or integer tensor, got dtype {x.data.dtype}")
        x = _wrap(x.data.astype(dt))
    shape = x.data.shape
    if len(shape) < len(trailing) or any(want is not None and got != want
                                         for got, want in zip(shape[len(shape) - len(trailing):], trailing)):
        dims = ", ".join("*" if w is None else str(w) for w in trailing)
        raise ValueError(f"{op}: expected input of shape (*, {dims}), got {shape}")
    return x


def linear_into(out2, x2, w, b, act_kind=act_k.IDENTITY, act_slope=0.0):
    """out2 (M, N) = act(x2 @ w.T + b) for validated C-contiguous arrays of one dtype
    (x2 (M, K), w (N, K), b (N,) or None)."""
    has_bias = b is not None
    if not has_bias:
        b = w[0]
    if _one_call(out2, x2.shape[1]):
        linear_serial(out2, x2, w, b, act_kind, act_slope, has_bias)
    else:
        matmul(out2, x2, w, trans_b=True)
        if has_bias or act_kind != act_k.IDENTITY:
            act_k.bias_activation_forward(out2, b, act_kind, act_slope, has_bias)


def _one_call(out2, K):
    # what matmul runs serially: the whole Linear (depth K) in one kernel call
    return out2.shape[0] * out2.shape[1] * K < GEMV_SPLIT_FLOPS


def _path(out2, K, w, b, act_kind, act_slope):
    # (fn, rest): linear_into(out2, x2, w, b, act_kind, act_slope) is fn(out2, x2, *rest),
    # the path chosen once for products of depth K
    if not _one_call(out2, K):
        return linear_into, (w, b, act_kind, act_slope)
    has_bias = b is not None
    return linear_serial, (w, b if has_bias else w[0], act_kind, act_slope, has_bias)


def linear_call(out2, x2, w, b, act_kind=act_k.IDENTITY, act_slope=0.0):
    """A zero-argument callable doing ``linear_into(out2, x2, w, b, act_kind,
    act_slope)`` on these very arrays (an inference plan's fixed buffers), with the
    path chosen once: the same kernel calls, so the same bits."""
    fn, rest = _path(out2, x2.shape[1], w, b, act_kind, act_slope)
    return functools.partial(fn, out2, x2, *rest)


def linear_runner(out2, shape2, w, b, act_kind=act_k.IDENTITY, act_slope=0.0):
    """``run(x)``: ``linear_into(out2, x.reshape(shape2), w, b, act_kind, act_slope)``
    for C-contiguous inputs of ``shape2``'s size and ``w``'s dtype (an inference plan's
    first layer, whose input is the caller's), with the path chosen once, as
    :func:`linear_call` chooses it: the same kernel calls, so the same bits."""
    fn, rest = _path(out2, shape2[1], w, b, act_kind, act_slope)
    return lambda x: fn(out2, x.reshape(shape2), *rest)


def product_into(out2, x2, weight, b, act_kind=act_k.IDENTITY, act_slope=0.0):
    """``linear_into`` with the weight Tensor ``weight``: while an inference plan runs,
    from the plan's packed copy of it (``fastnn.inference.packs``; the same bits)."""
    packs = plan_state.packs
    if packs is None or not packs.linear(out2, x2, weight, b, act_kind, act_slope):
        linear_into(out2, x2, weight.data, b, act_kind, act_slope)


def linear(x, weight, bias=None, act_kind=act_k.IDENTITY, act_slope=0.0):
    """y = act(x @ weight.T + bias) (``act_kind`` from ``kernels.activations``; identity
    by default). x (*, K), weight (N, K), bias (N,) or None -> (*, N)."""
    w = weight.data
    if w.ndim != 2:
        raise ValueError(f"Linear: expected a 2-D weight, got shape {w.shape}")
    N, K = w.shape
    x = weight_input(x, weight, "Linear", (K,))
    if bias is not None and bias.data.shape != (N,):
        raise ValueError(f"Linear: expected bias of shape ({N},), got {bias.data.shape}")
    xd = x.data
    lead = xd.shape[:-1]
    x2 = xd.reshape(-1, K) if xd.flags.c_contiguous else np.ascontiguousarray(xd).reshape(-1, K)
    M = x2.shape[0]
    out2 = np.empty((M, N), w.dtype)
    has_bias = bias is not None
    product_into(out2, x2, weight, bias.data if has_bias else None, act_kind, act_slope)
    out = _wrap(out2 if len(lead) == 1 else out2.reshape(lead + (N,)))
    if recording(x, weight, bias):
        fused = act_kind != act_k.IDENTITY
        need_x, need_w = x.requires_grad, weight.requires_grad
        need_b = has_bias and bias.requires_grad

        def backward(g):
            g2 = g.reshape(M, N)
            if fused:  # the activation's derivative, from its output
                g2 = fused_activation_grad(g2, out2, act_kind, act_slope)
            elif g2.dtype != w.dtype or not g2.flags.c_contiguous:
                g2 = np.ascontiguousarray(g2, dtype=w.dtype)
            dx = dw = db = None
            if need_w:  # dW (+)= g^T @ x
                target = direct_grad(weight)
                if target is None:
                    dw = np.empty_like(w)
                    matmul(dw, g2, x2, trans_a=True)
                else:
                    matmul(target[0], g2, x2, trans_a=True, accumulate=target[1])
            if need_b:  # db (+)= column sums of g
                target = direct_grad(bias)
                if target is None:
                    db = np.empty(N, w.dtype)
                    column_sum(db, g2, False)
                else:
                    column_sum(target[0], g2, target[1])
            if need_x:  # dx = g @ W
                dx2 = np.empty((M, K), w.dtype)
                matmul(dx2, g2, w)
                dx = dx2.reshape(xd.shape)
            return dx, dw, db

        attach(out, backward, (x, weight, bias), "AddmmBackward0", saved=(x,))
    return out
