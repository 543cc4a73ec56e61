"""fastnn against PyTorch on two single operations, side by side.

* ``sdpa``: ``scaled_dot_product_attention`` forward + backward, batch 4, 4 heads,
  head size 64, causal, at sequence lengths T (1024 for the time; 512 to 4096 for
  the peak memory, which must grow linearly with T: no T x T matrix per head);
* ``layernorm``: ``LayerNorm(512)`` forward + backward on (8192, 512).

Each (framework, operation, size) runs in a fresh interpreter with the same thread
count (``NUMBA_NUM_THREADS``, ``OMP_NUM_THREADS``, ``torch.set_num_threads``),
rounds alternate the frameworks, and the medians print as Markdown. Peak memory is
what one forward + backward adds to the resident set at its peak, above the inputs
(Linux: the high-water mark is reset through /proc/self/clear_refs)::

    python bench/compare_ops.py                         # 2 threads, 3 rounds
    python bench/compare_ops.py --rounds 1 --threads 1
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SDPA_TIME_T = 1024
SDPA_MEMORY_T = (512, 1024, 2048, 4096)
LN_SHAPE = (8192, 512)


def _inputs(op, size):
    import numpy as np

    rng = np.random.default_rng(0)
    if op == "sdpa":
        shape = (4, 4, size, 64)
        return [rng.standard_normal(shape).astype(np.float32) for _ in range(3)]
    return [rng.standard_normal(LN_SHAPE).astype(np.float32)]


def _step(framework, op, size):
    """A closure running one forward + backward, inputs and module built outside it.
    Both frameworks spell the operations alike; only the leaf tensors differ."""
    if framework == "torch":
        import torch as lib

        leaves = [lib.from_numpy(a).requires_grad_() for a in _inputs(op, size)]
    else:
        import fastnn as lib

        leaves = [lib.tensor(a, requires_grad=True) for a in _inputs(op, size)]
    if op == "sdpa":
        def run():
            lib.nn.functional.scaled_dot_product_attention(*leaves, is_causal=True).sum().backward()
    else:
        norm = lib.nn.LayerNorm(LN_SHAPE[1])

        def run():
            norm(leaves[0]).sum().backward()
    return run


def worker(framework, op, size, mode, threads, min_time):
    """One measurement in this process: ``{"seconds": s}`` or ``{"mib": peak}``."""
    sys.path.insert(0, HERE)
    from timing import _status_kib, seconds_per_call

    if framework == "torch":
        import torch

        torch.set_num_threads(threads)
    else:
        import fastnn

        fastnn.set_num_threads(threads)
    if mode == "memory":
        _step(framework, op, 64)()  # kernels loaded at a small size (memory is measured for sdpa)
        run = _step(framework, op, size)
        baseline = _status_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        run()
        return {"mib": (_status_kib("VmHWM") - baseline) / 1024}
    run = _step(framework, op, size)
    for _ in range(3):
        run()
    return {"seconds": seconds_per_call(run, min_time=min_time)}


def _run(framework, op, size, mode, args):
    threads = str(args.threads)
    env = dict(os.environ, NUMBA_NUM_THREADS=threads, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads,
               OPENBLAS_NUM_THREADS=threads)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", framework, op, str(size), mode,
           "--threads", threads, "--min-time", str(args.min_time)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout, check=False)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
    print(f"{framework} {op} {size} {mode} failed: {tail}", file=sys.stderr)
    return None


def _cpu():
    fields = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    return (f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')}, "
            f"model {fields.get('model', '?')}), {os.cpu_count()} logical CPUs")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--min-time", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--worker", nargs=4, metavar=("FRAMEWORK", "OP", "SIZE", "MODE"))
    args = p.parse_args(argv)
    if args.worker:
        framework, op, size, mode = args.worker
        print(json.dumps(worker(framework, op, int(size), mode, args.threads, args.min_time)))
        return 0
    try:
        import torch  # noqa: F401
        frameworks = ("fastnn", "torch")
    except ImportError:
        frameworks = ("fastnn",)
    cases = [("sdpa", SDPA_TIME_T, "time"), ("layernorm", LN_SHAPE[0], "time")]
    cases += [("sdpa", t, "memory") for t in SDPA_MEMORY_T]
    load = os.getloadavg()[0]
    results = {}
    for r in range(args.rounds):
        order = frameworks if r % 2 == 0 else frameworks[::-1]
        for op, size, mode in cases:
            for fw in order:
                res = _run(fw, op, size, mode, args)
                if res:
                    results.setdefault((fw, op, size, mode), []).append(res)

    def med(fw, op, size, mode, key):
        values = [x[key] for x in results.get((fw, op, size, mode), [])]
        return statistics.median(values) if values else None

    print(f"{_cpu()}; {args.threads} thread(s), median of {args.rounds} alternating round(s); "
          f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end\n")
    print("| forward + backward | fastnn ms | PyTorch ms | ratio |\n|---|---|---|---|")
    for op, size, label in (("sdpa", SDPA_TIME_T, f"sdpa B4 H4 T{SDPA_TIME_T} D64 causal"),
                            ("layernorm", LN_SHAPE[0], f"LayerNorm {LN_SHAPE}")):
        a, b = med("fastnn", op, size, "time", "seconds"), med("torch", op, size, "time", "seconds")
        cells = [f"{a * 1e3:.2f}" if a else "-", f"{b * 1e3:.2f}" if b else "-", f"{a / b:.2f}x" if a and b else "-"]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("\n| peak MiB, forward + backward | fastnn | PyTorch |\n|---|---|---|")
    for op, size, mode in cases:
        if mode == "memory":
            label = f"sdpa T={size}"
            cells = [med(fw, op, size, mode, "mib") for fw in ("fastnn", "torch")]
            print(f"| {label} | " + " | ".join(f"{c:.1f}" if c is not None else "-" for c in cells) + " |")
    print("\nratio = fastnn time / PyTorch time (below 1: fastnn is faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
