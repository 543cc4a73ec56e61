"""Inference plans: what an inference engine does before it scores, in fastnn's engine.

A model called through :func:`compile` (or :func:`fastnn.predict`, ``evaluate`` and
the command line) in eval mode with grad disabled runs on a *plan*, built once per
input shape:

* the first call at a shape runs eagerly and records the layers it calls, in order,
  and which layer's result went straight into which (``bn(conv(x))``, or one layer
  after another in a ``Sequential``, with no name holding the result);
* a convolution or Linear whose result goes straight into a BatchNorm gets the
  batch norm's running statistics folded into its weight and bias, and an activation
  layer that takes the result straight from either runs in the layer's epilogue; the
  folded layers then pass their input through;
* a Linear's constant weight is packed once into the matrix-multiply panel layout;
* every planned layer (Linear, Conv1d/Conv2d, BatchNorm, pooling, the pointwise
  activations) writes into its own buffer, allocated when the plan is built, and
  calls its kernel straight away, with no argument checks, dtype conversions or
  graph recording: a repeated call allocates no arrays (the result is copied out
  unless the caller takes the buffer, as ``predict`` does).

The model's own ``forward`` still runs, so control flow and the operations between
layers (a residual ``x + y``, ``flatten``, ``mean``) are the model's; layers of other
kinds run as they are. The plan is dropped and rebuilt when a parameter or buffer
changes (an optimizer step, ``load_state_dict``, an in-place op, a new ``.data``)
or when any module's mode changes, and not used at all in training mode or with
grad enabled. A forward that calls its layers in another order than when traced
(control flow that depends on the data) is detected: that call reruns eagerly and
the shape is no longer planned. Results equal the eager eval forward within float32
rounding (folding reorders the arithmetic). A plan is used by one thread at a
time; another thread meanwhile runs eagerly.
"""
import sys
import threading
import weakref
from collections import OrderedDict

import numpy as np

from . import _plan_steps as steps_mod
from . import _planstate
from .autograd.grad_mode import _state as _grad_state
from .nn import module as _module
from .nn.module import Module
from .ops.activation import RELU
from .ops.activation import relu as _ops_relu
from .ops.arith import ADD
from .ops.arith import add as _ops_add
from .tensor import Tensor, _wrap


__all__ = ["compile", "CompiledModule", "run"]

MAX_PLANS = 4  # plans kept per model (input shapes), least recently used dropped first
_PLANS = weakref.WeakKeyDictionary()  # model -> OrderedDict(signature -> Plan or _Dynamic)
_LOCK = threading.Lock()


class Call:
    """One traced call: ``key`` (the module, or an operation's name), its Tensor
    inputs (None for a call a plan cannot take over), its output, and for each input
    whether it came as a temporary (no name held it, so nothing else can read it)."""

    __slots__ = ("key", "inputs", "out", "temporary")

    def __init__(self, key, inputs, out, temporary):
        self.key, self.inputs, self.out, self.temporary = key, inputs, out, temporary


class _Tracer:
    """Runs the first call at a shape eagerly, recording the calls of plannable layers
    and of the operations a plan may fuse. A plannable layer's own forward runs with
    no plan set, in the trace as in the plan, so what it calls inside is not recorded."""

    def __init__(self, baselines=None):
        self.calls = []
        self.baselines = baselines  # path -> references of a temporary argument (None: calibrating)
        self.refs = ()

    def _temporaries(self, args, path):
        """Per argument: True when it came as a temporary (its references, counted the
        same way on every path, equal the calibrated ones)."""
        self.refs = refs = tuple(sys.getrefcount(a) for a in args)
        if self.baselines is None:
            return None
        base = self.baselines.get(path)
        recorded = {id(c.out) for c in self.calls}
        # a temporary's references, plus this tracer's record of it when a recorded call made it
        return tuple(base is not None and r == base + (id(a) in recorded) for a, r in zip(args, refs))

    def module_call(self, module, inputs, kwargs):
        single = len(inputs) == 1 and not kwargs and isinstance(inputs[0], Tensor)
        temporary = self._temporaries(inputs, "module") if single else None
        if type(module) not in steps_mod.PLANNABLE:
            return module.forward(*inputs, **kwargs)
        state = _planstate.plan_state
        state.plan = None
        try:
            out = module.forward(*inputs, **kwargs)
        finally:
            state.plan = self
        self.calls.append(Call(module, inputs if single else None, out, temporary))
        return out

    def op_call(self, key, fn, args):
        method = sys._getframe(2).f_code in _METHOD_CODES  # x + y (Tensor.__add__), not add(x, y)
        tensors = all(isinstance(a, Tensor) for a in args)
        temporary = self._temporaries(args, (key, method)) if tensors else None
        state = _planstate.plan_state
        state.plan = None
        try:
            out = fn(*args)
        finally:
            state.plan = self
        self.calls.append(Call(key, args if tensors else None, out, temporary))
        return out


