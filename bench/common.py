"""What every benchmark file shares: thread counts, shapes, batch sizes, helpers.

Layout follows scikit-learn's asv suite: this module holds the profiles, one
file per area holds one class per operation with a ``params`` grid whose last
axis is the thread count (1 and all cores).

Timing rules:

* ``setup`` builds the operands and calls the operation once, so JIT compile
  (or loading the compiled kernels from Numba's on-disk cache) never lands in
  a timing. asv re-runs ``setup`` before every timed sample, so the expensive
  part is memoised per process (:func:`memo`) and only per-sample state (a
  fresh forward pass before a timed ``backward``) is redone.
* ``time_*`` time one call; ``track_*`` time the call themselves
  (``timing.seconds_per_call``, the timer ``compare_torch.py`` uses too) and
  report a rate with its ``unit``.
* Training passes run PyTorch-style: a recording forward, then ``backward`` of
  its output (or of a loss); inference runs in eval mode under ``fastnn.no_grad()``.
* Sizes stay modest: CI runs every benchmark and parameter set once
  (``--quick``), each in a process forked from asv's server, where
  ``warm_kernels.py`` has loaded the kernels once for all of them.
"""
import abc
import statistics
import time

import numba
import numpy as np

from .timing import seconds_per_call  # noqa: F401 (re-exported)
from .workloads import import_fastnn

fastnn = import_fastnn()

ALL_CORES = numba.config.NUMBA_NUM_THREADS
THREADS = sorted({1, ALL_CORES})
DTYPE = np.float32

# matmul: name -> (M, K, N) of out[M,N] = a[M,K] @ b[K,N]
MATMUL_SHAPES = {
    "128x784x256": (128, 784, 256),    # the mlp's first Linear at batch 128
    "1024x1024x1024": (1024, 1024, 1024),
}
# conv: name -> (N, C_in, C_out, kernel, H=W, stride, padding), the workloads' own layers
CONV_SHAPES = {
    "lenet-c1 64x1x28x28 k5": (64, 1, 6, 5, 28, 1, 2),
    "resnet-b1 32x32x32x32 k3": (32, 32, 32, 3, 32, 1, 1),
    "resnet-b2 32x64x16x16 k3": (32, 64, 64, 3, 16, 1, 1),
}
# image activations (N, C, H, W) as after the resnet's first block
IMAGE_SHAPE = (32, 32, 32, 32)
# pointwise activations and losses
POINTWISE_SHAPE = (256, 2048)
LOGITS_SHAPE = (1024, 10)
# recurrent: the lstm workload's layer, (N, T, F) batch_first, hidden size
SEQUENCE_SHAPE = (64, 32, 64)
HIDDEN = 128


class Benchmark:
    """Defaults for every benchmark class (asv reads them as attributes)."""

    timeout = 300
    # one sample is one call after a fresh setup (asv does this whenever a
    # class has setup); rounds interleave processes to average out noise
    number = 1
    rounds = 2
    repeat = (3, 10, 2.0)
    warmup_time = 0.05


def set_threads(threads):
    """Run fastnn's kernels in this thread on ``threads`` threads."""
    fastnn.set_num_threads(int(threads))


def rng(seed=0):
    return np.random.default_rng(seed)


def randn(shape, seed=0, dtype=DTYPE):
    """Random normal array of ``shape`` (float32 by default), C-contiguous."""
    return rng(seed).standard_normal(shape, dtype=np.float64).astype(dtype)


_MEMO = {}


def memo(key, build):
    """``build()`` once per process and key; later calls return the same object.

    asv runs ``setup`` before every sample; this keeps the compile and warm-up
    out of all but the first.
    """
    if key not in _MEMO:
        _MEMO[key] = build()
    return _MEMO[key]


def require(module, *names):
    """Raise ``NotImplementedError`` (asv: skipped) unless ``module`` has ``names``."""
    missing = [n for n in names if not hasattr(module, n)]
    if missing:
        raise NotImplementedError(f"{module.__name__} has no {', '.join(missing)} yet")


def train_module(module):
    """Put ``module`` in training mode with no gradients, and return it."""
    module.train()
    module.zero_grad()
    return module


def as_input(x):
    """``x`` as a fastnn Tensor; floating inputs require grad, so a backward also
    computes the input gradient (as a layer inside a model does)."""
    t = fastnn.from_numpy(x)
    return t.requires_grad_() if x.dtype.kind == "f" else t


def first(out):
    """The output a benchmark back-propagates: recurrent layers return (output, state)."""
    return out[0] if isinstance(out, tuple) else out


def fresh_forward(module, x):
    """A training-mode forward with zeroed gradients, ready for one ``backward``."""
    module.zero_grad()
    x.grad = None
    return first(module(x))


def seconds_per_backward(module, x, dout, min_time=0.3):
    """Median seconds of one ``out.backward(dout)``, each after an untimed
    training-mode forward of ``x`` (a backward frees the graph its forward recorded)."""
    times = []
    deadline = time.perf_counter() + min_time
    while len(times) < 3 or time.perf_counter() < deadline:
        out = fresh_forward(module, x)
        start = time.perf_counter()
        out.backward(dout)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class LayerBenchmark(Benchmark, abc.ABC):
    """Forward and backward of one module, timed separately.

    Subclasses set ``params``/``param_names`` (thread count last) and implement
    ``make(*params) -> (module, x)`` (``x`` an ndarray). ``setup`` builds once per
    process, warms up both passes, then before every sample runs a fresh
    training-mode forward (grad recorded; a float input requires grad) with zeroed
    gradients, so ``time_backward`` times exactly one ``out.backward(dout)`` as a
    training step runs it (gradients written, not accumulated). ``time_forward``
    is that recording forward; ``time_inference`` an eval-mode forward under
    ``no_grad``.
    """

    @abc.abstractmethod
    def make(self, *params):
        """Return ``(module, x)``: a float32 module and an input batch (ndarray)."""

    def _build(self, params):
        module, x = self.make(*params)
        x = as_input(x)
        train_module(module)
        out = first(module(x))
        # a loss's 0-d output takes the implicit gradient 1, as loss.backward() does
        dout = None if out.ndim == 0 else fastnn.from_numpy(randn(out.shape, seed=7, dtype=out.dtype))
        out.backward(dout)
        module.eval()
        with fastnn.no_grad():
            module(x)  # compile the eval-mode path too
        module.train()
        return module, x, dout

    def setup(self, *params):
        set_threads(params[-1])
        self.module, self.x, self.dout = memo((type(self).__name__,) + params, lambda: self._build(params))
        self.out = fresh_forward(self.module, self.x)

    def time_forward(self, *params):
        self.module(self.x)

    def time_backward(self, *params):
        self.out.backward(self.dout)

    def time_inference(self, *params):
        self.module.eval()
        with fastnn.no_grad():
            self.module(self.x)
        self.module.train()
