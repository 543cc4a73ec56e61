"""Loss functions: ``loss = loss_fn(pred, target)`` returns a Python float and
``loss_fn.backward()`` returns d loss / d pred (mean reduction)."""
import numpy as np

from ..kernels import losses as loss_k
from ..kernels.elementwise import CHUNK
from ._validate import as_float_array, as_index_array, float_dtype_for
from .module import Module


class _Loss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        if reduction != "mean":
            raise ValueError(f"{type(self).__name__}: only reduction='mean' is supported, got {reduction!r}")
        self.reduction = reduction
        self._cache = None

    def backward(self, grad_output=1.0):
        """d loss / d pred for the last call, times ``grad_output`` (default 1)."""
        grad = self._grad(*self._saved(self._cache, "backward"))
        if grad_output != 1.0:
            grad *= grad_output
        return grad

    def _pred_target(self, pred, target):
        name = type(self).__name__
        pred = as_float_array(pred, name, float_dtype_for(pred), name="input")
        target = as_float_array(target, name, pred.dtype, name="target")
        if target.shape != pred.shape:
            raise ValueError(f"{name}: target shape {target.shape} does not match input shape {pred.shape}")
        if pred.size == 0:
            raise ValueError(f"{name}: input is empty (shape {pred.shape})")
        return pred, target


class _ElementwiseLoss(_Loss):
    """mean over elements of f(pred, target): a forward kernel writing per-chunk
    partial sums (added here in a fixed order) and a backward kernel scaled by
    ``grad_scale / n``."""

    _forward_kernel = _backward_kernel = None
    grad_scale = 1.0

    def forward(self, pred, target):
        pred, target = self._pred_target(pred, target)
        partials = np.empty((pred.size + CHUNK - 1) // CHUNK, pred.dtype)
        type(self)._forward_kernel(partials, pred.reshape(-1), target.reshape(-1))
        self._cache = (pred, target)
        return float(partials.sum(dtype=np.float64) / pred.size)

    def _grad(self, pred, target):
        dpred = np.empty_like(pred)
        type(self)._backward_kernel(dpred.reshape(-1), pred.reshape(-1), target.reshape(-1),
                                    self.grad_scale / pred.size)
        return dpred


class MSELoss(_ElementwiseLoss):
    """mean((pred - target)^2). Shape: pred and target the same shape."""

    _forward_kernel, _backward_kernel, grad_scale = loss_k.mse_forward, loss_k.mse_backward, 2.0


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy on logits, fused and numerically stable.

    Shape: logits (N, C) float, target (N,) integer class indices in [0, C).
    """

    def forward(self, logits, target):
        logits = as_float_array(logits, "CrossEntropyLoss", float_dtype_for(logits), ndim=2,
                                name="input", shape_hint=" (N, C)")
        n, c = logits.shape
        if n == 0 or c == 0:
            raise ValueError(f"CrossEntropyLoss: input is empty (shape {logits.shape})")
        target = as_index_array(target, "CrossEntropyLoss", c, ndim=1)
        if target.shape[0] != n:
            raise ValueError(f"CrossEntropyLoss: expected target of shape ({n},), got {target.shape}")
        losses = np.empty(n, logits.dtype)
        probs = np.empty_like(logits)
        loss_k.cross_entropy_forward(losses, probs, logits, target)
        self._cache = (probs, target)
        return float(losses.sum(dtype=np.float64) / n)

    def _grad(self, probs, target):
        dlogits = np.empty_like(probs)
        loss_k.cross_entropy_backward(dlogits, probs, target, 1.0 / probs.shape[0])
        return dlogits


class BCEWithLogitsLoss(_ElementwiseLoss):
    """Sigmoid + binary cross-entropy on logits, stable. Targets in [0, 1], same shape."""

    _forward_kernel, _backward_kernel = loss_k.bce_logits_forward, loss_k.bce_logits_backward
