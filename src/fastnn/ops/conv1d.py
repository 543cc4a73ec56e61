"""``conv1d``: PyTorch's 1-D cross-correlation (N, C, L). Short sequences (fewer
than ``conv1d_packed.PACK_BELOW`` outputs) run on the direct 1-D kernels
(``kernels.conv1d``, through ``conv1d_packed``); longer ones on the 2-D convolution
kernels, the sequence viewed as an image of height 1 (no copy): the kernels'
geometry then has KH = SH = DH = 1 and PH = 0, so every im2col row, padded image
and output row is one contiguous run of the sequence."""
import numpy as np

from ._util import float_tensor
from .conv import cached_geometry, convolve, same_dtype_input, conv_bias, epilogue_of, same_padding
from .conv1d_packed import conv1d_packed, packs

__all__ = ["conv1d"]

_GEOMETRIES = {}  # (weight shape, stride, padding, dilation, groups) -> geometry tuple


def single(value, op, name, minimum=1):
    """An int or a 1-element tuple/list of ints -> a 1-tuple of a Python int >= minimum
    (ValueError naming ``op`` and ``name`` otherwise)."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if len(items) != 1 or isinstance(items[0], bool) or not isinstance(items[0], (int, np.integer)):
        raise ValueError(f"{op}: {name} must be an int or a 1-tuple of ints, got {value!r}")
    if items[0] < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return (int(items[0]),)


def _parse_geometry(wshape, stride, padding, dilation, groups):
    if len(wshape) != 3:
        raise ValueError(f"conv1d: expected a 3-D weight (out_channels, in_channels / groups, kL), got shape {wshape}")
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"conv1d: groups must be a positive int, got {groups!r}")
    if wshape[0] % groups or min(wshape) < 1:
        raise ValueError(f"conv1d: weight of shape {wshape} does not fit groups={groups} "
                         f"(out_channels must be a positive multiple of groups, kernel size positive)")
    (s,), (d,) = single(stride, "conv1d", "stride"), single(dilation, "conv1d", "dilation")
    if isinstance(padding, str):
        if padding != "valid":
            raise ValueError(f"conv1d: padding must be an int, a 1-tuple, 'valid' or 'same', got {padding!r}")
        padding = 0
    (p,) = single(padding, "conv1d", "padding", minimum=0)
    return (1, wshape[2], 1, s, 0, p, 1, d, int(groups))


def _geometry(wshape, stride, padding, dilation, groups):
    """The 2-D kernels' geometry tuple, parsed once per distinct argument set."""
    return cached_geometry(_GEOMETRIES, _parse_geometry, wshape, stride, padding, dilation, groups)


def output_shape1d(shape, wshape, geom, op="conv1d"):
    """(N, OC, 1, OL) of an (N, C, L) input shape, or ValueError naming the shapes."""
    N, C, L = shape
    K, S, P, D, G = geom[1], geom[3], geom[5], geom[7], geom[8]
    if C != wshape[1] * G:
        raise ValueError(f"{op}: expected input (N, {wshape[1] * G}, L) with {wshape[1] * G} channels "
                         f"(weight of shape {wshape}, groups={G}), got shape {shape}")
    if L + 2 * P < D * (K - 1) + 1:
        raise ValueError(f"{op}: input of shape {shape} padded by {P} has length {L + 2 * P}, smaller than "
                         f"the dilated kernel {D * (K - 1) + 1}")
    if N == 0:
        raise ValueError(f"{op}: got an empty batch, input shape {shape}")
    return N, wshape[0], 1, (L + 2 * P - D * (K - 1) - 1) // S + 1


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,  # noqa: A002
           activation=None, negative_slope=0.0):
    """1-D convolution (cross-correlation) over (N, C, L) sequences, like
    ``torch.nn.functional.conv1d``.

    Args:
        input: (N, C, L) or unbatched (C, L).
        weight: (OC, C / groups, K); bias: (OC,) or None.
        stride, padding, dilation: int or 1-tuple; padding also ``'valid'`` or
            ``'same'`` (stride 1; an odd total padding goes at the end, as in PyTorch).
        groups: channel groups (``groups == C``: depthwise).
        activation, negative_slope: a fused activation, as in :func:`conv2d`.

    Shape: -> (N, OC, OL), OL = (L + 2 * padding - dilation * (K - 1) - 1) // stride + 1.

    Example:
        >>> F.conv1d(fastnn.zeros(8, 1, 40), fastnn.zeros(32, 1, 5), stride=2, padding=1).shape
        (8, 32, 19)
    """
    weight = float_tensor(weight, "conv1d")
    w = weight.data
    x = same_dtype_input(input, weight, "conv1d")
    if isinstance(padding, str) and padding == "same" and w.ndim == 3:
        s = single(stride, "conv1d", "stride")
        x, padding = same_padding(x, w.shape[2:], s, single(dilation, "conv1d", "dilation"), "conv1d")
        padding = padding[0]
    geom = _geometry(w.shape, stride, padding, dilation, groups)
    xd = x.data
    if xd.ndim not in (2, 3):
        raise ValueError(f"conv1d: expected 2-D (C, L) or 3-D (N, C, L) input, got shape {xd.shape}")
    x3 = xd.reshape((1,) + xd.shape) if xd.ndim == 2 else xd
    if not x3.flags.c_contiguous:
        x3 = np.ascontiguousarray(x3)
    shape = output_shape1d(x3.shape, w.shape, geom)
    out_shape = (shape[1], shape[3]) if xd.ndim == 2 else (shape[0], shape[1], shape[3])
    x4 = x3.reshape(x3.shape[0], x3.shape[1], 1, x3.shape[2])
    w4 = w.reshape(w.shape[0], w.shape[1], 1, w.shape[2])
    if packs(shape[0], shape[3]):  # short sequences: the direct 1-D kernels
        kind, slope = epilogue_of(activation, negative_slope, "conv1d") if activation is not None else (0, 0.0)
        return conv1d_packed(x, weight, conv_bias(bias, weight, shape[1], "conv1d"), x3,
                             w if w.flags.c_contiguous else np.ascontiguousarray(w), geom, out_shape, kind, slope,
                             activation)
    return convolve(x, weight, bias, x4, w4, geom, shape, out_shape, activation, negative_slope, "conv1d")
