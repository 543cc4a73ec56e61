"""Activation layers. All pointwise ones share two kernels (``kernels.activations``)."""
import numpy as np

from ..kernels import activations as act_k
from ._validate import as_float_array, as_grad, float_dtype_for
from .module import Module


def fusable_kind(module):
    """``(kind, slope)`` if ``module`` can be fused into the preceding Linear/Conv2d's
    epilogue, else None. The fused backward only sees the activation's output, so
    only activations whose derivative follows from it qualify."""
    if type(module) in (ReLU, Sigmoid, Tanh):
        return module.kind, 0.0
    if type(module) is LeakyReLU and module.slope >= 0:
        return module.kind, module.slope
    return None


def fused_backward(grad, out, kind, slope):
    """d/d pre-activation from the upstream ``grad`` and the fused layer's output."""
    dpre = np.empty_like(grad)
    flat = out.reshape(-1)
    act_k.activation_backward(dpre.reshape(-1), grad.reshape(-1), flat, flat, kind, slope)
    return dpre


class _Pointwise(Module):
    kind = act_k.IDENTITY

    def __init__(self):
        super().__init__()
        self.slope = 0.0
        self._x = self._y = None

    def forward(self, x):
        name = type(self).__name__
        x = as_float_array(x, name, float_dtype_for(x))
        y = np.empty_like(x)
        act_k.activation_forward(y.reshape(-1), x.reshape(-1), self.kind, self.slope)
        if self.training:
            # keep x only if the derivative needs it: a ReLU after a BatchNorm then lets
            # the normalised tensor go, as PyTorch's ReLU (which saves its result) does
            self._x, self._y = (y if fusable_kind(self) else x), y
        else:
            self._x = self._y = None
        return y

    def backward(self, grad_output):
        y = self._saved(self._y)
        g = as_grad(grad_output, type(self).__name__, y.shape, y.dtype)
        dx = np.empty_like(y)
        x, self._x, self._y = self._x, None, None  # one backward per forward: free what it saved
        act_k.activation_backward(dx.reshape(-1), g.reshape(-1), x.reshape(-1), y.reshape(-1), self.kind, self.slope)
        return dx


class ReLU(_Pointwise):
    """max(x, 0) elementwise. Shape: any -> same."""

    kind = act_k.RELU

    def __init__(self, inplace=False):
        super().__init__()


class LeakyReLU(_Pointwise):
    """x if x > 0 else negative_slope * x. Shape: any -> same."""

    kind = act_k.LEAKY_RELU

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.slope = float(negative_slope)

    def _config(self):
        return {"negative_slope": self.slope}

    def extra_repr(self):
        return f"negative_slope={self.slope}"


class Sigmoid(_Pointwise):
    """1 / (1 + exp(-x)) elementwise, computed stably. Shape: any -> same."""

    kind = act_k.SIGMOID


class Tanh(_Pointwise):
    """tanh(x) elementwise. Shape: any -> same."""

    kind = act_k.TANH


class GELU(_Pointwise):
    """x * Phi(x) with the exact erf form (``approximate='none'``). Shape: any -> same."""

    kind = act_k.GELU

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate != "none":
            raise ValueError(f"GELU: only approximate='none' is supported, got {approximate!r}")


class Softmax(Module):
    """softmax along ``dim`` (default -1). Shape: any -> same."""

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = -1 if dim is None else int(dim)
        self._y = None

    def forward(self, x):
        x = as_float_array(x, "Softmax", float_dtype_for(x))
        if x.ndim == 0:
            raise ValueError("Softmax: expected an input with at least 1 dimension, got a scalar")
        moved = np.ascontiguousarray(np.moveaxis(x, self.dim, -1))
        y = np.empty_like(moved)
        act_k.softmax_forward(y.reshape(-1, y.shape[-1]), moved.reshape(-1, moved.shape[-1]))
        self._y = y if self.training else None
        return np.ascontiguousarray(np.moveaxis(y, -1, self.dim))

    def backward(self, grad_output):
        y = self._saved(self._y)
        g = np.ascontiguousarray(np.moveaxis(np.asarray(grad_output, dtype=y.dtype), self.dim, -1))
        if g.shape != y.shape:
            raise ValueError(f"Softmax.backward: grad_output shape does not match the output ({y.shape} along dim -1)")
        dx = np.empty_like(y)
        act_k.softmax_backward(dx.reshape(-1, y.shape[-1]), g.reshape(-1, y.shape[-1]), y.reshape(-1, y.shape[-1]))
        return np.ascontiguousarray(np.moveaxis(dx, -1, self.dim))

    def _config(self):
        return {"dim": self.dim}

    def extra_repr(self):
        return f"dim={self.dim}"
