"""Dropout layers: inverted dropout in training, the input itself in eval."""
import numpy as np

from . import functional as F
from .module import Module


class _DropoutNd(Module):
    _fn = None

    def __init__(self, p=0.5, inplace=False, generator=None):
        super().__init__()
        name = type(self).__name__
        if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name}: p must be a number in [0, 1), got {p!r}")
        p = float(p)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"{name}: p must be in [0, 1), got {p}")
        self.p = p
        self.inplace = bool(inplace)
        self._generator = generator

    def _rng(self):
        """The generator to draw from: an int seed becomes one stream that advances."""
        if isinstance(self._generator, (int, np.integer)):
            self._generator = np.random.default_rng(self._generator)
        return self._generator

    def forward(self, input):  # noqa: A002 (PyTorch's name)
        if not self.training or self.p == 0.0:
            return type(self)._fn(input, self.p, False)
        return type(self)._fn(input, self.p, True, False, self._rng())

    def _config(self):
        return {"p": self.p}

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """Zeroes each element with probability ``p`` and scales the rest by 1/(1-p),
    like ``torch.nn.Dropout``; the input itself in eval mode.

    Args:
        p: drop probability in [0, 1).
        inplace: accepted for PyTorch compatibility (the result is a new tensor).
        generator: a ``numpy.random.Generator`` or an int seed (one stream that
            advances call by call); default fastnn's generator (``fastnn.manual_seed``).

    Shape: any -> the same.

    Example:
        >>> drop = fastnn.nn.Dropout(0.2)
        >>> drop(fastnn.ones(4, 8)).shape
        (4, 8)
    """

    _fn = staticmethod(F.dropout)


class Dropout1d(_DropoutNd):
    """Zeroes whole channels with probability ``p`` (scaling the rest by 1/(1-p)),
    like ``torch.nn.Dropout1d``. Args as :class:`Dropout`.

    Shape: (N, C, L) or (C, L) -> the same.

    Example:
        >>> fastnn.nn.Dropout1d(0.1)(fastnn.ones(2, 16, 40)).shape
        (2, 16, 40)
    """

    _fn = staticmethod(F.dropout1d)


class Dropout2d(_DropoutNd):
    """Zeroes whole channels with probability ``p`` (scaling the rest by 1/(1-p)),
    like ``torch.nn.Dropout2d``. Args as :class:`Dropout`.

    Shape: (N, C, H, W) -> the same (a 3-D input is read as (N, C, L), as in PyTorch 2).

    Example:
        >>> fastnn.nn.Dropout2d(0.1)(fastnn.ones(2, 16, 8, 8)).shape
        (2, 16, 8, 8)
    """

    _fn = staticmethod(F.dropout2d)
