"""The four reference workloads fastnn's speed is judged on, in fastnn and in PyTorch.

The one place both the asv suite and ``compare_torch.py`` take their models
from. Each model is written once, against a namespace of layer classes, and
built from ``fastnn.nn`` or from ``torch.nn`` (plus ``Residual`` and
``LastStep`` shims), so the two frameworks run the same architecture with the
same ``state_dict`` keys.

    runner = make_runner("fastnn", "lenet", batch=64, mode="train")
    runner()          # one training step: forward + CrossEntropyLoss + backward + Adam

A fastnn workload whose layers do not exist yet raises ``NotImplementedError``
(asv reports it as skipped; the comparison prints n/a). PyTorch is imported only
by the ``torch`` functions and is never a dependency of fastnn.
"""
import os
import statistics
import sys
import threading
import time
import types

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def import_fastnn():
    """``fastnn``, the installed one, else the one in this checkout's ``src/``."""
    try:
        import fastnn
        if getattr(fastnn, "__file__", None) is None:
            # a namespace package: the kernel-cache folders an uninstall leaves behind
            raise ImportError("fastnn is not installed")
    except ImportError:
        sys.modules.pop("fastnn", None)
        sys.path.insert(0, os.path.join(ROOT, "src"))
        import fastnn
    return fastnn


NAMES = ("mlp", "lenet", "resnet", "lstm")
# the batch size each workload is defined with, and a large one for throughput
BATCH = {"mlp": 128, "lenet": 64, "resnet": 32, "lstm": 64}
LARGE_BATCH = {"mlp": 1024, "lenet": 512, "resnet": 128, "lstm": 512}
INPUT_SHAPE = {"mlp": (784,), "lenet": (1, 28, 28), "resnet": (3, 32, 32), "lstm": (32, 64)}
CLASSES = 10
LR = 1e-3
# layers each workload needs, by their fastnn.nn / torch.nn names
LAYERS = {
    "mlp": ("Sequential", "Linear", "ReLU"),
    "lenet": ("Sequential", "Linear", "ReLU", "Conv2d", "MaxPool2d", "Flatten"),
    "resnet": ("Sequential", "Residual", "Linear", "ReLU", "Conv2d", "BatchNorm2d",
               "MaxPool2d", "AdaptiveAvgPool2d", "Flatten"),
    "lstm": ("Sequential", "LSTM", "LastStep", "Linear"),
}


def batch_sizes(name):
    """Batch sizes every workload is measured at: 1, the listed one, a large one."""
    return (1, BATCH[name], LARGE_BATCH[name])


