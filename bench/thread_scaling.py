"""How matrix products scale from one thread to several, side by side with PyTorch.

For each product ``x (M, K) @ w.T (K, N)`` (default: the four Linear products of a
``transformer`` workload's encoder layer at batch 32 x sequence 64, then 1024 cubed),
on one thread and on ``--threads``: fastnn's ``matmul``, its pre-packed product as an
inference plan runs it (``gemm_packed``) and, where installed, ``torch.mm``, timed in
alternating rounds in one process. Each round also runs the FMA loop of
``peak_flops.py`` on the same number of threads, and every product's figure is a share
of the peak measured in its own round: this machine's clock moves between runs, so
only shares and ratios taken side by side compare. Before its timed calls in a
round, each system runs untimed for ``WARM`` seconds: PyTorch's OpenMP threads keep
spinning for milliseconds after its last call and slow whatever runs next, and a core
that idled runs its first milliseconds of vector work slower.

    python bench/thread_scaling.py [--threads 2] [--shapes 2048x384x128,...] [--rounds 15]

Run it on a quiet machine. Prints a Markdown table: the median share of peak of each
system, and fastnn's time over PyTorch's (below 1: fastnn is faster).
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

LOOP = 600_000  # FMA-loop iterations per peak measurement: about 2 ms at 3 GHz
# Each system runs this long untimed before its timed calls in a round: PyTorch's OpenMP
# threads spin for milliseconds after its last call, taking the cores from whatever runs
# next, and a core that idled runs its first milliseconds of vector work slower.
WARM = 0.03
SHAPES = "2048x384x128,2048x128x128,2048x512x128,2048x128x512,1024x1024x1024"


def _products(shape, threads, torch):
    """{name: run()} for one shape: fastnn's two entry points and torch.mm."""
    from fastnn.kernels import matmul_packed
    from fastnn.kernels.matmul import matmul

    M, N, K = shape
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((M, K), dtype=np.float32), rng.standard_normal((N, K), dtype=np.float32)
    out = np.empty((M, N), np.float32)
    packed, (ap, tmp) = matmul_packed.pack_weight(w, M), matmul_packed.workspace(np.float32)
    bias = np.zeros(N, np.float32)
    runs = {"fastnn matmul": lambda: matmul(out, x, w, False, True),
            "fastnn packed": lambda: matmul_packed.gemm_packed(out, x, packed, ap, tmp, threads, bias, 0, 0.0, False)}
    if torch is not None:
        tx, tw, tout = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(np.empty((M, N), np.float32))
        runs["torch.mm"] = lambda: torch.mm(tx, tw.t(), out=tout)
    return runs


def scaling(shapes, thread_counts, rounds, repeats=5):
    """{(shape, threads): {name: (median share of peak, median seconds)}}."""
    import numba

    peak_flops = _peak_flops()
    try:
        import torch
    except ImportError:
        torch = None
    prun = peak_flops._fma_loop()
    results = {}
    for threads in thread_counts:
        numba.set_num_threads(threads)
        if torch is not None:
            torch.set_num_threads(threads)
        pout = np.full((threads, 32), 1e-3, np.float32)
        prun(pout, 10)
        for shape in shapes:
            runs = _products(shape, threads, torch)
            for run in runs.values():
                run()
            flops = 2.0 * shape[0] * shape[1] * shape[2]
            shares, times = {name: [] for name in runs}, {name: [] for name in runs}
            for _ in range(rounds):
                _warm(lambda: prun(pout, LOOP // 10))
                loop = min(_timed(lambda: prun(pout, LOOP)) for _ in range(3))
                peak = threads * peak_flops.loop_flops(LOOP) / loop
                for name, run in runs.items():
                    _warm(run)
                    best = min(_timed(run) for _ in range(repeats))
                    shares[name].append(flops / best / peak)
                    times[name].append(best)
            results[(shape, threads)] = {name: (statistics.median(shares[name]), statistics.median(times[name]))
                                         for name in runs}
    return results


def _peak_flops():
    try:
        from bench import peak_flops
    except ImportError:  # run as a script: this folder is on the path
        import peak_flops
    return peak_flops


def _warm(run):
    end = time.perf_counter() + WARM
    while time.perf_counter() < end:
        run()


def _timed(run):
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shapes", default=SHAPES, help="MxNxK products, comma-separated")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    counts = sorted({1, args.threads})
    results = scaling(shapes, counts, args.rounds)
    names = list(next(iter(results.values())))
    print(f"{_peak_flops()._cpu()}; median of {args.rounds} alternating rounds, "
          "shares of the FMA peak measured in each round\n")
    print("| x @ w.T, M x N x K | threads | " + " | ".join(f"{n} % of peak" for n in names)
          + (" | fastnn matmul / torch.mm time |" if "torch.mm" in names else " |"))
    print("|---|---|" + "---|" * (len(names) + ("torch.mm" in names)))
    for (shape, threads), row in results.items():
        cells = [f"{100 * row[n][0]:.0f}%" for n in names]
        if "torch.mm" in names:
            cells.append(f"{row['fastnn matmul'][1] / row['torch.mm'][1]:.2f}x")
        print(f"| {' x '.join(map(str, shape))} | {threads} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
