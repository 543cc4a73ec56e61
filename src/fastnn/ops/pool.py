"""2-D pooling (NCHW): ``max_pool2d``, ``avg_pool2d``, ``adaptive_avg_pool2d`` on the
plane kernels of ``kernels.pool``, with their serial (small input) and tiled
(kernel == stride) fast paths."""
import numpy as np

from ..kernels import pool as pool_k
from ..kernels._jit import SERIAL_BELOW
from ._util import _wrap, attach, float_tensor, recording
from .conv import pair

__all__ = ["max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"]

# adaptive windows ignore the geometry; same tuple type as the other pools' (one compile)
_ADAPTIVE_GEOM = (1, 1, 1, 1, 0, 0, 1, 1)
# max_pool2d's argmax when nothing needs it: kernels never write it without with_index
_NO_INDEX = np.zeros((1, 1, 1, 1), np.int32)
_PLANS = {}  # (op, shape, pooling arguments) -> plan; pure functions of the key
_CACHE_LIMIT = 512


def _image(x, op):
    """``(C-contiguous 4-D array, was unbatched)`` for a float Tensor's data."""
    xd = x.data
    if xd.ndim == 4:
        x4 = xd
    elif xd.ndim == 3:
        x4 = xd.reshape((1,) + xd.shape)
    else:
        raise ValueError(f"{op}: expected 3-D (C, H, W) or 4-D (N, C, H, W) input, got shape {xd.shape}")
    if not x4.flags.c_contiguous:
        x4 = np.ascontiguousarray(x4)
    return x4, xd.ndim == 3


