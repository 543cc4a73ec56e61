"""Per-sample normalisation layers: LayerNorm, GroupNorm, InstanceNorm1d, InstanceNorm2d."""
import warnings

import numpy as np

from .. import _config
from ..tensor import Tensor
from . import functional as F
from ._validate import check_positive_int
from .module import Module, Parameter


def _shape_of(input):  # noqa: A002
    try:
        return tuple(input.shape)
    except AttributeError:  # lists and numbers
        return np.shape(input)


def _check_eps(eps, name):
    eps = float(eps)
    if not eps >= 0:
        raise ValueError(f"{name}: eps must be non-negative, got {eps!r}")
    return eps


def _affine_parameters(layer, C, dtype):
    """weight (ones) and, if ``layer.use_bias``, bias (zeros) of shape (C,) when
    ``layer.affine``; else both registered as None (PyTorch's keys either way)."""
    dt = dtype or _config.get_default_dtype()
    if layer.affine:
        layer.weight = Parameter(np.ones(C, dt))
        if layer.use_bias:
            layer.bias = Parameter(np.zeros(C, dt))
            return
    else:
        layer.register_parameter("weight", None)
    layer.register_parameter("bias", None)


def _reset_affine(layer):
    if layer.weight is not None:
        layer.weight.data.fill(1)
    if layer.bias is not None:
        layer.bias.data.fill(0)


