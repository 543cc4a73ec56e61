"""``fastnn warmup``: compile every kernel into the on-disk cache ahead of time.

Runs each layer forward and ``backward()`` (training and eval mode, and
inference under ``no_grad``), each loss and each optimizer update on tiny inputs,
so that Numba compiles (or loads) every kernel for the dtypes asked for. Run it
when building a container image, or in a parent process before it starts
workers, so that no job pays compile time. The cases can run in several worker
processes at once, which share what they compile through the on-disk cache.
"""
import importlib
import os
import pkgutil
import time

import numpy as np

from . import kernels, nn, optim
from .autograd.grad_mode import no_grad
from .inference import run as run_planned
from .kernels import _jit, _threading
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
        ("further activations", lambda: nn.Sequential(nn.ELU(), nn.SiLU(), nn.Hardswish(), nn.Softplus()),
         floats(4, 8)),  # (kernels of their own: ``activations.activation_forward``)
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
        ("Conv2d(one large image)", lambda: nn.Conv2d(16, 16, 3, padding=1),  # columns over threads
         floats(1, 16, 24, 24)),  # (16 + 16 channels: the GEMM convolution, not Winograd)
        ("Conv2d(3x3, 32 channels)", lambda: nn.Conv2d(32, 32, 3, padding=1),  # Winograd on a plan, panels
         floats(2, 32, 8, 16)),  # over threads
        ("Conv2d(5x5, 6 -> 16 channels, 16 images)", lambda: nn.Conv2d(6, 16, 5),  # images in the lanes on a
         floats(16, 6, 14, 14)),  # plan (LeNet's second convolution), rows over threads
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
        ("LSTM(one sequence, 64 units)", lambda: nn.LSTM(4, 64), floats(3, 1, 4)),  # on a plan: units over threads
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
        ("Conv1d", (32, 32, 3), dict(stride=2, padding=1), floats(100, 32, 19)),  # the parallel 1-D kernel
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
        # attention: the fused kernels (eval mode; training mode's dropout runs unfused); on
        # a plan, 140 rows make the feed-forward products big enough for packed weights
        # (the fused FFN), not yet the out-projection (so not the next case's kernel)
        ("TransformerEncoderLayer", (32, 2), dict(dim_feedforward=64, batch_first=True), floats(2, 70, 32)),
        # two sequences a thread, every product packed: the layer sequence by sequence
        ("TransformerEncoderLayer", (64, 2), dict(dim_feedforward=64, batch_first=True),
         lambda rng, dtype: rng.standard_normal((2 * _threading.get_threads(), 70, 64)).astype(dtype)),
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
    with no_grad():  # inference: nothing recorded; the first call traces the plan, the second runs it
        for _ in range(2):
            run_planned(model, (_wrap(x),))


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


def all_kernels(inline=False):
    """``{"module.name": kernel}`` for every kernel dispatcher in ``fastnn.kernels``
    (``inline``: also the helpers inlined into their callers, which Python may call too)."""
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
            if getattr(dispatcher, "targetoptions", {}).get("inline") == "always" and not inline:
                continue  # inlined into its callers, never compiled on its own
            found[f"{info.name}.{name}"] = value
    return found


def _cases():
    """``(label, run(rng, dtype))`` for every case: the layers, then the losses and optimizers."""
    cases = [(label, lambda rng, dtype, f=factory, m=make_input: _run_layer(f, m, rng, dtype))
             for label, factory, make_input in _layer_cases()]
    return cases + [("losses", _run_losses), ("optimizers", _run_optimizers)]


def run_case(index, dtype):
    """Run case ``index`` of :func:`_cases` for ``dtype`` (a name); returns an error
    line (``"case (dtype): error"``) or None. Importable by worker processes."""
    label, run = _cases()[index]
    try:
        run(np.random.default_rng(index), np.dtype(dtype).type)
    except NotImplementedError:  # a layer option this build does not have: nothing to compile
        pass
    except Exception as err:  # report and go on: warmup must not stop at one case
        return f"{label} ({dtype}): {type(err).__name__}: {err}"
    return None


