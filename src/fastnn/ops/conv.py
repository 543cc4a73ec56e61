"""``conv2d``: PyTorch's 2-D cross-correlation (NCHW) on the implicit-GEMM kernels
(``kernels.conv``), with an optional activation fused into the epilogue; backward
writes the weight and bias gradients straight into their ``.grad`` buffers."""
import numpy as np

from ..kernels import activations as act_k
from ..kernels import conv as conv_k
from ._util import Tensor, _wrap, attach, direct_grad, float_tensor, recording
from .activation import ACTIVATION_KINDS, activation as _activation, fused_activation_grad
from .conv_pad import pad_spatial, same_pads
from .linear import weight_input

__all__ = ["conv2d"]

_GEOMETRIES = {}  # (weight shape, stride, padding, dilation, groups) -> geometry tuple
_CACHE_LIMIT = 512


def pair(value, op, name, minimum=1):
    """An int or a pair of ints -> a tuple of two Python ints, each >= minimum
    (ValueError naming ``op`` and ``name`` otherwise)."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in items):
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if any(v < minimum for v in items):
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return int(items[0]), int(items[1])


def same_padding(kernel_size, stride, dilation, op):
    """The symmetric padding of ``padding='same'`` (stride 1, even total padding)."""
    if stride != (1, 1):
        raise ValueError(f"{op}: padding='same' needs stride 1, got stride {stride}")
    total = [d * (k - 1) for d, k in zip(dilation, kernel_size)]
    if any(t % 2 for t in total):
        raise ValueError(f"{op}: padding='same' with kernel_size {tuple(kernel_size)} and dilation {dilation} "
                         "needs uneven padding, which is not supported; pad explicitly")
    return total[0] // 2, total[1] // 2


def _parse_geometry(wshape, stride, padding, dilation, groups):
    # (KH, KW, SH, SW, PH, PW, DH, DW, G), validated
    if len(wshape) != 4:
        raise ValueError(f"conv2d: expected a 4-D weight (out_channels, in_channels / groups, kH, kW), "
                         f"got shape {wshape}")
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    if wshape[0] % groups or min(wshape) < 1:
        raise ValueError(f"conv2d: weight of shape {wshape} does not fit groups={groups} "
                         f"(out_channels must be a positive multiple of groups, kernel sizes positive)")
    stride = pair(stride, "conv2d", "stride")
    dilation = pair(dilation, "conv2d", "dilation")
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            padding = same_padding(wshape[2:], stride, dilation, "conv2d")
        else:
            raise ValueError(f"conv2d: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    else:
        padding = pair(padding, "conv2d", "padding", minimum=0)
    return tuple(wshape[2:]) + stride + padding + dilation + (int(groups),)


def cached_geometry(cache, parse, wshape, stride, padding, dilation, groups):
    """``parse(...)``'s geometry tuple, kept in ``cache`` per distinct argument set
    (conv2d and conv1d each pass their own cache and parser)."""
    key = (wshape, stride, padding, dilation, groups)
    try:
        geom = cache.get(key)
    except TypeError:  # list arguments: not hashable, parse every time
        return parse(wshape, stride, padding, dilation, groups)
    if geom is None:
        geom = parse(wshape, stride, padding, dilation, groups)
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = geom
    return geom


def _geometry(wshape, stride, padding, dilation, groups):
    """The kernels' geometry tuple, parsed once per distinct argument set."""
    return cached_geometry(_GEOMETRIES, _parse_geometry, wshape, stride, padding, dilation, groups)


