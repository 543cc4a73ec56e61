"""Adaptive pooling to any output size: ``adaptive_max_pool2d`` and the 1-D forms
``adaptive_avg_pool1d`` and ``adaptive_max_pool1d`` (sequences viewed as images of
height 1). Averages run on ``kernels.pool``'s adaptive windows; maxima on
``kernels.adaptive_pool``, with ``kernels.pool``'s scatter as their backward."""
import numpy as np

from ..kernels import adaptive_pool as adaptive_k
from ..kernels._jit import SERIAL_BELOW
from ._util import float_tensor, recording
from .conv1d import single
from .pool import _ADAPTIVE_GEOM, _image, _planes, adaptive_size, avg_pool_run, max_pool_result
from .pool1d import sequence

__all__ = ["adaptive_avg_pool1d", "adaptive_max_pool1d", "adaptive_max_pool2d"]

_NO_INDEX = np.zeros((1, 1, 1), np.int32)  # argmax when nothing needs it (never written)


def _check_input(x4, op, shown):
    if x4.size == 0:
        raise ValueError(f"{op}: got an empty input of shape {shown}")
    if x4.shape[2] * x4.shape[3] >= 2**31:
        raise ValueError(f"{op}: input planes of {shown[-2:]} elements are too large")


def _adaptive_max(x, x4, out_shape, final_shape, return_indices):
    """Forward and recording of adaptive max pooling on the 4-D view ``x4``."""
    need = recording(x)
    with_index = need or bool(return_indices)
    out4 = np.empty(out_shape, x4.dtype)
    argmax = np.empty(out_shape, np.int32) if with_index else _NO_INDEX
    adaptive_k.adaptive_max_forward(_planes(out4), _planes(argmax) if with_index else argmax, _planes(x4),
                                    with_index)
    return max_pool_result(x, x4, out4, argmax, final_shape, need, return_indices, "AdaptiveMaxPool2DBackward0")


def adaptive_max_pool2d(input, output_size, return_indices=False):  # noqa: A002
    """Maximum over PyTorch's adaptive windows to a fixed output size, like
    ``torch.nn.functional.adaptive_max_pool2d``: output row i covers input rows
    floor(i * H / OH) .. ceil((i + 1) * H / OH) - 1 (columns alike).

    Args:
        input: (N, C, H, W) or (C, H, W).
        output_size: int or (h, w); None in a pair keeps that input size.
        return_indices: also return the int64 flat index (ih * W + iw) of each maximum.

    Example:
        >>> F.adaptive_max_pool2d(fastnn.zeros(8, 64, 7, 7), (2, 3)).shape
        (8, 64, 2, 3)
    """
    x = float_tensor(input, "adaptive_max_pool2d")
    x4, unbatched = _image(x, "adaptive_max_pool2d")
    oh, ow = adaptive_size(output_size, "adaptive_max_pool2d")
    _check_input(x4, "adaptive_max_pool2d", x.data.shape)
    N, C, H, W = x4.shape
    out_shape = (N, C, H if oh is None else oh, W if ow is None else ow)
    return _adaptive_max(x, x4, out_shape, out_shape[1:] if unbatched else out_shape, return_indices)


def adaptive_max_pool1d(input, output_size, return_indices=False):  # noqa: A002
    """Maximum over adaptive windows of (N, C, L), like ``torch.nn.functional.adaptive_max_pool1d``.

    Args:
        input: (N, C, L) or (C, L).
        output_size: int or 1-tuple.
        return_indices: also return the int64 position of each maximum.

    Example:
        >>> F.adaptive_max_pool1d(fastnn.zeros(8, 16, 50), 7).shape
        (8, 16, 7)
    """
    x = float_tensor(input, "adaptive_max_pool1d")
    x4, unbatched = sequence(x, "adaptive_max_pool1d")
    (ol,) = single(output_size, "adaptive_max_pool1d", "output_size")
    _check_input(x4, "adaptive_max_pool1d", x.data.shape)
    N, C = x4.shape[:2]
    return _adaptive_max(x, x4, (N, C, 1, ol), (C, ol) if unbatched else (N, C, ol), return_indices)


def adaptive_avg_pool1d(input, output_size):  # noqa: A002
    """Mean over adaptive windows of (N, C, L), like ``torch.nn.functional.adaptive_avg_pool1d``:
    output i averages positions floor(i * L / OL) .. ceil((i + 1) * L / OL) - 1.

    Args:
        input: (N, C, L) or (C, L).
        output_size: int or 1-tuple.

    Example:
        >>> F.adaptive_avg_pool1d(fastnn.zeros(8, 16, 50), 1).shape
        (8, 16, 1)
    """
    x = float_tensor(input, "adaptive_avg_pool1d")
    x4, unbatched = sequence(x, "adaptive_avg_pool1d")
    (ol,) = single(output_size, "adaptive_avg_pool1d", "output_size")
    _check_input(x4, "adaptive_avg_pool1d", x.data.shape)
    N, C = x4.shape[:2]
    return avg_pool_run(x, x4, (C, ol) if unbatched else (N, C, ol), (N, C, 1, ol), x4.size < SERIAL_BELOW,
                        _ADAPTIVE_GEOM, True, False, None, "AdaptiveAvgPool2DBackward0")
