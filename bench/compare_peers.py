"""fastnn against PyTorch eager, torch.compile, JAX (jit) and ONNX Runtime on the
reference workloads (workloads.py, WORKLOADS.md).

    python bench/compare_peers.py                      # 2 threads, 3 rounds, all workloads
    python bench/compare_peers.py --quick --rounds 1 --workloads mlp,conv1d
    python bench/compare_peers.py --check --systems fastnn,torch,onnx

Measures a training step (forward + CrossEntropyLoss + backward + Adam, lr 1e-3)
and inference (eval-mode forward) in samples/s at each workload's batch, and the
latency of one single-sample eval forward. Every (system, workload, measurement)
runs in a fresh process (``compare_peers.py --worker ...``) with NUMBA_NUM_THREADS,
OMP_NUM_THREADS, ``torch.set_num_threads``, ONNX Runtime's intra-op threads and
XLA_FLAGS all set to ``--threads``; compiling (Numba, torch.compile, XLA, the ONNX
export) happens in the warm-up, outside the timing. The systems alternate order
from round to round; the table shows the median over rounds and a ``fastnn / best
peer`` column. fastnn and PyTorch eager run through ``compare_torch.worker``; the
JAX models are in ``peers_jax.py``, the ONNX Runtime runner in ``peers_onnx.py``.
ONNX Runtime has no training: its train cell stays empty. Peers that are not
installed (``pip install fastnn[peers]``) are skipped.

On a machine with few cores any other running process ruins the figures (PyTorch's
most): the script warns when the load average says the machine is busy.
"""
import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys

try:
    from . import compare_torch, torch_report, workloads
except ImportError:  # run as a script: this folder's modules, imported top-level
    import compare_torch
    import torch_report
    import workloads

SYSTEMS = ("fastnn", "torch", "compile", "jax", "onnx")
LABELS = {"fastnn": "fastnn", "torch": "PyTorch", "compile": "torch.compile", "jax": "JAX",
          "onnx": "ONNX Runtime"}
# the modules each system needs; torch.compile also needs a C++ compiler
REQUIRES = {"fastnn": (), "torch": ("torch",), "compile": ("torch",), "jax": ("jax",),
            "onnx": ("torch", "onnx", "onnxruntime")}
DISTRIBUTIONS = {"torch": "torch", "jax": "jax", "onnx": "onnxruntime"}
MODES = compare_torch.MODES  # train, infer, latency
ROW_LABELS = {"train": "train samples/s", "infer": "infer samples/s", "latency": "batch-1 latency"}
CHECK_BATCH = 8
CHECK_TOLERANCE = 1e-3  # max |logit difference| from the same weights


def log(text):
    print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ which systems
def applies(system, mode):
    """Whether ``system`` has measurement ``mode`` (ONNX Runtime does not train)."""
    return not (system == "onnx" and mode == "train")


