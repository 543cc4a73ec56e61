"""Run by tests/test_mpi.py under ``mpirun -n 2``: ``python mpi_script.py SCENARIO OUTDIR``.

Each scenario writes what the test checks into OUTDIR (one file per rank).
The builders are imported by the test too, to compute the one-process reference.
"""
import inspect
import os
import sys

import numpy as np

import fastnn
from fastnn import nn, optim

STEPS, LOCAL_BATCH = 4, 6


def build_model(seed):
    fastnn.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 3)).double()


def make_data(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 12)), rng.integers(0, 3, n)


def manual_steps(model, batches, accumulate=False):
    """SGD with momentum and weight decay over ``batches`` of (x, y): the hand-written loop.

    ``accumulate``: each step accumulates the gradients of the two halves of its batch
    (two forward and backward passes, each loss halved) before the update."""
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for xb, yb in batches:
        opt.zero_grad()
        if accumulate:
            half = len(xb) // 2
            for part in (slice(0, half), slice(half, None)):
                (loss_fn(model(xb[part]), yb[part]) * 0.5).backward()
        else:
            loss_fn(model(xb), yb).backward()
        opt.step()


def fit_arguments():
    """Data and arguments of the distributed-fit scenario (50 rows: batches of 16, 16, 16, 2)."""
    x, y = make_data(50, seed=1)
    return x, y, dict(epochs=3, batch_size=16, seed=5, validation_data=(x[:7], y[:7]), progress=False)


def equivalence(out):
    import fastnn.distributed as dist
    rank = dist.rank()
    # a hand-written loop on per-rank data with DataParallel; the ranks start from
    # different weights: rank 0's are broadcast
    x, y = make_data(2 * STEPS * LOCAL_BATCH)
    x_local, y_local = dist.shard(x, y)
    local_batches = [(x_local[s * LOCAL_BATCH:(s + 1) * LOCAL_BATCH], y_local[s * LOCAL_BATCH:(s + 1) * LOCAL_BATCH])
                     for s in range(STEPS)]
    for name, accumulate in (("manual", False), ("accumulate", True)):
        model = dist.DataParallel(build_model(seed=10 + rank))
        manual_steps(model, local_batches, accumulate)
        np.savez(os.path.join(out, f"{name}_{rank}.npz"), **model.state_dict())
    # fastnn.distributed.fit on the same data and arguments on every rank
    model = build_model(seed=20 + rank)
    x, y, kwargs = fit_arguments()
    seen = []  # a callback that predicts on rank 0 alone (eval mode: no collective, no hang)
    kwargs["callbacks"] = [lambda epoch, metrics: seen.append(fastnn.predict(model, x[:5])) if rank == 0 else None]
    history = dist.fit(model, x, y, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-2), **kwargs)
    assert len(seen) == (kwargs["epochs"] if rank == 0 else 0)
    np.savez(os.path.join(out, f"fit_{rank}.npz"), **model.state_dict(),
             **{f"history.{k}": np.array(v) for k, v in history.history.items() if k != "samples_per_sec"})
    # BatchNorm: local batch statistics, rank 0's running statistics everywhere at the end
    fastnn.manual_seed(50 + rank)
    model = nn.Sequential(nn.Linear(12, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3)).double()
    dist.fit(model, x, y, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), **kwargs)
    np.savez(os.path.join(out, f"batchnorm_{rank}.npz"), **model.state_dict())
    if "resume" in inspect.signature(fastnn.fit).parameters:
        resume(out)


def resume(out):
    """Two epochs with checkpoints (rank 0 writes them), then resume to three on fresh models
    through ``fastnn.fit(..., distributed=True)``."""
    import fastnn.distributed as dist
    rank = dist.rank()
    x, y, kwargs = fit_arguments()
    kwargs.update(epochs=2, validation_data=None)
    model = build_model(seed=30 + rank)
    dist.fit(model, x, y, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-2),
             checkpoint_dir=os.path.join(out, f"checkpoints_{rank}"), **kwargs)
    model = build_model(seed=40 + rank)
    kwargs.update(epochs=3)
    fastnn.fit(model, x, y, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-2),
               resume=os.path.join(out, "checkpoints_0"), distributed=True, **kwargs)
    np.savez(os.path.join(out, f"resumed_{rank}.npz"), **model.state_dict())


def fail(out):
    import fastnn.distributed as dist
    rank = dist.rank()

    class Failing(nn.CrossEntropyLoss):
        calls = 0

        def forward(self, pred, target):
            Failing.calls += 1
            if rank == 1 and Failing.calls == 3:
                raise ValueError("rank one fails on purpose")
            return super().forward(pred, target)

    model = build_model(seed=0)
    x, y = make_data(64)
    dist.fit(model, x, y, Failing(), optim.SGD(model.parameters(), lr=0.1), epochs=100, batch_size=8)


if __name__ == "__main__":
    scenario, outdir = sys.argv[1], sys.argv[2]
    {"equivalence": equivalence, "fail": fail}[scenario](outdir)
