"""Pooling layers: MaxPool2d, AvgPool2d, AdaptiveAvgPool2d (NCHW)."""
import numpy as np

from ..kernels import pool as pool_k
from ..kernels._jit import SERIAL_BELOW
from ._validate import FLOAT_DTYPES, as_grad, float_dtype_for
from .conv import as_image_batch, pair
from .module import Module

# adaptive windows ignore the geometry; same tuple type as the other pools' (one compile)
_ADAPTIVE_GEOM = (1, 1, 1, 1, 0, 0, 1, 1)
# MaxPool2d's argmax in eval mode: kernels never write it without with_index
_NO_INDEX = np.zeros((1, 1, 1, 1), np.int32)


def _image_batch(x, layer):
    """``(4-D input, was unbatched)``: a C-contiguous float 4-D array as it is, anything
    else through ``as_image_batch`` (its checks and conversions)."""
    if type(x) is np.ndarray and x.ndim == 4 and x.dtype in FLOAT_DTYPES and x.flags.c_contiguous:
        return x, False  # the common case: nothing to convert
    return as_image_batch(x, layer, 0, float_dtype_for(x))


def _pool_size(size, k, s, p, d, ceil_mode):
    """PyTorch's pooling output length (ceil_mode drops a last window that would
    start in the right padding)."""
    span = size + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


