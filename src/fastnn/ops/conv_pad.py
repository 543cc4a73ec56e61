"""Explicit padding of the spatial (last) dims before a convolution: the
``padding_mode`` of Conv1d/Conv2d ('zeros', 'reflect', 'replicate', 'circular')
and the uneven part of ``padding='same'``. Differentiable: the gradient of each
padded element flows back to the input element it copies.

NumPy gathers along one axis at a time (an index array per axis); the backward
folds the border gradients back, one border position at a time (a vectorised
slice each: borders are a few elements wide)."""
import numpy as np

from ._util import _wrap, attach, recording

PAD_MODES = ("zeros", "reflect", "replicate", "circular")


def check_padding_mode(mode, op):
    """``mode`` if it is one of :data:`PAD_MODES`, else ValueError naming ``op``."""
    if not isinstance(mode, str) or mode not in PAD_MODES:
        raise ValueError(f"{op}: padding_mode must be one of {list(PAD_MODES)}, got {mode!r}")
    return mode


def same_pads(kernel_size, dilation):
    """PyTorch's ``padding='same'`` split per dim: ``(left, right)``, the odd element
    on the right."""
    pads = []
    for k, d in zip(kernel_size, dilation):
        total = d * (k - 1)
        pads.append((total // 2, total - total // 2))
    return tuple(pads)


def _source_index(size, lo, hi, mode):
    # the input position each padded position copies
    i = np.arange(-lo, size + hi)
    if mode == "reflect":
        i = np.abs(i)
        return np.where(i >= size, 2 * (size - 1) - i, i)
    if mode == "replicate":
        return np.clip(i, 0, size - 1)
    return i % size  # circular


def _check(shape, pads, mode, op):
    spatial = shape[len(shape) - len(pads):]
    for size, (lo, hi) in zip(spatial, pads):
        if size == 0:
            raise ValueError(f"{op}: cannot pad an empty input of shape {shape}")
        if mode == "reflect" and max(lo, hi) >= size:
            raise ValueError(f"{op}: reflect padding {tuple(pads)} must be smaller than the input size "
                             f"{tuple(spatial)} (input shape {shape})")
        if mode == "circular" and max(lo, hi) > size:
            raise ValueError(f"{op}: circular padding {tuple(pads)} must be at most the input size "
                             f"{tuple(spatial)} (input shape {shape})")


def pad_spatial(x, pads, mode, op):
    """``x`` (a Tensor) padded on its last ``len(pads)`` dims, ``pads[i] = (lo, hi)``
    for dim ``-len(pads) + i``; ``mode``: one of :data:`PAD_MODES`.

    Example:
        >>> pad_spatial(fastnn.zeros(2, 3, 5), ((1, 2),), "reflect", "conv1d").shape
        (2, 3, 8)
    """
    xd = x.data
    if all(lo == 0 and hi == 0 for lo, hi in pads):
        return x
    _check(xd.shape, pads, mode, op)
    first = xd.ndim - len(pads)
    if mode == "zeros":
        out = np.pad(xd, [(0, 0)] * first + [tuple(p) for p in pads])
        index = None
    else:
        index = [_source_index(xd.shape[first + i], lo, hi, mode) for i, (lo, hi) in enumerate(pads)]
        out = xd
        for i, idx in enumerate(index):
            out = out.take(idx, axis=first + i)
    result = _wrap(np.ascontiguousarray(out))
    if recording(x):
        in_shape = xd.shape

        def backward(g):
            # forward: out[..., j] = x[..., index[j]] along each padded axis
            for i in reversed(range(len(pads))):
                axis = first + i
                lo, size = pads[i][0], in_shape[axis]
                gm = np.moveaxis(g, axis, -1)
                d = gm[..., lo:lo + size].copy()
                if index is not None:
                    for j in (*range(lo), *range(lo + size, gm.shape[-1])):
                        d[..., index[i][j]] += gm[..., j]
                g = np.moveaxis(d, -1, axis)
            return (np.ascontiguousarray(g),)

        attach(result, backward, (x,), "ReflectionPadBackward0" if mode == "reflect" else "PadBackward0")
    return result
