"""Optimizer updates: one ``step()`` over a model's worth of gradients."""
from .common import THREADS, Benchmark, fastnn, memo, randn, require, set_threads

OPTIMIZERS = {
    "SGD(momentum=0.9)": ("SGD", {"lr": 0.01, "momentum": 0.9}),
    "Adam": ("Adam", {"lr": 1e-3}),
    "AdamW": ("AdamW", {"lr": 1e-3}),
    "RMSprop": ("RMSprop", {"lr": 1e-2}),
}
# parameter shapes: the mlp workload's (235k values in 6 arrays) and one 1M-value matrix
PARAM_SETS = {
    "mlp 235k": [(256, 784), (256,), (128, 256), (128,), (10, 128), (10,)],
    "1M": [(1024, 1024)],
}


def _optimizer(name, params_name):
    cls_name, kwargs = OPTIMIZERS[name]
    require(fastnn.optim, cls_name)
    params = []
    for i, shape in enumerate(PARAM_SETS[params_name]):
        p = fastnn.nn.Parameter(randn(shape, seed=i))
        p.grad = fastnn.from_numpy(randn(shape, seed=100 + i))
        params.append(p)
    opt = getattr(fastnn.optim, cls_name)(params, **kwargs)
    opt.step()  # compile, and create the state (momentum, moments) as a training loop would
    return opt


class OptimizerStep(Benchmark):
    """``opt.step()`` with every gradient present (state already created)."""

    params = (list(OPTIMIZERS), list(PARAM_SETS), THREADS)
    param_names = ["optimizer", "params", "threads"]

    def setup(self, optimizer, params, threads):
        set_threads(threads)
        self.opt = memo((optimizer, params), lambda: _optimizer(optimizer, params))

    def time_step(self, optimizer, params, threads):
        self.opt.step()
