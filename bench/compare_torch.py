"""fastnn against PyTorch's CPU build on the reference workloads (workloads.py, WORKLOADS.md).

    python bench/compare_torch.py                  # 2 threads, 3 rounds, all workloads
    python bench/compare_torch.py --quick          # 1 round, shorter timings
    python bench/compare_torch.py --threads 1 --workloads mlp,lstm --rounds 5

Every measurement runs in a fresh process (``python compare_torch.py --worker
...``) that imports one framework only, with NUMBA_NUM_THREADS, OMP_NUM_THREADS
and ``torch.set_num_threads`` all set to the same count. A worker builds the model
(``workloads.py``, shared with the asv suite), warms up (compile, first-touch
allocations) outside the timing, then reports the median seconds per call over
blocks of calls. The two frameworks alternate within each round and the table
shows the median over rounds: samples/s for a training step (forward +
CrossEntropyLoss + backward + Adam) and for inference (eval-mode forward) at the
listed batch, the latency of one single-sample forward, the peak memory a
training step adds, the per-operation autograd overhead (forward and backward of
``a * b + c`` on 16-element tensors, in microseconds) and matmul GFLOP/s against
``numpy.matmul``. The tables are formatted by ``torch_report.py``.

PyTorch is optional: without it the fastnn columns are printed alone.
"""
import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MODES = ("train", "infer", "latency")
MATMUL_N = 1024
_START_LOAD = 0.0  # the 1-minute load average when the comparison started


# ------------------------------------------------------------------ worker side
def _import(name):
    """``workloads``, ``timing`` or ``torch_report``, this folder's modules, imported top-level."""
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    return importlib.import_module(name)


def _workloads():
    return _import("workloads")


def _timing():
    return _import("timing")


def log(text):
    print(text, file=sys.stderr, flush=True)


def _set_threads(framework, threads):
    if framework in ("torch", "both"):
        import torch
        torch.set_num_threads(threads)
    elif framework == "fastnn":
        _workloads().import_fastnn().set_num_threads(threads)


def _warm_up(fn, min_time):
    import time
    deadline = time.perf_counter() + min_time
    for calls in range(1000000):
        fn()
        if calls >= 2 and time.perf_counter() >= deadline:
            break


def _matmul_call(framework, n):
    """(call, out, expected): ``call()`` writes a @ b into ``out``; ``expected`` in float64."""
    import numpy as np
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    if framework == "fastnn":
        _workloads().import_fastnn()
        from fastnn.kernels.matmul import matmul
        return (lambda: matmul(out, a, b)), out, expected
    if framework == "numpy":
        return (lambda: np.matmul(a, b, out=out)), out, expected
    import torch
    ta, tb, tout = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(out)
    return (lambda: torch.mm(ta, tb, out=tout)), out, expected


def _max_logit_difference(name, w):
    """Max |fastnn - PyTorch| of eval-mode logits, PyTorch's weights loaded into fastnn."""
    import numpy as np
    import torch
    w.require_fastnn(name)
    reference, model = w.build_torch(name), w.build_fastnn(name)
    model.load_state_dict({k: v.numpy() for k, v in reference.state_dict().items()})
    reference.eval()
    model.eval()
    x, _ = w.make_batch(name, 8)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    with w.import_fastnn().no_grad():
        got = model(x).detach().numpy()
    return float(np.abs(got - expected).max())


def batch_for(name, scale):
    """Workload ``name``'s batch size times ``scale`` (at least 1)."""
    return max(1, round(_workloads().BATCH[name] * scale))


def worker(framework, name, mode, threads, min_time, batch_scale=1.0):
    """Run one measurement in this (fresh) process; return a JSON-able dict."""
    w = _workloads()
    if mode == "check":
        return {"max_abs_diff": _max_logit_difference(name, w)}
    _set_threads(framework, threads)  # numpy's BLAS: OPENBLAS_NUM_THREADS, set by the driver
    if name == "matmul":
        call, out, expected = _matmul_call(framework, MATMUL_N)
        _warm_up(call, min_time / 2)
        seconds = _timing().seconds_per_call(call, min_time)
        error = float(abs(out - expected).max() / abs(expected).max())
        if error > 1e-4:  # a fast wrong answer is no answer
            return {"error": f"{framework} matmul: relative error {error:.1e} against float64"}
        return {"gflops": 2.0 * MATMUL_N ** 3 / seconds / 1e9}
    if mode == "overhead":
        call = w.make_op_runner(framework, name)
        _warm_up(call, min_time / 2)
        return {"seconds": _timing().seconds_per_call(call, min_time)}
    if framework == "fastnn":
        w.require_fastnn(name)
    if mode == "memory":
        return {"mib": _timing().train_step_peak_mib(framework, name, batch_for(name, batch_scale))}
    batch = 1 if mode == "latency" else batch_for(name, batch_scale)
    run = w.make_runner(framework, name, batch, "train" if mode == "train" else "infer")
    _warm_up(run, min_time / 2)
    result = {"seconds": _timing().seconds_per_call(run, min_time), "batch": batch}
    if framework == "fastnn":
        import numba
        result["layer"] = numba.threading_layer()
    return result


