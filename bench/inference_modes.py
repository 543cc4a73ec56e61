"""Batch-1 latency of the reference workloads under ``no_grad``, ``inference_mode``
and ``fastnn.compile``: what PyTorch's inference idioms cost in fastnn.

    python bench/inference_modes.py            # every workload
    python bench/inference_modes.py lenet mlp  # some

One process; per workload and way, the best of 7 timed loops (microseconds a call),
the three ways taking turns.
``no_grad`` runs the layers as they are; ``inference_mode`` runs the model on its
inference plan from the second call at a shape; ``compile`` is ``fastnn.compile(model)``
called under ``no_grad`` (what ``bench/compare_peers.py`` measures as fastnn).
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.workloads import INPUT_SHAPE, NAMES, import_fastnn, make_runner  # noqa: E402


def best_us(fns, n, rounds=7):
    """Per callable, the best over ``rounds`` of the mean of ``n`` calls (us), the
    callables taking turns within each round so that a drifting clock hits all alike."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            for _ in range(n):
                fn()
            best[i] = min(best[i], (time.perf_counter() - start) / n)
    return [b * 1e6 for b in best]


def main(names):
    fastnn = import_fastnn()
    print("| workload | no_grad us | inference_mode us | compile us |")
    print("|---|---|---|---|")
    for name in names:
        compiled = make_runner("fastnn", name, 1, "infer")
        model = compiled.model.eval()
        x = fastnn.from_numpy(np.random.default_rng(0).standard_normal((1, *INPUT_SHAPE[name])).astype(np.float32))

        def eager():
            with fastnn.no_grad():
                return model(x)

        def planned():
            with fastnn.inference_mode():
                return model(x)

        for _ in range(3):  # compile, trace, plan
            eager(), planned(), compiled()
        n = 200 if name in ("resnet", "transformer") else 2000
        print("| {} | {:.1f} | {:.1f} | {:.1f} |".format(name, *best_us((eager, planned, compiled), n)))


if __name__ == "__main__":
    main(sys.argv[1:] or NAMES)
