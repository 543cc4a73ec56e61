"""matmul kernel: ``fastnn.kernels.matmul.matmul(out, a, b, trans_a, trans_b)``.

Layouts are those of Linear: forward ``x @ W.T`` (nt), weight gradient
``g.T @ x`` (tn), input gradient ``g @ W`` (nn).
"""
from .common import (
    DTYPE,
    MATMUL_SHAPES,
    THREADS,
    Benchmark,
    memo,
    randn,
    seconds_per_call,
    set_threads,
)


def _operands(shape, layout):
    from fastnn.kernels.matmul import matmul
    M, K, N = MATMUL_SHAPES[shape]
    trans_a, trans_b = layout[0] == "t", layout[1] == "t"
    a = randn((K, M) if trans_a else (M, K), seed=1)
    b = randn((N, K) if trans_b else (K, N), seed=2)
    out = randn((M, N), seed=3, dtype=DTYPE)

    def call():
        matmul(out, a, b, trans_a=trans_a, trans_b=trans_b)
    call()
    return call


class Matmul(Benchmark):
    """out[M,N] = op(a) @ op(b) in float32, op = transpose where the layout says t."""

    params = (list(MATMUL_SHAPES), ["nn", "nt", "tn"], THREADS)
    param_names = ["shape", "layout", "threads"]

    def setup(self, shape, layout, threads):
        set_threads(threads)
        self.call = memo((shape, layout), lambda: _operands(shape, layout))

    def time_matmul(self, shape, layout, threads):
        self.call()

    def track_gflops(self, shape, layout, threads):
        M, K, N = MATMUL_SHAPES[shape]
        return 2.0 * M * K * N / seconds_per_call(self.call) / 1e9

    track_gflops.unit = "GFLOP/s"