def pool_output_size(size, k, s, p, d, ceil_mode):
    """PyTorch's pooling output length (ceil_mode drops a last window that would
    start in the right padding)."""
    span = size + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def pool_arguments(op, kernel_size, stride, padding, dilation):
    """Validated ``(kernel, stride, padding, dilation)`` pairs (stride None: the kernel)."""
    kernel = pair(kernel_size, op, "kernel_size")
    stride = kernel if stride is None or (isinstance(stride, (tuple, list)) and not stride) \
        else pair(stride, op, "stride")
    padding = pair(padding, op, "padding", minimum=0)
    dilation = pair(dilation, op, "dilation")
    if any(p > k // 2 for k, p in zip(kernel, padding)):
        raise ValueError(f"{op}: padding should be at most half of the kernel size, got padding={padding} "
                         f"for kernel_size={kernel}")
    return kernel, stride, padding, dilation


def _make_plan(op, shape, kernel_size, stride, padding, dilation, ceil_mode):
    kernel, stride, padding, dilation = pool_arguments(op, kernel_size, stride, padding, dilation)
    N, C, H, W = shape
    sizes = []
    for size, k, s, p, d in zip((H, W), kernel, stride, padding, dilation):
        if size + 2 * p < d * (k - 1) + 1:
            raise ValueError(f"{op}: input of shape {shape} padded by {padding} is smaller than the "
                             f"pooling window {kernel} (dilation {dilation})")
        sizes.append(pool_output_size(size, k, s, p, d, bool(ceil_mode)))
    if N * C == 0 or min(sizes) <= 0:
        raise ValueError(f"{op}: input of shape {shape} gives an empty output {(N, C) + tuple(sizes)}")
    if H * W >= 2**31:
        raise ValueError(f"{op}: input planes of {shape[2:]} pixels are too large")
    (KH, KW), (OH, OW) = kernel, sizes
    work = N * C * max(OH * OW * KH * KW, H * W)
    # windows that tile the plane (every one inside it) take the fast kernels
    tiled = stride == kernel and padding == (0, 0) and dilation == (1, 1) and OH * KH <= H and OW * KW <= W
    return (N, C, OH, OW), kernel + stride + padding + dilation, work < SERIAL_BELOW, tiled


def pool_plan(op, shape, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """``(output shape, geometry, serial, tiled)`` for a 4-D input shape, or ValueError
    naming ``op`` (tiled: kernel == stride, no padding or dilation, every window inside
    the input). Cached per argument set: a forward at a known shape recomputes nothing."""
    key = (op, shape, kernel_size, stride, padding, dilation, ceil_mode)
    try:
        plan = _PLANS.get(key)
    except TypeError:  # list arguments: not hashable
        return _make_plan(op, shape, kernel_size, stride, padding, dilation, ceil_mode)
    if plan is None:
        plan = _make_plan(op, shape, kernel_size, stride, padding, dilation, ceil_mode)
        if len(_PLANS) >= _CACHE_LIMIT:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


def _planes(a):
    return a.reshape((-1,) + a.shape[-2:])


def _grad4(g, shape, dtype):
    g = g.reshape(shape)
    return g if g.dtype == dtype and g.flags.c_contiguous else np.ascontiguousarray(g, dtype=dtype)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,  # noqa: A002
               return_indices=False):
    """Maximum over sliding windows, like ``torch.nn.functional.max_pool2d``; backward
    routes each gradient to the first maximal element (a NaN wins).

    Args:
        input: (N, C, H, W) or (C, H, W).
        kernel_size, stride (default kernel_size), padding (implicit -inf, at most half
            the kernel), dilation: int or (h, w).
        ceil_mode: round the output size up (windows starting in the padding dropped).
        return_indices: also return the int64 flat index (ih * W + iw) of each maximum.

    Example:
        >>> F.max_pool2d(fastnn.zeros(8, 3, 32, 32), 2).shape
        (8, 3, 16, 16)
    """
    x = float_tensor(input, "max_pool2d")
    x4, unbatched = _image(x, "max_pool2d")
    plan = pool_plan("max_pool2d", x4.shape, kernel_size, stride, padding, dilation, ceil_mode)
    return max_pool_run(x, x4, plan, plan[0][1:] if unbatched else plan[0], return_indices,
                        "MaxPool2DWithIndicesBackward0")


def max_pool_run(x, x4, plan, final_shape, return_indices, name):
    """The body of max pooling on a validated 4-D view ``x4`` of ``x``'s data, with
    ``plan`` from :func:`pool_plan`; outputs (and indices) come back in ``final_shape``."""
    out_shape = plan[0]
    need = recording(x)
    with_index = need or bool(return_indices)
    out4 = np.empty(out_shape, x4.dtype)
    argmax = np.empty(out_shape, np.int32) if with_index else _NO_INDEX
    max_pool_into(out4, argmax, x4, plan, with_index)
    return max_pool_result(x, x4, out4, argmax, final_shape, need, return_indices, name)


def max_pool_into(out4, argmax, x4, plan, with_index=False):
    """Max pooling of the C-contiguous 4-D ``x4`` into ``out4`` (and the flat index of
    each maximum into ``argmax`` when ``with_index``), ``plan`` from :func:`pool_plan`."""
    _, geom, serial, tiled = plan
    if tiled:  # kernel == stride, no padding: the vectorised kernels (same results)
        if serial:
            pool_k.max_pool_tiled_forward_serial(out4, argmax, x4, geom[0], geom[1], with_index)
        else:
            pool_k.max_pool_tiled_forward(out4, argmax, x4, geom[0], geom[1], with_index)
    elif serial:  # too small to pay for a parallel launch
        pool_k.max_pool_forward_serial(out4, argmax, x4, geom, with_index)
    else:
        pool_k.max_pool_forward(_planes(out4), _planes(argmax), _planes(x4), geom, with_index)


def max_pool_result(x, x4, out4, argmax, final_shape, need, return_indices, name):
    """What max pooling of any kind returns once its forward has filled ``out4`` (and
    ``argmax``, the flat index of each maximum in its input plane, when ``need`` or
    ``return_indices``): the output in ``final_shape``, recorded when ``need`` with the
    scatter of ``kernels.pool`` as its backward, and the indices as int64 if asked."""
    out = _wrap(out4.reshape(final_shape))
    if need:
        out_shape, x_shape, in_shape, dtype = out4.shape, x4.shape, x.data.shape, x4.dtype
        serial_backward = x4.size < SERIAL_BELOW // 4  # a scatter: threads pay sooner

        def backward(g):
            # forward: out[p, o] = x[p, argmax[p, o]]
            g4 = _grad4(g, out_shape, dtype)
            dx = np.empty(x_shape, dtype)
            if serial_backward:
                pool_k.max_pool_backward_serial(dx, g4, argmax)
            else:
                pool_k.max_pool_backward(_planes(dx), _planes(g4), _planes(argmax))
            return (dx.reshape(in_shape),)

        attach(out, backward, (x,), name)
    if return_indices:
        return out, _wrap(argmax.astype(np.int64).reshape(final_shape))
    return out


def avg_pool_run(x, x4, final_shape, out_shape, serial, geom, adaptive, include_pad, scale, name):
    """The shared tail of the average pools: forward on the 4-D view ``x4`` of ``x``'s
    data (output returned in ``final_shape``), then the backward closure when
    recording. ``scale`` (OH, OW) or None multiplies the means."""
    out4 = np.empty(out_shape, x4.dtype)
    avg_pool_into(out4, x4, serial, geom, adaptive, include_pad)
    if scale is not None:
        out4 *= scale
    out = _wrap(out4.reshape(final_shape))
    if recording(x):
        x_shape, in_shape, dtype = x4.shape, x.data.shape, x4.dtype

        def backward(g):
            # forward: out[p, o] = scale[o] * mean of x[p] over window o
            g4 = _grad4(g, out_shape, dtype)
            if scale is not None:
                g4 = g4 * scale
            dx = np.empty(x_shape, dtype)
            pool_k.avg_pool_backward(_planes(dx), _planes(g4), geom, adaptive, include_pad)
            return (dx.reshape(in_shape),)

        attach(out, backward, (x,), name)
    return out


def avg_pool_into(out4, x4, serial, geom, adaptive, include_pad):
    """Average (or adaptive average) pooling of the C-contiguous 4-D ``x4`` into ``out4``."""
    if serial:  # too small to pay for a parallel launch
        pool_k.avg_pool_forward_serial(out4, x4, geom, adaptive, include_pad)
    else:
        pool_k.avg_pool_forward(_planes(out4), _planes(x4), geom, adaptive, include_pad)


def adaptive_avg_plan(x_shape, output_size):
    """``(output shape, serial, geometry)`` of adaptive average pooling of a 4-D shape."""
    N, C, H, W = x_shape
    oh, ow = adaptive_size(output_size, "adaptive_avg_pool2d")
    out_shape = (N, C, H if oh is None else oh, W if ow is None else ow)
    return out_shape, N * C * H * W < SERIAL_BELOW, _ADAPTIVE_GEOM


def _window_counts(size, out_size, k, s, p):
    # elements of the input inside each window along one axis (NumPy, no element loop)
    start = np.arange(out_size) * s - p
    end = np.minimum(start + k, size + p)
    return np.minimum(end, size) - np.maximum(start, 0)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,  # noqa: A002
               divisor_override=None):
    """Mean over sliding windows, like ``torch.nn.functional.avg_pool2d``.

    Args:
        input: (N, C, H, W) or (C, H, W).
        kernel_size, stride (default kernel_size), padding (implicit zeros, at most
            half the kernel): int or (h, w).
        ceil_mode: round the output size up.
        count_include_pad: count the padding zeros in the divisor.
        divisor_override: divide every window sum by this instead.

    Example:
        >>> F.avg_pool2d(fastnn.zeros(8, 3, 32, 32), 2).shape
        (8, 3, 16, 16)
    """
    x = float_tensor(input, "avg_pool2d")
    x4, unbatched = _image(x, "avg_pool2d")
    out_shape, geom, serial, _ = pool_plan("avg_pool2d", x4.shape, kernel_size, stride, padding, 1, ceil_mode)
    include_pad, scale = bool(count_include_pad), None
    if divisor_override is not None:
        if isinstance(divisor_override, bool) or not isinstance(divisor_override, (int, np.integer)) \
                or divisor_override == 0:
            raise ValueError(f"avg_pool2d: divisor_override must be a non-zero int, got {divisor_override!r}")
        # the means over the elements inside, times (elements inside / divisor)
        include_pad = False
        counts = [_window_counts(x4.shape[2 + i], out_shape[2 + i], geom[i], geom[2 + i], geom[4 + i])
                  for i in range(2)]
        scale = (np.outer(counts[0], counts[1]) / float(divisor_override)).astype(x4.dtype)
    return avg_pool_run(x, x4, out_shape[1:] if unbatched else out_shape, out_shape, serial, geom, False,
                        include_pad, scale, "AvgPool2DBackward0")


