"""``fastnn warmup``: compile every kernel into the on-disk cache ahead of time.

Runs each layer forward and backward (training and eval mode), each loss and each
optimizer update on tiny inputs, so that Numba compiles (or loads) every kernel
for the dtypes asked for. Run it when building a container image, or in a parent
process before it starts workers, so that no job pays compile time.
"""
import importlib
import pkgutil
import time

import numpy as np

from . import kernels, nn, optim
from .kernels import _threading


def _layer_cases():
    """``(name, factory, input_maker)``: one small case per layer kind and variant."""
    def floats(*shape):
        return lambda rng, dtype: rng.standard_normal(shape).astype(dtype)

    cases = [
        ("Linear", lambda: nn.Linear(8, 6), floats(4, 8)),
        ("Linear(bias=False)", lambda: nn.Linear(8, 6, bias=False), floats(4, 8)),
        ("activations", lambda: nn.Sequential(nn.ReLU(), nn.LeakyReLU(0.1), nn.Sigmoid(), nn.Tanh(), nn.GELU(),
                                              nn.Identity()), floats(4, 8)),
        ("Linear+ReLU", lambda: nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4), nn.Tanh()), floats(4, 8)),
        ("large Linear+ReLU", lambda: nn.Sequential(nn.Linear(256, 256), nn.ReLU()), floats(64, 256)),  # parallel
        ("Softmax", lambda: nn.Softmax(dim=-1), floats(4, 8)),
        ("Dropout", lambda: nn.Dropout(0.5), floats(4, 8)),
        ("Residual", lambda: nn.Residual(nn.Sequential(nn.Linear(8, 8), nn.ReLU())), floats(4, 8)),
        ("Flatten", lambda: nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), floats(2, 1, 4, 4)),
        ("large elementwise", lambda: nn.Sequential(nn.ReLU(), nn.Dropout(0.1), nn.Residual(nn.Tanh())),
         floats(4, 20000)),
        ("Conv2d", lambda: nn.Conv2d(2, 4, 3, padding=1), floats(2, 2, 6, 6)),
        ("Conv2d(stride, groups, no bias)", lambda: nn.Conv2d(4, 4, 3, stride=2, groups=2, bias=False),
         floats(2, 4, 7, 7)),
        ("Conv2d+ReLU", lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), floats(2, 1, 6, 6)),
        ("Conv2d(one image)", lambda: nn.Conv2d(2, 4, 3, padding=1), floats(1, 2, 6, 6)),  # the serial path
        ("MaxPool2d", lambda: nn.MaxPool2d(2), floats(2, 2, 6, 6)),
        ("AvgPool2d", lambda: nn.AvgPool2d(2, stride=1, padding=1), floats(2, 2, 6, 6)),
        ("AdaptiveAvgPool2d", lambda: nn.AdaptiveAvgPool2d(1), floats(2, 2, 6, 6)),
        ("large pooling", lambda: nn.Sequential(nn.MaxPool2d(3, 1), nn.MaxPool2d(2), nn.AvgPool2d(2, 1)),  # parallel
         floats(2, 16, 128, 128)),
        ("BatchNorm1d", lambda: nn.BatchNorm1d(8), floats(4, 8)),
        ("BatchNorm2d", lambda: nn.BatchNorm2d(2), floats(4, 2, 3, 3)),
        ("Embedding", lambda: nn.Embedding(10, 4), lambda rng, dtype: rng.integers(0, 10, (3, 5))),
        ("RNN", lambda: nn.RNN(4, 5), floats(3, 2, 4)),
        ("RNN(relu, batch_first)", lambda: nn.RNN(4, 5, nonlinearity="relu", batch_first=True), floats(2, 3, 4)),
        ("LSTM", lambda: nn.LSTM(4, 5, num_layers=2), floats(3, 2, 4)),
        ("GRU", lambda: nn.GRU(4, 5, batch_first=True), floats(2, 3, 4)),
    ]
    if hasattr(nn, "LastStep"):
        cases.append(("LSTM+LastStep", lambda: nn.Sequential(nn.LSTM(4, 5, batch_first=True), nn.LastStep(),
                                                             nn.Linear(5, 3)), floats(2, 3, 4)))
    return cases


