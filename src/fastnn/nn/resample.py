"""Padding, upsampling and pixel-shuffle layers, with PyTorch's names and arguments:
``ZeroPad2d``, ``ConstantPad2d``, ``ReflectionPad2d``, ``ReplicationPad2d``,
``CircularPad2d`` (and their 1-d and 3-d forms), ``Upsample``,
``UpsamplingNearest2d``, ``UpsamplingBilinear2d``, ``PixelShuffle`` and
``PixelUnshuffle``. Each ``forward`` is one call of its functional form."""
import numpy as np

from . import functional as F
from .module import Module

__all__ = ["ZeroPad1d", "ZeroPad2d", "ZeroPad3d", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d",
           "ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d", "ReplicationPad1d", "ReplicationPad2d",
           "ReplicationPad3d", "CircularPad1d", "CircularPad2d", "CircularPad3d", "Upsample", "UpsamplingNearest2d",
           "UpsamplingBilinear2d", "PixelShuffle", "PixelUnshuffle"]


def _int(value, owner, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{owner}: {name} must be an int, got {value!r}")
    return int(value)


class _PadNd(Module):
    """Pads the last ``_dims`` dims; ``padding`` an int (all sides) or 2 * _dims ints
    (left, right[, top, bottom[, front, back]]), as in PyTorch."""

    _dims, _mode = 2, "constant"

    def __init__(self, padding):
        super().__init__()
        owner, n = type(self).__name__, 2 * self._dims
        pads = (padding,) * n if isinstance(padding, (int, np.integer)) and not isinstance(padding, bool) \
            else tuple(padding) if isinstance(padding, (tuple, list)) else None
        if pads is None or len(pads) != n:
            raise ValueError(f"{owner}: padding must be an int or {n} ints, got {padding!r}")
        self.padding = tuple(_int(p, owner, "padding") for p in pads)
        if self._mode != "constant" and min(self.padding) < 0:
            raise ValueError(f"{owner}: padding must be >= 0 (negative pads crop in constant mode only), got "
                             f"{self.padding}")

    def _value(self):
        return None

    def forward(self, input):  # noqa: A002 (PyTorch's name)
        shape = tuple(input.shape) if hasattr(input, "shape") else np.shape(input)
        if len(shape) not in (self._dims + 1, self._dims + 2):
            raise ValueError(f"{type(self).__name__}: expected a {self._dims + 1}-D or {self._dims + 2}-D input, "
                             f"got shape {shape}")
        return F.pad(input, self.padding, self._mode, self._value())

    def _config(self):
        return {"padding": list(self.padding)}

    def extra_repr(self):
        return f"{self.padding}"


class _ConstantPadNd(_PadNd):
    def __init__(self, padding, value):
        super().__init__(padding)
        self.value = float(value)

    def _value(self):
        return self.value

    def _config(self):
        return dict(super()._config(), value=self.value)

    def extra_repr(self):
        return f"padding={self.padding}, value={self.value}"


class ZeroPad2d(_PadNd):
    """Pads the last 2 dims with zeros.

    Args:
        padding: int, or (left, right, top, bottom); negative values crop.

    Shape: (N, C, H, W) or (C, H, W) -> (..., H + top + bottom, W + left + right).

    Example:
        >>> nn.ZeroPad2d((1, 1, 2, 0))(fastnn.randn(1, 1, 3, 3)).shape
        (1, 1, 5, 5)
    """


class ConstantPad2d(_ConstantPadNd):
    """Pads the last 2 dims with ``value``; padding as in ``ZeroPad2d``.

    Example:
        >>> nn.ConstantPad2d(2, 3.5)(fastnn.randn(1, 3, 4, 4)).shape
        (1, 3, 8, 8)
    """


class ReflectionPad2d(_PadNd):
    """Pads the last 2 dims with their reflection (the edge not repeated); each pad
    must be smaller than its dim. padding: int or (left, right, top, bottom).

    Example:
        >>> nn.ReflectionPad2d(1)(fastnn.randn(1, 3, 4, 4)).shape
        (1, 3, 6, 6)
    """

    _mode = "reflect"


class ReplicationPad2d(_PadNd):
    """Pads the last 2 dims by repeating the edge values. padding: int or
    (left, right, top, bottom).

    Example:
        >>> nn.ReplicationPad2d((1, 0, 0, 2))(fastnn.randn(1, 3, 4, 4)).shape
        (1, 3, 6, 5)
    """

    _mode = "replicate"


class CircularPad2d(_PadNd):
    """Pads the last 2 dims by wrapping around (each pad at most its dim)."""

    _mode = "circular"


class ZeroPad1d(ZeroPad2d):
    """Pads the last dim with zeros; padding int or (left, right)."""

    _dims = 1


class ZeroPad3d(ZeroPad2d):
    """Pads the last 3 dims with zeros; padding int or 6 ints."""

    _dims = 3


class ConstantPad1d(ConstantPad2d):
    """Pads the last dim with ``value``; padding int or (left, right)."""

    _dims = 1


class ConstantPad3d(ConstantPad2d):
    """Pads the last 3 dims with ``value``; padding int or 6 ints."""

    _dims = 3


class ReflectionPad1d(ReflectionPad2d):
    """Pads the last dim with its reflection; padding int or (left, right)."""

    _dims = 1


class ReflectionPad3d(ReflectionPad2d):
    """Pads the last 3 dims with their reflection; padding int or 6 ints."""

    _dims = 3


class ReplicationPad1d(ReplicationPad2d):
    """Pads the last dim by repeating its edge values; padding int or (left, right)."""

    _dims = 1


class ReplicationPad3d(ReplicationPad2d):
    """Pads the last 3 dims by repeating their edge values; padding int or 6 ints."""

    _dims = 3


class CircularPad1d(CircularPad2d):
    """Pads the last dim by wrapping around; padding int or (left, right)."""

    _dims = 1


class CircularPad3d(CircularPad2d):
    """Pads the last 3 dims by wrapping around; padding int or 6 ints."""

    _dims = 3


_UPSAMPLE_MODES = ("nearest", "nearest-exact", "linear", "bilinear", "trilinear")


class Upsample(Module):
    """Resizes the spatial dims of (N, C, *spatial) inputs (``F.interpolate``).

    Args:
        size: output spatial size (int or one per spatial dim), or None.
        scale_factor: multiplier (float or one per spatial dim), or None; exactly
            one of size and scale_factor is given.
        mode: 'nearest' (default), 'nearest-exact', 'linear' (3-D input),
            'bilinear' (4-D) or 'trilinear' (5-D).
        align_corners: linear modes only (default False).
        recompute_scale_factor: compute the index scale from the sizes.

    Example:
        >>> nn.Upsample(scale_factor=2, mode="bilinear")(fastnn.randn(1, 3, 8, 8)).shape
        (1, 3, 16, 16)
    """

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None,
                 recompute_scale_factor=None):
        super().__init__()
        if mode not in _UPSAMPLE_MODES:
            raise ValueError(f"Upsample: mode must be one of {_UPSAMPLE_MODES}, got {mode!r}")
        if (size is None) == (scale_factor is None):
            raise ValueError("Upsample: exactly one of size or scale_factor must be given")
        if align_corners is not None and mode in ("nearest", "nearest-exact"):
            raise ValueError(f"Upsample: align_corners can only be set with the linear modes, not {mode!r}")
        seq = (tuple, list)
        self.size = None if size is None else tuple(int(s) for s in size) if isinstance(size, seq) else int(size)
        self.scale_factor = None if scale_factor is None else tuple(float(s) for s in scale_factor) \
            if isinstance(scale_factor, seq) else float(scale_factor)
        self.mode, self.align_corners = mode, None if align_corners is None else bool(align_corners)
        self.recompute_scale_factor = recompute_scale_factor

    def forward(self, input):  # noqa: A002
        return F.interpolate(input, self.size, self.scale_factor, self.mode, self.align_corners,
                             self.recompute_scale_factor)

    def _config(self):
        def plain(v):
            return list(v) if isinstance(v, tuple) else v
        config = {"size": plain(self.size), "scale_factor": plain(self.scale_factor), "mode": self.mode,
                  "align_corners": self.align_corners, "recompute_scale_factor": self.recompute_scale_factor}
        return {k: v for k, v in config.items() if v is not None}

    def extra_repr(self):
        what = f"size={self.size}" if self.size is not None else f"scale_factor={self.scale_factor}"
        return f"{what}, mode={self.mode!r}"


