"""Per-operation autograd overhead: forward and backward of ``a * b + c`` on
16-element float32 leaves, where nearly all of the time is Python (recording the
graph, the backward pass, accumulating ``.grad``), not arithmetic.

``compare_torch.py`` measures the same two runners (``workloads.make_op_runner``)
in PyTorch.
"""
from .common import Benchmark, memo, seconds_per_call, set_threads
from .workloads import OPS, make_op_runner


def _warm(op):
    run = make_op_runner("fastnn", op)
    run()
    return run


class AutogradOverhead(Benchmark):
    """``(a * b + c).backward(ones)`` ("mul_add") and ``(a * b + c).sum().backward()``
    ("mul_add_sum"): one forward and one backward, 16-element leaves, 1 thread."""

    params = (list(OPS),)
    param_names = ["op"]

    def setup(self, op):
        set_threads(1)
        self.run = memo(("autograd", op), lambda: _warm(op))

    def time_forward_backward(self, op):
        self.run()

    def track_forward_backward_us(self, op):
        return seconds_per_call(self.run) * 1e6

    track_forward_backward_us.unit = "us"
