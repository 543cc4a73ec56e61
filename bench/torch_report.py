"""The Markdown tables ``compare_torch.py`` prints (no measurements here)."""
import datetime
import os
import platform
import statistics
import sys

FRAMEWORKS = ("fastnn", "torch")
OP_LABELS = {"mul_add": "`(a * b + c).backward(ones)`", "mul_add_sum": "`(a * b + c).sum().backward()`"}


def log(text):
    print(text, file=sys.stderr, flush=True)


def median(results, key):
    values = [r[key] for r in results if key in r]
    return statistics.median(values) if values else None


def _fmt_rate(value):
    return "n/a" if value is None else f"{value:,.0f}"


def _fmt_us(seconds, digits=0):
    return "n/a" if seconds is None else f"{seconds * 1e6:,.{digits}f} us"


def _fmt_ratio(a, b):
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def _fmt_float(value):
    return "n/a" if value is None else f"{value:,.1f}"


def _threading_layer(raw):
    layers = {r["layer"] for results in raw.values() for r in results if "layer" in r}
    return "/".join(sorted(layers)) or "n/a"


def machine_line(start_load):
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = (f", load average {start_load:.1f} at the start and {os.getloadavg()[0]:.1f} at "
                "the end of the run (its own threads included)")
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}{load}"


def _header(available, args, have_torch, vers, start_load, raw):
    if have_torch:
        torch_name = f"PyTorch {vers['torch']}"
    else:
        torch_name = "PyTorch (not measured: --no-torch)" if args.no_torch else "PyTorch (torch not installed)"
    lines = [
        (f"fastnn {vers['fastnn']} vs {torch_name}: {args.threads} thread(s), median of "
         f"{args.rounds} alternating round(s), {datetime.date.today().isoformat()}"
         + (f"; batch sizes x{args.batch_scale:g} (--batch-scale)" if args.batch_scale != 1 else "")),
        "",
        (f"Machine: {machine_line(start_load)}; Python {vers['python']}, numba {vers['numba']}, "
         f"numpy {vers['numpy']}, fastnn's threading layer {_threading_layer(raw)}."),
        "",
    ]
    if not have_torch and not args.no_torch:
        lines += ["torch not installed: PyTorch columns are n/a (pip install torch to compare).", ""]
    return lines


def report(raw, available, args, have_torch, vers, batch_for, start_load, matmul_n, ops):
    """The Markdown tables, as a string. ``raw``: {(framework, name, mode): [worker dicts]}."""
    lines = _header(available, args, have_torch, vers, start_load, raw)

    def get(fw, name, mode, key):
        return median(raw.get((fw, name, mode), []), key)

    head = ("| workload | batch | train samples/s fastnn | PyTorch | ratio | infer samples/s fastnn "
            "| PyTorch | ratio | batch-1 latency fastnn | PyTorch | ratio |")
    lines += [head, "|" + "---|" * 11]
    for name in args.workloads:
        batch = batch_for(name, args.batch_scale)
        row = [name, str(batch)]
        for mode in ("train", "infer"):
            rates = []
            for fw in FRAMEWORKS:
                s = get(fw, name, mode, "seconds")
                rates.append(None if s is None else batch / s)
            row += [_fmt_rate(rates[0]), _fmt_rate(rates[1]), _fmt_ratio(rates[0], rates[1])]
        lat = [get(fw, name, "latency", "seconds") for fw in FRAMEWORKS]
        row += [_fmt_us(lat[0]), _fmt_us(lat[1]), _fmt_ratio(lat[0], lat[1])]
        if not available[name]:
            row[2] = row[5] = row[8] = "n/a (layers missing)"
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", ("ratio = fastnn / PyTorch: above 1 fastnn is faster in samples/s; "
                   "below 1 fastnn is faster in latency and overhead."), ""]
    if args.memory:
        lines += ["| workload | batch | train-step peak MiB fastnn | PyTorch | ratio |", "|---|---|---|---|---|"]
        for name in args.workloads:
            mib = [get(fw, name, "memory", "mib") for fw in FRAMEWORKS]
            batch = batch_for(name, args.batch_scale)
            lines.append(f"| {name} | {batch} | {_fmt_float(mib[0])} | {_fmt_float(mib[1])} "
                         f"| {_fmt_ratio(mib[0], mib[1])} |")
        lines += ["", ("Peak resident memory a training step adds above the built model, its batch "
                       "and loaded kernels (gradients and Adam's state included)."), ""]
    lines += ["| autograd overhead, float32 (16,) leaves | forward + backward fastnn | PyTorch | ratio |",
              "|---|---|---|---|"]
    for op in ops:
        us = [get(fw, op, "overhead", "seconds") for fw in FRAMEWORKS]
        lines.append(f"| {OP_LABELS[op]} | {_fmt_us(us[0], 1)} | {_fmt_us(us[1], 1)} | {_fmt_ratio(us[0], us[1])} |")
    lines += ["", "Per-operation cost of recording and back-propagating tiny operations (Python overhead).", ""]
    gf = {fw: get(fw, "matmul", "gflops", "gflops") for fw in ("fastnn", "numpy", "torch")}
    lines += [
        f"| float32 matmul {matmul_n}x{matmul_n} | GFLOP/s | ratio to numpy.matmul |",
        "|---|---|---|",
        f"| fastnn.kernels.matmul.matmul | {_fmt_float(gf['fastnn'])} | {_fmt_ratio(gf['fastnn'], gf['numpy'])} |",
        f"| numpy.matmul | {_fmt_float(gf['numpy'])} | 1.00x |",
    ]
    if have_torch:
        lines.append(f"| torch.mm | {_fmt_float(gf['torch'])} | {_fmt_ratio(gf['torch'], gf['numpy'])} |")
    return "\n".join(lines)
