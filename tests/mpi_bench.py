"""Data-parallel scaling figures for the README: ``mpirun -n N python tests/mpi_bench.py``.

For each reference workload (WORKLOADS.md; those whose layers exist) every rank
trains on its own local batch of the workload's batch size (weak scaling, as
DistributedDataParallel is used), with Adam, through ``DataParallel``. Rank 0
prints one line per workload: the step time, samples/s over all ranks, the time
of the gradient ``Allreduce`` inside the step (waiting for the slower rank
included) and alone (after a barrier), and its share of the step. Set
``NUMBA_NUM_THREADS`` per rank; add ``--ring GBITS LATENCY_US`` for the ring
all-reduce estimate of the step time at 2..64 ranks.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import fastnn  # noqa: E402
from fastnn import nn, optim  # noqa: E402
from fastnn import distributed as dist  # noqa: E402

try:
    from bench import workloads
except ImportError:  # the benchmark builders are not there: the MLP alone
    workloads = None


def build(name):
    if workloads is not None:
        model = workloads.build_fastnn(name)
        x, y = workloads.make_batch(name, workloads.BATCH[name], seed=dist.rank())
        return model, x, y
    if name != "mlp":
        raise NotImplementedError(name)
    fastnn.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    rng = np.random.default_rng(dist.rank())
    return model, rng.standard_normal((128, 784), dtype=np.float32), rng.integers(0, 10, 128)


def ring_seconds(nbytes, ranks, bandwidth, latency):
    """Ring all-reduce time: 2(N-1)/N * bytes / bandwidth + 2(N-1) * latency."""
    return 2 * (ranks - 1) / ranks * nbytes / bandwidth + 2 * (ranks - 1) * latency


def measure(name, steps, comm):
    model, x, y = build(name)
    parallel = dist.DataParallel(model, comm)
    loss_fn, opt = nn.CrossEntropyLoss(), optim.Adam(parallel.parameters(), lr=1e-3)
    nbytes = sum(p.data.nbytes for p in model.parameters())
    step_times, reduce_times = [], []
    for i in range(steps + 3):  # 3 warm-up steps
        start = time.perf_counter()
        opt.zero_grad()
        parallel._sync_buffers()
        loss_fn(model(x), y).backward()  # the model itself: the Allreduce is timed on its own below
        before = time.perf_counter()
        parallel.allreduce_gradients()
        after = time.perf_counter()
        opt.step()
        if i >= 3:
            step_times.append(time.perf_counter() - start)
            reduce_times.append(after - before)
    alone = []
    for _ in range(steps):
        comm.Barrier()
        start = time.perf_counter()
        parallel.allreduce_gradients()
        alone.append(time.perf_counter() - start)
    step, reduce, alone = (float(np.median(t)) for t in (step_times, reduce_times, alone))
    ranks = comm.Get_size()
    return {"workload": name, "ranks": ranks, "threads_per_rank": fastnn.get_num_threads(),
            "local_batch": len(x), "grad_MB": nbytes / 1e6, "step_ms": step * 1e3,
            "samples_per_s": ranks * len(x) / step, "allreduce_in_step_ms": reduce * 1e3,
            "allreduce_alone_ms": alone * 1e3, "allreduce_share": reduce / step}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workloads", default=",".join(workloads.NAMES) if workloads is not None else "mlp")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--ring", nargs=2, type=float, metavar=("GBITS", "LATENCY_US"))
    parser.add_argument("--out", help="append the JSON lines to this file too")
    args = parser.parse_args()
    comm = dist.get_comm()
    with dist.abort_on_error(comm):
        for name in args.workloads.split(","):
            try:
                row = measure(name, args.steps, comm)
            except NotImplementedError as err:
                if comm.Get_rank() == 0:
                    print(json.dumps({"workload": name, "skipped": str(err)}), flush=True)
                continue
            if args.ring:
                bandwidth, latency = args.ring[0] * 1e9 / 8, args.ring[1] * 1e-6
                compute = row["step_ms"] / 1e3 - row["allreduce_in_step_ms"] / 1e3
                row["ring_step_ms"] = {n: round((compute + ring_seconds(row["grad_MB"] * 1e6, n, bandwidth, latency))
                                               * 1e3, 3) for n in (2, 4, 8, 16, 64)}
            if comm.Get_rank() == 0:
                line = json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
                print(line, flush=True)
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(line + "\n")


if __name__ == "__main__":
    main()
