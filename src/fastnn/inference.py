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
from .autograd.grad_mode import _state as _grad_state
from .nn import module as _module
from .nn.module import Module
from .tensor import Tensor, _wrap


__all__ = ["compile", "CompiledModule", "run"]

MAX_PLANS = 4  # plans kept per model (input shapes), least recently used dropped first
_PLANS = weakref.WeakKeyDictionary()  # model -> OrderedDict(signature -> Plan or _Dynamic)
_LOCK = threading.Lock()


class _Tracer:
    """Records each call of a plannable layer as (module, input Tensor or None, output,
    references to the input when called). The first call at a shape runs eagerly
    through it: its result is the caller's, and the forward runs only once."""

    def __init__(self):
        self.calls = []
        self.refs = 0

    def module_call(self, module, inputs, kwargs):
        x = inputs[0] if len(inputs) == 1 and not kwargs else None
        self.refs = sys.getrefcount(x)
        out = module.forward(*inputs, **kwargs)
        if type(module) in steps_mod.PLANNABLE:
            self.calls.append((module, x, out, self.refs))
        return out


class _Probe(Module):
    def forward(self, x):
        return x


def _temporary_refs():
    """The references a tracer sees to a Tensor passed straight from one call into
    another (``bn(conv(x))``, or ``Sequential``'s plan-mode loop): no name holds it."""
    tracer, state = _Tracer(), _module.plan_state
    state.plan = tracer
    try:
        _Probe()(_wrap(np.empty(0)))
    finally:
        state.plan = None
    return tracer.refs


_TEMPORARY = []


def _links(calls):
    """For each call, the earlier call whose output it took (or None), and whether
    each call's output went on as a temporary into its one consumer (so nothing else
    can read it: a layer may fold into the one before it)."""
    if not _TEMPORARY:
        _TEMPORARY.append(_temporary_refs())
    producer = {id(out): i for i, (_, _, out, _) in enumerate(calls)}
    links, exclusive = [None] * len(calls), [False] * len(calls)
    for j, (_, x, _, refs) in enumerate(calls):
        i = producer.get(id(x)) if x is not None else None
        if i is not None and i < j and calls[i][2] is x:
            links[j] = i
            # a temporary's references, plus this tracer's own record of it as an output
            exclusive[i] = refs == _TEMPORARY[0] + 1 and links.count(i) == 1
    return links, exclusive


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

    def module_call(self, module, inputs, kwargs):
        i = self.pos
        steps = self.steps
        if i < len(steps) and steps[i].module is module:
            self.pos = i + 1
            if len(inputs) != 1 or kwargs:
                raise steps_mod.Diverged()
            return steps[i](inputs[0])
        if type(module) in steps_mod.PLANNABLE:
            raise steps_mod.Diverged()
        return module.forward(*inputs, **kwargs)

    def run(self, args, copy):
        if self.chain is not None and len(args) == 1:  # a plain Sequential: the steps one after another
            x = args[0]
            for call in self.chain:
                x = call(x)
            return _own(x, self.buffers) if copy else x
        self.pos = 0
        state = _module.plan_state
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
        sig.append((a.shape, a.dtype.str, a.flags.c_contiguous))
    return tuple(sig)


def trace(model, args):
    """Run ``model(*args)`` eagerly (it is the caller's result) and build the Plan
    (or _Dynamic, when no layer is plannable) for its input signature."""
    generation = _module.mode_generation()
    tracer, state = _Tracer(), _module.plan_state
    state.plan = tracer
    try:
        out = model(*args)
    finally:
        state.plan = None
    calls = tracer.calls
    if not calls:
        return _Dynamic(generation), out
    links, exclusive = _links(calls)
    return Plan(model, steps_mod.make_steps(calls, links, exclusive), generation), out


class _Dynamic:
    """A signature whose forward did not replay its trace: eager until the next mode change."""

    def __init__(self, generation):
        self.generation = generation


def run(model, args, copy=True):
    """``model(*args)``, on its plan when eval mode and grad-disabled allow one.
    ``copy=False``: the result may be a plan buffer, overwritten by the next call."""
    if _grad_state.enabled or model.training or _module.plan_state.plan is not None:
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
