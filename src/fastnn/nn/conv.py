"""Convolution layers: Conv2d (NCHW)."""
import numpy as np

from .. import _config
from ..kernels import activations as act_k
from ..kernels import conv as conv_k
from . import init
from ..ops.activation import fused_activation_grad as fused_backward
from ._validate import as_float_array, as_grad, check_positive_int
from .module import Module, Parameter


def pair(value, layer, name, minimum=1):
    """An int or a pair of ints -> a tuple of two Python ints, each >= minimum."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in items):
        raise ValueError(f"{layer}: {name} must be an int or a pair of ints, got {value!r}")
    if any(v < minimum for v in items):
        raise ValueError(f"{layer}: {name} must be >= {minimum}, got {value!r}")
    return int(items[0]), int(items[1])


def as_image_batch(x, layer, channels, dtype):
    """(N, C, H, W) or unbatched (C, H, W) input -> (4-D contiguous array, was_3d)."""
    hint = f" (N, {channels}, H, W)" if channels else " (N, C, H, W)"
    x = as_float_array(x, layer, dtype, ndim=(3, 4), shape_hint=hint)
    unbatched = x.ndim == 3
    if unbatched:
        x = x.reshape((1,) + x.shape)
    if channels and x.shape[1] != channels:
        shape = x.shape[1:] if unbatched else x.shape
        raise ValueError(f"{layer}: expected input{hint} with {channels} channels, got shape {shape}")
    return x, unbatched


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
        >>> conv(np.zeros((8, 3, 32, 32), np.float32)).shape
        (8, 16, 32, 32)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", dtype=None, generator=None):
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
        self.padding = self._parse_padding(padding)
        if padding_mode != "zeros":
            raise ValueError(f"{name}: padding_mode {padding_mode!r} is not supported (only 'zeros')")
        self.padding_mode = padding_mode
        dt = dtype or _config.get_default_dtype()
        shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        self.weight = Parameter(np.empty(shape, dt))
        self.bias = Parameter(np.empty(self.out_channels, dt)) if bias else None
        if not bias:
            self.register_parameter("bias", None)
        # fused epilogue: an activation applied in the same pass as the bias
        self._act_kind, self._act_slope = act_k.IDENTITY, 0.0
        self._x = self._out = None
        self.reset_parameters(generator)

    def _parse_padding(self, padding):
        if isinstance(padding, str):
            if padding == "valid":
                return (0, 0)
            if padding != "same":
                raise ValueError(f"Conv2d: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
            if self.stride != (1, 1):
                raise ValueError(f"Conv2d: padding='same' needs stride 1, got stride {self.stride}")
            total = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
            if any(t % 2 for t in total):
                raise ValueError(
                    f"Conv2d: padding='same' with kernel_size {self.kernel_size} and dilation {self.dilation} "
                    "needs uneven padding, which is not supported; pad explicitly")
            self._same = True
            return (total[0] // 2, total[1] // 2)
        return pair(padding, "Conv2d", "padding", minimum=0)

    def reset_parameters(self, generator=None):
        init.default_weight_and_bias_(self.weight, self.bias, generator)

    def _geom(self):
        return self.kernel_size + self.stride + self.padding + self.dilation + (self.groups,)

    def output_shape(self, input_shape):
        """(N, C_out, H_out, W_out) for an input shape, or ValueError naming the shapes."""
        N, _, H, W = input_shape
        (KH, KW), (SH, SW), (PH, PW), (DH, DW) = self.kernel_size, self.stride, self.padding, self.dilation
        ext_h, ext_w = DH * (KH - 1) + 1, DW * (KW - 1) + 1
        if H + 2 * PH < ext_h or W + 2 * PW < ext_w:
            raise ValueError(
                f"Conv2d: input of shape {tuple(input_shape)} padded by {self.padding} is {(H + 2 * PH, W + 2 * PW)}, "
                f"smaller than the dilated kernel {(ext_h, ext_w)}")
        OH = conv_k.output_size(H, KH, SH, PH, DH)
        OW = conv_k.output_size(W, KW, SW, PW, DW)
        if N == 0:
            raise ValueError(f"Conv2d: got an empty batch, input shape {tuple(input_shape)}")
        return (N, self.out_channels, OH, OW)

    def forward(self, x):
        return self._forward_act(x, self._act_kind, self._act_slope)

    def _forward_act(self, x, kind, slope):
        # forward with the activation ``kind`` fused into the epilogue (Sequential passes it)
        w = self.weight.data
        x, unbatched = as_image_batch(x, "Conv2d", self.in_channels, w.dtype)
        out = np.empty(self.output_shape(x.shape), w.dtype)
        bias = self.bias.data if self.bias is not None else None
        conv_k.conv2d_forward(out, x, w, bias, self._geom(), kind, slope)
        if self.training:  # what backward needs
            self._x, self._unbatched = x, unbatched
            self._out = out if kind != act_k.IDENTITY else None
            self._out_act = (kind, slope)
        elif self._x is not None:
            self._x = self._out = None  # a backward after an eval forward must fail
        return out[0] if unbatched else out

    def backward(self, grad_output):
        x = self._saved(self._x)
        w = self.weight.data
        out_shape = self.output_shape(x.shape)
        g = as_grad(grad_output, "Conv2d", out_shape[1:] if self._unbatched else out_shape, w.dtype)
        g = g.reshape(out_shape)
        if self._out is not None:  # an activation was fused into the forward
            g = fused_backward(g, self._out, *self._out_act)
        dw = db = None
        acc_w = acc_b = False
        if self.weight.requires_grad:
            dw, acc_w = self.weight.grad_for_write()
        if self.bias is not None and self.bias.requires_grad:
            db, acc_b = self.bias.grad_for_write()
        dx = np.empty_like(x) if self.needs_input_grad else None
        self._x = self._out = None  # one backward per forward: free what it saved, as PyTorch does
        conv_k.conv2d_backward(dx, dw, db, g, x, w, self._geom(), acc_w, acc_b)
        if dx is None:
            return None
        return dx[0] if self._unbatched else dx

    def _dtype_changed(self):
        self._x = self._out = None

    def _config(self):
        padding = "same" if getattr(self, "_same", False) else self.padding
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
    scale = 1.0 / np.sqrt(bn.running_var.astype(np.float64) + bn.eps)
    if bn.affine:
        scale = scale * bn.weight.data
    shift = -bn.running_mean * scale + (bn.bias.data if bn.affine else 0.0)
    if conv.bias is not None:
        shift = shift + conv.bias.data * scale
    fused.weight.data[...] = w * scale.reshape(-1, 1, 1, 1)
    fused.bias.data[...] = shift
    fused._act_kind, fused._act_slope = conv._act_kind, conv._act_slope
    fused.train(conv.training)
    return fused
