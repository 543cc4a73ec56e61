"""Dense layers: Linear, Identity, Flatten."""
import math

import numpy as np

from .. import _config
from ..kernels import activations as act_k
from ..kernels.elementwise import column_sum
from ..kernels.matmul import GEMV_SPLIT_FLOPS, linear_serial, matmul
from . import init
from .activation import fused_backward
from ._validate import FLOAT_DTYPES, as_float_array, as_grad, check_positive_int, float_dtype_for
from .module import Module, Parameter


class Linear(Module):
    """y = x @ weight.T + bias, like ``torch.nn.Linear``.

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        bias: learn an additive bias (default True).
        dtype: parameter dtype (default: ``fastnn.get_default_dtype()``).

    Shape:
        input (*, in_features) -> output (*, out_features).
        weight (out_features, in_features), bias (out_features,).

    Example:
        >>> layer = fastnn.nn.Linear(20, 30)
        >>> layer(np.zeros((128, 20), np.float32)).shape
        (128, 30)
    """

    def __init__(self, in_features, out_features, bias=True, dtype=None, generator=None):
        super().__init__()
        self.in_features = check_positive_int(in_features, "Linear", "in_features")
        self.out_features = check_positive_int(out_features, "Linear", "out_features")
        dt = dtype or _config.get_default_dtype()
        self.weight = Parameter(np.empty((self.out_features, self.in_features), dt))
        self.bias = Parameter(np.empty(self.out_features, dt)) if bias else None
        if not bias:
            self.register_parameter("bias", None)
        # fused epilogue: an activation applied in the same pass as the bias
        self._act_kind, self._act_slope = act_k.IDENTITY, 0.0
        self._x = self._out = None
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None):
        init.default_weight_and_bias_(self.weight, self.bias, generator)

    def forward(self, x):
        return self._forward_act(x, self._act_kind, self._act_slope)

    def _forward_act(self, x, kind, slope):
        """``forward`` with the activation ``(kind, slope)`` fused into the epilogue:
        ``Sequential`` passes the activation that follows this layer here."""
        w = self.weight.data
        K = self.in_features
        if type(x) is np.ndarray and x.ndim == 2 and x.dtype == w.dtype and x.shape[1] == K \
                and x.flags.c_contiguous:
            x2, lead = x, None  # the common case: nothing to check or convert
        else:
            x = as_float_array(x, "Linear", w.dtype, shape_hint=f" (*, {K})")
            if x.ndim == 0 or x.shape[-1] != K:
                raise ValueError(f"Linear: expected input of shape (*, {K}), got {x.shape}")
            x2, lead = x.reshape(-1, K), x.shape[:-1]
        N = self.out_features
        out = np.empty((x2.shape[0], N), w.dtype)
        bias = self.bias
        has_bias = bias is not None
        b = bias.data if has_bias else w[0]
        if x2.shape[0] * N * K < GEMV_SPLIT_FLOPS:  # what matmul runs serially: one call
            linear_serial(out, x2, w, b, kind, slope, has_bias)
        else:
            matmul(out, x2, w, trans_b=True)
            if has_bias or kind != act_k.IDENTITY:
                act_k.bias_activation_forward(out, b, kind, slope, has_bias)
        if self.training:  # what backward needs
            self._x, self._lead = x2, x2.shape[:1] if lead is None else lead
            self._out = out if kind != act_k.IDENTITY else None
            self._out_act = (kind, slope)
        elif self._x is not None:
            self._x = self._out = None  # a backward after an eval forward must fail
        return out if lead is None else out.reshape(lead + (N,))

    def backward(self, grad_output):
        x2 = self._saved(self._x)
        w = self.weight.data
        g = as_grad(grad_output, "Linear", self._lead + (self.out_features,), w.dtype)
        g = g.reshape(-1, self.out_features)
        if self._out is not None:  # an activation was fused into the forward
            g = fused_backward(g, self._out, *self._out_act)
        if self.weight.requires_grad:
            dw, acc = self.weight.grad_for_write()
            matmul(dw, g, x2, trans_a=True, accumulate=acc)
        if self.bias is not None and self.bias.requires_grad:
            db, acc = self.bias.grad_for_write()
            column_sum(db, g, acc)
        self._x = self._out = None  # one backward per forward: free what it saved, as PyTorch does
        if not self.needs_input_grad:
            return None
        dx = np.empty_like(x2)
        matmul(dx, g, w)
        return dx.reshape(self._lead + (self.in_features,))

    def _config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None}

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Identity(Module):
    """Returns its input unchanged (any arguments are accepted and ignored)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x

    def backward(self, grad_output):
        return grad_output


class Flatten(Module):
    """Flattens dims ``start_dim..end_dim`` into one, like ``torch.nn.Flatten``.

    Shape: (N, *dims) -> (N, prod(dims)) with the defaults.
    """

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)
        self._shape = None

    def forward(self, x):
        if type(x) is not np.ndarray:
            x = np.asarray(x)
        shape = x.shape
        ndim = len(shape)
        if ndim == 0:
            raise ValueError(f"Flatten: expected an input with at least 1 dimension, got shape {shape}")
        start = self.start_dim % ndim
        end = self.end_dim % ndim
        if start > end:
            raise ValueError(f"Flatten: start_dim {self.start_dim} comes after end_dim {self.end_dim} for shape {shape}")
        if self._shape != shape:
            self._shape = shape
        new_shape = shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:]
        if x.dtype not in FLOAT_DTYPES or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=float_dtype_for(x))
        return x.reshape(new_shape)

    def backward(self, grad_output):
        shape = self._saved(self._shape)
        return np.ascontiguousarray(grad_output).reshape(shape)

    def _config(self):
        return {"start_dim": self.start_dim, "end_dim": self.end_dim}

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
