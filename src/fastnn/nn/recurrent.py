"""Recurrent layers: RNN, LSTM, GRU (PyTorch's semantics and parameters), and LastStep."""
from ..kernels import recurrent as rk
from ..ops.recurrent import last_step
from ._rnn_base import RNNBase
from .module import Module

__all__ = ["GRU", "LSTM", "RNN", "LastStep", "RNNBase"]


class RNN(RNNBase):
    """Elman RNN: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), like ``torch.nn.RNN``.

    Args:
        input_size, hidden_size: feature sizes of x and h.
        num_layers: stacked layers (default 1).
        nonlinearity: ``'tanh'`` (default) or ``'relu'``.
        bias: use b_ih and b_hh (default True).
        batch_first: input and output are (N, T, F) instead of (T, N, F).
        dropout: in training mode, dropout with this probability on the output of every
            layer but the last (fastnn's default generator, ``fastnn.manual_seed``).
        bidirectional: also run each layer backward in time (parameters ``*_reverse``);
            outputs concatenate the two directions' features.

    Shape:
        x (T, N, input_size) (or batch-first, or unbatched (T, input_size));
        h_0 (D * num_layers, N, hidden_size), zeros if omitted (D = 2 if bidirectional
        else 1, ordered (layer, direction)).
        Returns ``(output, h_n)``: output (T, N, D * hidden_size), h_n like h_0.
        Parameters ``weight_ih_l{k}`` (H, in), ``weight_hh_l{k}`` (H, H), ``bias_*_l{k}`` (H,).

    Example:
        >>> rnn = fastnn.nn.RNN(10, 20, num_layers=2)
        >>> out, h_n = rnn(fastnn.zeros(5, 3, 10))   # out (5, 3, 20), h_n (2, 3, 20)
    """

    _name = "RNN"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, dtype=None, generator=None):
        modes = {"tanh": rk.RNN_TANH, "relu": rk.RNN_RELU}
        if nonlinearity not in modes:
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(modes[nonlinearity], input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, dtype, generator)
        self.nonlinearity = nonlinearity

    def _config(self):
        return dict(super()._config(), nonlinearity=self.nonlinearity)

    def extra_repr(self):
        s = super().extra_repr()
        return s + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")


class LSTM(RNNBase):
    """Long short-term memory, like ``torch.nn.LSTM`` (gate order i, f, g, o).

    i, f, o = sigmoid(.), g = tanh(.) of x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh;
    c_t = f c_{t-1} + i g;  h_t = o tanh(c_t).

    Args: as :class:`RNN`, without ``nonlinearity``, and
        proj_size: if > 0, h_t = W_hr (o tanh(c_t)) has proj_size features
            (``weight_hr_l{k}`` (proj_size, H)); must be smaller than hidden_size.

    Shape:
        x (T, N, input_size) (or batch-first, or unbatched); ``hx = (h_0, c_0)``,
        h_0 (D * num_layers, N, P), c_0 (D * num_layers, N, hidden_size), zeros if
        omitted, P = proj_size or hidden_size. Returns ``(output, (h_n, c_n))``,
        output (T, N, D * P). ``weight_ih_l{k}`` (4H, in), ``weight_hh_l{k}`` (4H, P),
        biases (4H,).

    Example:
        >>> lstm = fastnn.nn.LSTM(64, 128, batch_first=True)
        >>> out, (h_n, c_n) = lstm(fastnn.zeros(8, 32, 64))   # out (8, 32, 128)
    """

    _name = "LSTM"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, dtype=None, generator=None):
        super().__init__(rk.LSTM, input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, dtype, generator, proj_size)

    def _config(self):
        return dict(super()._config(), proj_size=self.proj_size)


class GRU(RNNBase):
    """Gated recurrent unit, like ``torch.nn.GRU`` (gate order r, z, n).

    r, z = sigmoid(x_t W_i{r,z}^T + b_i{r,z} + h_{t-1} W_h{r,z}^T + b_h{r,z});
    n = tanh(x_t W_in^T + b_in + r * (h_{t-1} W_hn^T + b_hn));  h_t = (1 - z) n + z h_{t-1}.

    Args: as :class:`RNN`, without ``nonlinearity``.

    Shape:
        as :class:`RNN`; ``weight_ih_l{k}`` (3H, in), ``weight_hh_l{k}`` (3H, H), biases (3H,).

    Example:
        >>> gru = fastnn.nn.GRU(10, 20, batch_first=True)
        >>> out, h_n = gru(fastnn.zeros(3, 5, 10))   # out (3, 5, 20)
    """

    _name = "GRU"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=None, generator=None):
        super().__init__(rk.GRU, input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, dtype, generator)


class LastStep(Module):
    """The last time step of a sequence: ``x[:, -1]`` (batch_first) or ``x[-1]``.

    Put it after a recurrent layer in a ``Sequential`` to classify a sequence from
    its final hidden state. The gradient lands in that slice of zeros of the
    input's shape.

    Args:
        batch_first: whether the input is (N, T, F) (True) or (T, N, F) (default False,
            like the recurrent layers).

    Shape: (N, T, F) or (T, N, F) -> (N, F).

    Example:
        >>> model = Sequential(LSTM(8, 64, batch_first=True), LastStep(batch_first=True), Linear(64, 10))
    """

    def __init__(self, batch_first=False):
        super().__init__()
        self.batch_first = bool(batch_first)

    def forward(self, input):  # noqa: A002 (PyTorch's name)
        return last_step(input, self.batch_first)

    def _config(self):
        return {"batch_first": self.batch_first}

    def extra_repr(self):
        return f"batch_first={self.batch_first}"