_METHOD_CODES = frozenset((Tensor.__add__.__code__,))


class _Probe(Module):
    def forward(self, x):
        return x


def _calibrate():
    """The references a tracer sees to a temporary argument on each path: a layer call
    (``bn(conv(x))``, or ``Sequential``'s plan-mode loop), ``add(a, b)``, ``a + b`` and
    ``relu(x)``."""
    tracer, state = _Tracer(), _planstate.plan_state
    found = {}
    state.plan = tracer
    try:
        _Probe()(_wrap(np.zeros(1)))
        found["module"] = tracer.refs[0]
        _ops_add(_wrap(np.zeros(1)), _wrap(np.zeros(1)))
        found[(ADD, False)] = tracer.refs[0]
        _wrap(np.zeros(1)) + _wrap(np.zeros(1))
        found[(ADD, True)] = tracer.refs[0]
        _ops_relu(_wrap(np.zeros(1)))
        found[(RELU, False)] = tracer.refs[0]
    finally:
        state.plan = None
    return found


_BASELINES = []


class Plan:
    """The steps of one model at one input signature, and what invalidates them."""

    def __init__(self, model, steps, generation):
        self.model = model
        self.steps = steps
        self.generation = generation
        self.state = [(t, t.data, t._version) for t in _tensors(model)]
        self.buffers = {id(b) for s in steps for b in s.owned()}
        self.lock = threading.Lock()
        self.pos = 0
        self.chain = steps_mod.flat_chain(model, steps)

    def valid(self):
        if self.generation != _module.mode_generation():
            return False
        for t, data, version in self.state:
            if t.data is not data or t._version != version:
                return False
        return True

    def _next(self, key):
        i = self.pos
        steps = self.steps
        if i < len(steps) and steps[i].key is key:
            self.pos = i + 1
            return steps[i]
        raise steps_mod.Diverged()

    def module_call(self, module, inputs, kwargs):
        if type(module) not in steps_mod.PLANNABLE:
            return module.forward(*inputs, **kwargs)
        step = self._next(module)
        if kwargs:
            raise steps_mod.Diverged()
        return step(*inputs)

    def op_call(self, key, fn, args):
        return self._next(key)(*args)

    def run(self, args, copy):
        if self.chain is not None and len(args) == 1:  # a plain Sequential: the steps one after another
            x = args[0]
            for call in self.chain:
                x = call(x)
            return _own(x, self.buffers) if copy else x
        self.pos = 0
        state = _planstate.plan_state
        state.plan = self
        try:
            out = self.model(*args)
        finally:
            state.plan = None
        if self.pos != len(self.steps):
            raise steps_mod.Diverged()
        return _own(out, self.buffers) if copy else out

    def owns(self, array):
        return _root(array) in self.buffers


def _root(a):
    while a.base is not None:
        a = a.base
    return id(a)


def _own(out, buffers):
    """``out`` with every Tensor whose memory is a plan buffer replaced by a copy."""
    if isinstance(out, Tensor):
        return _wrap(out.data.copy()) if _root(out.data) in buffers else out
    if isinstance(out, tuple):
        return tuple(_own(o, buffers) for o in out)
    return out


def _tensors(model):
    seen = {}
    for m in model.modules():
        for t in list(m._parameters.values()) + list(m._buffers.values()):
            if t is not None:
                seen[id(t)] = t
    return list(seen.values())