def cxx_compiler(which=shutil.which):
    """The C++ compiler torch.compile's inductor would find, or None."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and which(name):
            return which(name)
    return None


def installed(systems, find_spec=importlib.util.find_spec, which=shutil.which):
    """``(present, skipped)``: the systems that can run, in order, and {system: why not}."""
    present, skipped = [], {}
    for system in systems:
        missing = [m for m in REQUIRES[system] if find_spec(m) is None]
        if missing:
            skipped[system] = f"{', '.join(missing)} not installed"
        elif system == "compile" and cxx_compiler(which) is None:
            skipped[system] = "no C++ compiler (g++, c++, clang++ or $CXX) for inductor"
        else:
            present.append(system)
    return present, skipped


def busy_warning(load, cpus, threads):
    """A warning when the 1-minute ``load`` average leaves fewer than ``threads`` idle CPUs
    (give or take half a CPU), else None."""
    if load <= max(cpus - threads, 0) + 0.5:
        return None
    return (f"WARNING: load average {load:.1f} on {cpus} CPUs: other processes are running, and "
            f"{threads} thread(s) per measurement will compete with them; the figures (PyTorch's "
            "most) are unreliable. Rerun on an idle machine.")


# ------------------------------------------------------------------ worker side
def compiled_runner(name, batch, mode, seed=0):
    """One torch.compile'd (default mode) training step or eval-mode inference; the whole
    ``workloads.train_step`` is compiled for "train", the eval model for "infer"."""
    import torch
    model = workloads.build_torch(name, seed)
    x, y = (torch.from_numpy(a) for a in workloads.make_batch(name, batch, seed))
    if mode == "train":
        loss_fn, opt = torch.nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), lr=workloads.LR)
        step = torch.compile(workloads.train_step)

        def run():
            return step(model, loss_fn, opt, x, y)
    else:
        model.eval()
        compiled = torch.compile(model)

        def run():
            with torch.inference_mode():
                return compiled(x)
    run.model = model
    return run


def peer_runner(system, name, batch, mode, threads):
    """A zero-argument callable: one step ("train") or inference ("infer") of a peer."""
    if system == "compile":
        import torch
        torch.set_num_threads(threads)
        return compiled_runner(name, batch, mode)
    if system == "jax":
        import peers_jax
        return peers_jax.make_runner(name, batch, mode)
    if system == "onnx" and mode == "infer":
        import torch
        torch.set_num_threads(threads)  # the export
        import peers_onnx
        return peers_onnx.onnx_runner(name, batch, threads)
    raise ValueError(f"no {mode} runner for system {system!r}")


def check(system, name, threads):
    """Compare a system's eval-mode logits with PyTorch's from the same weights (JAX without
PyTorch: the output's shape)."""
    import numpy as np
    if system == "fastnn":
        if importlib.util.find_spec("torch") is None:
            return {"skip": "torch not installed: no reference logits"}
        return compare_torch.worker("both", name, "check", threads, 0.0)
    if system == "jax" and importlib.util.find_spec("torch") is None:
        out = np.asarray(peer_runner("jax", name, CHECK_BATCH, "infer", threads)())
        return {"shape": list(out.shape), "finite": bool(np.isfinite(out).all())}
    import torch
    if system == "jax":
        import peers_jax
        model = workloads.build_torch(name).eval()
        params = peers_jax.params_from_torch(name, {k: v.numpy() for k, v in model.state_dict().items()})
        run = peers_jax.make_runner(name, CHECK_BATCH, "infer", params=params)
        run.model = model
    else:
        run = peer_runner(system, name, CHECK_BATCH, "infer", threads)
    x = torch.from_numpy(workloads.make_batch(name, CHECK_BATCH)[0])
    with torch.inference_mode():
        expected = run.model(x).numpy()
    got = np.asarray(run())
    return {"max_abs_diff": float(np.abs(got - expected).max())}


def worker(system, name, mode, args):
    """Run one measurement (or ``check``) in this fresh process; a JSON-able dict."""
    if mode == "check":
        return check(system, name, args.threads)
    if system in ("fastnn", "torch"):
        return compare_torch.worker(system, name, mode, args.threads, args.min_time, args.batch_scale)
    import timing
    batch = 1 if mode == "latency" else compare_torch.batch_for(name, args.batch_scale)
    run = peer_runner(system, name, batch, "train" if mode == "train" else "infer", args.threads)
    timing.seconds_per_call(run, args.min_time / 2, min_calls=3)  # warm-up: compile, first touch
    return {"seconds": timing.seconds_per_call(run, args.min_time), "batch": batch}


# ------------------------------------------------------------------ driver side
def worker_env(threads, environ=os.environ):
    """The environment of a worker: every thread count set to ``threads``."""
    n = str(threads)
    xla = f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={n}"
    return dict(environ, NUMBA_NUM_THREADS=n, OMP_NUM_THREADS=n, MKL_NUM_THREADS=n,
                OPENBLAS_NUM_THREADS=n, JAX_PLATFORMS="cpu",
                XLA_FLAGS=" ".join(filter(None, (environ.get("XLA_FLAGS"), xla))))


def run_worker(system, name, mode, args):
    """``worker`` in a fresh interpreter; its dict, or {"error"/"skip": text}."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", system, name, mode,
           "--threads", str(args.threads), "--min-time", str(args.min_time),
           "--batch-scale", str(args.batch_scale)]
    try:
        proc = subprocess.run(cmd, env=worker_env(args.threads), capture_output=True, text=True,
                              timeout=args.timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"{system} {name} {mode}: no result within {args.timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": f"{system} {name} {mode} exited {proc.returncode}: " + " | ".join(tail)}


def check_line(system, name, res):
    """``(ok, text)`` for one ``check`` result."""
    if "max_abs_diff" in res:
        diff = res["max_abs_diff"]
        ok = diff <= CHECK_TOLERANCE
        return ok, f"max |logit - PyTorch's| = {diff:.1e}" + ("" if ok else " MISMATCH")
    if "shape" in res:
        ok = res["shape"] == [CHECK_BATCH, workloads.CLASSES] and res["finite"]
        return ok, f"output shape {tuple(res['shape'])}, " + ("finite" if res["finite"] else "NOT finite")
    return "skip" in res, res.get("skip") or res.get("error", "no result")


def run_checks(args, systems):
    """Check every system on every workload; the report's lines and whether all passed."""
    lines, passed = [], True
    for name in args.workloads:
        for system in systems:
            if system == "torch":
                continue  # the reference
            ok, text = check_line(system, name, run_worker(system, name, "check", args))
            passed &= ok
            lines.append(f"- {name}, {LABELS[system]}: {text}")
            log(lines[-1])
    return lines, passed


def collect(args, systems):
    """{(system, workload, mode): [worker dicts]} over ``args.rounds`` alternating rounds,
    and {workload: whether fastnn has its layers}."""
    raw, available = {}, {}
    for name in args.workloads:
        available[name] = not workloads.missing_fastnn_layers(name)
        if "fastnn" in systems and available[name]:  # fill the kernel cache outside any timing
            log(f"{name}: warming fastnn's kernel cache")
            quick = argparse.Namespace(**{**vars(args), "min_time": 0.05})
            for mode in ("train", "latency"):
                run_worker("fastnn", name, mode, quick)
    for rnd in range(args.rounds):
        order = systems if rnd % 2 == 0 else systems[::-1]
        log(f"round {rnd + 1}/{args.rounds}: {', '.join(order)}")
        for name in args.workloads:
            for mode in MODES:
                for system in order:
                    if not applies(system, mode) or (system == "fastnn" and not available[name]):
                        continue
                    res = run_worker(system, name, mode, args)
                    if "error" in res or "skip" in res:
                        log("  " + (res.get("error") or res["skip"]))
                    raw.setdefault((system, name, mode), []).append(res)
    return raw, available


# ------------------------------------------------------------------ report
def speed(raw, system, name, mode):
    """Median samples/s ("train", "infer") or seconds ("latency") over rounds, or None."""
    results = [r for r in raw.get((system, name, mode), []) if "seconds" in r]
    if not results:
        return None
    if mode == "latency":
        return statistics.median(r["seconds"] for r in results)
    return statistics.median(r["batch"] / r["seconds"] for r in results)


def best_peer(values, mode):
    """``(system, value)`` of the fastest peer in {system: value or None}, or None."""
    measured = {s: v for s, v in values.items() if s != "fastnn" and v is not None}
    if not measured:
        return None
    pick = min if mode == "latency" else max
    return pick(measured.items(), key=lambda item: item[1])


def ratio_cell(values, mode):
    """fastnn's speed over the best peer's (above 1: fastnn is faster), naming that peer."""
    best = best_peer(values, mode)
    mine = values.get("fastnn")
    if best is None or mine is None or not mine or not best[1]:
        return "n/a"
    ratio = best[1] / mine if mode == "latency" else mine / best[1]
    return f"{ratio:.2f}x ({LABELS[best[0]]})"


def value_cell(raw, system, name, mode, available):
    if not applies(system, mode):
        return ""
    if system == "fastnn" and not available.get(name, True):
        return "n/a (layers missing)"
    value = speed(raw, system, name, mode)
    if value is not None:
        return f"{value * 1e6:,.0f} us" if mode == "latency" else f"{value:,.0f}"
    results = raw.get((system, name, mode), [])
    return "skipped" if results and all("skip" in r for r in results) else ("error" if results else "n/a")


def table(raw, available, systems, names, batch_for):
    """The Markdown table: a row per workload and measurement, a column per system."""
    lines = ["| workload | measurement | batch | " + " | ".join(LABELS[s] for s in systems)
             + " | fastnn / best peer |", "|---" * (len(systems) + 4) + "|"]
    for name in names:
        for mode in MODES:
            values = {s: speed(raw, s, name, mode) for s in systems}
            cells = [value_cell(raw, s, name, mode, available) for s in systems]
            batch = 1 if mode == "latency" else batch_for(name)
            lines.append(f"| {name} | {ROW_LABELS[mode]} | {batch} | " + " | ".join(cells)
                         + f" | {ratio_cell(values, mode)} |")
    return lines


def versions(systems):
    out = compare_torch.versions(False)
    for system in systems:
        dist = DISTRIBUTIONS.get(system)
        if dist:
            try:
                out[LABELS[system]] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                out[LABELS[system]] = "?"
    return out


def report(raw, available, args, systems, skipped, vers, start_load, warning):
    lines = [f"fastnn vs peers: {args.threads} thread(s), median of {args.rounds} alternating round(s), "
             f"{datetime.date.today().isoformat()}", "",
             f"Machine: {torch_report.machine_line(start_load)}.", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()) + ".", ""]
    if warning:
        lines += [warning, ""]
    if skipped:
        lines += ["Skipped: " + "; ".join(f"{LABELS[s]} ({why})" for s, why in skipped.items()) + ".", ""]
    lines += table(raw, available, systems, args.workloads,
                   lambda name: compare_torch.batch_for(name, args.batch_scale))
    lines += ["", ("fastnn / best peer: fastnn's samples/s over the fastest peer's (for latency, the "
                   "peer's latency over fastnn's): above 1 fastnn is faster. An empty cell: the system "
                   "has no such measurement (ONNX Runtime does not train).")]
    return "\n".join(lines)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="threads for every system (default 2)")
    p.add_argument("--workloads", default=",".join(workloads.NAMES),
                   help=f"comma-separated subset of {','.join(workloads.NAMES)}")
    p.add_argument("--systems", default=",".join(SYSTEMS),
                   help=f"comma-separated subset of {','.join(SYSTEMS)}")
    p.add_argument("--rounds", type=int, help="alternating rounds (default 3, 1 with --quick)")
    p.add_argument("--min-time", type=float,
                   help="seconds of timed calls per measurement (default 1, 0.3 with --quick)")
    p.add_argument("--quick", action="store_true", help="1 round, 0.3 s per measurement")
    p.add_argument("--check", action="store_true",
                   help="first check each system's eval logits against PyTorch's from the same weights")
    p.add_argument("--batch-scale", type=float, default=1.0, help="multiply every workload's batch size")
    p.add_argument("--timeout", type=float, default=900, help="seconds before a worker is killed")
    p.add_argument("--worker", nargs=3, metavar=("SYSTEM", "WORKLOAD", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.min_time is None:
        args.min_time = 0.3 if args.quick else 1.0
    if args.threads < 1 or args.rounds < 1 or not args.batch_scale > 0 or not args.min_time > 0:
        p.error("--threads and --rounds must be at least 1, --batch-scale and --min-time positive")
    for option, known in (("workloads", workloads.NAMES), ("systems", SYSTEMS)):
        chosen = [n.strip() for n in getattr(args, option).split(",") if n.strip()]
        bad = [n for n in chosen if n not in known]
        if bad or not chosen:
            p.error(f"--{option}: unknown or no name(s) {', '.join(bad)}; expected {', '.join(known)}")
        setattr(args, option, chosen)
    return args


def main(argv=None):
    start_load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    args = parse_args(argv)
    if args.worker:
        system, name, mode = args.worker
        try:
            result = worker(system, name, mode, args)
        except NotImplementedError as exc:
            result = {"skip": str(exc)}
        print(json.dumps(result), flush=True)
        return 0
    warning = busy_warning(start_load, os.cpu_count() or 1, args.threads)
    if warning:
        log(warning)
    systems, skipped = installed(args.systems)
    for system, why in skipped.items():
        log(f"skipping {LABELS[system]}: {why}")
    check_lines, passed = run_checks(args, systems) if args.check else ([], True)
    raw, available = collect(args, systems)
    text = report(raw, available, args, systems, skipped, versions(systems), start_load, warning)
    if check_lines:
        text += "\n\nSame-weights check (eval-mode logits, batch 8):\n" + "\n".join(check_lines)
    print(text)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
