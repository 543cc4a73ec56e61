"""The machinery shared by RNN, LSTM and GRU (see ``nn/recurrent.py``)."""
import math

import numpy as np

from .. import _config
from ..kernels import recurrent as rk
from ..ops.recurrent import rnn_sequence
from . import init
from ._validate import check_positive_int
from .module import Module, Parameter


class RNNBase(Module):
    """Shared machinery of RNN, LSTM and GRU: parameters, configuration, ``hx``.

    ``forward`` is one call of ``ops.recurrent.rnn_sequence``: the whole sequence and
    every layer as one graph node (see there for layouts and work buffers).
    """

    _name = "RNNBase"

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=None, generator=None):
        super().__init__()
        name = self._name
        self.input_size = check_positive_int(input_size, name, "input_size")
        self.hidden_size = check_positive_int(hidden_size, name, "hidden_size")
        self.num_layers = check_positive_int(num_layers, name, "num_layers")
        if dropout:
            raise NotImplementedError(f"{name}: dropout between layers is not supported (got {dropout!r})")
        if bidirectional:
            raise NotImplementedError(f"{name}: bidirectional=True is not supported")
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self._mode = mode
        dt = dtype or _config.get_default_dtype()
        G = rk.GATES[mode] * self.hidden_size
        for k in range(self.num_layers):
            in_k = self.input_size if k == 0 else self.hidden_size
            setattr(self, f"weight_ih_l{k}", Parameter(np.empty((G, in_k), dt)))
            setattr(self, f"weight_hh_l{k}", Parameter(np.empty((G, self.hidden_size), dt)))
            if self.bias:
                setattr(self, f"bias_ih_l{k}", Parameter(np.empty(G, dt)))
                setattr(self, f"bias_hh_l{k}", Parameter(np.empty(G, dt)))
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None):
        """PyTorch's default: every weight and bias ~ U(-1/sqrt(hidden), 1/sqrt(hidden))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound, generator)

    def flatten_parameters(self):
        """No-op, for code written for PyTorch's cuDNN path."""

    def _layer(self, k):
        p = self._parameters
        return p[f"weight_ih_l{k}"], p[f"weight_hh_l{k}"], p.get(f"bias_ih_l{k}"), p.get(f"bias_hh_l{k}")

    def _initial_state(self, hx):
        """(h_0, c_0) from ``hx`` (shapes are checked by the operation)."""
        if hx is None:
            return None, None
        if self._mode == rk.LSTM:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"{self._name}: hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
            return hx[0], hx[1]
        if isinstance(hx, (tuple, list)):
            raise TypeError(f"{self._name}: hx must be an array h_0, got a {type(hx).__name__}")
        return hx, None

    def forward(self, input, hx=None):  # noqa: A002 (PyTorch's name)
        h0, c0 = self._initial_state(hx)
        params = [self._layer(k) for k in range(self.num_layers)]
        out, h_n, c_n = rnn_sequence(input, h0, c0, params, self._mode, self.batch_first, self._name)
        return (out, (h_n, c_n)) if self._mode == rk.LSTM else (out, h_n)

    # ---------------------------------------------------------------- config
    def _config(self):
        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "bias": self.bias, "batch_first": self.batch_first}

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        return s