class _Pool2d(Module):
    """Shared by MaxPool2d and AvgPool2d: argument checks, shapes, unbatched input."""

    dilation = (1, 1)
    _flat_indices = False  # MaxPool2d keeps int32 flat indices into each input plane

    def _setup(self, kernel_size, stride, padding, ceil_mode):
        name = type(self).__name__
        self.kernel_size = pair(kernel_size, name, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, name, "stride")
        self.padding = pair(padding, name, "padding", minimum=0)
        self.ceil_mode = bool(ceil_mode)
        for k, p in zip(self.kernel_size, self.padding):
            if p > k // 2:
                raise ValueError(
                    f"{name}: padding should be at most half of the kernel size, got padding={self.padding} "
                    f"for kernel_size={self.kernel_size}")
        self._x_shape = None

    def _geom(self):
        return self.kernel_size + self.stride + self.padding + self.dilation

    def _prepare(self, x):
        """Validated 4-D input, its ``_plan`` and whether it came unbatched."""
        x, unbatched = _image_batch(x, type(self).__name__)
        return x, self._plan(x.shape), unbatched

    def _plan(self, shape):
        """``(output shape, geometry, serial, tiled)`` for a 4-D input shape, or ValueError
        (tiled: kernel == stride, no padding or dilation, every window inside the input);
        kept for the last shape and geometry (a forward at one shape recomputes nothing)."""
        key = (shape, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)
        cached = self.__dict__.get("_plan_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        name = type(self).__name__
        N, C, H, W = shape
        sizes = []
        for size, k, s, p, d in zip((H, W), self.kernel_size, self.stride, self.padding, self.dilation):
            if size + 2 * p < d * (k - 1) + 1:
                raise ValueError(
                    f"{name}: input of shape {shape} padded by {self.padding} is smaller than the "
                    f"pooling window {self.kernel_size} (dilation {self.dilation})")
            sizes.append(_pool_size(size, k, s, p, d, self.ceil_mode))
        if N * C == 0 or min(sizes) <= 0:
            raise ValueError(f"{name}: input of shape {shape} gives an empty output {(N, C) + tuple(sizes)}")
        if self._flat_indices and H * W >= 2**31:
            raise ValueError(f"{name}: input planes of {shape[2:]} pixels are too large")
        out_shape = (N, C) + tuple(sizes)
        (KH, KW), (OH, OW) = self.kernel_size, sizes
        work = N * C * max(OH * OW * KH * KW, H * W)
        # windows that tile the plane (every one inside it) take the fast kernels
        tiled = (self.stride == self.kernel_size and self.padding == (0, 0) and self.dilation == (1, 1)
                 and OH * KH <= H and OW * KW <= W)
        plan = (out_shape, self._geom(), work < SERIAL_BELOW, tiled)
        self._plan_cache = (key, plan)
        return plan

    def _planes(self, a):
        return a.reshape((-1,) + a.shape[-2:])

    def _grad(self, grad_output):
        shape = self._saved(self._x_shape)
        out_shape = self._out_shape
        g = as_grad(grad_output, type(self).__name__, out_shape[1:] if self._unbatched else out_shape,
                    self._dtype)
        return g.reshape(out_shape), shape

    def _finish(self, a):
        return a[0] if self._unbatched else a

    def _config(self):
        return {"kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "ceil_mode": self.ceil_mode}

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
                + (", ceil_mode=True" if self.ceil_mode else ""))


class MaxPool2d(_Pool2d):
    """Maximum over sliding windows, like ``torch.nn.MaxPool2d``; backward routes each
    gradient to the element that was the maximum.

    Args:
        kernel_size: window size, int or (h, w).
        stride: window step (default: kernel_size).
        padding: implicit -inf padding on both sides, at most kernel_size // 2.
        dilation: spacing between window elements.
        ceil_mode: round the output size up instead of down.

    Shape:
        (N, C, H, W) or (C, H, W) -> (N, C, H_out, W_out),
        H_out = (H + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1.

    Example:
        >>> fastnn.nn.MaxPool2d(2)(np.zeros((8, 3, 32, 32), np.float32)).shape
        (8, 3, 16, 16)
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        if return_indices:
            raise ValueError("MaxPool2d: return_indices=True is not supported")
        self._setup(kernel_size, stride, padding, ceil_mode)
        self.dilation = pair(dilation, "MaxPool2d", "dilation")
        self._argmax = None

    _flat_indices = True
    _serial_backward = False  # the last training forward's input was small

    def forward(self, x):
        x, (out_shape, geom, serial, tiled), unbatched = self._prepare(x)
        training = self.training
        out = np.empty(out_shape, x.dtype)
        argmax = np.empty(out_shape, np.int32) if training else _NO_INDEX
        if tiled:  # kernel == stride, no padding: the vectorised kernels (same results)
            KH, KW = geom[0], geom[1]
            if serial:
                pool_k.max_pool_tiled_forward_serial(out, argmax, x, KH, KW, training)
            else:
                pool_k.max_pool_tiled_forward(out, argmax, x, KH, KW, training)
        elif serial:  # too small to pay for a parallel launch
            pool_k.max_pool_forward_serial(out, argmax, x, geom, training)
        else:
            pool_k.max_pool_forward(self._planes(out), self._planes(argmax), self._planes(x), geom, training)
        if training:
            self._x_shape, self._out_shape, self._argmax = x.shape, out_shape, argmax
            self._unbatched, self._dtype = unbatched, x.dtype
            self._serial_backward = x.size < SERIAL_BELOW // 4  # a scatter: threads pay sooner
        elif self._x_shape is not None or self._argmax is not None:
            self._x_shape = self._argmax = None  # a backward after an eval forward must fail
        return out[0] if unbatched else out

    def backward(self, grad_output):
        g, shape = self._grad(grad_output)
        argmax = self._saved(self._argmax)
        self._argmax = self._x_shape = None  # one backward per forward: free what it saved
        dx = np.empty(shape, g.dtype)
        if self._serial_backward:  # small: on this thread (the same per-plane code)
            pool_k.max_pool_backward_serial(dx, g, argmax)
        else:
            pool_k.max_pool_backward(self._planes(dx), self._planes(g), self._planes(argmax))
        return self._finish(dx)

    def _config(self):
        return dict(super()._config(), dilation=self.dilation)

    def extra_repr(self):
        return super().extra_repr() + (f", dilation={self.dilation}" if self.dilation != (1, 1) else "")


class _AvgPool(_Pool2d):
    """Average pooling's forward tail and backward; subclasses give ``_avg_args()``:
    the kernel's (geometry, adaptive, count_include_pad)."""

    def _avg_forward(self, x, out_shape, unbatched, serial):
        out = np.empty(out_shape, x.dtype)
        if serial:  # too small to pay for a parallel launch
            pool_k.avg_pool_forward_serial(out, x, *self._avg_args())
        else:
            pool_k.avg_pool_forward(self._planes(out), self._planes(x), *self._avg_args())
        if self.training:
            self._x_shape, self._out_shape, self._unbatched, self._dtype = x.shape, out_shape, unbatched, x.dtype
        elif self._x_shape is not None:
            self._x_shape = None  # a backward after an eval forward must fail
        return out[0] if unbatched else out

    def backward(self, grad_output):
        g, shape = self._grad(grad_output)
        dx = np.empty(shape, g.dtype)
        pool_k.avg_pool_backward(self._planes(dx), self._planes(g), *self._avg_args())
        return self._finish(dx)


class AvgPool2d(_AvgPool):
    """Mean over sliding windows, like ``torch.nn.AvgPool2d``.

    Args:
        kernel_size: window size, int or (h, w).
        stride: window step (default: kernel_size).
        padding: implicit zero padding on both sides, at most kernel_size // 2.
        ceil_mode: round the output size up instead of down.
        count_include_pad: count the padding zeros in the divisor (default True).

    Shape:
        (N, C, H, W) or (C, H, W) -> (N, C, H_out, W_out),
        H_out = (H + 2 * padding - kernel) // stride + 1.

    Example:
        >>> fastnn.nn.AvgPool2d(2)(np.zeros((8, 3, 32, 32), np.float32)).shape
        (8, 3, 16, 16)
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        self._setup(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad = bool(count_include_pad)

    def forward(self, x):
        x, (out_shape, _, serial, _), unbatched = self._prepare(x)
        return self._avg_forward(x, out_shape, unbatched, serial)

    def _avg_args(self):
        return self._geom(), False, self.count_include_pad


    def _config(self):
        return dict(super()._config(), count_include_pad=self.count_include_pad)


class AdaptiveAvgPool2d(_AvgPool):
    """Mean over PyTorch's adaptive windows to a fixed output size, like
    ``torch.nn.AdaptiveAvgPool2d``; ``AdaptiveAvgPool2d(1)`` is global average pooling.

    Args:
        output_size: int or (h, w); None in a pair keeps that input size.

    Shape:
        (N, C, H, W) or (C, H, W) -> (N, C, out_h, out_w). Output row i averages
        input rows floor(i * H / out_h) .. ceil((i + 1) * H / out_h) - 1.

    Example:
        >>> fastnn.nn.AdaptiveAvgPool2d(1)(np.zeros((8, 64, 7, 7), np.float32)).shape
        (8, 64, 1, 1)
    """

    def __init__(self, output_size):
        super().__init__()
        items = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size, output_size)
        if len(items) != 2:
            raise ValueError(f"AdaptiveAvgPool2d: output_size must be an int or a pair, got {output_size!r}")
        self.output_size = tuple(None if v is None else pair(v, "AdaptiveAvgPool2d", "output_size")[0]
                                 for v in items)
        self._x_shape = None

    def forward(self, x):
        x, unbatched = _image_batch(x, "AdaptiveAvgPool2d")
        N, C, H, W = x.shape
        oh, ow = self.output_size
        out_hw = (H if oh is None else oh, W if ow is None else ow)
        if N * C * H * W == 0:
            raise ValueError(f"AdaptiveAvgPool2d: got an empty input of shape {x.shape}")
        return self._avg_forward(x, (N, C) + out_hw, unbatched, N * C * H * W < SERIAL_BELOW)

    def _avg_args(self):
        return _ADAPTIVE_GEOM, True, False

    def _config(self):
        size = self.output_size
        return {"output_size": size[0] if size[0] == size[1] else list(size)}

    def extra_repr(self):
        size = self.output_size
        return f"output_size={size[0] if size[0] == size[1] else size}"
