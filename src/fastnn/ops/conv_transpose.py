"""``conv_transpose1d`` / ``conv_transpose2d``: the adjoint of convolution, on the
2-D convolution kernels, with no zero-stuffed input.

With weight (C_in, C_out / G, kH, kW), ``y = conv_transpose2d(x, w)`` is the input
gradient of the convolution ``x' = conv2d(y', w)`` (weight layout (OC, C/G, ..)
with OC = C_in, C = C_out) taken at ``dout = x``. So:

    forward    y  = conv2d_backward's dx with dout = x
    input grad dx = conv2d(dy, w)                     (the forward convolution)
    weight grad dw = conv2d_backward's dw with input dy and dout = x
    bias grad  db = dy summed over (N, H, W)

An ``output_padding`` of a stride or more (allowed when the dilation is larger)
makes the convolution's output longer than x: x is then zero-padded at the end.
"""
import numpy as np

from ..kernels import conv as conv_k
from ._util import _wrap, attach, direct_grad, float_tensor, recording
from .conv import conv_bias, pair, same_dtype_input
from .conv1d import single

__all__ = ["conv_transpose1d", "conv_transpose2d"]


def transposed_output_size(size, k, s, p, op_, d):
    """Output length of a transposed convolution along one axis."""
    return (size - 1) * s - 2 * p + d * (k - 1) + op_ + 1


def _check_weight(wshape, groups, op, dims):
    if len(wshape) != dims + 2:
        raise ValueError(f"{op}: expected a {dims + 2}-D weight (in_channels, out_channels / groups, "
                         f"{'kH, kW' if dims == 2 else 'kL'}), got shape {wshape}")
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    if wshape[0] % groups or min(wshape) < 1:
        raise ValueError(f"{op}: weight of shape {wshape} does not fit groups={groups} "
                         f"(in_channels must be a positive multiple of groups, sizes positive)")


def check_output_padding(output_padding, stride, dilation, op):
    """ValueError unless each output padding is smaller than its stride or its dilation."""
    for o, s, d in zip(output_padding, stride, dilation):
        if o >= s and o >= d:
            raise ValueError(f"{op}: output_padding {tuple(output_padding)} must be smaller than either the "
                             f"stride {tuple(stride)} or the dilation {tuple(dilation)}")


def _plan(op, xshape, wshape, stride, padding, output_padding, groups, dilation, dims):
    # (4-D output shape, geometry, extra rows/cols of x) after validation
    _check_weight(wshape, groups, op, dims)
    conv = pair if dims == 2 else single
    s, p = conv(stride, op, "stride"), conv(padding, op, "padding", minimum=0)
    o, d = conv(output_padding, op, "output_padding", minimum=0), conv(dilation, op, "dilation")
    check_output_padding(o, s, d, op)
    if dims == 1:
        s, p, o, d, k = (1,) + s, (0,) + p, (0,) + o, (1,) + d, (1,) + tuple(wshape[2:])
    else:
        k = tuple(wshape[2:])
    N, C = xshape[0], xshape[1]
    if C != wshape[0]:
        raise ValueError(f"{op}: expected input with {wshape[0]} channels (weight of shape {wshape}), "
                         f"got shape {xshape if dims == 2 else xshape[:2] + xshape[3:]}")
    if N == 0:
        raise ValueError(f"{op}: got an empty batch, input shape {xshape}")
    size = tuple(transposed_output_size(xshape[2 + i], k[i], s[i], p[i], o[i], d[i]) for i in range(2))
    if min(size) < 1:
        shown = xshape if dims == 2 else xshape[:2] + xshape[3:]
        raise ValueError(f"{op}: input of shape {shown} gives an empty output {size[2 - dims:]} (kernel "
                         f"{k[2 - dims:]}, stride {s[2 - dims:]}, padding {p[2 - dims:]}, output_padding "
                         f"{o[2 - dims:]}, dilation {d[2 - dims:]})")
    geom = k + s + p + d + (int(groups),)
    extra = (o[0] // s[0], o[1] // s[1])
    return (N, wshape[1] * groups) + size, geom, extra


def _transposed(x, weight, bias, xn, op, dims, stride, padding, output_padding, groups, dilation):
    """The shared body: ``xn`` is x's data with a batch axis, (N, C, H, W) or (N, C, L)."""
    w = weight.data
    x4 = xn.reshape(xn.shape[:2] + (1,) + xn.shape[2:]) if dims == 1 else xn
    shape, geom, extra = _plan(op, x4.shape, w.shape, stride, padding, output_padding, groups, dilation, dims)
    bias = conv_bias(bias, weight, shape[1], op)
    w4 = np.ascontiguousarray(w.reshape(w.shape[:2] + (1,) + w.shape[2:]) if dims == 1 else w)
    dout = np.pad(x4, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1]))) if any(extra) else x4
    dout = np.ascontiguousarray(dout)
    y4 = np.empty(shape, w.dtype)
    flipped = conv_k.transposed_geometry(geom)
    if flipped is not None and conv_k.transposed_pays(shape, dout.shape, geom):
        # stride 1: a plain convolution with the flipped, transposed kernel, bias in its epilogue
        conv_k.conv2d_forward(y4, dout, conv_k.transposed_weight(w4, geom[8]), None if bias is None else bias.data,
                              flipped)
    else:
        conv_k.conv2d_backward(y4, None, None, dout, y4, w4, geom)  # y4 also stands for the input's shape
        if bias is not None:
            y4 += bias.data.reshape(-1, 1, 1)
    spatial = shape[3:] if dims == 1 else shape[2:]
    out_shape = (shape[:2] if x.data.ndim == dims + 2 else shape[1:2]) + spatial
    out = _wrap(y4.reshape(out_shape))
    if recording(x, weight, bias):
        attach(out, _backward(x, weight, bias, dout, w4, shape, geom, x4.shape), (x, weight, bias),
               "ConvolutionBackward0", saved=(x,))
    return out


