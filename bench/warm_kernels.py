"""Load the suite's kernels once in asv's fork server, so its children inherit them.

asv.conf.json sets ``"launch_method": "forkserver"``: asv imports this suite once
in a server process, then forks one child per benchmark and parameter set (a few
hundred). Numba loads a compiled kernel from its on-disk cache on first call;
a training step's kernels cost about 0.4 s of CPU to load, in every child. This
module, imported by the server like every benchmark file, runs one small call of
each layer, workload, optimizer and matmul layout there, before the first fork.

Elsewhere (asv's discovery process, spawned children, ``compare_torch.py``)
importing it does nothing. It also does nothing unless Numba's threading layer
is fork-safe (fastnn's default, ``workqueue``, is; GNU OpenMP is not). Failures
are reported on stderr and otherwise ignored: the benchmarks then load their
kernels themselves.
"""
import inspect
import sys
import traceback

import numba

from . import (
    activations,
    autograd_overhead,
    common,
    conv,
    layers,
    matmul,
    norm,
    optimizers,
    pool,
    recurrent,
)
from .workloads import NAMES, make_runner, missing_fastnn_layers

FORK_SAFE_LAYERS = ("workqueue", "tbb", "safe", "forksafe")


def in_fork_server():
    """True in asv's fork server (started as ``benchmark.py run_server DIR SOCKET``)."""
    return len(sys.argv) > 1 and sys.argv[1] == "run_server"


def _layer_benchmarks():
    for module in (activations, conv, layers, norm, pool, recurrent):
        for obj in vars(module).values():
            if (inspect.isclass(obj) and issubclass(obj, common.LayerBenchmark)
                    and not inspect.isabstract(obj)):
                yield obj


def _calls():
    """(label, zero-argument callable) for everything worth loading up front."""
    for name in NAMES:
        if not missing_fastnn_layers(name):
            for mode in ("train", "infer"):
                yield f"{name} {mode}", lambda name=name, mode=mode: make_runner("fastnn", name, 2, mode)()
    for cls in _layer_benchmarks():
        grids = cls.params[:-1]  # the last axis is the thread count
        combos = [()]
        for axis in grids:
            combos = [c + (v,) for c in combos for v in axis]
        for combo in combos:
            params = combo + (common.ALL_CORES,)
            yield f"{cls.__name__}{combo}", lambda cls=cls, params=params: cls()._build(params)
    for shape in common.MATMUL_SHAPES:
        for layout in ("nn", "nt", "tn"):
            yield f"matmul {shape} {layout}", lambda s=shape, lay=layout: matmul._operands(s, lay)
    for opt in optimizers.OPTIMIZERS:
        for params in optimizers.PARAM_SETS:
            yield f"{opt} {params}", lambda o=opt, p=params: optimizers._optimizer(o, p)
    for op in autograd_overhead.OPS:
        yield f"autograd {op}", lambda op=op: autograd_overhead._warm(op)


def warm_all():
    """Call everything in ``_calls`` once; return the labels that failed."""
    failed = []
    for label, call in _calls():
        try:
            call()
        except NotImplementedError:
            pass  # a layer fastnn does not have yet: its benchmarks skip themselves
        except Exception:
            failed.append(label)
            print(f"warm_kernels: {label} failed:\n{traceback.format_exc()}", file=sys.stderr)
    return failed


# fastnn picks workqueue unless NUMBA_THREADING_LAYER says otherwise
if in_fork_server() and numba.config.THREADING_LAYER in FORK_SAFE_LAYERS:
    common.set_threads(common.ALL_CORES)
    warm_all()
