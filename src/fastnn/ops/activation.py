"""Pointwise activations on the shared activation kernels (``kernels.activations``),
and the fused backward that Linear/Conv2d use for an activation in their epilogue."""
import numpy as np

from .._planstate import plan_state
from ..kernels import activations as act_k
from ._util import _wrap, attach, float_tensor, recording

__all__ = ["relu", "leaky_relu", "sigmoid", "tanh", "gelu", "ACTIVATION_KINDS", "activation",
           "fused_activation_grad"]

# name -> kernel kind; the ones whose derivative follows from their output alone can be
# fused into the epilogue of the layer before them (see Linear/Conv2d)
ACTIVATION_KINDS = {"relu": act_k.RELU, "leaky_relu": act_k.LEAKY_RELU, "sigmoid": act_k.SIGMOID,
                    "tanh": act_k.TANH, "gelu": act_k.GELU}
_NAMES = {act_k.RELU: "ReluBackward0", act_k.LEAKY_RELU: "LeakyReluBackward0", act_k.SIGMOID: "SigmoidBackward0",
          act_k.TANH: "TanhBackward0", act_k.GELU: "GeluBackward0"}


def fused_activation_grad(grad, out, kind, slope):
    """d/d pre-activation from the upstream ``grad`` and the activation's output
    ``out`` (ReLU, LeakyReLU with slope >= 0, Sigmoid, Tanh)."""
    dpre = np.empty(out.shape, out.dtype)
    flat = out.reshape(-1)
    act_k.activation_backward(dpre.reshape(-1), np.ascontiguousarray(grad, dtype=out.dtype).reshape(-1),
                              flat, flat, kind, slope)
    return dpre


def activation(x, kind, slope=0.0, op="activation", name=None):
    """y = act(x) elementwise (``kind`` from ``kernels.activations``); ``name``: the
    backward node's name (default: the kind's own, for the epilogue kinds)."""
    x = float_tensor(x, op)
    xd = x.data
    if not xd.flags.c_contiguous:
        xd = np.ascontiguousarray(xd)
    y = np.empty(xd.shape, xd.dtype)
    act_k.activation_forward(y.reshape(-1), xd.reshape(-1), kind, slope)
    out = _wrap(y)
    if recording(x):
        # keep only what the derivative needs: the output where it suffices (as
        # PyTorch's ReLU saves its result), so the input can be freed
        from_output = kind in (act_k.RELU, act_k.SIGMOID, act_k.TANH) or (kind == act_k.LEAKY_RELU and slope >= 0)
        keep = y if from_output else xd

        def backward(g):
            dx = np.empty(y.shape, y.dtype)
            act_k.activation_backward(dx.reshape(-1), np.ascontiguousarray(g, dtype=y.dtype).reshape(-1),
                                      keep.reshape(-1), y.reshape(-1), kind, slope)
            return (dx,)

        attach(out, backward, (x,), name or _NAMES[kind])
    return out


RELU = "relu"  # the name an inference plan records a call of ``relu`` under


def relu(x):
    plan = plan_state.plan
    if plan is not None:  # an inference plan may fuse it (fastnn.inference)
        return plan.op_call(RELU, relu, (x,))
    return activation(x, act_k.RELU, 0.0, "relu")


def leaky_relu(x, negative_slope=0.01):
    return activation(x, act_k.LEAKY_RELU, float(negative_slope), "leaky_relu")


def sigmoid(x):
    return activation(x, act_k.SIGMOID, 0.0, "sigmoid")


def tanh(x):
    return activation(x, act_k.TANH, 0.0, "tanh")


def gelu(x, approximate="none"):
    """x * Phi(x): the exact erf form (``approximate='none'``) or PyTorch's tanh form
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (``approximate='tanh'``)."""
    if approximate == "tanh":
        return activation(x, act_k.GELU_TANH, 0.0, "gelu", "GeluBackward0")
    if approximate != "none":
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return activation(x, act_k.GELU, 0.0, "gelu")
