"""More loss modules (L1, SmoothL1, Huber, BCE, KLDiv, CosineEmbedding, MarginRanking):
forward-only wrappers of ``fastnn.nn.functional``'s losses with PyTorch's constructor
arguments; ``reduction`` is checked here, at construction."""
from . import functional as F
from .loss import LossBase, loss_constant

__all__ = ["L1Loss", "SmoothL1Loss", "HuberLoss", "BCELoss", "KLDivLoss", "CosineEmbeddingLoss",
           "MarginRankingLoss"]


class L1Loss(LossBase):
    """Mean absolute error: |input - target|, reduced.

    Args:
        reduction: 'mean' (default), 'sum' or 'none'.

    Shape: input (*), target the same shape; output () or (*) for 'none'.

    Example:
        >>> nn.L1Loss()(fastnn.randn(4, 3, requires_grad=True), fastnn.randn(4, 3)).backward()
    """

    def forward(self, input, target):  # noqa: A002 (PyTorch's names)
        return F.l1_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(LossBase):
    """0.5 z^2 / beta for z = |input - target| < beta, else z - 0.5 beta; reduced.

    Args:
        reduction: 'mean' (default), 'sum' or 'none'.
        beta: where the loss turns from quadratic to linear (>= 0; 0 gives L1).

    Shape: input (*), target the same shape; output () or (*) for 'none'.

    Example:
        >>> nn.SmoothL1Loss(beta=0.5)(fastnn.randn(4, 3, requires_grad=True), fastnn.randn(4, 3))
    """

    def __init__(self, size_average=None, reduce=None, reduction="mean", beta=1.0):
        super().__init__(size_average, reduce, reduction)
        self.beta = float(beta)
        if self.beta < 0:
            raise ValueError(f"SmoothL1Loss: beta must be >= 0, got {beta!r}")

    def forward(self, input, target):  # noqa: A002
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)

    def _config(self):
        return dict(super()._config(), beta=self.beta)


class HuberLoss(LossBase):
    """0.5 z^2 for z = |input - target| < delta, else delta (z - 0.5 delta); reduced.

    Args:
        reduction: 'mean' (default), 'sum' or 'none'.
        delta: where the loss turns from quadratic to linear (> 0).

    Shape: input (*), target the same shape; output () or (*) for 'none'.

    Example:
        >>> nn.HuberLoss(delta=2.0)(fastnn.randn(4, 3, requires_grad=True), fastnn.randn(4, 3))
    """

    def __init__(self, reduction="mean", delta=1.0):
        super().__init__(None, None, reduction)
        self.delta = float(delta)
        if not self.delta > 0:
            raise ValueError(f"HuberLoss: delta must be > 0, got {delta!r}")

    def forward(self, input, target):  # noqa: A002
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)

    def _config(self):
        return dict(super()._config(), delta=self.delta)


class BCELoss(LossBase):
    """Binary cross-entropy on probabilities: -w [t log x + (1 - t) log(1 - x)], each
    log clamped at -100 as in PyTorch (use ``BCEWithLogitsLoss`` on logits).

    Args:
        weight: rescales each element's loss; broadcasts to the input.
        reduction: 'mean' (default), 'sum' or 'none'.

    Shape: input (*) in [0, 1], target the same shape in [0, 1]; output () or (*).

    Example:
        >>> probs = fastnn.sigmoid(fastnn.randn(4, 3, requires_grad=True))
        >>> nn.BCELoss(reduction="sum")(probs, fastnn.rand(4, 3)).backward()
    """

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", loss_constant(weight, "weight", "BCELoss"))

    def forward(self, input, target):  # noqa: A002
        return F.binary_cross_entropy(input, target, self.weight, reduction=self.reduction)

    def _config(self):
        return dict(super()._config(), weight=None if self.weight is None else self.weight.data.tolist())


class KLDivLoss(LossBase):
    """Kullback-Leibler divergence: target (log target - input) for log-probability
    inputs; with ``log_target`` the target is given as log-probabilities too.

    Args:
        reduction: 'mean' (default; over all elements), 'batchmean' (the sum divided
            by the batch size: the true KL divergence), 'sum' or 'none'.
        log_target: the target holds log-probabilities (default False).

    Shape: input (*), target the same shape; output () or (*) for 'none'.

    Example:
        >>> logp = F.log_softmax(fastnn.randn(4, 5, requires_grad=True), dim=1)
        >>> nn.KLDivLoss(reduction="batchmean")(logp, F.softmax(fastnn.randn(4, 5), dim=1))
    """

    def __init__(self, size_average=None, reduce=None, reduction="mean", log_target=False):
        if reduction == "batchmean" and size_average is None and reduce is None:
            super().__init__()
            self.reduction = "batchmean"
        else:
            super().__init__(size_average, reduce, reduction)
        self.log_target = bool(log_target)

    def forward(self, input, target):  # noqa: A002
        return F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)

    def _config(self):
        return dict(super()._config(), log_target=self.log_target)


class _MarginLoss(LossBase):
    def __init__(self, margin=0.0, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        self.margin = float(margin)

    def _config(self):
        return dict(super()._config(), margin=self.margin)


class CosineEmbeddingLoss(_MarginLoss):
    """1 - cos(x1, x2) for target 1, max(0, cos(x1, x2) - margin) for target -1.

    Args:
        margin: in [-1, 1]; 0 to 0.5 is typical (default 0).
        reduction: 'mean' (default), 'sum' or 'none'.

    Shape: input1, input2 (N, D), target (N,) of 1/-1 -> () or (N,) for 'none';
        or (D,), (D,), () -> ().

    Example:
        >>> a, b = fastnn.randn(4, 8, requires_grad=True), fastnn.randn(4, 8)
        >>> nn.CosineEmbeddingLoss(0.2)(a, b, fastnn.tensor([1, -1, 1, -1])).backward()
    """

    def forward(self, input1, input2, target):
        return F.cosine_embedding_loss(input1, input2, target, self.margin, reduction=self.reduction)


class MarginRankingLoss(_MarginLoss):
    """max(0, -target (x1 - x2) + margin): x1 should rank above x2 where target is 1.

    Args:
        margin: the required gap (default 0).
        reduction: 'mean' (default), 'sum' or 'none'.

    Shape: input1, input2 and target (N,) (or broadcasting, with the same number of
        dims) -> () or the broadcast shape for 'none'.

    Example:
        >>> a, b = fastnn.randn(6, requires_grad=True), fastnn.randn(6)
        >>> nn.MarginRankingLoss(0.1)(a, b, fastnn.tensor([1., -1, 1, 1, -1, 1])).backward()
    """

    def forward(self, input1, input2, target):
        return F.margin_ranking_loss(input1, input2, target, self.margin, reduction=self.reduction)

