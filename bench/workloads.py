"""The reference workloads fastnn's speed is judged on (WORKLOADS.md), in fastnn and PyTorch.

The one place both the asv suite and ``compare_torch.py`` take their models
from. Each model is written once, PyTorch-style (forward-only modules, plain
training steps), against a namespace of layer classes, and built from
``fastnn.nn`` or from ``torch.nn``, so the two frameworks run the same
architecture with the same ``state_dict`` keys.

    runner = make_runner("fastnn", "lenet", batch=64, mode="train")
    runner()          # one training step: forward + CrossEntropyLoss + backward + Adam

A fastnn workload whose layers do not exist yet raises ``NotImplementedError``
(asv reports it as skipped; the comparison prints n/a). PyTorch is imported only
by the ``torch`` functions and is never a dependency of fastnn. Timers live in
``timing.py``; the per-operation autograd overhead runners in ``make_op_runner``.
"""
import os
import sys
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


NAMES = ("mlp", "lenet", "resnet", "lstm", "transformer", "conv1d")
# the batch size each workload is defined with, and a large one for throughput
BATCH = {"mlp": 128, "lenet": 64, "resnet": 32, "lstm": 64, "transformer": 32, "conv1d": 100}
LARGE_BATCH = {"mlp": 1024, "lenet": 512, "resnet": 128, "lstm": 512, "transformer": 128, "conv1d": 800}
INPUT_SHAPE = {"mlp": (784,), "lenet": (1, 28, 28), "resnet": (3, 32, 32), "lstm": (32, 64),
               "transformer": (64, 128), "conv1d": (1, 40)}
CLASSES = 10
LR = 1e-3
# what each workload needs from fastnn: attribute paths below the fastnn package
_COMMON = ("nn.Module", "nn.Sequential", "nn.Linear", "nn.CrossEntropyLoss", "optim.Adam", "no_grad",
           "from_numpy")