def output_shape(shape, wshape, geom):
    """(N, OC, OH, OW) of a 4-D input shape, or ValueError naming the shapes."""
    N, C, H, W = shape
    KH, KW, SH, SW, PH, PW, DH, DW, G = geom
    if C != wshape[1] * G:
        raise ValueError(f"conv2d: expected input (N, {wshape[1] * G}, H, W) with {wshape[1] * G} channels "
                         f"(weight of shape {wshape}, groups={G}), got shape {shape}")
    ext_h, ext_w = DH * (KH - 1) + 1, DW * (KW - 1) + 1
    if H + 2 * PH < ext_h or W + 2 * PW < ext_w:
        raise ValueError(f"conv2d: input of shape {shape} padded by {(PH, PW)} is {(H + 2 * PH, W + 2 * PW)}, "
                         f"smaller than the dilated kernel {(ext_h, ext_w)}")
    if N == 0:
        raise ValueError(f"conv2d: got an empty batch, input shape {shape}")
    return N, wshape[0], conv_k.output_size(H, KH, SH, PH, DH), conv_k.output_size(W, KW, SW, PW, DW)


def same_dtype_input(x, weight, op):
    """``x`` as a Tensor of ``weight``'s dtype (see ``linear.weight_input``), any shape."""
    if type(x) is Tensor and x.data.dtype == weight.data.dtype:
        return x  # the common case: nothing to convert
    return weight_input(x, weight, op, ())


def conv_bias(bias, weight, OC, op="conv2d"):
    if bias is None:
        return None
    if isinstance(bias, Tensor) and bias.data.dtype == weight.data.dtype and bias.data.shape == (OC,):
        return bias  # the common case: a module's parameter
    bias = float_tensor(bias, op)
    if bias.data.shape != (OC,):
        raise ValueError(f"{op}: expected bias of shape ({OC},), got {bias.data.shape}")
    dt = weight.data.dtype
    if bias.data.dtype != dt:
        if bias.requires_grad:
            raise TypeError(f"{op}: bias dtype {bias.data.dtype} does not match the weight's {dt}")
        bias = _wrap(bias.data.astype(dt))
    return bias


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,  # noqa: A002
           activation=None, negative_slope=0.0):
    """2-D convolution (cross-correlation) over NCHW images, like ``torch.nn.functional.conv2d``.

    Args:
        input: (N, C, H, W) or unbatched (C, H, W).
        weight: (OC, C / groups, KH, KW); bias: (OC,) or None.
        stride, dilation: int or (h, w); padding: int, (h, w), ``'valid'`` or ``'same'``
            (stride 1; an odd total padding puts the extra row/column at the end, as
            PyTorch does); groups: channel groups.
        activation: fastnn extension: ``'relu'``, ``'leaky_relu'`` (``negative_slope``),
            ``'sigmoid'``, ``'tanh'`` or ``'gelu'`` applied to the result; the first four
            run in the kernel's epilogue, in the same pass as the bias.

    Shape: -> (N, OC, OH, OW), OH = (H + 2 * pad - dilation * (KH - 1) - 1) // stride + 1.

    Example:
        >>> F.conv2d(fastnn.zeros(8, 3, 32, 32), fastnn.zeros(16, 3, 3, 3), padding=1).shape
        (8, 16, 32, 32)
    """
    weight = float_tensor(weight, "conv2d")
    w = weight.data
    x = same_dtype_input(input, weight, "conv2d")
    if isinstance(padding, str) and padding == "same" and len(w.shape) == 4:
        x, padding = same_padding(x, w.shape[2:], stride, dilation, "conv2d")
    geom = _geometry(w.shape, stride, padding, dilation, groups)
    xd = x.data
    if xd.ndim == 3:
        x4 = xd.reshape((1,) + xd.shape)
    elif xd.ndim == 4:
        x4 = xd
    else:
        raise ValueError(f"conv2d: expected 3-D (C, H, W) or 4-D (N, C, H, W) input, got shape {xd.shape}")
    shape = output_shape(x4.shape, w.shape, geom)
    return convolve(x, weight, bias, x4, w, geom, shape, shape[1:] if xd.ndim == 3 else shape, activation,
                    negative_slope, "conv2d")


