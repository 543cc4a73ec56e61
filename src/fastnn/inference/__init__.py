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
  unless the caller takes the buffer, as ``predict`` does);
* a plain ``Sequential`` of such layers (and of views such as ``Flatten`` between
  them) runs as kernel calls bound once to the buffers they read and write: only
  the first checks its input, and the views cost nothing;
* a TransformerEncoderLayer called without masks runs its eval forward as direct
  kernel calls into scratch the plan owns (``encoder_step``; the eager bits);
* an RNN, LSTM or GRU called on its input alone runs its kernels on constants made
  once: packed weights, summed biases, work arrays (``recurrent_step``);
* inside layers that run as they are, ``linear`` takes the model's weights packed
  once per plan (``packs``).

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
import threading
import weakref
from collections import OrderedDict

import numpy as np

from .. import _planstate
from ..autograd.grad_mode import _state as _grad_state
from ..nn import module as _module
from ..nn.module import Module
from ..tensor import Tensor, _wrap
from .build import make_steps
from .plan import Plan
from .steps import Diverged
from .tracing import Tracer, calibrate

__all__ = ["compile", "CompiledModule", "reset", "run"]

MAX_PLANS = 4  # plans kept per model (input shapes), least recently used dropped first
_PLANS = weakref.WeakKeyDictionary()  # model -> OrderedDict(signature -> Plan or _Dynamic)
_LOCK = threading.Lock()
_BASELINES = []  # the tracer's calibrated reference counts, once per process


def _signature(args):
    sig = []
    for a in args:
        if isinstance(a, Tensor):
            a = a.data
        elif not isinstance(a, np.ndarray):
            return None
        flags = a.flags
        sig.append((a.shape, a.dtype, flags.c_contiguous, flags.writeable))
    return tuple(sig)


def _float_dtype(args):
    """The dtype of the first float array among ``args`` (float32 when there is none)."""
    for a in args:
        a = a.data if isinstance(a, Tensor) else a
        if isinstance(a, np.ndarray) and a.dtype in (np.float32, np.float64):
            return a.dtype
    return np.dtype(np.float32)


def trace(model, args):
    """Run ``model(*args)`` eagerly (it is the caller's result) and build the Plan
    (or _Dynamic, when no layer is plannable) for its input signature."""
    generation = _module.mode_generation()
    if not _BASELINES:
        _BASELINES.append(calibrate(_float_dtype(args)))
    tracer, state = Tracer(_BASELINES[0]), _planstate.plan_state
    state.plan = tracer
    try:
        out = model(*args)
    finally:
        state.plan = None
    calls = tracer.calls
    if not any(isinstance(c.key, Module) for c in calls):
        return _Dynamic(generation), out
    return Plan(model, make_steps(calls), generation), out


_SEEN = weakref.WeakKeyDictionary()  # model -> OrderedDict of signatures seen once (inference_mode)


def _first_sight(model, sig):
    """True the first time ``sig`` comes for ``model`` (of the last ``2 * MAX_PLANS``
    signatures without a plan); it is then remembered. Under ``_LOCK``."""
    seen = _SEEN.get(model)
    if seen is None:
        seen = _SEEN[model] = OrderedDict()
    if sig in seen:
        del seen[sig]
        return False
    seen[sig] = None
    while len(seen) > 2 * MAX_PLANS:
        seen.popitem(last=False)
    return True


class _Dynamic:
    """A signature whose forward did not replay its trace: eager until the next mode change."""

    def __init__(self, generation):
        self.generation = generation


def run(model, args, copy=True, auto=False):
    """``model(*args)``, on its plan when eval mode and grad-disabled allow one.
    ``copy=False``: the result may be a plan buffer, overwritten by the next call.
    ``auto`` (``inference_mode``): a shape's first call runs as it is and the second
    traces the plan, so that shapes seen once never pay for a plan."""
    if _grad_state.enabled or model.training or _planstate.plan_state.plan is not None:
        return model(*args)
    sig = _signature(args)
    if sig is None:
        return model(*args)
    given = args
    if len(args) != 1 or type(args[0]) is not Tensor:
        args = tuple(a if isinstance(a, Tensor) else _wrap(a) for a in args)
    plans = _PLANS.get(model)
    plan = None if plans is None else plans.get(sig)
    if type(plan) is Plan and plan.valid():  # the usual call: no global lock (a dict's get and
        try:                                 # move_to_end are atomic)
            plans.move_to_end(sig)
        except KeyError:  # (another thread dropped it meanwhile: it still works)
            pass
        return _run_plan(model, plans, sig, plan, args, copy)
    with _LOCK:
        plans = _PLANS.get(model)
        if plans is None:
            plans = _PLANS[model] = OrderedDict()
        plan = plans.get(sig)
        if plan is not None:
            plans.move_to_end(sig)
        first = plan is None and auto and _first_sight(model, sig)
    if first:
        return model(*given)
    if isinstance(plan, _Dynamic) and plan.generation == _module.mode_generation():
        return model(*args)
    if not isinstance(plan, Plan) or not plan.valid():
        plan, out = trace(model, args)
        with _LOCK:
            plans[sig] = plan
            while len(plans) > MAX_PLANS:
                plans.popitem(last=False)
        return out
    return _run_plan(model, plans, sig, plan, args, copy)


def _run_plan(model, plans, sig, plan, args, copy):
    if not plan.lock.acquire(blocking=False):
        return model(*args)
    try:
        return plan.run(args, copy)
    except Diverged:
        with _LOCK:
            plans[sig] = _Dynamic(_module.mode_generation())
        return model(*args)
    finally:
        plan.lock.release()


def reset(model=None):
    """Drop the plans of ``model`` (a model or its ``CompiledModule``), or of every
    model: the next call traces again. Needed only after writing a parameter through
    a raw NumPy view (``p.data[...] = v``), which a plan cannot see."""
    with _LOCK:
        if model is None:
            _PLANS.clear()
        else:
            _PLANS.pop(getattr(model, "_orig_mod", model), None)


class CompiledModule(Module):
    """``model`` running on inference plans in eval mode without grad; in training
    mode, or with grad enabled, exactly ``model``. Returned by :func:`compile`.

    The original is ``_orig_mod`` (as in PyTorch, ``state_dict`` keys gain that prefix);
    attribute reads fall through to it.
    """

    _auto_plan = False  # it plans on its own, from the first call at a shape

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
        model = self._modules["_orig_mod"]  # (not through __getattr__: read on every call)
        if kwargs:
            return model(*args, **kwargs)
        return run(model, args)

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
