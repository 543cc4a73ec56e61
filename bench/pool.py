"""Pooling layers forward and backward, on the resnet's activations."""
from .common import IMAGE_SHAPE, THREADS, LayerBenchmark, fastnn, randn, require

POOLS = {
    "MaxPool2d(2)": ("MaxPool2d", 2),
    "AvgPool2d(2)": ("AvgPool2d", 2),
    "AdaptiveAvgPool2d(1)": ("AdaptiveAvgPool2d", 1),
}


class Pool2d(LayerBenchmark):
    """A pooling layer on an IMAGE_SHAPE (N, C, H, W) float32 batch."""

    params = (list(POOLS), THREADS)
    param_names = ["layer", "threads"]

    def make(self, layer, threads):
        name, arg = POOLS[layer]
        require(fastnn.nn, name)
        return getattr(fastnn.nn, name)(arg), randn(IMAGE_SHAPE)