def same_padding(x, kernel_size, stride, dilation, op):
    """``padding='same'``: (input, symmetric padding) with the odd extra of an uneven
    total padding added explicitly at the end of each spatial dim (PyTorch's rule)."""
    n = len(kernel_size)
    dilation = pair(dilation, op, "dilation") if n == 2 else dilation
    if (pair(stride, op, "stride") if n == 2 else stride) != (1,) * n:
        raise ValueError(f"{op}: padding='same' needs stride 1, got stride {stride}")
    pads = same_pads(kernel_size, dilation)
    extra = tuple((0, hi - lo) for lo, hi in pads)
    if any(e for _, e in extra):
        x = pad_spatial(x, extra, "zeros", op)
    return x, tuple(lo for lo, _ in pads)


def convolve(x, weight, bias, x4, w4, geom, shape, out_shape, activation, negative_slope, op):
    """The forward of a validated convolution and its recording: ``x``/``weight`` the
    input and weight Tensors, ``x4``/``w4`` their data as 4-D arrays (NCHW and (OC,
    C/G, KH, KW) views), ``shape`` the 4-D output shape, ``out_shape`` the shape
    returned (``conv1d`` drops the height-1 axis). Gradients come back in the
    Tensors' own shapes."""
    bias = conv_bias(bias, weight, shape[1], op)
    kind, slope = act_k.IDENTITY, 0.0
    if activation is not None:
        kind, slope = epilogue_of(activation, negative_slope, op)
        if kind == act_k.GELU or slope < 0:  # its derivative needs the pre-activation: run it apart
            out = convolve(x, weight, bias, x4, w4, geom, shape, out_shape, None, 0.0, op)
            return _activation(out, kind, slope, activation)
    if not x4.flags.c_contiguous:
        x4 = np.ascontiguousarray(x4)
    if not w4.flags.c_contiguous:
        w4 = np.ascontiguousarray(w4)
    out4 = np.empty(shape, w4.dtype)
    conv_k.conv2d_forward(out4, x4, w4, None if bias is None else bias.data, geom, kind, slope)
    out = _wrap(out4.reshape(out_shape))
    if recording(x, weight, bias):
        fused = out4 if kind != act_k.IDENTITY else None
        attach(out, _backward(x, weight, bias, x4, w4, shape, fused, geom, kind, slope),
               (x, weight, bias), "ConvolutionBackward0", saved=(x,))
    return out


def epilogue_of(activation, negative_slope, op="conv2d"):
    try:
        kind = ACTIVATION_KINDS[activation]
    except (KeyError, TypeError):
        raise ValueError(f"{op}: unknown activation {activation!r}; expected one of "
                         f"{sorted(ACTIVATION_KINDS)}") from None
    return kind, float(negative_slope) if kind == act_k.LEAKY_RELU else 0.0


def _backward(x, weight, bias, x4, w, shape, out4, geom, kind, slope):
    """The backward closure of one conv2d call (``shape``: its 4-D output shape;
    ``out4``: its output when an activation was fused, else None)."""
    need_x, need_w = x.requires_grad, weight.requires_grad
    need_b = bias is not None and bias.requires_grad
    in_shape = x.data.shape

    def backward(g):
        g4 = g.reshape(shape)
        if out4 is not None:  # the activation's derivative, from its output
            g4 = fused_activation_grad(g4, out4, kind, slope)
        elif g4.dtype != w.dtype or not g4.flags.c_contiguous:
            g4 = np.ascontiguousarray(g4, dtype=w.dtype)
        dx = np.empty_like(x4) if need_x else None
        dw = db = None
        dw_buf = db_buf = None
        acc_w = acc_b = False
        if need_w:
            target = direct_grad(weight)
            if target is None:
                dw = dw_buf = np.empty(weight.data.shape, w.dtype)
            else:
                dw_buf, acc_w = target
        if need_b:
            target = direct_grad(bias)
            if target is None:
                db = db_buf = np.empty(w.shape[0], w.dtype)
            else:
                db_buf, acc_b = target
        # forward: out = conv2d(x, w) + b
        conv_k.conv2d_backward(dx, dw_buf, db_buf, g4, x4, w, geom, acc_w, acc_b)
        if dx is not None:
            dx = dx.reshape(in_shape)
        return dx, dw, db

    return backward