# ------------------------------------------------------------------ driver side
def run_worker(framework, name, mode, args):
    """Run ``worker`` in a fresh interpreter; its dict, or {"error"/"skip": text}."""
    threads = str(args.threads)
    env = dict(os.environ, NUMBA_NUM_THREADS=threads, OMP_NUM_THREADS=threads,
               MKL_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", framework, name, mode,
           "--threads", threads, "--min-time", str(args.min_time), "--batch-scale", str(args.batch_scale)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"{framework} {name} {mode}: no result within {args.timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return {"error": f"{framework} {name} {mode} exited {proc.returncode}: " + " | ".join(tail)}


def collect(args, have_torch):
    w = _workloads()
    frameworks = ["fastnn"] + (["torch"] if have_torch else [])
    raw = {}  # (framework, workload, mode) -> [worker dicts]
    available = {}
    for name in args.workloads:
        missing = w.missing_fastnn_layers(name)
        available[name] = not missing
        if missing:
            log(f"{name}: fastnn has no {', '.join(missing)} yet: n/a")
        else:  # compile (or load) the kernels once, outside any measurement
            log(f"{name}: warming fastnn's kernel cache")
            for mode in ("train", "latency"):
                run_worker("fastnn", name, mode, argparse.Namespace(**{**vars(args), "min_time": 0.05}))
    for rnd in range(args.rounds):
        order = frameworks if rnd % 2 == 0 else frameworks[::-1]
        log(f"round {rnd + 1}/{args.rounds}: {' then '.join(order)}")
        for name in args.workloads:
            for mode in MODES:
                for fw in order:
                    if fw == "fastnn" and not available[name]:
                        continue
                    res = run_worker(fw, name, mode, args)
                    if "error" in res:
                        log("  " + res["error"])
                    raw.setdefault((fw, name, mode), []).append(res)
        for op in w.OPS:
            for fw in order:
                res = run_worker(fw, op, "overhead", args)
                if "error" in res:
                    log("  " + res["error"])
                raw.setdefault((fw, op, "overhead"), []).append(res)
        matmul_fws = ["fastnn", "numpy"] + (["torch"] if have_torch else [])
        for fw in (matmul_fws if rnd % 2 == 0 else matmul_fws[::-1]):
            res = run_worker(fw, "matmul", "gflops", args)
            if "error" in res:
                log("  " + res["error"])
            raw.setdefault((fw, "matmul", "gflops"), []).append(res)
    if args.memory:
        for name in args.workloads:
            for fw in frameworks:
                if fw == "fastnn" and not available[name]:
                    continue
                raw[(fw, name, "memory")] = [run_worker(fw, name, "memory", args)]
    return raw, available


def versions(have_torch):
    out = {"python": platform.python_version()}
    for mod in ("fastnn", "numba", "numpy") + (("torch",) if have_torch else ()):
        code = f"import {mod}; print({mod}.__version__)"
        if mod == "fastnn":
            code = f"import sys; sys.path.insert(0, {HERE!r}); import workloads; print(workloads.import_fastnn().__version__)"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        out[mod] = proc.stdout.strip() or "?"
    try:  # the checkout the numbers belong to, when run from one
        proc = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=HERE,
                              capture_output=True, text=True, check=False)
        if proc.returncode == 0 and proc.stdout.strip():
            out["fastnn"] += f" ({proc.stdout.strip()})"
    except OSError:
        pass
    return out


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="threads for both frameworks (default 2)")
    names = _workloads().NAMES
    p.add_argument("--workloads", default=",".join(names),
                   help=f"comma-separated subset of {','.join(names)}")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--min-time", type=float, default=1.0,
                   help="seconds of timed calls per measurement (default 1.0)")
    p.add_argument("--quick", action="store_true", help="1 round, 0.3 s per measurement")
    p.add_argument("--no-memory", dest="memory", action="store_false",
                   help="skip the training-step peak memory table")
    p.add_argument("--no-torch", action="store_true", help="measure fastnn alone")
    p.add_argument("--check", action="store_true",
                   help="first check that both frameworks compute the same logits from the same weights")
    p.add_argument("--batch-scale", type=float, default=1.0,
                   help="multiply every workload's batch size (e.g. 0.5 or 2, to check sizes near the "
                        "reference ones; batch-1 latency stays batch 1)")
    p.add_argument("--timeout", type=float, default=600, help="seconds before a worker is killed")
    p.add_argument("--worker", nargs=3, metavar=("FRAMEWORK", "WORKLOAD", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.min_time = 1, 0.3
    if args.threads < 1 or args.rounds < 1:
        p.error("--threads and --rounds must be at least 1")
    if not args.batch_scale > 0:
        p.error("--batch-scale must be positive")
    args.workloads = [n.strip() for n in args.workloads.split(",") if n.strip()]
    bad = [n for n in args.workloads if n not in names]
    if bad:
        p.error(f"unknown workload(s) {', '.join(bad)}; expected {', '.join(names)}")
    return args


def main(argv=None):
    global _START_LOAD
    _START_LOAD = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    args = parse_args(argv)
    if args.worker:
        framework, name, mode = args.worker
        try:
            result = worker(framework, name, mode, args.threads, args.min_time, args.batch_scale)
        except NotImplementedError as exc:
            result = {"skip": str(exc)}
        print(json.dumps(result), flush=True)
        return 0
    have_torch = not args.no_torch and importlib.util.find_spec("torch") is not None
    if not have_torch and not args.no_torch:
        log("torch not installed: measuring fastnn alone")
    if args.check and have_torch:
        for name in args.workloads:
            res = run_worker("both", name, "check", args)
            diff = res.get("max_abs_diff")
            log(f"{name}: same weights, max |logit difference| = "
                + (f"{diff:.1e}" if diff is not None else res.get("skip") or res.get("error")))
    raw, available = collect(args, have_torch)
    print(_import("torch_report").report(raw, available, args, have_torch, versions(have_torch), batch_for,
                                         _START_LOAD, MATMUL_N, _workloads().OPS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