def _run_layer(factory, make_input, rng, dtype):
    model = factory().to(dtype)
    x = make_input(rng, dtype)
    out = model(x)
    if isinstance(out, tuple):
        out = out[0]
    model.backward(np.ones_like(out))
    model.eval()
    model(x)


def _run_losses(rng, dtype):
    logits = rng.standard_normal((6, 5)).astype(dtype)
    cases = [(nn.CrossEntropyLoss(), logits, rng.integers(0, 5, 6)),
             (nn.MSELoss(), logits, rng.standard_normal((6, 5)).astype(dtype)),
             (nn.BCEWithLogitsLoss(), logits, (rng.random((6, 5)) > 0.5).astype(dtype))]
    for loss, pred, target in cases:
        loss(pred, target)
        loss.backward()
        big = rng.standard_normal((64, 1000)).astype(dtype)  # the chunked, parallel reduction path
        big_target = rng.integers(0, 1000, 64) if isinstance(loss, nn.CrossEntropyLoss) else np.zeros_like(big)
        loss(big, big_target)
        loss.backward()


def _run_optimizers(rng, dtype):
    settings = [
        (optim.SGD, dict(lr=0.1)), (optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=1e-4)),
        (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)), (optim.Adam, dict(lr=1e-3)),
        (optim.Adam, dict(lr=1e-3, weight_decay=1e-4)), (optim.AdamW, dict(lr=1e-3)),
        (optim.RMSprop, dict(lr=1e-2)), (optim.RMSprop, dict(lr=1e-2, momentum=0.9, weight_decay=1e-4)),
    ]
    for size in (8, 300):  # small and large parameters: serial and parallel paths
        for cls, kwargs in settings:
            model = nn.Linear(size, size).to(dtype)
            opt = cls(model.parameters(), **kwargs)
            for _ in range(2):
                opt.zero_grad()
                out = model(rng.standard_normal((2, size)).astype(dtype))
                model.backward(np.ones_like(out))
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()


def all_kernels():
    """``{"module.name": kernel}`` for every kernel dispatcher in ``fastnn.kernels``."""
    found = {}
    for info in pkgutil.iter_modules(kernels.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{kernels.__name__}.{info.name}")
        for name, value in vars(module).items():
            dispatcher = value.dispatcher if isinstance(value, _threading.ParallelKernel) else value
            if getattr(dispatcher, "py_func", None) is None or not hasattr(dispatcher, "overloads"):
                continue
            if dispatcher.py_func.__module__ != module.__name__:
                continue
            if getattr(dispatcher, "targetoptions", {}).get("inline") == "always":
                continue  # inlined into its callers, never compiled on its own
            found[f"{info.name}.{name}"] = value
    return found


def warmup(dtypes=(np.float32,), out=print):
    """Compile (or load from the cache) every kernel for ``dtypes``; returns a report dict.

    ``report``: ``seconds``, ``kernels`` (how many have machine code now),
    ``signatures``, ``unused`` (parallel kernels no case reached) and ``failed``
    (cases that raised, as ``"case: error"``).
    """
    start = time.perf_counter()
    failed = []
    rng = np.random.default_rng(0)
    for dtype in dtypes:
        name = np.dtype(dtype).name
        for label, factory, make_input in _layer_cases():
            try:
                _run_layer(factory, make_input, rng, dtype)
            except Exception as err:  # report and go on: warmup must not stop at one layer
                failed.append(f"{label} ({name}): {type(err).__name__}: {err}")
        for label, step in (("losses", _run_losses), ("optimizers", _run_optimizers)):
            try:
                step(rng, dtype)
            except Exception as err:
                failed.append(f"{label} ({name}): {type(err).__name__}: {err}")
        out(f"  {name}: done after {time.perf_counter() - start:.1f} s")
    found = all_kernels()
    compiled = {k: v for k, v in found.items() if len(v.overloads)}
    unused = sorted(k for k, v in found.items()
                    if isinstance(v, _threading.ParallelKernel) and not len(v.overloads))
    return {"seconds": time.perf_counter() - start, "kernels": len(compiled), "total": len(found),
            "signatures": sum(len(v.overloads) for v in compiled.values()), "unused": unused, "failed": failed}
