"""``fastnn warmup``: compile every kernel into the on-disk cache ahead of time.

Runs each layer forward and ``backward()`` (training and eval mode, and
inference under ``no_grad``), each loss and each optimizer update on tiny inputs,
so that Numba compiles (or loads) every kernel for the dtypes asked for. Run it when building a container image, or in a parent
process before it starts workers, so that no job pays compile time.
"""
import importlib
import pkgutil
import time

import numpy as np

from . import kernels, nn, optim
from .autograd.grad_mode import no_grad
from .kernels import _threading
from .tensor import _wrap


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
         floats(8, 20000)),  # past SERIAL_BELOW: the parallel add
        ("Conv2d", lambda: nn.Conv2d(2, 4, 3, padding=1), floats(2, 2, 6, 6)),
        ("Conv2d(stride, groups, no bias)", lambda: nn.Conv2d(4, 4, 3, stride=2, groups=2, bias=False),
         floats(2, 4, 7, 7)),
        ("Conv2d+ReLU", lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), floats(2, 1, 6, 6)),
        ("Conv2d(one image)", lambda: nn.Conv2d(2, 4, 3, padding=1), floats(1, 2, 6, 6)),  # the serial path
        ("MaxPool2d", lambda: nn.MaxPool2d(2), floats(2, 2, 6, 6)),
        ("MaxPool2d(3, stride 1)", lambda: nn.MaxPool2d(3, stride=1, padding=1), floats(2, 2, 6, 6)),  # serial
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
    return cases + _optional_cases(floats)


def _optional_cases(floats):
    """Cases for the layers of API version 2, where this build has them."""
    def indices(rng, dtype):
        return rng.integers(0, 10, (3, 5))

    wanted = [
        ("Conv1d", (2, 4, 3), dict(padding=1), floats(2, 2, 9)),
        ("ConvTranspose1d", (2, 3, 3), dict(stride=2), floats(2, 2, 7)),
        ("ConvTranspose2d", (2, 3, 3), dict(stride=2, padding=1, output_padding=1), floats(2, 2, 5, 5)),
        ("MaxPool1d", (2,), {}, floats(2, 2, 8)),
        ("AvgPool1d", (3,), dict(stride=1, padding=1), floats(2, 2, 8)),
        ("AdaptiveAvgPool1d", (3,), {}, floats(2, 2, 8)),
        ("AdaptiveMaxPool2d", (2,), {}, floats(2, 2, 6, 6)),
        ("LayerNorm", (8,), {}, floats(4, 8)),
        ("GroupNorm", (2, 4), {}, floats(2, 4, 3, 3)),
        ("InstanceNorm2d", (2,), dict(affine=True), floats(2, 2, 4, 4)),
        ("Dropout2d", (0.5,), {}, floats(2, 3, 4, 4)),
        ("EmbeddingBag", (10, 4), dict(mode="mean"), indices),
        ("RNNCell", (4, 5), {}, floats(2, 4)),
        ("LSTMCell", (4, 5), {}, floats(2, 4)),
        ("GRUCell", (4, 5), {}, floats(2, 4)),
        ("LSTM", (4, 6), dict(bidirectional=True, proj_size=3), floats(3, 2, 4)),
        ("GRU", (4, 5), dict(num_layers=2, bidirectional=True), floats(3, 2, 4)),
        # attention: the fused kernels (eval mode; training mode's dropout runs unfused)
        ("TransformerEncoderLayer", (8, 2), dict(dim_feedforward=16, batch_first=True), floats(2, 5, 8)),
    ]
    cases = []
    for name, args, kwargs, make_input in wanted:
        cls = getattr(nn, name, None)
        if cls is not None:
            label = f"{name}({', '.join([*map(repr, args), *(f'{k}={v!r}' for k, v in kwargs.items())])})"
            cases.append((label, lambda cls=cls, args=args, kwargs=kwargs: cls(*args, **kwargs), make_input))
    return cases


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _forward_backward(model, x):
    """One forward and ``backward()`` (the input's gradient too, when it is float)."""
    x = _wrap(x)
    if x.dtype.kind == "f":
        x.requires_grad_(True)
    out = _first(model(x))
    out.backward(np.ones(out.shape, out.dtype))


def _run_layer(factory, make_input, rng, dtype):
    model = factory().to(dtype)
    x = make_input(rng, dtype)
    _forward_backward(model, x)  # training mode
    model.eval()
    _forward_backward(model, x)  # eval mode: gradients flow (frozen BatchNorm)
    with no_grad():  # inference: nothing recorded
        model(_wrap(x))


def _loss_cases():
    """``(loss, target maker)``: each loss and each of its kernel paths (hard and
    soft targets, class weights / label smoothing)."""
    def labels(rng, n, c, dtype):
        return rng.integers(0, c, n)

    def probabilities(rng, n, c, dtype):
        p = rng.random((n, c)).astype(dtype)
        return p / p.sum(axis=1, keepdims=True)

    def floats(rng, n, c, dtype):
        return rng.standard_normal((n, c)).astype(dtype)

    def bits(rng, n, c, dtype):
        return (rng.random((n, c)) > 0.5).astype(dtype)

    cases = [(nn.CrossEntropyLoss(), labels), (nn.CrossEntropyLoss(label_smoothing=0.1), labels),
             (nn.CrossEntropyLoss(), probabilities), (nn.MSELoss(), floats), (nn.BCEWithLogitsLoss(), bits)]
    if hasattr(nn, "NLLLoss"):
        cases.append((nn.NLLLoss(), labels))
    # the shared kernels of the other elementwise losses (one kind each)
    for name in ("L1Loss", "SmoothL1Loss", "HuberLoss"):
        if hasattr(nn, name):
            cases.append((getattr(nn, name)(), floats))
    return cases


def _run_losses(rng, dtype):
    for loss, make_target in _loss_cases():
        for n, c in ((6, 5), (64, 1000)):  # small, and the chunked, parallel reduction path
            pred = rng.standard_normal((n, c)).astype(dtype)
            target = make_target(rng, n, c, dtype)
            loss(_wrap(pred).requires_grad_(), target).backward()
            with no_grad():
                loss(pred, target)


def _run_optimizers(rng, dtype):
    settings = [
        (optim.SGD, dict(lr=0.1)), (optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=1e-4)),
        (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)), (optim.Adam, dict(lr=1e-3)),
        (optim.Adam, dict(lr=1e-3, weight_decay=1e-4)), (optim.AdamW, dict(lr=1e-3)),
        (optim.RMSprop, dict(lr=1e-2)), (optim.RMSprop, dict(lr=1e-2, momentum=0.9, weight_decay=1e-4)),
        (optim.Adam, dict(lr=1e-3, amsgrad=True)), (optim.Adagrad, dict(lr=1e-2)),
    ]
    for size in (8, 300):  # small and large parameters: serial and parallel paths
        for cls, kwargs in settings:
            model = nn.Linear(size, size).to(dtype)
            opt = cls(model.parameters(), **kwargs)
            for _ in range(2):
                opt.zero_grad()
                out = model(rng.standard_normal((2, size)).astype(dtype))
                out.backward(np.ones(out.shape, out.dtype))
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
            except NotImplementedError:  # a layer option this build does not have: nothing to compile
                pass
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
