"""Activation layers: each ``forward`` is one call of its functional form."""
from . import functional as F
from .module import Module


class _Pointwise(Module):
    # the name of the activation when a preceding Linear/Conv2d can run it in its
    # epilogue (its derivative follows from its output), else None
    _epilogue = None

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = bool(inplace)  # accepted for PyTorch code; computed out of place

    @property
    def epilogue(self):
        """``(activation name, negative_slope)`` for a layer's fused epilogue, or None."""
        return None if self._epilogue is None else (self._epilogue, 0.0)


class ReLU(_Pointwise):
    """max(x, 0) elementwise. Shape: any -> same."""

    _epilogue = "relu"

    def forward(self, input):  # noqa: A002
        return F.relu(input)


class LeakyReLU(_Pointwise):
    """x if x > 0 else negative_slope * x. Shape: any -> same."""

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__(inplace)
        self.negative_slope = float(negative_slope)

    @property
    def slope(self):
        return self.negative_slope

    @property
    def epilogue(self):
        return ("leaky_relu", self.negative_slope) if self.negative_slope >= 0 else None

    def forward(self, input):  # noqa: A002
        return F.leaky_relu(input, self.negative_slope)

    def _config(self):
        return {"negative_slope": self.negative_slope}

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Sigmoid(_Pointwise):
    """1 / (1 + exp(-x)) elementwise, computed stably. Shape: any -> same."""

    _epilogue = "sigmoid"

    def __init__(self):
        super().__init__()

    def forward(self, input):  # noqa: A002
        return F.sigmoid(input)


class Tanh(_Pointwise):
    """tanh(x) elementwise. Shape: any -> same."""

    _epilogue = "tanh"

    def __init__(self):
        super().__init__()

    def forward(self, input):  # noqa: A002
        return F.tanh(input)


class GELU(_Pointwise):
    """x * Phi(x): the exact erf form (``approximate='none'``, default) or the tanh
    approximation (``approximate='tanh'``). Shape: any -> same."""

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, input):  # noqa: A002
        return F.gelu(input, self.approximate)

    def _config(self):
        return {} if self.approximate == "none" else {"approximate": self.approximate}

    def extra_repr(self):
        return "" if self.approximate == "none" else f"approximate={self.approximate!r}"


class Softmax(Module):
    """softmax along ``dim`` (default -1). Shape: any -> same."""

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = -1 if dim is None else int(dim)

    def forward(self, input):  # noqa: A002
        return F.softmax(input, self.dim)

    def _config(self):
        return {"dim": self.dim}

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """log(softmax(x)) along ``dim`` (default -1), computed stably. Shape: any -> same."""

    def forward(self, input):  # noqa: A002
        return F.log_softmax(input, self.dim)
