"""Batch normalisation: BatchNorm1d, BatchNorm2d."""
import numpy as np

from .. import _config
from . import functional as F
from ._validate import check_positive_int
from .module import Module, Parameter


class _BatchNorm(Module):
    """Shared by BatchNorm1d/2d: per-channel normalisation of x viewed as (N, C, L)."""

    ranks = ()
    shape_hint = ""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        self.num_features = check_positive_int(num_features, name, "num_features")
        self.eps = float(eps)
        if not self.eps > 0:
            raise ValueError(f"{name}: eps must be positive, got {eps!r}")
        if momentum is not None and not 0 <= float(momentum) <= 1:
            raise ValueError(f"{name}: momentum must be in [0, 1] or None, got {momentum!r}")
        self.momentum = None if momentum is None else float(momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        dt = dtype or _config.get_default_dtype()
        C = self.num_features
        if self.affine:
            self.weight = Parameter(np.ones(C, dt))
            self.bias = Parameter(np.zeros(C, dt))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(C, dt))
            self.register_buffer("running_var", np.ones(C, dt))
            self.register_buffer("num_batches_tracked", np.array(0, np.int64))

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.data.fill(0)
            self.running_var.data.fill(1)
            self.num_batches_tracked.data = np.array(0, np.int64)

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            self.weight.data.fill(1)
            self.bias.data.fill(0)

    def _check_input(self, shape):
        if len(shape) not in self.ranks:
            ranks = " or ".join(f"{r}-D" for r in self.ranks)
            raise ValueError(f"{type(self).__name__}: expected {ranks} input{self.shape_hint}, got shape "
                             f"{tuple(shape)}")
        if shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}: expected input of shape {self.shape_hint.strip()} with "
                             f"{self.num_features} channels, got {tuple(shape)}")

    def forward(self, input):  # noqa: A002
        try:
            shape = input.shape
        except AttributeError:  # lists and numbers
            shape = np.shape(input)
        if len(shape) not in self.ranks or shape[1] != self.num_features:
            self._check_input(shape)
        if not self.track_running_stats:  # batch statistics in training and in eval
            return F.batch_norm(input, None, None, self.weight, self.bias, True, 0.0, self.eps)
        d = self._buffers
        if not self.training:
            return F.batch_norm(input, d["running_mean"], d["running_var"], self.weight, self.bias, False, 0.0,
                                self.eps)
        tracked = d["num_batches_tracked"]
        count = int(tracked.data) + 1
        tracked.data = np.array(count, np.int64)
        factor = 1.0 / count if self.momentum is None else self.momentum  # None: a cumulative average
        return F.batch_norm(input, d["running_mean"], d["running_var"], self.weight, self.bias, True, factor,
                            self.eps)

    def _config(self):
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum,
                "affine": self.affine, "track_running_stats": self.track_running_stats}

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over (N, C) or (N, C, L) input, like ``torch.nn.BatchNorm1d``.

    In training: y = (x - mean) / sqrt(var + eps) * weight + bias with the batch mean
    and biased variance per channel, and running_mean/running_var updated as
    ``(1 - momentum) * running + momentum * batch`` (unbiased variance; momentum None
    means a cumulative average). In eval the running statistics are used.

    Args:
        num_features: C.
        eps: added to the variance (default 1e-5).
        momentum: running-statistics factor (default 0.1), or None.
        affine: learn weight (ones) and bias (zeros) (default True).
        track_running_stats: keep running statistics (default True); if False,
            batch statistics are used in eval too.

    Shape: (N, C) or (N, C, L) -> same. weight, bias, running_mean, running_var (C,).

    Example:
        >>> fastnn.nn.BatchNorm1d(64)(fastnn.rand(32, 64)).shape
        (32, 64)
    """

    ranks = (2, 3)
    shape_hint = " (N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over (N, C, H, W) input per channel, like ``torch.nn.BatchNorm2d``.

    Statistics are taken over N, H and W; otherwise as :class:`BatchNorm1d`.

    Args: as :class:`BatchNorm1d`.

    Shape: (N, C, H, W) -> same. weight, bias, running_mean, running_var (C,).

    Example:
        >>> bn = fastnn.nn.BatchNorm2d(16)
        >>> bn(fastnn.rand(8, 16, 5, 5)).shape
        (8, 16, 5, 5)
    """

    ranks = (4,)
    shape_hint = " (N, C, H, W)"
