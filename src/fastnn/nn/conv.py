"""Convolution layers: Conv2d (NCHW), the base shared with Conv1d, and fuse_conv_bn_eval."""
import numpy as np

from ..ops.conv import conv2d, pair, same_dtype_input
from ..ops.conv import output_shape as conv_output_shape
from ..ops.conv1d import output_shape1d, single
from ..ops.conv_pad import check_padding_mode, pad_spatial, same_pads
from . import init
from ._validate import check_positive_int
from .module import Module
from .parameter import add_weight_and_bias


class ConvNd(Module):
    """Shared by Conv1d and Conv2d (``_dims`` spatial dims): argument checks,
    parameters, the explicit padding of ``padding_mode`` and uneven ``'same'``,
    serialisation and printing."""

    # Sequential may run the activation that follows in this layer's epilogue
    accepts_epilogue = True
    _dims = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", device=None, dtype=None, generator=None):
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
        self.kernel_size = tup(kernel_size, name, "kernel_size")
        self.stride = tup(stride, name, "stride")
        self.dilation = tup(dilation, name, "dilation")
        self.padding_mode = check_padding_mode(padding_mode, name)
        self._same = isinstance(padding, str) and padding == "same"
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"{name}: padding must be an int, a tuple, 'valid' or 'same', got {padding!r}")
            if self._same and self.stride != (1,) * self._dims:
                raise ValueError(f"{name}: padding='same' needs stride 1, got stride {self.stride}")
            pads = same_pads(self.kernel_size, self.dilation) if self._same else ((0, 0),) * self._dims
        else:
            pads = tuple((p, p) for p in tup(padding, name, "padding", minimum=0))
        self.padding = tuple(lo for lo, _ in pads)
        # what a pad op adds before the convolution (None: the kernel's zero padding does it all)
        if padding_mode != "zeros":
            self._explicit, self._conv_padding = pads, (0,) * self._dims
        elif any(hi != lo for lo, hi in pads):
            self._explicit, self._conv_padding = tuple((0, hi - lo) for lo, hi in pads), self.padding
        else:
            self._explicit, self._conv_padding = None, self.padding
        shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        add_weight_and_bias(self, shape, self.out_channels, bias, dtype)
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None):
        init.default_weight_and_bias_(self.weight, self.bias, generator)

    def output_shape(self, input_shape):
        """The output shape for a batched input shape, or ValueError naming the shapes."""
        shape = tuple(input_shape)
        if self._explicit is not None and len(shape) == self._dims + 2:
            shape = shape[:2] + tuple(s + lo + hi for s, (lo, hi) in zip(shape[2:], self._explicit))
        if self._dims == 1:
            (k,), (st,), (p,), (d,) = self.kernel_size, self.stride, self._conv_padding, self.dilation
            geom = (1, k, 1, st, 0, p, 1, d, self.groups)
            N, OC, _, OL = output_shape1d(shape, self.weight.shape, geom, type(self).__name__)
            return N, OC, OL
        geom = self.kernel_size + self.stride + self._conv_padding + self.dilation + (self.groups,)
        return conv_output_shape(shape, self.weight.shape, geom)

    def _padded(self, input):  # noqa: A002
        if self._explicit is None:
            return input
        x = same_dtype_input(input, self.weight, self._op)
        if x.data.ndim not in (self._dims + 1, self._dims + 2):
            raise ValueError(f"{type(self).__name__}: expected {self._dims + 1}-D or {self._dims + 2}-D input, "
                             f"got shape {x.data.shape}")
        return pad_spatial(x, self._explicit, self.padding_mode, type(self).__name__)

    def forward(self, input):  # noqa: A002
        return self._conv(self._padded(input), self.weight, self.bias, self.stride, self._conv_padding,
                          self.dilation, self.groups)

    def forward_fused(self, input, activation, negative_slope=0.0):  # noqa: A002
        """``activation(self(input))`` in one pass (see ``Sequential``)."""
        return self._conv(self._padded(input), self.weight, self.bias, self.stride, self._conv_padding,
                          self.dilation, self.groups, activation=activation, negative_slope=negative_slope)

    def _config(self):
        config = {"in_channels": self.in_channels, "out_channels": self.out_channels,
                  "kernel_size": self.kernel_size, "stride": self.stride,
                  "padding": "same" if self._same else self.padding,
                  "dilation": self.dilation, "groups": self.groups, "bias": self.bias is not None}
        if self.padding_mode != "zeros":
            config["padding_mode"] = self.padding_mode
        return config

    def extra_repr(self):
        ones, zeros = (1,) * self._dims, (0,) * self._dims
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self._same:
            s += ", padding=same"
        elif self.padding != zeros:
            s += f", padding={self.padding}"
        if self.dilation != ones:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class Conv2d(ConvNd):
    """2-D convolution over NCHW images, like ``torch.nn.Conv2d``.

    Args:
        in_channels, out_channels: channels of the input and output.
        kernel_size, stride, dilation: int or (h, w) pair.
        padding: int, (h, w) pair, ``"valid"`` (0) or ``"same"`` (stride 1; an odd
            total padding puts the extra row/column at the end, as PyTorch does).
        groups: split channels into this many independent groups (``groups ==
            in_channels`` is a depthwise convolution).
        bias: learn an additive bias (default True).
        padding_mode: ``"zeros"`` (default), ``"reflect"``, ``"replicate"`` or
            ``"circular"``: how the border is padded (the others pad explicitly first).

    Shape:
        input (N, C_in, H, W) or (C_in, H, W) -> output (N, C_out, H_out, W_out),
        H_out = (H + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1.
        weight (C_out, C_in / groups, kH, kW), bias (C_out,).

    Example:
        >>> conv = fastnn.nn.Conv2d(3, 16, 3, padding=1)
        >>> conv(fastnn.zeros(8, 3, 32, 32)).shape
        (8, 16, 32, 32)
    """

    _dims = 2
    _op = "conv2d"
    _conv = staticmethod(conv2d)


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
                   conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode, dtype=conv.weight.data.dtype)
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
