"""Batch normalisation: training forward, backward, and the eval-mode forward
(``time_inference``: running statistics, no grad)."""
from .common import IMAGE_SHAPE, THREADS, LayerBenchmark, fastnn, randn, require

NORMS = {
    "BatchNorm2d 32x32x32x32": ("BatchNorm2d", IMAGE_SHAPE),
    "BatchNorm1d 128x256": ("BatchNorm1d", (128, 256)),
}


class BatchNorm(LayerBenchmark):
    """BatchNorm1d/2d on a float32 batch: batch statistics (train) or running ones (eval)."""

    params = (list(NORMS), THREADS)
    param_names = ["layer", "threads"]

    def make(self, layer, threads):
        name, shape = NORMS[layer]
        require(fastnn.nn, name)
        return getattr(fastnn.nn, name)(shape[1]), randn(shape)