# the costliest cases to compile (measured by bench/compile_times.py), started first
# so that parallel workers do not end on them one by one
_COSTLY = ("TransformerEncoderLayer", "Conv2d", "LSTM", "losses", "pooling", "optimizers", "GRU", "Linear")


def _spread(labels):
    """Case indices in the order to run them: the costly kinds first, and layers of one
    kind (``Linear``, ``Linear(bias=False)``...) apart, so that parallel workers start
    on different kernels instead of compiling one twice."""
    rank, seen, families = {}, {}, {}
    for i, label in enumerate(labels):
        families[i] = family = label.split("(")[0].split("+")[0].replace("large ", "")
        rank[i] = seen[family] = seen.get(family, -1) + 1
    costly = {family: n for n, family in enumerate(_COSTLY)}
    return sorted(range(len(labels)), key=lambda i: (rank[i], costly.get(families[i], len(_COSTLY)), i))


def usable_cpus():
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _compile_in_workers(units, jobs, bar, out):
    """Run ``units`` (``(index, dtype)``) in ``jobs`` spawned processes that compile into
    the shared on-disk cache (their errors show again in the final pass, which also
    compiles whatever a worker that died left undone)."""
    import multiprocessing
    import shutil
    import tempfile
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    from . import _claims

    # spawn: a fresh interpreter, whatever threading layer or pool this process has; the
    # workers claim each kernel they compile (the serial kernels that several cases
    # call, compiled once: see _claims)
    folder = tempfile.mkdtemp(prefix="fastnn-warmup-")
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_claims.install,
                               initargs=(folder,))
    try:
        for future in as_completed([pool.submit(run_case, i, dtype) for i, dtype in units]):
            future.result()
            bar.update()
    except BrokenProcessPool as err:
        out(f"  a worker process died ({err}); compiling the rest here")
    finally:  # on Ctrl-C too: drop the cases not started instead of waiting for them
        pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(folder, ignore_errors=True)


def warmup(dtypes=(np.float32,), out=print, jobs=1, progress=False):
    """Compile (or load from the cache) every kernel for ``dtypes``; returns a report dict.

    ``jobs`` > 1 compiles the cases in that many worker processes into the shared
    cache first; this process then runs every case once more, loading what they
    compiled, so that the report counts its own kernels. ``progress``: a progress
    bar over the cases.

    ``report``: ``seconds``, ``kernels`` (how many have machine code in this process:
    after ``jobs`` > 1, not the serial kernels that only other kernels call, whose
    code was loaded inside their callers'),
    ``signatures``, ``unused`` (parallel kernels no case reached) and ``failed``
    (cases that raised, as ``"case: error"``).
    """
    from .progress import progress_bar

    start = time.perf_counter()
    names = [np.dtype(d).name for d in dtypes]
    order = _spread([label for label, _ in _cases()])
    parallel = jobs > 1 and _jit.CACHE  # workers share their work through the cache only
    if parallel:
        bar = progress_bar(len(order) * len(names), f"warmup: compiling in {jobs} processes", progress, "case")
        try:
            _compile_in_workers([(i, name) for name in names for i in order], jobs, bar, out)
        finally:
            bar.close()
        out(f"  compiled in {jobs} processes after {time.perf_counter() - start:.1f} s")
    failed = []
    bar = progress_bar(len(order) * len(names), "warmup: loading" if parallel else "warmup: compiling", progress,
                       "case")
    try:
        for name in names:
            for i in order:
                error = run_case(i, name)
                if error:
                    failed.append(error)
                bar.update()
            out(f"  {name}: done after {time.perf_counter() - start:.1f} s")
    finally:
        bar.close()
    found = all_kernels()
    compiled = {k: v for k, v in found.items() if len(v.overloads)}
    unused = sorted(k for k, v in found.items()
                    if isinstance(v, _threading.ParallelKernel) and not len(v.overloads))
    return {"seconds": time.perf_counter() - start, "kernels": len(compiled), "total": len(found),
            "signatures": sum(len(v.overloads) for v in compiled.values()), "unused": unused, "failed": failed}
