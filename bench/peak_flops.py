"""This machine's float32 peak, measured, and the share of it that matrix products reach.

The peak of a core is (FMA units) x (float32 lanes per vector) x 2 FLOP x clock.
The clock under vector load is what varies between machines (and with the number of
busy cores), so it is measured rather than read from a label: a loop of independent
vector FMAs on registers (no memory traffic; zmm vectors and 24 accumulators with
AVX-512, else ymm and 12 of the 16 registers: enough to cover the FMA latency on two
ports) runs on every thread at once, and its FLOP/s is the peak.
Then fastnn's ``matmul``, ``numpy.matmul`` and (when installed) ``torch.mm`` multiply
square float32 matrices, and each is given as GFLOP/s and as a share of that peak.

    python bench/peak_flops.py [--threads 2] [--sizes 1024,2048] [--repeats 5]

Run it on a quiet machine: the best of ``--repeats`` timings is kept for every figure.
"""
import argparse
import os
import sys
import time

import numpy as np


def _registers():
    """(float32 lanes of a vector register, accumulators the FMA loop keeps in registers:
    24 of AVX-512's 32, else 12 of the 16)."""
    from numba.core.registry import cpu_target

    from fastnn.kernels.microkernel import vector_bytes
    lanes = vector_bytes(cpu_target.target_context.codegen()._tm_features) // 4
    return lanes, 24 if lanes == 16 else 12


def loop_flops(n):
    """FLOP of ``n`` iterations of the FMA loop on one thread."""
    lanes, accumulators = _registers()
    return n * accumulators * lanes * 2


def _fma_loop():
    """A parallel ``prun(out2d, n)`` running, per row of out2d, n iterations of
    independent register-wide FMAs on the accumulators of :func:`_registers`, the sum
    stored to the row."""
    from llvmlite import ir
    from numba import njit, prange, types
    from numba.core import cgutils
    from numba.extending import intrinsic

    from fastnn.kernels.microkernel import accumulator_loop

    LANES, ACCUMULATORS = _registers()

    @intrinsic
    def fma_block(typingctx, out, n):
        def codegen(context, builder, signature, args):
            out, n = args
            vty, i64 = ir.VectorType(ir.FloatType(), LANES), ir.IntType(64)
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty] * 3),
                                                 f"llvm.fma.v{LANES}f32")
            data = cgutils.create_struct_proxy(signature.args[0])(context, builder, value=out).data
            x = builder.load(builder.bitcast(data, vty.as_pointer()), align=4)
            y = builder.load(builder.bitcast(builder.gep(data, [ir.Constant(i64, LANES)]), vty.as_pointer()), align=4)
            new = accumulator_loop(builder, n, vty, ACCUMULATORS,
                                   lambda k, accs: [builder.call(fma, [x, y, a]) for a in accs])
            total = new[0]
            for value in new[1:]:
                total = builder.fadd(total, value)
            builder.store(total, builder.bitcast(data, vty.as_pointer()), align=4)
            return context.get_dummy_value()
        return types.void(out, n), codegen

    @njit(parallel=True)
    def prun(out, n):
        for t in prange(out.shape[0]):
            fma_block(out[t], n)

    return prun


def peak_gflops(threads, repeats, seconds=0.2):
    """Best measured GFLOP/s of the FMA loop on ``threads`` threads at once."""
    import numba
    numba.set_num_threads(threads)
    prun = _fma_loop()
    out = np.full((threads, 32), 1e-3, np.float32)
    prun(out, 10)
    n = 1_000_000
    start = time.perf_counter()
    prun(out, n)
    n = max(n, int(n * seconds / (time.perf_counter() - start)))
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        prun(out, n)
        best = max(best, threads * loop_flops(n) / (time.perf_counter() - start) / 1e9)
    return best


def product_gflops(name, size, repeats):
    """Best GFLOP/s of one size x size float32 product by ``name``."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    out = np.empty((size, size), np.float32)
    if name == "fastnn":
        from fastnn.kernels.matmul import matmul
        run = lambda: matmul(out, a, b)  # noqa: E731
    elif name == "numpy":
        run = lambda: np.matmul(a, b, out=out)  # noqa: E731
    else:
        import torch
        ta, tb, to = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(out)
        run = lambda: torch.mm(ta, tb, out=to)  # noqa: E731
    run()
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = max(best, 2 * size ** 3 / (time.perf_counter() - start) / 1e9)
    return best


def _cpu():
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return (f"{fields.get('model name', 'unknown CPU')} (family {fields.get('cpu family', '?')}, "
            f"model {fields.get('model', '?')}), {os.cpu_count()} logical CPUs")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default="1024,2048")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))
    one, peak = peak_gflops(1, args.repeats), peak_gflops(args.threads, args.repeats)
    print(f"{_cpu()}, {args.threads} thread(s)")
    lanes = _registers()[0]
    print(f"FMA loop: {one:.0f} GFLOP/s on 1 thread = {4 * lanes} FLOP/cycle (2 FMA ports x {lanes} float32 lanes x 2) "
          f"at {one / (4 * lanes):.2f} GHz; {peak:.0f} GFLOP/s on {args.threads} threads: the peak below\n")
    try:
        import torch
        torch.set_num_threads(args.threads)
        names = ("fastnn", "numpy", "torch")
    except ImportError:
        names = ("fastnn", "numpy")
    print("| float32 product | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for size in (int(s) for s in args.sizes.split(",")):
        cells = []
        for name in names:
            g = product_gflops(name, size, args.repeats)
            cells.append(f"{g:.0f} GFLOP/s ({100 * g / peak:.0f}%)")
        print(f"| {size} x {size} x {size} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