class UpsamplingNearest2d(Upsample):
    """``Upsample(size, scale_factor, mode='nearest')`` for 4-D inputs."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, "nearest")

    def _config(self):
        return {k: v for k, v in super()._config().items() if k in ("size", "scale_factor")}


class UpsamplingBilinear2d(Upsample):
    """``Upsample(size, scale_factor, mode='bilinear', align_corners=True)`` for 4-D inputs."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, "bilinear", True)

    def _config(self):
        return {k: v for k, v in super()._config().items() if k in ("size", "scale_factor")}


class PixelShuffle(Module):
    """(*, C r^2, H, W) -> (*, C, H r, W r) with r = ``upscale_factor``.

    Example:
        >>> nn.PixelShuffle(3)(fastnn.randn(1, 9, 4, 4)).shape
        (1, 1, 12, 12)
    """

    def __init__(self, upscale_factor):
        super().__init__()
        self.upscale_factor = _int(upscale_factor, "PixelShuffle", "upscale_factor")
        if self.upscale_factor <= 0:
            raise ValueError(f"PixelShuffle: upscale_factor must be positive, got {upscale_factor}")

    def forward(self, input):  # noqa: A002
        return F.pixel_shuffle(input, self.upscale_factor)

    def _config(self):
        return {"upscale_factor": self.upscale_factor}

    def extra_repr(self):
        return f"upscale_factor={self.upscale_factor}"


class PixelUnshuffle(Module):
    """(*, C, H r, W r) -> (*, C r^2, H, W) with r = ``downscale_factor``.

    Example:
        >>> nn.PixelUnshuffle(2)(fastnn.randn(1, 1, 4, 4)).shape
        (1, 4, 2, 2)
    """

    def __init__(self, downscale_factor):
        super().__init__()
        self.downscale_factor = _int(downscale_factor, "PixelUnshuffle", "downscale_factor")
        if self.downscale_factor <= 0:
            raise ValueError(f"PixelUnshuffle: downscale_factor must be positive, got {downscale_factor}")

    def forward(self, input):  # noqa: A002
        return F.pixel_unshuffle(input, self.downscale_factor)

    def _config(self):
        return {"downscale_factor": self.downscale_factor}

    def extra_repr(self):
        return f"downscale_factor={self.downscale_factor}"
