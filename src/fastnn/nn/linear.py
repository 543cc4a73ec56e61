"""Dense layers: Linear, Identity, Flatten."""

from . import functional as F
from . import init
from ._validate import check_positive_int
from .module import Module
from .parameter import add_weight_and_bias


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
        >>> layer(fastnn.zeros(128, 20)).shape
        (128, 30)
    """

    # Sequential may run the activation that follows in this layer's epilogue
    accepts_epilogue = True

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None, generator=None):
        super().__init__()
        self.in_features = check_positive_int(in_features, "Linear", "in_features")
        self.out_features = check_positive_int(out_features, "Linear", "out_features")
        add_weight_and_bias(self, (self.out_features, self.in_features), self.out_features, bias, dtype)
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None):
        init.default_weight_and_bias_(self.weight, self.bias, generator)

    def forward(self, input):  # noqa: A002
        return F.linear(input, self.weight, self.bias)

    def forward_fused(self, input, activation, negative_slope=0.0):  # noqa: A002
        """``activation(self(input))`` in one pass (see ``Sequential``)."""
        return F.linear(input, self.weight, self.bias, activation, negative_slope)

    def _config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None}

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Identity(Module):
    """Returns its input unchanged (any arguments are accepted and ignored)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):  # noqa: A002
        return input


class Flatten(Module):
    """Flattens dims ``start_dim..end_dim`` into one, like ``torch.nn.Flatten``.

    Shape: (N, *dims) -> (N, prod(dims)) with the defaults.
    """

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def forward(self, input):  # noqa: A002
        return F.flatten(input, self.start_dim, self.end_dim)

    def _config(self):
        return {"start_dim": self.start_dim, "end_dim": self.end_dim}

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
