"""Where cold compile time goes: CPU seconds per kernel and per kernel family.

Runs ``fastnn warmup``'s cases in a fresh Python process with an empty kernel
cache and records every Numba ``numba:compile`` event: the CPU time of the
compiling thread (``time.thread_time``, not wall time, so other load on the
machine barely counts), *exclusive* of the nested compiles of the kernels it
calls, attributed to the dispatcher compiled. Prints Markdown tables (family,
kernels, signatures, CPU s; then the costliest kernels) to quote in the README.

    python bench/compile_times.py                 # float32
    python bench/compile_times.py --float64       # float32 and float64
    python bench/compile_times.py --top 30 --json times.json
    python bench/compile_times.py --demos         # cold first epoch of each demo, warm import and first step

Not an asv benchmark (a cold compile of everything takes minutes).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# runs in the child: a listener on numba:compile, then the warmup cases
_CHILD = r"""
import json, sys, time
from numba.core import event

class Exclusive(event.Listener):
    def __init__(self):
        self.stack, self.rows = [], []
    def on_start(self, ev):
        self.stack.append([time.thread_time(), 0.0])
    def on_end(self, ev):
        start, nested = self.stack.pop()
        spent = time.thread_time() - start
        if self.stack:
            self.stack[-1][1] += spent
        d = ev.data["dispatcher"]
        f = d.py_func
        self.rows.append(dict(module=f.__module__, name=f.__qualname__, seconds=spent - nested,
                              parallel=bool(d.targetoptions.get("parallel")),
                              args=[str(a) for a in ev.data["args"]]))

listener = Exclusive()
event.register("numba:compile", listener)
cpu0, wall0 = time.process_time(), time.perf_counter()
import numpy as np
import fastnn
from fastnn._warmup import warmup
cpu_import, wall_import = time.process_time() - cpu0, time.perf_counter() - wall0
dtypes = [np.dtype(d).type for d in sys.argv[1].split(",")]
if len(sys.argv) > 2:  # only the cases whose labels hold one of these words
    from fastnn._warmup import _cases, all_kernels, run_case
    for i, (label, _) in enumerate(_cases()):
        if any(word in label for word in sys.argv[2:]):
            for d in dtypes:
                run_case(i, np.dtype(d).name)
    report = dict(kernels=sum(len(k.overloads) > 0 for k in all_kernels().values()), signatures=len(listener.rows))
else:
    report = warmup(tuple(dtypes), out=lambda *a: None)
print(json.dumps(dict(rows=listener.rows, cpu=time.process_time() - cpu0, wall=time.perf_counter() - wall0,
                      cpu_import=cpu_import, report=report)))
"""


def _env(cache, src=os.path.join(ROOT, "src")):
    """This checkout's fastnn (not an installed copy) and the kernel cache folder ``cache``."""
    return dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=os.pathsep.join(
        [src, *filter(None, [os.environ.get("PYTHONPATH")])]))