def adaptive_avg_pool2d(input, output_size):  # noqa: A002
    """Mean over PyTorch's adaptive windows to a fixed output size, like
    ``torch.nn.functional.adaptive_avg_pool2d``: output row i averages input rows
    floor(i * H / OH) .. ceil((i + 1) * H / OH) - 1 (columns alike).

    Args:
        input: (N, C, H, W) or (C, H, W).
        output_size: int or (h, w); None in a pair keeps that input size.

    Example:
        >>> F.adaptive_avg_pool2d(fastnn.zeros(8, 64, 7, 7), 1).shape
        (8, 64, 1, 1)
    """
    x = float_tensor(input, "adaptive_avg_pool2d")
    x4, unbatched = _image(x, "adaptive_avg_pool2d")
    if x4.size == 0:
        raise ValueError(f"adaptive_avg_pool2d: got an empty input of shape {x4.shape}")
    out_shape, serial, geom = adaptive_avg_plan(x4.shape, output_size)
    return avg_pool_run(x, x4, out_shape[1:] if unbatched else out_shape, out_shape, serial,
                        geom, True, False, None, "AdaptiveAvgPool2DBackward0")


def adaptive_size(output_size, op):
    """An int or a pair of (int or None), each int >= 1 -> a pair."""
    if type(output_size) is tuple and len(output_size) == 2 and all(
            type(v) is int and v > 0 or v is None for v in output_size):
        return output_size  # the common case, already valid
    items = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    if len(items) != 2:
        raise ValueError(f"{op}: output_size must be an int or a pair, got {output_size!r}")
    return tuple(None if v is None else pair(v, op, "output_size")[0] for v in items)
