"""More convolution layers: Conv1d, ConvTranspose1d and ConvTranspose2d."""
import numpy as np

from ..ops.conv import pair
from ..ops.conv1d import conv1d, single
from ..ops.conv_transpose import check_output_padding, conv_transpose1d, conv_transpose2d, transposed_output_size
from . import init
from ._validate import check_positive_int
from .conv import ConvNd
from .module import Module
from .parameter import add_weight_and_bias


class Conv1d(ConvNd):
    """1-D convolution over (N, C, L) sequences, like ``torch.nn.Conv1d``; runs on the
    2-D convolution kernels (a sequence is an image of height 1).

    Args:
        in_channels, out_channels: channels of the input and output.
        kernel_size, stride, dilation: int or 1-tuple.
        padding: int, 1-tuple, ``"valid"`` or ``"same"`` (stride 1; an odd total
            padding puts the extra element at the end, as PyTorch does).
        groups: channel groups (``groups == in_channels``: depthwise).
        bias: learn an additive bias (default True).
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``.

    Shape:
        input (N, C_in, L) or (C_in, L) -> (N, C_out, L_out),
        L_out = (L + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1.
        weight (C_out, C_in / groups, kernel_size), bias (C_out,).

    Example:
        >>> conv = fastnn.nn.Conv1d(1, 32, 5, stride=2, padding=1)
        >>> conv(fastnn.zeros(100, 1, 40)).shape
        (100, 32, 19)
    """

    _dims = 1
    _op = "conv1d"
    _conv = staticmethod(conv1d)


class _ConvTransposeNd(Module):
    """Shared by ConvTranspose1d and ConvTranspose2d (``_dims`` spatial dims)."""

    _dims = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 groups=1, bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None, generator=None):
        super().__init__()
        name = type(self).__name__
        tup = pair if self._dims == 2 else single
        self.in_channels = check_positive_int(in_channels, name, "in_channels")
        self.out_channels = check_positive_int(out_channels, name, "out_channels")
        self.groups = check_positive_int(groups, name, "groups")
        if self.in_channels % self.groups:
            raise ValueError(f"{name}: in_channels ({self.in_channels}) must be divisible by groups ({self.groups})")
        if self.out_channels % self.groups:
            raise ValueError(f"{name}: out_channels ({self.out_channels}) must be divisible by groups ({self.groups})")
        if padding_mode != "zeros":
            raise ValueError(f"{name}: only padding_mode 'zeros' is supported, got {padding_mode!r}")
        self.padding_mode = padding_mode
        self.kernel_size = tup(kernel_size, name, "kernel_size")
        self.stride = tup(stride, name, "stride")
        if isinstance(padding, str):
            raise ValueError(f"{name}: padding must be an int or a tuple of ints, got {padding!r}")
        self.padding = tup(padding, name, "padding", minimum=0)
        self.output_padding = tup(output_padding, name, "output_padding", minimum=0)
        self.dilation = tup(dilation, name, "dilation")
        check_output_padding(self.output_padding, self.stride, self.dilation, name)
        shape = (self.in_channels, self.out_channels // self.groups) + self.kernel_size
        add_weight_and_bias(self, shape, self.out_channels, bias, dtype)
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None):
        init.default_weight_and_bias_(self.weight, self.bias, generator)

    def _output_padding(self, input, output_size):  # noqa: A002
        # PyTorch's rule: output_size (spatial, or with the leading dims) picks an
        # output padding in [0, stride) per dim
        if output_size is None:
            return self.output_padding
        name, n = type(self).__name__, self._dims
        size = [int(v) for v in (output_size.data if hasattr(output_size, "data") else output_size)]
        if len(size) == n + 2 or (len(size) == n + 1 and np.ndim(getattr(input, "data", input)) == n + 1):
            size = size[-n:]
        if len(size) != n:
            raise ValueError(f"{name}: output_size must have {n} or {n + 2} elements, got {output_size!r}")
        shape = np.shape(getattr(input, "data", input))
        if len(shape) not in (n + 1, n + 2):
            raise ValueError(f"{name}: expected {n + 1}-D or {n + 2}-D input, got shape {tuple(shape)}")
        pads = []
        for i in range(n):
            lo = transposed_output_size(shape[len(shape) - n + i], self.kernel_size[i], self.stride[i],
                                        self.padding[i], 0, self.dilation[i])
            hi = lo + self.stride[i] - 1
            if not lo <= size[i] <= hi:
                raise ValueError(f"{name}: requested output_size {tuple(size)} is not reachable from input of "
                                 f"shape {tuple(shape)}: dim {i} must be in [{lo}, {hi}]")
            pads.append(size[i] - lo)
        return tuple(pads)

    def forward(self, input, output_size=None):  # noqa: A002
        return self._conv(input, self.weight, self.bias, self.stride, self.padding,
                          self._output_padding(input, output_size), self.groups, self.dilation)

    def _config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "output_padding": self.output_padding, "groups": self.groups, "bias": self.bias is not None,
                "dilation": self.dilation}

    def extra_repr(self):
        zeros, ones = (0,) * self._dims, (1,) * self._dims
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != zeros:
            s += f", padding={self.padding}"
        if self.dilation != ones:
            s += f", dilation={self.dilation}"
        if self.output_padding != zeros:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class ConvTranspose2d(_ConvTransposeNd):
    """2-D transposed convolution (the adjoint of Conv2d), like ``torch.nn.ConvTranspose2d``;
    computed as a convolution's input gradient, with no zero-stuffed input.

    Args:
        in_channels, out_channels: channels of the input and output.
        kernel_size, stride, padding, dilation: int or (h, w) pair.
        output_padding: extra rows/columns at the end of the output (smaller than
            the stride or the dilation); ``forward(input, output_size)`` picks it.
        groups: channel groups; bias: learn an additive bias (default True).

    Shape:
        (N, C_in, H, W) or (C_in, H, W) -> (N, C_out, H_out, W_out), H_out = (H - 1) *
        stride - 2 * padding + dilation * (kH - 1) + output_padding + 1.
        weight (C_in, C_out / groups, kH, kW), bias (C_out,).

    Example:
        >>> up = fastnn.nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1)
        >>> up(fastnn.zeros(2, 8, 7, 7)).shape
        (2, 4, 14, 14)
    """

    _dims = 2
    _conv = staticmethod(conv_transpose2d)


class ConvTranspose1d(_ConvTransposeNd):
    """1-D transposed convolution over (N, C, L), like ``torch.nn.ConvTranspose1d``
    (arguments as in :class:`ConvTranspose2d`, ints or 1-tuples).

    Shape:
        (N, C_in, L) or (C_in, L) -> (N, C_out, L_out), L_out = (L - 1) * stride
        - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1.
        weight (C_in, C_out / groups, kernel_size), bias (C_out,).

    Example:
        >>> fastnn.nn.ConvTranspose1d(8, 4, 3, stride=2)(fastnn.zeros(2, 8, 10)).shape
        (2, 4, 21)
    """

    _dims = 1
    _conv = staticmethod(conv_transpose1d)
