"""Convolution layers: Conv2d (NCHW), and fuse_conv_bn_eval."""
import numpy as np

from .. import _config
from ..ops.conv import output_shape as conv_output_shape
from ..ops.conv import pair, same_padding
from . import functional as F
from . import init
from ._validate import check_positive_int
from .module import Module, Parameter


class Conv2d(Module):
    """2-D convolution over NCHW images, like ``torch.nn.Conv2d``.

    Args:
        in_channels, out_channels: channels of the input and output.
        kernel_size, stride, dilation: int or (h, w) pair.
        padding: int, (h, w) pair, ``"valid"`` (0) or ``"same"`` (stride 1; the
            dilated kernel extent minus one must be even).
        groups: split channels into this many independent groups (``groups ==
            in_channels`` is a depthwise convolution).
        bias: learn an additive bias (default True).
        padding_mode: only ``"zeros"``.

    Shape:
        input (N, C_in, H, W) or (C_in, H, W) -> output (N, C_out, H_out, W_out),
        H_out = (H + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1.
        weight (C_out, C_in / groups, kH, kW), bias (C_out,).

    Example:
        >>> conv = fastnn.nn.Conv2d(3, 16, 3, padding=1)
        >>> conv(fastnn.zeros(8, 3, 32, 32)).shape
        (8, 16, 32, 32)
    """

    # Sequential may run the activation that follows in this layer's epilogue
    accepts_epilogue = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", device=None, dtype=None, generator=None):
        super().__init__()
        name = "Conv2d"
        self.in_channels = check_positive_int(in_channels, name, "in_channels")
        self.out_channels = check_positive_int(out_channels, name, "out_channels")
        self.groups = check_positive_int(groups, name, "groups")
        if self.in_channels % self.groups:
            raise ValueError(f"{name}: in_channels ({self.in_channels}) must be divisible by groups ({self.groups})")
        if self.out_channels % self.groups:
            raise ValueError(f"{name}: out_channels ({self.out_channels}) must be divisible by groups ({self.groups})")
        self.kernel_size = pair(kernel_size, name, "kernel_size")
        self.stride = pair(stride, name, "stride")
        self.dilation = pair(dilation, name, "dilation")
        self._same = padding == "same"
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"{name}: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
            self.padding = (same_padding(self.kernel_size, self.stride, self.dilation, name) if self._same
                            else (0, 0))
        else:
            self.padding = pair(padding, name, "padding", minimum=0)
        if padding_mode != "zeros":
            raise ValueError(f"{name}: padding_mode {padding_mode!r} is not supported (only 'zeros')")
        self.padding_mode = padding_mode
        dt = dtype or _config.get_default_dtype()
        shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        self.weight = Parameter(np.empty(shape, dt))
        if bias:
            self.bias = Parameter(np.empty(self.out_channels, dt))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None):
        init.default_weight_and_bias_(self.weight, self.bias, generator)

    def output_shape(self, input_shape):
        """(N, C_out, H_out, W_out) for a 4-D input shape, or ValueError naming the shapes."""
        geom = self.kernel_size + self.stride + self.padding + self.dilation + (self.groups,)
        return conv_output_shape(tuple(input_shape), self.weight.shape, geom)

    def forward(self, input):  # noqa: A002
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def forward_fused(self, input, activation, negative_slope=0.0):  # noqa: A002
        """``activation(self(input))`` in one pass (see ``Sequential``)."""
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups,
                        activation=activation, negative_slope=negative_slope)

    def _config(self):
        padding = "same" if self._same else self.padding
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": padding,
                "dilation": self.dilation, "groups": self.groups, "bias": self.bias is not None}

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


def fuse_conv_bn_eval(conv, bn):
    """A new Conv2d computing ``bn(conv(x))`` with ``bn`` in eval mode, like PyTorch's
    ``torch.nn.utils.fusion.fuse_conv_bn_eval``: the batch norm's running statistics
    and affine parameters folded into the convolution's weight and bias, so inference
    skips the normalisation pass.

    Example:
        >>> fused = fuse_conv_bn_eval(model[0], model[1])  # model.eval() results unchanged
    """
    if not isinstance(conv, Conv2d):
        raise TypeError(f"fuse_conv_bn_eval: expected a Conv2d, got {type(conv).__name__}")
    if getattr(bn, "num_features", None) != conv.out_channels or not getattr(bn, "track_running_stats", False):
        raise ValueError(f"fuse_conv_bn_eval: {bn!r} needs running statistics for {conv.out_channels} channels")
    fused = Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv._config()["padding"],
                   conv.dilation, conv.groups, bias=True, dtype=conv.weight.data.dtype)
    w = conv.weight.data.astype(np.float64)
    running_mean = np.asarray(bn.running_mean.data, np.float64)
    scale = 1.0 / np.sqrt(np.asarray(bn.running_var.data, np.float64) + bn.eps)
    if bn.affine:
        scale = scale * bn.weight.data
    shift = -running_mean * scale + (bn.bias.data if bn.affine else 0.0)
    if conv.bias is not None:
        shift = shift + conv.bias.data * scale
    fused.weight.data[...] = w * scale.reshape(-1, 1, 1, 1)
    fused.bias.data[...] = shift
    fused.train(conv.training)
    return fused
