"""A generated 1-D classification data set in the spirit of MNIST-1D (Greydanus, 2020).

Each class is a template shape on 12 knots (bumps, dips, ramps, steps, waves). A
sample is its class template, linearly interpolated, stretched in time and scaled
in amplitude by random factors, placed at a random offset in a zero signal, plus a
random linear trend, smooth (correlated) noise and white noise. Shift and trend
defeat a linear model; a small Conv1d net learns the task.
"""
import numbers

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import _config

__all__ = ["make_signals", "load_signals"]

_KNOTS = np.linspace(0.0, 1.0, 12)
_TEMPLATES = np.array([
    2.0 * np.sin(np.pi * _KNOTS),                             # 0 one wide bump
    [0, 0, 0, 0, 0.6, 2.4, 2.4, 0.6, 0, 0, 0, 0],             # 1 one narrow spike
    np.r_[np.linspace(0.0, 2.0, 11), 0.0],                    # 2 ramp up, sudden drop
    np.r_[0.0, np.linspace(2.0, 0.0, 11)],                    # 3 sudden rise, ramp down
    [0, 1.5, 2, 1.5, 0, 0, 0, 0, 1.5, 2, 1.5, 0],             # 4 two bumps
    2.0 * np.sin(2 * np.pi * _KNOTS),                         # 5 up, then down
    -2.0 * np.sin(2 * np.pi * _KNOTS),                        # 6 down, then up
    -2.0 * np.sin(np.pi * _KNOTS),                            # 7 one wide dip
    [0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0],                     # 8 square pulse
    1.5 * np.sin(3 * np.pi * _KNOTS),                         # 9 up, down, up
], dtype=np.float64)
_MIN_LENGTH = 24
_SPLITS = {"train": (4000, 0x51_6E_A1), "test": (1000, 0x7E_57)}  # size, seed of each fixed split


def _smooth_noise(rng, n, length, sigma=2.0):
    """(n, length) Gaussian noise smoothed by a Gaussian kernel, scaled to unit std."""
    radius = int(3 * sigma)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    white = rng.standard_normal((n, length + 2 * radius))
    return sliding_window_view(white, kernel.size, axis=1) @ (kernel / np.sqrt(np.sum(kernel ** 2)))


def make_signals(n, length=40, noise=0.25, seed=0, dtype=None):
    """Generate ``n`` labelled 1-D signals of 10 classes, deterministically from ``seed``.

    A sample of class c is template c (see the module docstring) stretched to 12-22
    time steps, scaled in amplitude by 0.75-1.25, shifted to a random offset, plus a
    linear trend of slope up to 1.5 over the signal, smooth noise of standard
    deviation ``noise`` and white noise of standard deviation ``noise / 2``. Classes
    are balanced: each occurs ``n // 10`` or ``n // 10 + 1`` times, in random order.

    Args:
        n: number of samples (a positive int).
        length: time steps per signal, at least 24 (default 40, MNIST-1D's length).
        noise: noise level, a finite number >= 0 (0 gives clean shifted templates).
        seed: int seed of the NumPy generator; equal arguments give equal arrays.
        dtype: float dtype of x; default ``fastnn.get_default_dtype()``.

    Returns:
        ``(x, y)``: x float of shape (n, 1, length), NCL, ready for ``Conv1d``; y int64
        labels 0..9 of shape (n,).

    Example:
        >>> from fastnn.datasets import make_signals
        >>> x, y = make_signals(100, seed=1)
        >>> x.shape, x.dtype, y.shape, y.dtype
        ((100, 1, 40), dtype('float32'), (100,), dtype('int64'))
        >>> np.bincount(y).tolist()
        [10, 10, 10, 10, 10, 10, 10, 10, 10, 10]
    """
    for name, value, low in (("n", n, 1), ("length", length, _MIN_LENGTH)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
            raise ValueError(f"make_signals: {name} must be an int >= {low}, got {value!r}")
    if not isinstance(noise, numbers.Real) or isinstance(noise, bool) or not np.isfinite(noise) or noise < 0:
        raise ValueError(f"make_signals: noise must be a finite number >= 0, got {noise!r}")
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise TypeError(f"make_signals: seed must be an int, got {type(seed).__name__}")
    dtype = np.dtype(_config.get_default_dtype() if dtype is None else dtype)
    if dtype.kind != "f":
        raise TypeError(f"make_signals: dtype must be a float dtype, got {dtype}")
    n, length = int(n), int(length)
    rng = np.random.default_rng(int(seed))
    y = rng.permutation(np.arange(n) % 10)
    width = rng.uniform(12.0, 22.0, n)                   # time steps the template spans
    offset = rng.uniform(0.0, length - 1 - width)         # where it starts
    scale = rng.uniform(0.75, 1.25, n)
    slope = rng.uniform(-1.5, 1.5, n)
    t = np.arange(length, dtype=np.float64)
    u = (t - offset[:, None]) / width[:, None] * 11       # position in knots, inside 0..11
    inside = (u >= 0) & (u <= 11)
    k = np.clip(np.floor(u).astype(np.int64), 0, 10)
    frac = np.clip(u - k, 0.0, 1.0)
    rows = _TEMPLATES[y]
    left = np.take_along_axis(rows, k, axis=1)
    right = np.take_along_axis(rows, k + 1, axis=1)
    x = np.where(inside, left + frac * (right - left), 0.0) * scale[:, None]
    x += slope[:, None] * (t / (length - 1) - 0.5)
    x += noise * _smooth_noise(rng, n, length) + 0.5 * noise * rng.standard_normal((n, length))
    return x.astype(dtype).reshape(n, 1, length), y.astype(np.int64)


def load_signals(split="train", dtype=None):
    """The fixed train/test split of ``make_signals`` (length 40, noise 0.25).

    4,000 training and 1,000 test signals, generated from two fixed seeds (no
    download, the same arrays on every machine with the same NumPy).

    Args:
        split: ``"train"`` or ``"test"``.
        dtype: float dtype of x; default ``fastnn.get_default_dtype()``.

    Returns:
        ``(x, y)``: x of shape (N, 1, 40), y int64 labels 0..9 of shape (N,).

    Example:
        >>> from fastnn.datasets import load_signals
        >>> load_signals("test")[0].shape
        (1000, 1, 40)
    """
    if split not in _SPLITS:
        raise ValueError(f"load_signals: split must be 'train' or 'test', got {split!r}")
    n, seed = _SPLITS[split]
    return make_signals(n, seed=seed, dtype=dtype)