def make_batch(name, batch, seed=0):
    """Random normal float32 inputs (batch, *INPUT_SHAPE) and int64 targets (batch,)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch,) + INPUT_SHAPE[name], dtype=np.float32)
    y = rng.integers(0, CLASSES, size=batch, dtype=np.int64)
    return x, y


# ------------------------------------------------------------------ models
def _block(nn, c):
    # ReLU(x + BN(Conv3x3(ReLU(BN(Conv3x3(x))))))
    return [
        nn.Residual(nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
        )),
        nn.ReLU(),
    ]


def build(nn, name):
    """The workload ``name`` built from the layer classes in namespace ``nn``."""
    if name == "mlp":
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                             nn.Linear(128, 10))
    if name == "lenet":
        return nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
        )
    if name == "resnet":
        return nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            *_block(nn, 32),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
            *_block(nn, 64),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
        )
    if name == "lstm":
        return nn.Sequential(nn.LSTM(64, 128, batch_first=True), nn.LastStep(batch_first=True),
                             nn.Linear(128, 10))
    raise ValueError(f"unknown workload {name!r}; expected one of {NAMES}")


def missing_fastnn_layers(name):
    """The layers ``name`` needs that ``fastnn.nn`` does not have (yet)."""
    nn = import_fastnn().nn
    return [layer for layer in LAYERS[name] if not hasattr(nn, layer)]


def require_fastnn(name):
    """Raise ``NotImplementedError`` unless fastnn has every layer ``name`` needs."""
    if name not in LAYERS:
        raise ValueError(f"unknown workload {name!r}; expected one of {NAMES}")
    missing = missing_fastnn_layers(name)
    if missing:
        raise NotImplementedError(f"workload {name}: fastnn.nn has no {', '.join(missing)} yet")


def build_fastnn(name, seed=0):
    """The fastnn model of workload ``name`` (float32, training mode)."""
    require_fastnn(name)
    fastnn = import_fastnn()
    fastnn.manual_seed(seed)
    return build(fastnn.nn, name)


def torch_nn():
    """``torch.nn`` plus the two containers fastnn has and PyTorch spells differently."""
    import torch

    class Residual(torch.nn.Module):
        def __init__(self, block):
            super().__init__()
            self.block = block

        def forward(self, x):
            return self.block(x) + x

    class LastStep(torch.nn.Module):
        def __init__(self, batch_first=False):
            super().__init__()
            self.batch_first = batch_first

        def forward(self, x):
            output = x[0] if isinstance(x, tuple) else x  # LSTM returns (output, (h, c))
            return output[:, -1] if self.batch_first else output[-1]

    ns = types.SimpleNamespace(**{k: getattr(torch.nn, k) for k in dir(torch.nn) if k[:1].isupper()})
    ns.Residual, ns.LastStep = Residual, LastStep
    return ns


def build_torch(name, seed=0):
    """The PyTorch model of workload ``name`` (float32, training mode)."""
    import torch
    torch.manual_seed(seed)
    return build(torch_nn(), name)


# ------------------------------------------------------------------ steps
def fastnn_train_step(model, loss_fn, opt, x, y):
    """One fastnn training step; returns the loss (a float)."""
    opt.zero_grad()
    loss = loss_fn(model(x), y)
    model.backward(loss_fn.backward())
    opt.step()
    return loss


def fastnn_infer(model, x):
    """One fastnn forward pass (the model must be in eval mode)."""
    return model(x)


def torch_train_step(model, loss_fn, opt, x, y):
    """One PyTorch training step; returns the loss (a 0-d tensor)."""
    opt.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    return loss


def torch_infer(model, x):
    """One PyTorch forward pass under ``inference_mode`` (model in eval mode)."""
    import torch
    with torch.inference_mode():
        return model(x)


def make_runner(framework, name, batch, mode, seed=0):
    """A zero-argument callable running one training step or one inference.

    Args:
        framework: "fastnn" or "torch".
        name: one of ``NAMES``.
        batch: batch size.
        mode: "train" (forward + CrossEntropyLoss + backward + Adam step) or
            "infer" (forward in eval mode).

    The callable keeps the model, optimizer and batch alive; ``runner.model`` is
    the model. Nothing is compiled or run here: call it once to warm up.
    """
    if mode not in ("train", "infer"):
        raise ValueError(f"mode must be 'train' or 'infer', got {mode!r}")
    x, y = make_batch(name, batch, seed)
    if framework == "fastnn":
        fastnn = import_fastnn()
        model = build_fastnn(name, seed)
        if mode == "train":
            # nobody reads d loss / d data (PyTorch's input has requires_grad=False;
            # fastnn.fit does the same)
            model.needs_input_grad = False
            loss_fn = fastnn.nn.CrossEntropyLoss()
            opt = fastnn.optim.Adam(model.parameters(), lr=LR)

            def run():
                return fastnn_train_step(model, loss_fn, opt, x, y)
        else:
            model.eval()

            def run():
                return fastnn_infer(model, x)
    elif framework == "torch":
        import torch
        model = build_torch(name, seed)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        if mode == "train":
            loss_fn = torch.nn.CrossEntropyLoss()
            opt = torch.optim.Adam(model.parameters(), lr=LR)

            def run():
                return torch_train_step(model, loss_fn, opt, xt, yt)
        else:
            model.eval()

            def run():
                return torch_infer(model, xt)
    else:
        raise ValueError(f"framework must be 'fastnn' or 'torch', got {framework!r}")
    run.model = model
    return run


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
