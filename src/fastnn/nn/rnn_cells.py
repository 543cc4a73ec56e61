"""Recurrent cells: RNNCell, LSTMCell, GRUCell (one time step; PyTorch's semantics,
parameters and ``state_dict`` keys). Each call is one graph node running the
recurrent layers' kernels for a single step."""
import math

import numpy as np

from .. import _config
from ..kernels import recurrent as rk
from ..ops.rnn_cells import rnn_cell
from . import init
from ._validate import check_positive_int
from .module import Module, Parameter

__all__ = ["GRUCell", "LSTMCell", "RNNCell", "RNNCellBase"]


class RNNCellBase(Module):
    """Parameters ``weight_ih`` (G, input_size), ``weight_hh`` (G, hidden_size),
    ``bias_ih``, ``bias_hh`` (G,), G = gates * hidden_size, initialised like PyTorch's
    U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""

    _name = "RNNCellBase"
    _mode = rk.RNN_TANH

    def __init__(self, input_size, hidden_size, bias=True, dtype=None, generator=None):
        super().__init__()
        name = self._name
        self.input_size = check_positive_int(input_size, name, "input_size")
        self.hidden_size = check_positive_int(hidden_size, name, "hidden_size")
        self.bias = bool(bias)
        dt = dtype or _config.get_default_dtype()
        G = rk.GATES[self._mode] * self.hidden_size
        self.weight_ih = Parameter(np.empty((G, self.input_size), dt))
        self.weight_hh = Parameter(np.empty((G, self.hidden_size), dt))
        if self.bias:
            self.bias_ih = Parameter(np.empty(G, dt))
            self.bias_hh = Parameter(np.empty(G, dt))
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None):
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound, generator)

    def _step(self, input, hx, cx):  # noqa: A002
        p = self._parameters
        return rnn_cell(input, hx, cx, p["weight_ih"], p["weight_hh"], p.get("bias_ih"), p.get("bias_hh"),
                        self._mode, self._name)

    def forward(self, input, hx=None):  # noqa: A002 (PyTorch's name)
        if isinstance(hx, (tuple, list)):
            raise TypeError(f"{self._name}: hx must be an array h (N, {self.hidden_size}), got a {type(hx).__name__}")
        return self._step(input, hx, None)

    def _config(self):
        return {"input_size": self.input_size, "hidden_size": self.hidden_size, "bias": self.bias}

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class RNNCell(RNNCellBase):
    """An Elman RNN cell: h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), like ``torch.nn.RNNCell``.

    Args:
        input_size, hidden_size: feature sizes of x and h.
        bias: use b_ih and b_hh (default True).
        nonlinearity: ``'tanh'`` (default) or ``'relu'``.

    Shape:
        input (N, input_size) or unbatched (input_size,); hx like h' (N, hidden_size),
        zeros if omitted. Returns h'. ``weight_ih`` (H, input_size), ``weight_hh`` (H, H).

    Example:
        >>> cell = fastnn.nn.RNNCell(10, 20)
        >>> h = None
        >>> for x_t in fastnn.zeros(6, 3, 10):   # 6 steps, batch 3
        ...     h = cell(x_t, h)                 # (3, 20)
    """

    _name = "RNNCell"

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", dtype=None, generator=None):
        modes = {"tanh": rk.RNN_TANH, "relu": rk.RNN_RELU}
        if nonlinearity not in modes:
            raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias, dtype, generator)  # one gate either way
        self._mode = modes[nonlinearity]
        self.nonlinearity = nonlinearity

    def _config(self):
        return dict(super()._config(), nonlinearity=self.nonlinearity)

    def extra_repr(self):
        return super().extra_repr() + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")


class LSTMCell(RNNCellBase):
    """A long short-term memory cell, like ``torch.nn.LSTMCell`` (gate order i, f, g, o).

    i, f, o = sigmoid(.), g = tanh(.) of x W_ih^T + b_ih + h W_hh^T + b_hh;
    c' = f c + i g;  h' = o tanh(c').

    Args: input_size, hidden_size, bias (as :class:`RNNCell`).

    Shape:
        input (N, input_size) or (input_size,); ``hx = (h, c)``, each (N, hidden_size)
        (or unbatched (hidden_size,)), zeros if omitted. Returns ``(h', c')``.
        ``weight_ih`` (4H, input_size), ``weight_hh`` (4H, H), biases (4H,).

    Example:
        >>> cell = fastnn.nn.LSTMCell(10, 20)
        >>> h, c = cell(fastnn.zeros(3, 10))          # each (3, 20)
        >>> h, c = cell(fastnn.zeros(3, 10), (h, c))
    """

    _name = "LSTMCell"
    _mode = rk.LSTM

    def forward(self, input, hx=None):  # noqa: A002 (PyTorch's name)
        if hx is None:
            return self._step(input, None, None)
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(f"LSTMCell: hx must be a tuple (h, c), got {type(hx).__name__}")
        return self._step(input, hx[0], hx[1])


class GRUCell(RNNCellBase):
    """A gated recurrent unit cell, like ``torch.nn.GRUCell`` (gate order r, z, n).

    r, z = sigmoid(x W_i{r,z}^T + b_i{r,z} + h W_h{r,z}^T + b_h{r,z});
    n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn));  h' = (1 - z) n + z h.

    Args: input_size, hidden_size, bias (as :class:`RNNCell`).

    Shape:
        as :class:`RNNCell`; ``weight_ih`` (3H, input_size), ``weight_hh`` (3H, H), biases (3H,).

    Example:
        >>> cell = fastnn.nn.GRUCell(10, 20)
        >>> h = cell(fastnn.zeros(3, 10))             # (3, 20)
    """

    _name = "GRUCell"
    _mode = rk.GRU
