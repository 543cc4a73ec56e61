"""Tracing the first call at a shape: which plannable layers and fusable operations
it calls, in order, and which results went on as temporaries (no name held them)."""
import gc
import sys

import numpy as np

from .. import _planstate
from .._planstate import call_unplanned
from ..kernels import _cache
from ..nn.module import Module
from ..ops.activation import RELU
from ..ops.activation import relu as _ops_relu
from ..ops.arith import ADD
from ..ops.arith import add as _ops_add
from ..tensor import Tensor, _wrap
from .build import PLANNABLE, plain_kwargs


class Call:
    """One traced call: ``key`` (the module, or an operation's name), its Tensor
    inputs (None for a call a plan cannot take over), its output, and for each input
    whether it came as a temporary (no name held it, so nothing else can read it)."""

    __slots__ = ("key", "inputs", "out", "temporary")

    def __init__(self, key, inputs, out, temporary):
        self.key, self.inputs, self.out, self.temporary = key, inputs, out, temporary


class Tracer:
    """Runs the first call at a shape eagerly, recording the calls of plannable layers
    and of the operations a plan may fuse. A plannable layer's own forward runs with
    no plan set, in the trace as in the plan, so what it calls inside is not recorded."""

    def __init__(self, baselines=None):
        self.calls = []
        self.baselines = baselines  # path -> references of a temporary argument (None: calibrating)
        self.refs = ()
        self.compiled = _cache.compiles  # kernel compiles seen when references were last counted afresh

    def _temporaries(self, args, path):
        """Per argument: True when it came as a temporary (its references, counted the
        same way on every path, equal the calibrated ones)."""
        self.refs = refs = tuple(sys.getrefcount(a) for a in args)
        if self.baselines is None:
            return None
        base = self.baselines.get(path)
        recorded = {id(c.out) for c in self.calls}
        if base is not None and self.compiled != _cache.compiles and any(
                id(a) in recorded and r != base + 1 for a, r in zip(args, refs)):
            # A kernel compiled since the last look can leave the frames of the calls above
            # it alive in a reference cycle until the collector runs (seen: the frame of the
            # op that made a layer's output, holding it): an output seen as named, its
            # fusion lost, on a cold cache only. Collect once per such compile, count again.
            self.compiled = _cache.compiles
            gc.collect()
            self.refs = refs = tuple(sys.getrefcount(a) for a in args)
        # a temporary's references, plus this tracer's record of it when a recorded call made it
        return tuple(base is not None and r == base + (id(a) in recorded) for a, r in zip(args, refs))

    def module_call(self, module, inputs, kwargs):
        single = len(inputs) == 1 and isinstance(inputs[0], Tensor) and plain_kwargs(module, kwargs)
        temporary = self._temporaries(inputs, "module") if single else None
        if type(module) not in PLANNABLE:
            return module.forward(*inputs, **kwargs)
        out = call_unplanned(module.forward, *inputs, **kwargs)
        self.calls.append(Call(module, inputs if single else None, out, temporary))
        return out

    def op_call(self, key, fn, args):
        method = sys._getframe(2).f_code in _METHOD_CODES  # x + y (Tensor.__add__), not add(x, y)
        tensors = all(isinstance(a, Tensor) for a in args)
        temporary = self._temporaries(args, (key, method)) if tensors else None
        if self.baselines is None:  # calibrating: only the references count, so no kernel runs
            return args[0]
        out = call_unplanned(fn, *args)
        self.calls.append(Call(key, args if tensors else None, out, temporary))
        return out


_METHOD_CODES = frozenset((Tensor.__add__.__code__,))


class _Probe(Module):
    def forward(self, x):
        return x


def calibrate(dtype=np.float32):
    """The references a tracer sees to a temporary argument on each path: a layer call
    (``bn(conv(x))``, or ``Sequential``'s plan-mode loop), ``add(a, b)``, ``a + b`` and
    ``relu(x)``. The probes' operations run no kernel (the tracer returns their first
    argument while calibrating), so calibrating compiles nothing; ``dtype`` is the
    model's (the counts do not depend on it)."""
    tracer, state = Tracer(), _planstate.plan_state
    found = {}

    def one():
        return _wrap(np.zeros(1, dtype))

    state.plan = tracer
    try:
        _Probe()(one())
        found["module"] = tracer.refs[0]
        _ops_add(one(), one())
        found[(ADD, False)] = tracer.refs[0]
        one() + one()
        found[(ADD, True)] = tracer.refs[0]
        _ops_relu(one())
        found[(RELU, False)] = tracer.refs[0]
    finally:
        state.plan = None
    return found
