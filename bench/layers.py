"""Dense layers, Dropout and the per-layer Python overhead that batch-1 latency pays."""
from .common import THREADS, LayerBenchmark, fastnn, randn

# name -> (N, in_features, out_features)
LINEAR_SHAPES = {
    "mlp-fc1 128x784->256": (128, 784, 256),
    "1024x256->128": (1024, 256, 128),
}


class Linear(LayerBenchmark):
    """nn.Linear(in, out) on an (N, in) float32 batch."""

    params = (list(LINEAR_SHAPES), THREADS)
    param_names = ["shape", "threads"]

    def make(self, shape, threads):
        N, fan_in, fan_out = LINEAR_SHAPES[shape]
        return fastnn.nn.Linear(fan_in, fan_out), randn((N, fan_in))


class Dropout(LayerBenchmark):
    """nn.Dropout(0.5) in training mode on a (256, 2048) float32 array."""

    params = (THREADS,)
    param_names = ["threads"]

    def make(self, threads):
        return fastnn.nn.Dropout(0.5), randn((256, 2048))


class Overhead(LayerBenchmark):
    """Eight Linear(32, 32) + ReLU pairs in a Sequential at batch 1: nearly all
    of the time is per-layer Python and kernel-launch overhead."""

    params = ([1],)
    param_names = ["threads"]

    def make(self, threads):
        nn = fastnn.nn
        layers = []
        for _ in range(8):
            layers += [nn.Linear(32, 32), nn.ReLU()]
        return nn.Sequential(*layers), randn((1, 32))
