"""Pointwise activations, softmax and the losses, forward and backward (``loss.backward()``)."""
from .common import (
    LOGITS_SHAPE,
    POINTWISE_SHAPE,
    THREADS,
    LayerBenchmark,
    fastnn,
    randn,
    rng,
)

ACTIVATIONS = ["ReLU", "GELU", "Sigmoid", "Tanh", "Softmax"]


class Activation(LayerBenchmark):
    """An activation layer on a POINTWISE_SHAPE float32 array (Softmax: along the last axis)."""

    params = (ACTIVATIONS, THREADS)
    param_names = ["layer", "threads"]

    def make(self, layer, threads):
        return getattr(fastnn.nn, layer)(), randn(POINTWISE_SHAPE)


class Loss(LayerBenchmark):
    """CrossEntropyLoss on (N, C) logits and integer targets; MSELoss on (N, C) targets."""

    params = (["CrossEntropyLoss", "MSELoss"], THREADS)
    param_names = ["loss", "threads"]

    def make(self, loss, threads):
        logits = randn(LOGITS_SHAPE)
        if loss == "CrossEntropyLoss":
            target = rng(1).integers(0, LOGITS_SHAPE[1], LOGITS_SHAPE[0])
        else:
            target = randn(LOGITS_SHAPE, seed=1)
        loss_fn = getattr(fastnn.nn, loss)()
        return _Bound(loss_fn, target), logits


class _Bound(fastnn.nn.Module):
    """A loss with its target fixed, so it looks like a one-input module."""

    def __init__(self, loss_fn, target):
        super().__init__()
        self.loss_fn, self.target = loss_fn, fastnn.from_numpy(target)

    def forward(self, x):
        return self.loss_fn(x, self.target)
