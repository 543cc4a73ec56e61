"""Dropout: inverted dropout in training, identity in eval."""
import numpy as np

from .. import random as _random
from ..kernels.elementwise import dropout_forward, multiply
from ._validate import as_float_array, as_grad, float_dtype_for
from .module import Module


class Dropout(Module):
    """Zeroes each element with probability ``p`` and scales the rest by 1/(1-p).

    Args:
        p: drop probability in [0, 1).
        generator: a ``numpy.random.Generator`` or seed; default fastnn's generator.

    Shape: any -> same. Identity in eval mode.
    """

    def __init__(self, p=0.5, inplace=False, generator=None):
        super().__init__()
        p = float(p)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = p
        self._generator = generator
        self._mask = None

    def forward(self, x):
        x = as_float_array(x, "Dropout", float_dtype_for(x))
        if not self.training or self.p == 0.0:
            self._mask = None if not self.training else np.ones_like(x)
            return x
        rng = _random.resolve(self._generator)
        if isinstance(self._generator, (int, np.integer)):
            self._generator = rng  # advance one stream, do not repeat the same mask
        uniform = rng.random(x.size, dtype=x.dtype)
        out = np.empty_like(x)
        mask = np.empty_like(x)
        dropout_forward(out.reshape(-1), mask.reshape(-1), x.reshape(-1), uniform, self.p)
        self._mask = mask
        return out

    def backward(self, grad_output):
        mask = self._saved(self._mask)
        g = as_grad(grad_output, "Dropout", mask.shape, mask.dtype)
        dx = np.empty_like(g)
        multiply(dx.reshape(-1), g.reshape(-1), mask.reshape(-1))
        return dx

    def _config(self):
        return {"p": self.p}

    def extra_repr(self):
        return f"p={self.p}"
