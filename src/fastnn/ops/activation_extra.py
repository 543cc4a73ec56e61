"""The further activations, by ``torch.nn.functional``'s names: the pointwise ones are
further kinds of the shared activation kernels (``kernels.activations``: one compiled
kernel per direction and dtype serves them all); ``hardtanh`` (two bounds) and
``prelu`` (a learned weight) are one NumPy pass each.

``inplace=True`` is accepted for PyTorch code and computed out of place.
"""
import numpy as np

from ..kernels import activations as act_k
from ._util import _wrap, as_tensor, attach, float_tensor, recording, unbroadcast
from .activation import activation

__all__ = ["relu6", "elu", "selu", "silu", "mish", "softplus", "hardtanh", "hardsigmoid", "hardswish", "prelu",
           "logsigmoid", "softsign", "tanhshrink"]


def relu6(input, inplace=False):  # noqa: A002 (PyTorch's names)
    """min(max(x, 0), 6) elementwise."""
    return activation(input, act_k.RELU6, 6.0, "relu6", "HardtanhBackward0")


def elu(input, alpha=1.0, inplace=False):  # noqa: A002
    """x if x > 0 else alpha * (exp(x) - 1)."""
    return activation(input, act_k.ELU, float(alpha), "elu", "EluBackward0")


def selu(input, inplace=False):  # noqa: A002
    """scale * elu(x, alpha) with PyTorch's self-normalising constants."""
    return activation(input, act_k.SELU, 0.0, "selu", "EluBackward0")


def silu(input, inplace=False):  # noqa: A002
    """x * sigmoid(x) (also called swish)."""
    return activation(input, act_k.SILU, 0.0, "silu", "SiluBackward0")


def mish(input, inplace=False):  # noqa: A002
    """x * tanh(softplus(x))."""
    return activation(input, act_k.MISH, 0.0, "mish", "MishBackward0")


def hardsigmoid(input, inplace=False):  # noqa: A002
    """min(max(x + 3, 0), 6) / 6."""
    return activation(input, act_k.HARDSIGMOID, 0.0, "hardsigmoid", "HardsigmoidBackward0")


def hardswish(input, inplace=False):  # noqa: A002
    """x * min(max(x + 3, 0), 6) / 6."""
    return activation(input, act_k.HARDSWISH, 0.0, "hardswish", "HardswishBackward0")


def logsigmoid(input):  # noqa: A002
    """log(sigmoid(x)), computed stably as min(x, 0) - log1p(exp(-|x|))."""
    return activation(input, act_k.LOGSIGMOID, 0.0, "logsigmoid", "LogSigmoidBackward0")


def softsign(input):  # noqa: A002
    """x / (1 + |x|)."""
    return activation(input, act_k.SOFTSIGN, 0.0, "softsign", "DivBackward0")


def tanhshrink(input):  # noqa: A002
    """x - tanh(x)."""
    return activation(input, act_k.TANHSHRINK, 0.0, "tanhshrink", "SubBackward0")


def softplus(input, beta=1.0, threshold=20.0):  # noqa: A002
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold.

    The kernel runs on z = beta x (its derivative in x is the same sigmoid(z))."""
    beta, threshold = float(beta), float(threshold)
    if beta == 1.0:
        return activation(input, act_k.SOFTPLUS, threshold, "softplus", "SoftplusBackward0")
    x = float_tensor(input, "softplus")
    xd = x.data
    z = xd * xd.dtype.type(beta)
    y = np.empty(z.shape, z.dtype)
    act_k.activation_forward(y.reshape(-1), z.reshape(-1), act_k.SOFTPLUS, threshold)
    y = np.where(z > threshold, xd, y / xd.dtype.type(beta))
    out = _wrap(y)
    if recording(x):
        def backward(g):  # d/dx log1p(exp(beta x)) / beta = sigmoid(beta x)
            dx = np.empty(z.shape, z.dtype)
            act_k.activation_backward(dx.reshape(-1), np.ascontiguousarray(g, dtype=z.dtype).reshape(-1),
                                      z.reshape(-1), z.reshape(-1), act_k.SOFTPLUS, threshold)
            return (dx,)

        attach(out, backward, (x,), "SoftplusBackward0")
    return out


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):  # noqa: A002
    """x clamped to [min_val, max_val]; the gradient is 0 at and beyond the bounds."""
    min_val, max_val = float(min_val), float(max_val)
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val ({min_val}) cannot be greater than max_val ({max_val})")
    if min_val == 0.0:  # ReLU6's kernel kind with another cap
        return activation(input, act_k.RELU6, max_val, "hardtanh", "HardtanhBackward0")
    x = float_tensor(input, "hardtanh")
    xd = x.data
    out = _wrap(np.clip(xd, min_val, max_val).astype(xd.dtype, copy=False))
    if recording(x):
        def backward(g):  # y = clip(x, lo, hi): dy/dx = 1 strictly inside
            return (np.where((xd > min_val) & (xd < max_val), g, 0).astype(xd.dtype, copy=False),)

        attach(out, backward, (x,), "HardtanhBackward0")
    return out


def prelu(input, weight):  # noqa: A002
    """x if x > 0 else weight * x, with one weight per channel (dim 1) or one for all.

    Shape: input (N, C, *), (C,)-less inputs of rank < 2 take a one-element weight;
    weight (C,) or (1,)."""
    x = float_tensor(input, "prelu")
    w = as_tensor(weight)
    xd, wd = x.data, w.data
    if wd.dtype.kind != "f" or wd.ndim > 1:
        raise ValueError(f"prelu: weight must be a 1-D float tensor, got shape {wd.shape} dtype {wd.dtype}")
    channels = xd.shape[1] if xd.ndim >= 2 else 1
    if wd.size not in (1, channels):
        raise ValueError(f"prelu: weight of {wd.size} parameters does not match the {channels} channels (dim 1) "
                         f"of input shape {xd.shape}")
    wb = wd.reshape((1, -1) + (1,) * (xd.ndim - 2)) if wd.size > 1 else wd.reshape(())
    wb = wb.astype(xd.dtype, copy=False)
    positive = xd > 0
    out = _wrap(np.where(positive, xd, wb * xd))
    if recording(x, w):
        need_x, need_w = x.requires_grad, w.requires_grad

        def backward(g):  # y = x (x > 0) or w x: dx = g or w g, dw = sum of x g where x <= 0
            dx = np.where(positive, g, wb * g).astype(xd.dtype, copy=False) if need_x else None
            dw = None
            if need_w:
                dw = unbroadcast(np.where(positive, 0, xd * g), wb.shape).reshape(wd.shape).astype(wd.dtype)
            return dx, dw

        attach(out, backward, (x, w), "PreluKernelBackward0")
    return out
