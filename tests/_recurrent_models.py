"""A wrapper the inference-plan tests run recurrent layers in."""
from fastnn import nn


class States(nn.Module):
    """A recurrent layer's final states as the result, besides its output: (output,
    h_n, c_n) for an LSTM, (output, h_n, h_n) for an RNN or GRU."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        out, state = self.layer(x)
        h, c = state if isinstance(state, tuple) else (state, None)
        return out, h, c if c is not None else h
