"""The machinery shared by RNN, LSTM and GRU (see ``nn/recurrent.py``)."""
import math
import numbers
import warnings

import numpy as np

from .. import _config
from ..kernels import recurrent as rk
from ..ops.recurrent import rnn_sequence
from . import init
from ._validate import check_positive_int
from .module import Module, Parameter


class RNNBase(Module):
    """Shared machinery of RNN, LSTM and GRU: parameters, configuration, ``hx``.

    ``forward`` is one call of ``ops.recurrent.rnn_sequence``: the whole sequence,
    every layer and direction and the dropout between layers as one graph node (see
    there for layouts and work buffers). Parameters per layer k and direction, in
    PyTorch's order: ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
    ``bias_hh_l{k}`` (and LSTM's ``weight_hr_l{k}``), then the same with ``_reverse``.
    """

    _name = "RNNBase"

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=None, generator=None, proj_size=0):
        super().__init__()
        name = self._name
        self.input_size = check_positive_int(input_size, name, "input_size")
        self.hidden_size = check_positive_int(hidden_size, name, "hidden_size")
        self.num_layers = check_positive_int(num_layers, name, "num_layers")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout <= 1:
            raise ValueError(f"{name}: dropout should be a number in range [0, 1] representing the "
                             f"probability of an element being zeroed, got {dropout!r}")
        if dropout > 0 and self.num_layers == 1:
            warnings.warn(f"{name}: dropout={dropout} acts between layers only, so it has no effect "
                          f"with num_layers=1", UserWarning, stacklevel=3)
        if isinstance(proj_size, bool) or not isinstance(proj_size, (int, np.integer)) or proj_size < 0:
            raise ValueError(f"{name}: proj_size must be a non-negative int, got {proj_size!r}")
        if proj_size >= self.hidden_size:
            raise ValueError(f"{name}: proj_size ({proj_size}) has to be smaller than hidden_size "
                             f"({self.hidden_size})")
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.proj_size = int(proj_size)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self._mode = mode
        dt = dtype or _config.get_default_dtype()
        H, D = self.hidden_size, 2 if self.bidirectional else 1
        P = self.proj_size or H
        G = rk.GATES[mode] * H
        for k in range(self.num_layers):
            in_k = self.input_size if k == 0 else D * P
            for sfx in ("", "_reverse")[:D]:
                setattr(self, f"weight_ih_l{k}{sfx}", Parameter(np.empty((G, in_k), dt)))
                setattr(self, f"weight_hh_l{k}{sfx}", Parameter(np.empty((G, P), dt)))
                if self.bias:
                    setattr(self, f"bias_ih_l{k}{sfx}", Parameter(np.empty(G, dt)))
                    setattr(self, f"bias_hh_l{k}{sfx}", Parameter(np.empty(G, dt)))
                if self.proj_size:
                    setattr(self, f"weight_hr_l{k}{sfx}", Parameter(np.empty((P, H), dt)))
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None):
        """PyTorch's default: every weight and bias ~ U(-1/sqrt(hidden), 1/sqrt(hidden))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound, generator)

    def flatten_parameters(self):
        """No-op, for code written for PyTorch's cuDNN path."""

    def _layer(self, k, sfx=""):
        p = self._parameters
        layer = (p[f"weight_ih_l{k}{sfx}"], p[f"weight_hh_l{k}{sfx}"], p.get(f"bias_ih_l{k}{sfx}"),
                 p.get(f"bias_hh_l{k}{sfx}"))
        return layer + (p[f"weight_hr_l{k}{sfx}"],) if self.proj_size else layer

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
        sfxs = ("", "_reverse") if self.bidirectional else ("",)
        params = [self._layer(k, s) for k in range(self.num_layers) for s in sfxs]
        out, h_n, c_n = rnn_sequence(input, h0, c0, params, self._mode, self.batch_first, self._name,
                                     self.bidirectional, self.dropout, self.training)
        return (out, (h_n, c_n)) if self._mode == rk.LSTM else (out, h_n)

    # ---------------------------------------------------------------- config
    def _config(self):
        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "bias": self.bias, "batch_first": self.batch_first,
                "dropout": self.dropout, "bidirectional": self.bidirectional}

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s
