"""Data sets for demos and tests, and readers for common data file formats.

``load_digits`` returns the UCI Optical Recognition of Handwritten Digits data set
(Alpaydin & Kaynak, UCI Machine Learning Repository, CC BY 4.0), shipped with
fastnn: 1,797 8x8 grey-level images of the digits 0-9 in a fixed train/test split.
``make_signals``/``load_signals`` generate a 1-D data set like MNIST-1D (10 classes
of shifted, noisy template signals, length 40), deterministically and offline.
``read_idx``/``write_idx``/``load_mnist`` handle the MNIST IDX files.
"""
import functools
import importlib.resources

import numpy as np

from .. import _config
from .idx import load_mnist, read_idx, write_idx
from .signals import load_signals, make_signals

__all__ = ["load_digits", "load_mnist", "load_signals", "make_signals", "read_idx", "write_idx"]


@functools.lru_cache(maxsize=1)
def _digits_arrays():
    """The raw uint8 arrays of ``digits.npz``, read once and marked read-only."""
    resource = importlib.resources.files(__name__).joinpath("digits.npz")
    with resource.open("rb") as f, np.load(f, allow_pickle=False) as data:
        arrays = {key: data[key] for key in ("x_train", "y_train", "x_test", "y_test")}
    for array in arrays.values():
        array.setflags(write=False)
    return arrays


def load_digits(split="train", flatten=False, normalize=True, dtype=None):
    """The handwritten digits data set bundled with fastnn (8x8 images, 10 classes).

    The split is fixed: 1,437 training and 360 test images, with no image in both.
    Pixel values are integers 0..16 in the source data.

    Args:
        split: ``"train"`` or ``"test"``.
        flatten: if True return x as (N, 64) rows (for MLPs); else (N, 1, 8, 8),
            NCHW, ready for ``Conv2d``.
        normalize: if True divide the pixels by 16 so they lie in [0, 1].
        dtype: float dtype of x; default ``fastnn.get_default_dtype()``.

    Returns:
        ``(x, y)``: x float of shape (N, 1, 8, 8) or (N, 64); y int64 labels 0..9
        of shape (N,). Fresh arrays, safe to modify.

    Example:
        >>> from fastnn.datasets import load_digits
        >>> x, y = load_digits("train")
        >>> x.shape, y.shape
        ((1437, 1, 8, 8), (1437,))
        >>> load_digits("test", flatten=True)[0].shape
        (360, 64)
    """
    if split not in ("train", "test"):
        raise ValueError(f"load_digits: split must be 'train' or 'test', got {split!r}")
    dtype = np.dtype(_config.get_default_dtype() if dtype is None else dtype)
    if dtype.kind != "f":
        raise TypeError(f"load_digits: dtype must be a float dtype, got {dtype}")
    arrays = _digits_arrays()
    images, labels = arrays["x_" + split], arrays["y_" + split]
    x = images.astype(dtype)
    if normalize:
        x /= 16
    x = x.reshape(len(x), 64) if flatten else x.reshape(len(x), 1, 8, 8)
    return x, labels.astype(np.int64)
