"""The further activation layers (ReLU6, ELU, SELU, SiLU, Mish, Softplus, Hardtanh,
Hardsigmoid, Hardswish, PReLU, LogSigmoid, Softsign, Tanhshrink), with PyTorch's
constructor arguments. Each ``forward`` is one call of its functional form; all of
them map any shape to the same shape."""
import numpy as np

from .. import _config
from . import functional as F
from .module import Module, Parameter

__all__ = ["ReLU6", "ELU", "SELU", "SiLU", "Mish", "Softplus", "Hardtanh", "Hardsigmoid", "Hardswish", "PReLU",
           "LogSigmoid", "Softsign", "Tanhshrink"]


class _Activation(Module):
    """A parameter-free activation ``F.<_fn>(input, **self._args())``; ``inplace`` is
    accepted for PyTorch code (computed out of place)."""

    _fn = None

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = bool(inplace)

    def _args(self):
        return {}

    def forward(self, input):  # noqa: A002 (PyTorch's name)
        return getattr(F, self._fn)(input, **self._args())

    def _config(self):
        return dict(self._args(), **({"inplace": True} if self.inplace else {}))

    def extra_repr(self):
        items = [f"{k}={v}" for k, v in self._args().items()] + (["inplace=True"] if self.inplace else [])
        return ", ".join(items)


class _Plain(_Activation):
    # PyTorch's LogSigmoid, Softsign and Tanhshrink take no arguments at all
    def __init__(self):
        super().__init__()


class ReLU6(_Activation):
    """min(max(x, 0), 6) elementwise.

    Example:
        >>> nn.ReLU6()(fastnn.tensor([-1.0, 3.0, 9.0]))   # [0, 3, 6]
    """

    _fn = "relu6"


class ELU(_Activation):
    """x if x > 0 else alpha * (exp(x) - 1).

    Args:
        alpha: the value the negative side saturates to (times -1). Default 1.0.
        inplace: accepted, computed out of place.

    Example:
        >>> nn.ELU(alpha=0.5)(fastnn.randn(4, 3))
    """

    _fn = "elu"

    def __init__(self, alpha=1.0, inplace=False):
        super().__init__(inplace)
        self.alpha = float(alpha)

    def _args(self):
        return {"alpha": self.alpha}


class SELU(_Activation):
    """1.0507 * (x if x > 0 else 1.6733 * (exp(x) - 1)): the self-normalising ELU."""

    _fn = "selu"


class SiLU(_Activation):
    """x * sigmoid(x) (swish)."""

    _fn = "silu"


class Mish(_Activation):
    """x * tanh(softplus(x))."""

    _fn = "mish"


class Hardsigmoid(_Activation):
    """min(max(x + 3, 0), 6) / 6: a piecewise-linear sigmoid."""

    _fn = "hardsigmoid"


class Hardswish(_Activation):
    """x * min(max(x + 3, 0), 6) / 6 (MobileNetV3's swish)."""

    _fn = "hardswish"


class LogSigmoid(_Plain):
    """log(sigmoid(x)), stable for large |x|."""

    _fn = "logsigmoid"


class Softsign(_Plain):
    """x / (1 + |x|)."""

    _fn = "softsign"


class Tanhshrink(_Plain):
    """x - tanh(x)."""

    _fn = "tanhshrink"


class Softplus(_Activation):
    """log(1 + exp(beta * x)) / beta; x itself where beta * x > threshold.

    Args:
        beta: sharpness (default 1.0).
        threshold: above it (in beta * x) the function is linear (default 20.0).

    Example:
        >>> nn.Softplus(beta=2.0)(fastnn.randn(4, 3))
    """

    _fn = "softplus"

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.beta, self.threshold = float(beta), float(threshold)

    def _args(self):
        return {"beta": self.beta, "threshold": self.threshold}


class Hardtanh(_Activation):
    """x clamped to [min_val, max_val].

    Args:
        min_val, max_val: the bounds (default -1, 1); ``min_val <= max_val``.
        inplace: accepted, computed out of place.

    Example:
        >>> nn.Hardtanh(-2.0, 2.0)(fastnn.randn(4, 3))
    """

    _fn = "hardtanh"

    def __init__(self, min_val=-1.0, max_val=1.0, inplace=False, min_value=None, max_value=None):
        super().__init__(inplace)
        self.min_val = float(min_val if min_value is None else min_value)
        self.max_val = float(max_val if max_value is None else max_value)
        if self.min_val > self.max_val:
            raise ValueError(f"Hardtanh: min_val ({self.min_val}) cannot be greater than max_val ({self.max_val})")

    def _args(self):
        return {"min_val": self.min_val, "max_val": self.max_val}


class PReLU(Module):
    """x if x > 0 else a * x, with a learned slope ``a``: one for all channels or one
    per channel (dim 1 of the input).

    Args:
        num_parameters: 1 or the number of input channels (default 1).
        init: the slopes' initial value (default 0.25).
        dtype: parameter dtype (default: ``fastnn.get_default_dtype()``).

    Shape: input (N, C, *) or any shape when num_parameters is 1 -> same shape.
        weight (num_parameters,).

    Example:
        >>> act = nn.PReLU(16)
        >>> act(fastnn.randn(8, 16, 5, 5)).shape
        (8, 16, 5, 5)
    """

    def __init__(self, num_parameters=1, init=0.25, device=None, dtype=None):
        super().__init__()
        if isinstance(num_parameters, bool) or not isinstance(num_parameters, (int, np.integer)) \
                or num_parameters <= 0:
            raise ValueError(f"PReLU: num_parameters must be a positive int, got {num_parameters!r}")
        self.num_parameters, self.init = int(num_parameters), float(init)
        self.weight = Parameter(np.full(self.num_parameters, self.init, dtype or _config.get_default_dtype()))

    def reset_parameters(self):
        self.weight.data[...] = self.init

    def forward(self, input):  # noqa: A002
        return F.prelu(input, self.weight)

    def _config(self):
        return {"num_parameters": self.num_parameters, "init": self.init}

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"