NEEDS = {
    "mlp": ("nn.ReLU",),
    "lenet": ("nn.ReLU", "nn.Conv2d", "nn.MaxPool2d", "nn.Flatten"),
    "resnet": ("nn.ReLU", "nn.Conv2d", "nn.BatchNorm2d", "nn.MaxPool2d", "nn.AdaptiveAvgPool2d",
               "nn.Flatten", "nn.functional.relu"),
    "lstm": ("nn.LSTM",),
    "transformer": ("nn.TransformerEncoderLayer", "nn.TransformerEncoder", "mean"),
    "conv1d": ("nn.ReLU", "nn.Conv1d", "nn.Flatten"),
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
_CUSTOM = {}


def _custom_modules(nn):
    """The workloads' own modules, written once against ``nn`` (fastnn.nn or torch.nn)."""
    if id(nn) not in _CUSTOM:
        _CUSTOM[id(nn)] = _define_custom_modules(nn)
    return _CUSTOM[id(nn)]


def _define_custom_modules(nn):
    relu = nn.functional.relu

    class ResBlock(nn.Module):
        """ReLU(x + BN(Conv3x3(ReLU(BN(Conv3x3(x)))))), convolutions without bias."""

        def __init__(self, c):
            super().__init__()
            self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(c)
            self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(c)

        def forward(self, x):
            return relu(x + self.bn2(self.conv2(relu(self.bn1(self.conv1(x))))))

    class LastTimeStep(nn.Module):
        """The last time step of a batch-first recurrent output ((output, state) or output)."""

        def forward(self, x):
            output = x[0] if isinstance(x, tuple) else x
            return output[:, -1]

    class MeanOverTime(nn.Module):
        """The mean over the time axis of a batch-first sequence."""

        def forward(self, x):
            return x.mean(dim=1)

    return types.SimpleNamespace(Block=ResBlock, LastStep=LastTimeStep, TimeMean=MeanOverTime)


def build(nn, name):
    """The workload ``name`` built from the layer classes in namespace ``nn``."""
    own = _custom_modules(nn)
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
            nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), own.Block(32),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), own.Block(64),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
        )
    if name == "lstm":
        return nn.Sequential(nn.LSTM(64, 128, batch_first=True), own.LastStep(), nn.Linear(128, 10))
    if name == "transformer":
        layer = nn.TransformerEncoderLayer(d_model=128, nhead=4, dim_feedforward=512, dropout=0.1,
                                           batch_first=True)
        return nn.Sequential(nn.TransformerEncoder(layer, 2), own.TimeMean(), nn.Linear(128, 10))
    if name == "conv1d":
        return nn.Sequential(
            nn.Conv1d(1, 32, 5, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(160, 10),
        )
    raise ValueError(f"unknown workload {name!r}; expected one of {NAMES}")


def _has(root, path):
    for part in path.split("."):
        if not hasattr(root, part):
            return False
        root = getattr(root, part)
    return True


def missing_fastnn_layers(name):
    """What ``name`` needs that fastnn does not have (yet), as paths below ``fastnn``."""
    fastnn = import_fastnn()
    return [path for path in _COMMON + NEEDS[name] if not _has(fastnn, path)]


def require_fastnn(name):
    """Raise ``NotImplementedError`` unless fastnn has everything ``name`` needs."""
    if name not in NEEDS:
        raise ValueError(f"unknown workload {name!r}; expected one of {NAMES}")
    missing = missing_fastnn_layers(name)
    if missing:
        raise NotImplementedError(f"workload {name}: fastnn has no {', '.join(missing)} yet")


def build_fastnn(name, seed=0):
    """The fastnn model of workload ``name`` (float32, training mode)."""
    require_fastnn(name)
    fastnn = import_fastnn()
    fastnn.manual_seed(seed)
    return build(fastnn.nn, name)


def build_torch(name, seed=0):
    """The PyTorch model of workload ``name`` (float32, training mode)."""
    import torch
    torch.manual_seed(seed)
    return build(torch.nn, name)


# ------------------------------------------------------------------ steps
def train_step(model, loss_fn, opt, x, y):
    """One training step, the same code for both frameworks; returns the loss (a 0-d tensor)."""
    opt.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    return loss


def fastnn_infer(model, x):
    """One fastnn forward pass under ``no_grad`` (the model must be in eval mode)."""
    with import_fastnn().no_grad():
        return model(x)


def torch_infer(model, x):
    """One PyTorch forward pass under ``inference_mode`` (model in eval mode)."""
    import torch
    with torch.inference_mode():
        return model(x)


def _framework(framework):
    """(module, from_numpy, infer) of ``framework``."""
    if framework == "fastnn":
        fastnn = import_fastnn()
        return fastnn, fastnn.from_numpy, fastnn_infer
    if framework == "torch":
        import torch
        return torch, torch.from_numpy, torch_infer
    raise ValueError(f"framework must be 'fastnn' or 'torch', got {framework!r}")


def make_runner(framework, name, batch, mode, seed=0):
    """A zero-argument callable running one training step or one inference.

    Args:
        framework: "fastnn" or "torch".
        name: one of ``NAMES``.
        batch: batch size.
        mode: "train" (forward + CrossEntropyLoss + backward + Adam step),
            "infer" (forward in eval mode, no grad; fastnn's on its inference plan,
            ``fastnn.compile``, as ``predict`` runs) or "eager" (the same, with
            fastnn's model called directly: its layers one by one).

    The callable keeps the model, optimizer and batch alive; ``runner.model`` is
    the model. Nothing is compiled or run here: call it once to warm up. The
    inputs are tensors that do not require grad, as in PyTorch.
    """
    if mode not in ("train", "infer", "eager"):
        raise ValueError(f"mode must be 'train', 'infer' or 'eager', got {mode!r}")
    if framework == "fastnn":
        require_fastnn(name)
    lib, from_numpy, infer = _framework(framework)
    model = build_fastnn(name, seed) if framework == "fastnn" else build_torch(name, seed)
    x, y = (from_numpy(a) for a in make_batch(name, batch, seed))
    if mode == "train":
        loss_fn = lib.nn.CrossEntropyLoss()
        opt = lib.optim.Adam(model.parameters(), lr=LR)

        def run():
            return train_step(model, loss_fn, opt, x, y)
    else:
        model.eval()
        planned = lib.compile(model) if framework == "fastnn" and mode == "infer" else model

        def run():
            return infer(planned, x)
    run.model = model
    return run


# ------------------------------------------------------------------ autograd overhead
OPS = ("mul_add", "mul_add_sum")
OP_SIZE = 16


def make_op_runner(framework, op, size=OP_SIZE):
    """A zero-argument callable: forward and backward of ``a * b + c`` on ``(size,)``
    float32 leaves that require grad; "mul_add" back-propagates a ones gradient,
    "mul_add_sum" calls ``(a * b + c).sum().backward()``. Gradients accumulate, as
    they would without ``zero_grad`` (the cost of an add in place)."""
    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}, got {op!r}")
    if framework == "fastnn" and not all(hasattr(import_fastnn(), f) for f in ("sum", "from_numpy")):
        raise NotImplementedError("fastnn has no sum or from_numpy yet")
    lib, from_numpy, _ = _framework(framework)
    rng = np.random.default_rng(0)
    a, b, c = (from_numpy(rng.standard_normal(size, dtype=np.float32)).requires_grad_() for _ in range(3))
    ones = from_numpy(np.ones(size, np.float32))
    if op == "mul_add":
        def run():
            (a * b + c).backward(ones)
    else:
        def run():
            (a * b + c).sum().backward()
    run.leaves = (a, b, c)
    return run
