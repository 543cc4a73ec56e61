"""Timers the asv suite and ``compare_torch.py`` share: seconds per call, and the
peak memory of a training step (``train_step_peak_mib``)."""
import os
import statistics
import threading
import time

try:
    from .workloads import make_runner
except ImportError:  # imported as a top-level module by compare_torch.py
    from workloads import make_runner


def seconds_per_call(fn, min_time=0.3, min_calls=2):
    """Median seconds per call of ``fn`` over blocks of calls lasting ``min_time`` in all.

    The caller has warmed ``fn`` up. Slow calls get ``min_calls`` single-call
    blocks; fast ones blocks of many calls, so timer overhead stays negligible.
    """
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    blocks = [first]
    calls_per_block = max(1, int(min_time / 5 / max(first, 1e-9)))
    deadline = time.perf_counter() + min_time
    while len(blocks) < min_calls or time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(calls_per_block):
            fn()
        blocks.append((time.perf_counter() - start) / calls_per_block)
    return statistics.median(blocks)


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def train_step_peak_mib(framework, name, batch, steps=3):
    """MiB a training step at ``batch`` adds to the process's resident set, at its peak.

    First loads every kernel the step uses, with one step of another model at the
    same batch size run in a thread of its own (a small batch may take other code
    paths; the thread keeps per-thread scratch, such as fastnn's convolution
    workspace, away from the measured thread, which must grow its own). Then builds
    the model and batch, takes the resident set as the baseline, and runs ``steps``
    steps: the peak includes gradients and Adam's state (created by the first
    step), saved activations, scratch and temporaries. Linux only: the high-water
    mark is reset through /proc/self/clear_refs; elsewhere NotImplementedError.
    """
    if not os.path.exists("/proc/self/clear_refs"):
        raise NotImplementedError("train_step_peak_mib needs Linux's /proc/self/clear_refs")
    failures = []

    def load_kernels():
        try:
            make_runner(framework, name, batch, "train", seed=1)()
        except BaseException as exc:  # re-raised in the measuring thread
            failures.append(exc)

    loader = threading.Thread(target=load_kernels)
    loader.start()
    loader.join()
    if failures:
        raise failures[0]
    run = make_runner(framework, name, batch, "train")
    baseline = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident set
    for _ in range(steps):
        run()
    return (_status_kib("VmHWM") - baseline) / 1024
