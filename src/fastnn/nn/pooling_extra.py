"""More pooling layers: MaxPool1d, AvgPool1d, AdaptiveAvgPool1d, AdaptiveMaxPool1d and
AdaptiveMaxPool2d."""
from ..ops.adaptive_pool import adaptive_avg_pool1d, adaptive_max_pool1d, adaptive_max_pool2d
from ..ops.conv1d import single
from ..ops.pool import adaptive_size
from ..ops.pool1d import avg_pool1d, max_pool1d, pool1d_arguments
from .module import Module


class _Pool1d(Module):
    """Shared by MaxPool1d and AvgPool1d: argument checks, config and printing."""

    dilation = 1

    def _setup(self, kernel_size, stride, padding, ceil_mode, dilation=1):
        self.kernel_size, self.stride, self.padding, self.dilation = pool1d_arguments(
            type(self).__name__, kernel_size, stride, padding, dilation)
        self.ceil_mode = bool(ceil_mode)

    def _config(self):
        return {"kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "ceil_mode": self.ceil_mode}

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
                + (f", dilation={self.dilation}" if self.dilation != 1 else "")
                + (", ceil_mode=True" if self.ceil_mode else ""))


class MaxPool1d(_Pool1d):
    """Maximum over sliding windows of (N, C, L), like ``torch.nn.MaxPool1d``; the
    gradient goes to the element that was the maximum (the first of ties).

    Args:
        kernel_size: window size; stride: window step (default: kernel_size).
        padding: implicit -inf padding on both sides, at most kernel_size // 2.
        dilation: spacing between window elements.
        return_indices: also return the int64 position of each maximum.
        ceil_mode: round the output length up instead of down.

    Shape:
        (N, C, L) or (C, L) -> (N, C, L_out),
        L_out = (L + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1.

    Example:
        >>> fastnn.nn.MaxPool1d(2)(fastnn.zeros(8, 3, 32)).shape
        (8, 3, 16)
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        self._setup(kernel_size, stride, padding, ceil_mode, dilation)
        self.return_indices = bool(return_indices)

    def forward(self, input):  # noqa: A002
        return max_pool1d(input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                          self.return_indices)

    def _config(self):
        config = dict(super()._config(), dilation=self.dilation)
        if self.return_indices:
            config["return_indices"] = True
        return config


class AvgPool1d(_Pool1d):
    """Mean over sliding windows of (N, C, L), like ``torch.nn.AvgPool1d``.

    Args:
        kernel_size: window size; stride: window step (default: kernel_size).
        padding: implicit zero padding on both sides, at most kernel_size // 2.
        ceil_mode: round the output length up instead of down.
        count_include_pad: count the padding zeros in the divisor (default True).

    Shape:
        (N, C, L) or (C, L) -> (N, C, L_out), L_out = (L + 2 * padding - kernel_size) // stride + 1.

    Example:
        >>> fastnn.nn.AvgPool1d(4)(fastnn.zeros(8, 3, 32)).shape
        (8, 3, 8)
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        self._setup(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad = bool(count_include_pad)

    def forward(self, input):  # noqa: A002
        return avg_pool1d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                          self.count_include_pad)

    def _config(self):
        return dict(super()._config(), count_include_pad=self.count_include_pad)


class _Adaptive(Module):
    """Shared by the adaptive pools: ``output_size``, config and printing."""

    return_indices = False

    def _config(self):
        size = self.output_size
        config = {"output_size": size if isinstance(size, int) else (size[0] if size[0] == size[1] else list(size))}
        if self.return_indices:
            config["return_indices"] = True
        return config

    def extra_repr(self):
        size = self.output_size
        return f"output_size={size if isinstance(size, int) or size[0] != size[1] else size[0]}"


class AdaptiveAvgPool1d(_Adaptive):
    """Mean over adaptive windows of (N, C, L) to a fixed length, like ``torch.nn.AdaptiveAvgPool1d``.

    Args:
        output_size: the output length (int).

    Shape:
        (N, C, L) or (C, L) -> (N, C, output_size); output i averages positions
        floor(i * L / output_size) .. ceil((i + 1) * L / output_size) - 1.

    Example:
        >>> fastnn.nn.AdaptiveAvgPool1d(1)(fastnn.zeros(8, 64, 50)).shape
        (8, 64, 1)
    """

    def __init__(self, output_size):
        super().__init__()
        self.output_size = single(output_size, "AdaptiveAvgPool1d", "output_size")[0]

    def forward(self, input):  # noqa: A002
        return adaptive_avg_pool1d(input, self.output_size)


class AdaptiveMaxPool1d(_Adaptive):
    """Maximum over adaptive windows of (N, C, L) to a fixed length, like ``torch.nn.AdaptiveMaxPool1d``.

    Args:
        output_size: the output length (int).
        return_indices: also return the int64 position of each maximum.

    Shape:
        (N, C, L) or (C, L) -> (N, C, output_size).

    Example:
        >>> fastnn.nn.AdaptiveMaxPool1d(4)(fastnn.zeros(8, 64, 50)).shape
        (8, 64, 4)
    """

    def __init__(self, output_size, return_indices=False):
        super().__init__()
        self.output_size = single(output_size, "AdaptiveMaxPool1d", "output_size")[0]
        self.return_indices = bool(return_indices)

    def forward(self, input):  # noqa: A002
        return adaptive_max_pool1d(input, self.output_size, self.return_indices)


class AdaptiveMaxPool2d(_Adaptive):
    """Maximum over PyTorch's adaptive windows to a fixed output size, like
    ``torch.nn.AdaptiveMaxPool2d``; the gradient goes to each window's maximum.

    Args:
        output_size: int or (h, w); None in a pair keeps that input size.
        return_indices: also return the int64 flat index (ih * W + iw) of each maximum.

    Shape:
        (N, C, H, W) or (C, H, W) -> (N, C, out_h, out_w). Output row i covers input
        rows floor(i * H / out_h) .. ceil((i + 1) * H / out_h) - 1 (columns alike).

    Example:
        >>> fastnn.nn.AdaptiveMaxPool2d((2, 3))(fastnn.zeros(8, 64, 7, 7)).shape
        (8, 64, 2, 3)
    """

    def __init__(self, output_size, return_indices=False):
        super().__init__()
        self.output_size = adaptive_size(output_size, "AdaptiveMaxPool2d")
        self.return_indices = bool(return_indices)

    def forward(self, input):  # noqa: A002
        return adaptive_max_pool2d(input, self.output_size, self.return_indices)
