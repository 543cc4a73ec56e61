"""1-D pooling over (N, C, L): ``max_pool1d`` and ``avg_pool1d`` on the 2-D pooling
kernels, each sequence viewed as an image of height 1 (no copy)."""
import numpy as np

from ._util import float_tensor
from .conv1d import single
from .pool import avg_pool_run, max_pool_run, pool_plan

__all__ = ["max_pool1d", "avg_pool1d"]


def sequence(x, op):
    """``(C-contiguous (N, C, 1, L) view, was unbatched)`` of a float Tensor's data."""
    xd = x.data
    if xd.ndim not in (2, 3):
        raise ValueError(f"{op}: expected 2-D (C, L) or 3-D (N, C, L) input, got shape {xd.shape}")
    x3 = xd.reshape((1,) + xd.shape) if xd.ndim == 2 else xd
    if not x3.flags.c_contiguous:
        x3 = np.ascontiguousarray(x3)
    return x3.reshape(x3.shape[0], x3.shape[1], 1, x3.shape[2]), xd.ndim == 2


def pool1d_arguments(op, kernel_size, stride, padding, dilation):
    """Validated ``(kernel, stride, padding, dilation)`` ints (stride None: the kernel)."""
    (k,) = single(kernel_size, op, "kernel_size")
    no_stride = stride is None or (isinstance(stride, (tuple, list)) and not stride)
    (s,) = (k,) if no_stride else single(stride, op, "stride")
    (p,), (d,) = single(padding, op, "padding", minimum=0), single(dilation, op, "dilation")
    if p > k // 2:
        raise ValueError(f"{op}: padding should be at most half of the kernel size, got padding={p} "
                         f"for kernel_size={k}")
    return k, s, p, d


def _plan(op, x4, kernel_size, stride, padding, dilation, ceil_mode):
    k, s, p, d = pool1d_arguments(op, kernel_size, stride, padding, dilation)
    N, C, _, L = x4.shape
    if L + 2 * p < d * (k - 1) + 1:
        raise ValueError(f"{op}: input of shape {(N, C, L)} padded by {p} is shorter than the pooling "
                         f"window {k} (dilation {d})")
    if N * C == 0:
        raise ValueError(f"{op}: got an empty input of shape {(N, C, L)}")
    return pool_plan(op, x4.shape, (1, k), (1, s), (0, p), (1, d), bool(ceil_mode))


def _final(plan, unbatched):
    N, C, _, OL = plan[0]
    return (C, OL) if unbatched else (N, C, OL)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,  # noqa: A002
               return_indices=False):
    """Maximum over sliding windows of (N, C, L), like ``torch.nn.functional.max_pool1d``.

    Args:
        input: (N, C, L) or (C, L).
        kernel_size, stride (default kernel_size), padding (implicit -inf, at most half
            the kernel), dilation: int or 1-tuple.
        ceil_mode: round the output length up.
        return_indices: also return the int64 position of each maximum.

    Example:
        >>> F.max_pool1d(fastnn.zeros(8, 3, 32), 2).shape
        (8, 3, 16)
    """
    x = float_tensor(input, "max_pool1d")
    x4, unbatched = sequence(x, "max_pool1d")
    plan = _plan("max_pool1d", x4, kernel_size, stride, padding, dilation, ceil_mode)
    return max_pool_run(x, x4, plan, _final(plan, unbatched), return_indices, "MaxPool2DWithIndicesBackward0")


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):  # noqa: A002
    """Mean over sliding windows of (N, C, L), like ``torch.nn.functional.avg_pool1d``.

    Args:
        input: (N, C, L) or (C, L).
        kernel_size, stride (default kernel_size), padding (implicit zeros, at most
            half the kernel): int or 1-tuple.
        ceil_mode: round the output length up.
        count_include_pad: count the padding zeros in the divisor.

    Example:
        >>> F.avg_pool1d(fastnn.zeros(8, 3, 32), 4).shape
        (8, 3, 8)
    """
    x = float_tensor(input, "avg_pool1d")
    x4, unbatched = sequence(x, "avg_pool1d")
    plan = _plan("avg_pool1d", x4, kernel_size, stride, padding, 1, ceil_mode)
    out_shape, geom, serial, _ = plan
    return avg_pool_run(x, x4, _final(plan, unbatched), out_shape, serial, geom, False, bool(count_include_pad),
                        None, "AvgPool2DBackward0")
