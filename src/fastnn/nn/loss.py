"""Loss modules: forward-only wrappers of ``fastnn.nn.functional``'s losses, with
PyTorch's constructor arguments. ``loss = criterion(input, target)`` is a Tensor;
``loss.backward()`` trains."""
import numpy as np

from .. import _config
from ..ops.loss_args import index_arg, reduction_arg, smoothing_arg
from . import functional as F
from .module import Module

__all__ = ["MSELoss", "CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss"]


def loss_constant(value, name, owner):
    """A weight for a buffer: a Tensor stays as it is (shared); anything else becomes
    ``np.asarray(value)`` (so a list of floats is float64, and the list that
    ``_config()`` writes rebuilds the same values), integers the default dtype. The
    loss functions cast it to the input's dtype."""
    if value is None or hasattr(value, "grad_fn"):
        return value
    array = np.asarray(value)
    if array.dtype.kind not in "fiub":
        raise TypeError(f"{owner}: {name} must be a real float tensor, got dtype {array.dtype}")
    return array if array.dtype.kind == "f" else array.astype(_config.get_default_dtype())


class LossBase(Module):
    """Base of the loss modules: ``reduction`` ('mean', 'sum' or 'none'; PyTorch's
    legacy ``size_average``/``reduce`` are translated into it), checked here."""

    def __init__(self, size_average=None, reduce=None, reduction="mean"):
        super().__init__()
        self.reduction = reduction_arg(size_average, reduce, reduction, type(self).__name__)

    def _config(self):
        return {"reduction": self.reduction}

    def extra_repr(self):
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"


class _WeightedLoss(LossBase):
    """A loss with an optional per-class ``weight`` buffer (follows ``.double()``)."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", loss_constant(weight, "weight", type(self).__name__))

    def _config(self):
        return dict(super()._config(), weight=None if self.weight is None else self.weight.data.tolist())


class MSELoss(LossBase):
    """Mean squared error: (input - target)^2, reduced.

    Args:
        reduction: 'mean' (default), 'sum' or 'none'.

    Shape: input (*), target the same shape; output () or (*) for 'none'.

    Example:
        >>> loss = nn.MSELoss()(fastnn.randn(4, 3, requires_grad=True), fastnn.randn(4, 3))
        >>> loss.backward()
    """

    def forward(self, input, target):  # noqa: A002 (PyTorch's names)
        return F.mse_loss(input, target, reduction=self.reduction)


class CrossEntropyLoss(_WeightedLoss):
    """Softmax cross-entropy on logits (fused, numerically stable).

    Args:
        weight: per-class weights (C,) or None.
        ignore_index: targets equal to it contribute nothing (class-index targets).
        reduction: 'mean' (default; divides by the summed weights of the counted
            targets), 'sum' or 'none'.
        label_smoothing: in [0, 1]; mixes the target with the uniform distribution.

    Shape: input (N, C), (C,) or (N, C, d1, ...); target class indices (N,), () or
    (N, d1, ...), or class probabilities of the input's shape; output () or, for
    'none', the target's (index) shape.

    Example:
        >>> criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
        >>> loss = criterion(fastnn.randn(8, 10, requires_grad=True), fastnn.randint(0, 10, (8,)))
        >>> loss.backward()
    """

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                 label_smoothing=0.0):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = index_arg(ignore_index, "CrossEntropyLoss")
        self.label_smoothing = smoothing_arg(label_smoothing, "CrossEntropyLoss")

    def forward(self, input, target):  # noqa: A002
        return F.cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)

    def _config(self):
        return dict(super()._config(), ignore_index=self.ignore_index, label_smoothing=self.label_smoothing)

    def extra_repr(self):
        extra = [f"ignore_index={self.ignore_index}" if self.ignore_index != -100 else "",
                 f"label_smoothing={self.label_smoothing}" if self.label_smoothing else ""]
        return ", ".join(filter(None, [super().extra_repr()] + extra))


class NLLLoss(_WeightedLoss):
    """Negative log-likelihood of log-probabilities (e.g. after ``LogSoftmax``).

    Args:
        weight: per-class weights (C,) or None.
        ignore_index: targets equal to it contribute nothing.
        reduction: 'mean' (default; divides by the summed weights of the counted
            targets), 'sum' or 'none'.

    Shape: input (N, C), (C,) or (N, C, d1, ...); target (N,), () or (N, d1, ...).

    Example:
        >>> logp = F.log_softmax(fastnn.randn(8, 10, requires_grad=True), dim=1)
        >>> nn.NLLLoss()(logp, fastnn.randint(0, 10, (8,))).backward()
    """

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = index_arg(ignore_index, "NLLLoss")

    def forward(self, input, target):  # noqa: A002
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)

    def _config(self):
        return dict(super()._config(), ignore_index=self.ignore_index)

    def extra_repr(self):
        extra = f"ignore_index={self.ignore_index}" if self.ignore_index != -100 else ""
        return ", ".join(filter(None, [super().extra_repr(), extra]))


class BCEWithLogitsLoss(LossBase):
    """Sigmoid + binary cross-entropy on logits, numerically stable.

    Args:
        weight: rescales each element's loss; broadcasts to the input.
        reduction: 'mean' (default), 'sum' or 'none'.
        pos_weight: weight of positive examples, broadcast along the last dim (C,).

    Shape: input (*), target the same shape with values in [0, 1]; output () or (*).

    Example:
        >>> criterion = nn.BCEWithLogitsLoss(pos_weight=fastnn.ones(3) * 2)
        >>> criterion(fastnn.randn(4, 3, requires_grad=True), fastnn.rand(4, 3)).backward()
    """

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", loss_constant(weight, "weight", "BCEWithLogitsLoss"))
        self.register_buffer("pos_weight", loss_constant(pos_weight, "pos_weight", "BCEWithLogitsLoss"))

    def forward(self, input, target):  # noqa: A002
        return F.binary_cross_entropy_with_logits(input, target, self.weight, reduction=self.reduction,
                                                  pos_weight=self.pos_weight)

    def _config(self):
        lists = {name: None if b is None else b.data.tolist()
                 for name, b in (("weight", self.weight), ("pos_weight", self.pos_weight))}
        return dict(super()._config(), **lists)