def measure(dtypes=("float32",), cases=(), src=os.path.join(ROOT, "src")):
    """Compile events of a cold warmup in a fresh process (empty cache): a dict with
    ``rows`` (one per compiled signature), ``cpu`` and ``wall`` (the whole process).
    ``cases``: only the warmup cases whose labels contain one of these words.
    ``src``: the folder holding the fastnn package to measure (this checkout's)."""
    with tempfile.TemporaryDirectory(prefix="fastnn-compile-times-") as cache:
        done = subprocess.run([sys.executable, "-c", _CHILD, ",".join(dtypes), *cases], env=_env(cache, src),
                              capture_output=True,
                              text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def family_of(module):
    prefix = "fastnn.kernels."
    return module[len(prefix):] if module.startswith(prefix) else f"({module.split('.')[0]})"


def tables(result, top=15):
    """Markdown: per family, then the ``top`` costliest kernels."""
    families, kernels = {}, {}
    for row in result["rows"]:
        key = (family_of(row["module"]), row["name"])
        k = kernels.setdefault(key, dict(signatures=0, seconds=0.0, parallel=row["parallel"]))
        k["signatures"] += 1
        k["seconds"] += row["seconds"]
    for (family, _), k in kernels.items():
        f = families.setdefault(family, dict(kernels=0, parallel=0, signatures=0, seconds=0.0))
        f["kernels"] += 1
        f["parallel"] += k["parallel"]
        f["signatures"] += k["signatures"]
        f["seconds"] += k["seconds"]
    total = sum(f["seconds"] for f in families.values())
    lines = ["| family | kernels (parallel) | signatures | CPU s | share |", "|---|---|---|---|---|"]
    for name, f in sorted(families.items(), key=lambda item: -item[1]["seconds"]):
        lines.append(f"| {name} | {f['kernels']} ({f['parallel']}) | {f['signatures']} | {f['seconds']:.1f} | "
                     f"{100 * f['seconds'] / total:.0f}% |")
    lines.append(f"| **all** | {len(kernels)} ({sum(k['parallel'] for k in kernels.values())}) | "
                 f"{len(result['rows'])} | {total:.1f} | 100% |")
    lines += ["", "| kernel | parallel | signatures | CPU s |", "|---|---|---|---|"]
    for (family, name), k in sorted(kernels.items(), key=lambda item: -item[1]["seconds"])[:top]:
        lines.append(f"| {family}.{name} | {'yes' if k['parallel'] else 'no'} | {k['signatures']} | "
                     f"{k['seconds']:.1f} |")
    lines.append("")
    lines.append(f"Process: {result['cpu']:.1f} CPU s ({result['cpu_import']:.1f} of them importing fastnn), "
                 f"{result['wall']:.1f} s wall; warmup report: {result['report']['kernels']} kernels, "
                 f"{result['report']['signatures']} signatures.")
    return "\n".join(lines)


def _run(args, cache, label, jobs=None):
    env = _env(cache)
    env.pop("FASTNN_COMPILE_JOBS", None)
    if jobs is not None:
        env["FASTNN_COMPILE_JOBS"] = str(jobs)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "fastnn", *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{label}: {done.stderr}")
    return seconds


def demos():
    """Markdown: wall seconds of a cold ``demo --epochs 1`` per model (empty cache; the
    whole process, so import + compile + one epoch): as it runs (the first step's
    kernels compiled in the CPUs' worth of processes), and in one process
    (``FASTNN_COMPILE_JOBS=1``); then warm, and ``import fastnn`` warm."""
    lines = ["| run | cold s | cold s, one process | warm s |", "|---|---|---|---|"]
    for model in ("mlp", "cnn", "lstm", "transformer", "conv1d"):
        args = ["demo", "--model", model, "--epochs", "1", "--no-progress"]
        with tempfile.TemporaryDirectory(prefix="fastnn-cold-demo-") as cache:
            try:
                cold = _run(args, cache, model)
            except RuntimeError:
                continue  # a model this build does not have
            warm = _run(args, cache, model)
        with tempfile.TemporaryDirectory(prefix="fastnn-cold-demo-") as cache:
            serial = _run(args, cache, model, jobs=1)
        lines.append(f"| demo --model {model} --epochs 1 | {cold:.1f} | {serial:.1f} | {warm:.1f} |")
    best = min(_import_seconds() for _ in range(5))
    lines.append(f"| import fastnn (best of 5) | | | {best:.2f} |")
    with tempfile.TemporaryDirectory(prefix="fastnn-first-step-") as cache:
        _first_step_seconds(cache)  # fills the cache
        best = min(_first_step_seconds(cache) for _ in range(5))
    lines.append(f"| import fastnn + first lenet training step, in the process (best of 5) | | | {best:.2f} |")
    return "\n".join(lines)


# in a child: seconds from before ``import fastnn`` to the end of the lenet workload's
# first training step (batch 64: forward, loss, backward, Adam)
_FIRST_STEP = r"""
import time
start = time.perf_counter()
import fastnn
from bench.workloads import make_runner
make_runner("fastnn", "lenet", 64, "train")()
print(time.perf_counter() - start)
"""


def _first_step_seconds(cache):
    env = _env(cache)
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], ROOT])
    done = subprocess.run([sys.executable, "-c", _FIRST_STEP], env=env, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def _import_seconds():
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import fastnn"], env=_env(os.environ.get("NUMBA_CACHE_DIR", "")),
                   check=True)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--float64", action="store_true", help="float64 kernels too")
    parser.add_argument("--top", type=int, default=15, help="costliest kernels to list")
    parser.add_argument("--json", metavar="FILE", help="also write the raw compile events")
    parser.add_argument("--demos", action="store_true", help="cold demo epochs and warm import instead")
    parser.add_argument("--cases", nargs="+", default=(), metavar="WORD",
                        help="only the warmup cases whose labels contain one of these words")
    parser.add_argument("--src", default=os.path.join(ROOT, "src"), help="folder holding the fastnn to measure")
    args = parser.parse_args(argv)
    if args.demos:
        print(demos())
        return
    result = measure(("float32", "float64") if args.float64 else ("float32",), args.cases, args.src)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f)
    print(tables(result, args.top))


if __name__ == "__main__":
    main()