class LayerNorm(Module):
    """Layer normalisation over the last dims, like ``torch.nn.LayerNorm``.

    y = (x - mean) / sqrt(var + eps) * weight + bias, with the mean and biased
    variance of each sample over the trailing ``normalized_shape`` dims.

    Args:
        normalized_shape: an int or a tuple: the trailing dims to normalise over.
        eps: added to the variance (default 1e-5).
        elementwise_affine: learn weight (ones) and bias (zeros) of shape
            normalized_shape (default True).
        bias: learn the bias too (default True; only with elementwise_affine).

    Shape: (*, normalized_shape) -> same.

    Example:
        >>> fastnn.nn.LayerNorm(16)(fastnn.randn(4, 10, 16)).shape
        (4, 10, 16)
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None, dtype=None):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
        if any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1 for n in shape):
            raise ValueError(f"LayerNorm: normalized_shape must be a positive int or a tuple of them, "
                             f"got {normalized_shape!r}")
        self.normalized_shape = tuple(int(n) for n in shape)
        self.eps = _check_eps(eps, "LayerNorm")
        self.elementwise_affine = bool(elementwise_affine)
        self.use_bias = bool(bias)
        dt = dtype or _config.get_default_dtype()
        if self.elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, dt))
            if self.use_bias:
                self.bias = Parameter(np.zeros(self.normalized_shape, dt))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self):
        _reset_affine(self)

    def forward(self, input):  # noqa: A002
        shape, k = _shape_of(input), len(self.normalized_shape)
        if len(shape) < k or tuple(shape[len(shape) - k:]) != self.normalized_shape:
            dims = ", ".join(str(n) for n in self.normalized_shape)
            raise ValueError(f"LayerNorm: normalized_shape={self.normalized_shape} expects input of shape "
                             f"(*, {dims}), got {tuple(shape)}")
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def _config(self):
        return {"normalized_shape": list(self.normalized_shape), "eps": self.eps,
                "elementwise_affine": self.elementwise_affine, "bias": self.use_bias}

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")


class GroupNorm(Module):
    """Group normalisation, like ``torch.nn.GroupNorm``: the channels are split into
    ``num_groups`` groups; each (sample, group) is normalised by its own mean and
    biased variance, then scaled and shifted per channel.

    Args:
        num_groups: number of groups, dividing num_channels.
        num_channels: C.
        eps: added to the variance (default 1e-5).
        affine: learn weight (ones) and bias (zeros) of shape (C,) (default True).
        bias: keyword-only: learn the bias too (default True; only with affine).

    Shape: (N, C, *) -> same.

    Example:
        >>> fastnn.nn.GroupNorm(3, 6)(fastnn.randn(20, 6, 10, 10)).shape
        (20, 6, 10, 10)
    """

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, device=None, dtype=None, *, bias=True):
        super().__init__()
        self.num_groups = check_positive_int(num_groups, "GroupNorm", "num_groups")
        self.num_channels = check_positive_int(num_channels, "GroupNorm", "num_channels")
        if self.num_channels % self.num_groups:
            raise ValueError(f"GroupNorm: num_channels ({num_channels}) must be divisible by num_groups "
                             f"({num_groups})")
        self.eps = _check_eps(eps, "GroupNorm")
        self.affine = bool(affine)
        self.use_bias = bool(bias)
        _affine_parameters(self, self.num_channels, dtype)

    def reset_parameters(self):
        _reset_affine(self)

    def forward(self, input):  # noqa: A002
        shape = _shape_of(input)
        if len(shape) < 2 or shape[1] != self.num_channels:
            raise ValueError(f"GroupNorm: expected input of shape (N, {self.num_channels}, *), got "
                             f"{tuple(shape)}")
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def _config(self):
        return {"num_groups": self.num_groups, "num_channels": self.num_channels, "eps": self.eps,
                "affine": self.affine, "bias": self.use_bias}

    def extra_repr(self):
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
                f"bias={self.bias is not None}")


class _InstanceNorm(Module):
    """Shared by InstanceNorm1d/2d: per (sample, channel) normalisation over the
    ``spatial_dims`` last dims; unbatched input (one dim fewer) is accepted."""

    spatial_dims = 1

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False, track_running_stats=False,
                 device=None, dtype=None, *, bias=True):
        super().__init__()
        name = type(self).__name__
        self.num_features = check_positive_int(num_features, name, "num_features")
        self.eps = _check_eps(eps, name)
        if momentum is not None and not 0 <= float(momentum) <= 1:
            raise ValueError(f"{name}: momentum must be in [0, 1] or None, got {momentum!r}")
        self.momentum = None if momentum is None else float(momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        self.use_bias = bool(bias)
        dt = dtype or _config.get_default_dtype()
        C = self.num_features
        _affine_parameters(self, C, dt)
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(C, dt))
            self.register_buffer("running_var", np.ones(C, dt))
            self.register_buffer("num_batches_tracked", np.array(0, np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.data.fill(0)
            self.running_var.data.fill(1)
            self.num_batches_tracked.data = np.array(0, np.int64)

    def reset_parameters(self):
        self.reset_running_stats()
        _reset_affine(self)

    def forward(self, input):  # noqa: A002
        name, shape, d = type(self).__name__, _shape_of(input), self.spatial_dims
        if len(shape) not in (d + 1, d + 2):
            raise ValueError(f"{name}: expected {d + 1}-D (unbatched) or {d + 2}-D (batched) input, got shape "
                             f"{tuple(shape)}")
        unbatched = len(shape) == d + 1
        channels = shape[0 if unbatched else 1]
        if channels != self.num_features:
            message = (f"{name}: expected input's size at dim={0 if unbatched else 1} to match num_features "
                       f"({self.num_features}), got input of shape {tuple(shape)}")
            if self.affine or self.track_running_stats:
                raise ValueError(message)
            warnings.warn(message, stacklevel=2)
        if unbatched:
            input = input.unsqueeze(0) if isinstance(input, Tensor) else np.asarray(input)[None]  # noqa: A001
        momentum = 0.0 if self.momentum is None else self.momentum
        out = F.instance_norm(input, self.running_mean, self.running_var, self.weight, self.bias,
                              self.training or not self.track_running_stats, momentum, self.eps)
        return out.squeeze(0) if unbatched else out

    def _config(self):
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum,
                "affine": self.affine, "track_running_stats": self.track_running_stats, "bias": self.use_bias}

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class InstanceNorm1d(_InstanceNorm):
    """Instance normalisation over (N, C, L) or unbatched (C, L) input, like
    ``torch.nn.InstanceNorm1d``: each (sample, channel) normalised over L.

    Args:
        num_features: C.
        eps: added to the variance (default 1e-5).
        momentum: running-statistics factor (default 0.1; None: no update).
        affine: learn weight (ones) and bias (zeros) of shape (C,) (default False).
        track_running_stats: keep running statistics, updated in training and used
            in eval (default False: instance statistics in eval too).
        bias: keyword-only: learn the bias too (default True; only with affine).

    Shape: (N, C, L) or (C, L) -> same.

    Example:
        >>> fastnn.nn.InstanceNorm1d(4)(fastnn.randn(2, 4, 9)).shape
        (2, 4, 9)
    """

    spatial_dims = 1


class InstanceNorm2d(_InstanceNorm):
    """Instance normalisation over (N, C, H, W) or unbatched (C, H, W) input, like
    ``torch.nn.InstanceNorm2d``: each (sample, channel) normalised over H and W.

    Args: as :class:`InstanceNorm1d`.

    Shape: (N, C, H, W) or (C, H, W) -> same.

    Example:
        >>> fastnn.nn.InstanceNorm2d(3, affine=True)(fastnn.randn(2, 3, 8, 8)).shape
        (2, 3, 8, 8)
    """

    spatial_dims = 2
