"""Conv2d forward and backward, on the convolutions of the lenet and resnet workloads."""
from .common import (
    CONV_SHAPES,
    THREADS,
    LayerBenchmark,
    fastnn,
    randn,
    require,
    seconds_per_backward,
    seconds_per_call,
)


class Conv2d(LayerBenchmark):
    """nn.Conv2d(C_in, C_out, k, stride, padding) on an (N, C_in, H, W) float32 batch."""

    params = (list(CONV_SHAPES), THREADS)
    param_names = ["shape", "threads"]

    def make(self, shape, threads):
        require(fastnn.nn, "Conv2d")
        N, c_in, c_out, k, size, stride, padding = CONV_SHAPES[shape]
        conv = fastnn.nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding)
        return conv, randn((N, c_in, size, size))

    def _forward_flops(self, shape):
        N, c_in, c_out, k, size, stride, padding = CONV_SHAPES[shape]
        out = (size + 2 * padding - k) // stride + 1
        return 2.0 * N * c_out * out * out * c_in * k * k

    def track_forward_gflops(self, shape, threads):
        seconds = seconds_per_call(lambda: self.module(self.x))
        return self._forward_flops(shape) / seconds / 1e9

    track_forward_gflops.unit = "GFLOP/s"

    def track_backward_gflops(self, shape, threads):
        # input and weight gradients: two products the size of the forward one
        return 2 * self._forward_flops(shape) / seconds_per_backward(self.module, self.x, self.dout) / 1e9

    track_backward_gflops.unit = "GFLOP/s"
