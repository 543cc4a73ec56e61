"""Pooling layers: MaxPool2d, AvgPool2d, AdaptiveAvgPool2d (NCHW)."""
from ..ops.pool import adaptive_size, pool_arguments
from . import functional as F
from .module import Module


class _Pool2d(Module):
    """Shared by MaxPool2d and AvgPool2d: argument checks and printing."""

    dilation = (1, 1)

    def _setup(self, kernel_size, stride, padding, ceil_mode, dilation=1):
        self.kernel_size, self.stride, self.padding, self.dilation = pool_arguments(
            type(self).__name__, kernel_size, stride, padding, dilation)
        self.ceil_mode = bool(ceil_mode)

    def _config(self):
        return {"kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "ceil_mode": self.ceil_mode}

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
                + (", ceil_mode=True" if self.ceil_mode else ""))


class MaxPool2d(_Pool2d):
    """Maximum over sliding windows, like ``torch.nn.MaxPool2d``; the gradient goes to
    the element that was the maximum (the first of ties; a NaN wins).

    Args:
        kernel_size: window size, int or (h, w).
        stride: window step (default: kernel_size).
        padding: implicit -inf padding on both sides, at most kernel_size // 2.
        dilation: spacing between window elements.
        return_indices: also return the int64 flat index (ih * W + iw) of each maximum.
        ceil_mode: round the output size up instead of down.

    Shape:
        (N, C, H, W) or (C, H, W) -> (N, C, H_out, W_out),
        H_out = (H + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1.

    Example:
        >>> fastnn.nn.MaxPool2d(2)(fastnn.zeros(8, 3, 32, 32)).shape
        (8, 3, 16, 16)
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        self._setup(kernel_size, stride, padding, ceil_mode, dilation)
        self.return_indices = bool(return_indices)

    def forward(self, input):  # noqa: A002
        return F.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                            self.return_indices)

    def _config(self):
        config = dict(super()._config(), dilation=self.dilation)
        if self.return_indices:
            config["return_indices"] = True
        return config

    def extra_repr(self):
        return super().extra_repr() + (f", dilation={self.dilation}" if self.dilation != (1, 1) else "")


class AvgPool2d(_Pool2d):
    """Mean over sliding windows, like ``torch.nn.AvgPool2d``.

    Args:
        kernel_size: window size, int or (h, w).
        stride: window step (default: kernel_size).
        padding: implicit zero padding on both sides, at most kernel_size // 2.
        ceil_mode: round the output size up instead of down.
        count_include_pad: count the padding zeros in the divisor (default True).
        divisor_override: divide each window's sum by this instead.

    Shape:
        (N, C, H, W) or (C, H, W) -> (N, C, H_out, W_out),
        H_out = (H + 2 * padding - kernel) // stride + 1.

    Example:
        >>> fastnn.nn.AvgPool2d(2)(fastnn.zeros(8, 3, 32, 32)).shape
        (8, 3, 16, 16)
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__()
        self._setup(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad = bool(count_include_pad)
        if divisor_override is not None and (isinstance(divisor_override, bool) or not isinstance(divisor_override, int)
                                             or divisor_override == 0):
            raise ValueError(f"AvgPool2d: divisor_override must be a non-zero int or None, got {divisor_override!r}")
        self.divisor_override = divisor_override

    def forward(self, input):  # noqa: A002
        return F.avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)

    def _config(self):
        config = dict(super()._config(), count_include_pad=self.count_include_pad)
        if self.divisor_override is not None:
            config["divisor_override"] = self.divisor_override
        return config


class AdaptiveAvgPool2d(Module):
    """Mean over PyTorch's adaptive windows to a fixed output size, like
    ``torch.nn.AdaptiveAvgPool2d``; ``AdaptiveAvgPool2d(1)`` is global average pooling.

    Args:
        output_size: int or (h, w); None in a pair keeps that input size.

    Shape:
        (N, C, H, W) or (C, H, W) -> (N, C, out_h, out_w). Output row i averages
        input rows floor(i * H / out_h) .. ceil((i + 1) * H / out_h) - 1.

    Example:
        >>> fastnn.nn.AdaptiveAvgPool2d(1)(fastnn.zeros(8, 64, 7, 7)).shape
        (8, 64, 1, 1)
    """

    def __init__(self, output_size):
        super().__init__()
        self.output_size = adaptive_size(output_size, "AdaptiveAvgPool2d")

    def forward(self, input):  # noqa: A002
        return F.adaptive_avg_pool2d(input, self.output_size)

    def _config(self):
        size = self.output_size
        return {"output_size": size[0] if size[0] == size[1] else list(size)}

    def extra_repr(self):
        size = self.output_size
        return f"output_size={size[0] if size[0] == size[1] else size}"