def _signature(args):
    sig = []
    for a in args:
        if isinstance(a, Tensor):
            a = a.data
        elif not isinstance(a, np.ndarray):
            return None
        sig.append((a.shape, a.dtype.str, a.flags.c_contiguous, a.flags.writeable))
    return tuple(sig)


def trace(model, args):
    """Run ``model(*args)`` eagerly (it is the caller's result) and build the Plan
    (or _Dynamic, when no layer is plannable) for its input signature."""
    generation = _module.mode_generation()
    if not _BASELINES:
        _BASELINES.append(_calibrate())
    tracer, state = _Tracer(_BASELINES[0]), _planstate.plan_state
    state.plan = tracer
    try:
        out = model(*args)
    finally:
        state.plan = None
    calls = tracer.calls
    if not any(isinstance(c.key, Module) for c in calls):
        return _Dynamic(generation), out
    return Plan(model, steps_mod.make_steps(calls), generation), out


class _Dynamic:
    """A signature whose forward did not replay its trace: eager until the next mode change."""

    def __init__(self, generation):
        self.generation = generation


def run(model, args, copy=True):
    """``model(*args)``, on its plan when eval mode and grad-disabled allow one.
    ``copy=False``: the result may be a plan buffer, overwritten by the next call."""
    if _grad_state.enabled or model.training or _planstate.plan_state.plan is not None:
        return model(*args)
    sig = _signature(args)
    if sig is None:
        return model(*args)
    args = tuple(a if isinstance(a, Tensor) else _wrap(a) for a in args)
    with _LOCK:
        plans = _PLANS.get(model)
        if plans is None:
            plans = _PLANS[model] = OrderedDict()
        plan = plans.get(sig)
        if plan is not None:
            plans.move_to_end(sig)
    if isinstance(plan, _Dynamic) and plan.generation == _module.mode_generation():
        return model(*args)
    if not isinstance(plan, Plan) or not plan.valid():
        plan, out = trace(model, args)
        with _LOCK:
            plans[sig] = plan
            while len(plans) > MAX_PLANS:
                plans.popitem(last=False)
        return out
    if not plan.lock.acquire(blocking=False):
        return model(*args)
    try:
        return plan.run(args, copy)
    except steps_mod.Diverged:
        with _LOCK:
            plans[sig] = _Dynamic(_module.mode_generation())
        return model(*args)
    finally:
        plan.lock.release()


class CompiledModule(Module):
    """``model`` running on inference plans in eval mode without grad; in training
    mode, or with grad enabled, exactly ``model``. Returned by :func:`compile`.

    The original is ``_orig_mod`` (as in PyTorch, ``state_dict`` keys gain that prefix);
    attribute reads fall through to it.
    """

    def __init__(self, model):
        super().__init__()
        if not isinstance(model, Module):
            raise TypeError(f"fastnn.compile: expected a fastnn.nn.Module, got {type(model).__name__}")
        self._orig_mod = model
        object.__setattr__(self, "training", model.training)

    @classmethod
    def _from_config(cls, config, children):  # fastnn.save/load: the wrapped model is the child
        return cls(children["_orig_mod"])

    def forward(self, *args, **kwargs):
        if kwargs:
            return self._orig_mod(*args, **kwargs)
        return run(self._orig_mod, args)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            modules = self.__dict__.get("_modules")
            if not modules or "_orig_mod" not in modules:  # (mid-unpickling, say)
                raise
            return getattr(modules["_orig_mod"], name)


def compile(model, *, fullgraph=False, dynamic=None, backend=None, mode=None, options=None,  # noqa: A001
            disable=False):
    """``torch.compile`` for inference: ``model`` wrapped so that its eval-mode,
    grad-disabled calls run on inference plans (see this module's docstring).

    The keyword arguments are accepted for PyTorch code and ignored, except
    ``disable=True``, which returns ``model`` itself.

    Example:
        >>> fast = fastnn.compile(model).eval()
        >>> with fastnn.no_grad():
        ...     scores = fast(x)  # first call per input shape builds the plan
    """
    if disable:
        return model
    return CompiledModule(model)