def _backward(x, weight, bias, dout, w4, shape, geom, x4_shape):
    need_x, need_w = x.requires_grad, weight.requires_grad
    need_b = bias is not None and bias.requires_grad

    def backward(g):
        g4 = np.ascontiguousarray(g.reshape(shape), dtype=w4.dtype)
        dx = dw = db = None
        if need_x:  # dx = conv2d(dy, w): the convolution's forward
            dx4 = np.empty(dout.shape, w4.dtype)
            conv_k.conv2d_forward(dx4, g4, w4, None, geom)
            if dx4.shape != x4_shape:
                dx4 = np.ascontiguousarray(dx4[:, :, :x4_shape[2], :x4_shape[3]])
            dx = dx4.reshape(x.data.shape)
        if need_w:  # the convolution's weight gradient, with input dy and dout = x
            target = direct_grad(weight)
            if target is None:
                dw = np.empty(weight.data.shape, w4.dtype)
                conv_k.conv2d_backward(None, dw, None, dout, g4, w4, geom)
            else:
                conv_k.conv2d_backward(None, target[0], None, dout, g4, w4, geom, target[1])
        if need_b:
            sums = g4.sum(axis=(0, 2, 3))
            target = direct_grad(bias)
            if target is None:
                db = sums
            elif target[1]:
                np.add(target[0], sums, out=target[0])
            else:
                target[0][...] = sums
        return dx, dw, db

    return backward


def _input(input, weight, op, dims):  # noqa: A002
    weight = float_tensor(weight, op)
    x = same_dtype_input(input, weight, op)
    xd = x.data
    if xd.ndim not in (dims + 1, dims + 2):
        names = "(C, H, W) or 4-D (N, C, H, W)" if dims == 2 else "(C, L) or 3-D (N, C, L)"
        raise ValueError(f"{op}: expected {dims + 1}-D {names} input, got shape {xd.shape}")
    xn = xd.reshape((1,) + xd.shape) if xd.ndim == dims + 1 else xd
    return weight, x, np.ascontiguousarray(xn)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,  # noqa: A002
                     dilation=1):
    """2-D transposed convolution over NCHW images, like ``torch.nn.functional.conv_transpose2d``.

    Args:
        input: (N, C_in, H, W) or (C_in, H, W).
        weight: (C_in, C_out / groups, kH, kW); bias: (C_out,) or None.
        stride, padding, output_padding, dilation: int or (h, w); output_padding
            (added at the end) must be smaller than the stride or the dilation.
        groups: channel groups.

    Shape: -> (N, C_out, OH, OW), OH = (H - 1) * stride - 2 * padding
        + dilation * (kH - 1) + output_padding + 1.

    Example:
        >>> F.conv_transpose2d(fastnn.zeros(2, 8, 7, 7), fastnn.zeros(8, 4, 4, 4), stride=2, padding=1).shape
        (2, 4, 14, 14)
    """
    weight, x, xn = _input(input, weight, "conv_transpose2d", 2)
    return _transposed(x, weight, bias, xn, "conv_transpose2d", 2, stride, padding, output_padding, groups,
                       dilation)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,  # noqa: A002
                     dilation=1):
    """1-D transposed convolution over (N, C, L), like ``torch.nn.functional.conv_transpose1d``
    (arguments as in :func:`conv_transpose2d`, ints or 1-tuples).

    Shape: (N, C_in, L) -> (N, C_out, (L - 1) * stride - 2 * padding + dilation * (k - 1)
        + output_padding + 1).

    Example:
        >>> F.conv_transpose1d(fastnn.zeros(2, 8, 10), fastnn.zeros(8, 4, 3), stride=2).shape
        (2, 4, 21)
    """
    weight, x, xn = _input(input, weight, "conv_transpose1d", 1)
    return _transposed(x, weight, bias, xn, "conv_transpose1d", 1, stride, padding, output_padding, groups,
                       dilation)
