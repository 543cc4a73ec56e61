"""Batch normalisation: BatchNorm1d, BatchNorm2d."""
import numpy as np

from .. import _config
from ..kernels import norm as norm_k
from ._validate import as_float_array, as_grad, check_positive_int, float_dtype_for
from .module import Module, Parameter


class _BatchNorm(Module):
    """Shared by BatchNorm1d/2d: per-channel normalisation of x viewed as (N, C, L)."""

    ranks = ()
    shape_hint = ""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 dtype=None):
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
        self._mean = np.zeros(C, np.float64)
        self._invstd = np.ones(C, np.float64)
        self._x = None

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.fill(0)
            self.running_var.fill(1)
            self._buffers["num_batches_tracked"] = np.array(0, np.int64)

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            self.weight.data.fill(1)
            self.bias.data.fill(0)

    def _input(self, x):
        name = type(self).__name__
        dt = self.weight.data.dtype if self.affine else float_dtype_for(x)
        x = as_float_array(x, name, dt, ndim=self.ranks, shape_hint=self.shape_hint)
        if x.shape[1] != self.num_features:
            raise ValueError(f"{name}: expected input of shape {self.shape_hint.strip()} with "
                             f"{self.num_features} channels, got {x.shape}")
        if x.size == 0:
            raise ValueError(f"{name}: got an empty input of shape {x.shape}")
        return x, x.reshape(x.shape[0], x.shape[1], -1)

    def forward(self, x):
        x, x3 = self._input(x)
        out = np.empty_like(x)
        weight = self.weight.data if self.affine else self._mean
        bias = self.bias.data if self.affine else self._mean
        use_batch = self.training or not self.track_running_stats
        if not use_batch:
            norm_k.batch_norm_eval_forward(out.reshape(x3.shape), x3, self.running_mean, self.running_var,
                                           weight, bias, self.eps, self.affine)
            if self._x is not None:  # a backward after an eval forward must fail
                self._x = None
            return out
        if x3.shape[0] * x3.shape[2] < 2 and self.training:
            raise ValueError(f"{type(self).__name__}: expected more than 1 value per channel when "
                             f"training, got input of shape {x.shape}")
        update = self.training and self.track_running_stats
        factor = 0.0
        if update:
            self._buffers["num_batches_tracked"] = np.array(int(self.num_batches_tracked) + 1, np.int64)
            factor = self.momentum if self.momentum is not None else 1.0 / int(self.num_batches_tracked)
        running_mean = self.running_mean if self.track_running_stats else self._invstd
        running_var = self.running_var if self.track_running_stats else self._invstd
        norm_k.batch_norm_train_forward(out.reshape(x3.shape), self._mean, self._invstd, running_mean, running_var,
                                        x3, weight, bias, self.eps, factor, update, self.affine)
        if self.training:
            self._x = x
        elif self._x is not None:
            self._x = None
        return out

    def backward(self, grad_output):
        x = self._saved(self._x)
        g = as_grad(grad_output, type(self).__name__, x.shape, x.dtype)
        self._x = None  # one backward per forward: free what it saved, as PyTorch does
        x3 = x.reshape(x.shape[0], x.shape[1], -1)
        dx = np.empty_like(x)
        dw = db = self._mean
        acc_w = acc_b = False
        if self.affine:
            dw, acc_w = self.weight.grad_for_write() if self.weight.requires_grad else (np.empty_like(self.weight.data), False)
            db, acc_b = self.bias.grad_for_write() if self.bias.requires_grad else (np.empty_like(self.bias.data), False)
        weight = self.weight.data if self.affine else self._mean
        norm_k.batch_norm_backward(dx.reshape(x3.shape), dw, db, g.reshape(x3.shape), x3, self._mean, self._invstd,
                                   weight, self.affine, acc_w, acc_b)
        return dx

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
        >>> fastnn.nn.BatchNorm1d(64)(np.random.rand(32, 64).astype(np.float32)).shape
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
        >>> bn(np.random.rand(8, 16, 5, 5).astype(np.float32)).shape
        (8, 16, 5, 5)
    """

    ranks = 4
    shape_hint = " (N, C, H, W)"
