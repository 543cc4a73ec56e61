"""A plan: the steps of one model at one input signature, what invalidates it, and
how it runs (the model's forward with the steps standing in, or a plain loop)."""
import threading

import numpy as np

from .. import _planstate
from ..nn import module as _module
from ..tensor import Tensor, _wrap
from .build import PLANNABLE, bound_chain, flat_chain, plain_kwargs
from .packs import PackedWeights
from .steps import Diverged, Step


class Plan:
    """The steps of one model at one input signature, and what invalidates them."""

    def __init__(self, model, steps, generation):
        self.model = model
        self.steps = steps
        self.generation = generation
        self.state = [(t, t.data, t._version) for t in _tensors(model)]
        self.buffers = {_root(b) for s in steps for b in s.owned()}  # the arrays its steps' views are of
        self.lock = threading.Lock()
        self.pos = 0
        self.chain = flat_chain(model, steps)
        self.bound = None if self.chain is None else bound_chain(self.chain)
        self.packs = PackedWeights(t for t, _, _ in self.state)

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
        raise Diverged()

    def module_call(self, module, inputs, kwargs):
        if type(module) not in PLANNABLE:
            return module.forward(*inputs, **kwargs)
        step = self._next(module)
        if kwargs and not plain_kwargs(module, kwargs):
            if type(step) is not Step:  # a call the step was not built for (masks, say)
                raise Diverged()
            return step(*inputs, **kwargs)
        return step(*inputs)

    def op_call(self, key, fn, args):
        return self._next(key)(*args)

    def run(self, args, copy):
        bound = self.bound if len(args) == 1 else None
        if bound is not None and not bound[3]:  # the chain below, bound to its buffers
            return _run_bound(bound, args[0], copy)
        state = _planstate.plan_state
        outer, state.packs = state.packs, self.packs
        try:
            if bound is not None:  # the same, with the plan's packed weights set
                return _run_bound(bound, args[0], copy)
            out = self._run(args)
        finally:
            state.packs = outer
        return _own(out, self.buffers) if copy else out

    def _run(self, args):
        if self.chain is not None and len(args) == 1:  # a plain Sequential: the steps one after another
            x = args[0]
            for call in self.chain:
                x = call(x)
            return x
        self.pos = 0
        state = _planstate.plan_state
        state.plan = self
        try:
            out = self.model(*args)
        finally:
            state.plan = None
        if self.pos != len(self.steps):
            raise Diverged()
        return out


def _run_bound(bound, x, copy):
    first, calls, last, _ = bound
    first(x)  # (checks the input)
    for call in calls:
        call()
    return _wrap(last.out.copy()) if copy else last.result


def _root(a):
    while isinstance(a.base, np.ndarray):  # (an array a kernel allocated has a MemInfo base)
        a = a.base
    return id(a)


def _own(out, buffers):
    """``out`` with every Tensor whose memory is a plan buffer replaced by a copy."""
    if isinstance(out, Tensor):
        return _wrap(out.data.copy()) if _root(out.data) in buffers else out
    if isinstance(out, tuple):
        items = [_own(o, buffers) for o in out]
        return type(out)(*items) if hasattr(out, "_fields") else tuple(items)  # (a namedtuple keeps its type)
    if isinstance(out, list):
        return [_own(o, buffers) for o in out]
    if isinstance(out, dict):
        return type(out)((k, _own(v, buffers)) for k, v in out.items())
    return out


def _tensors(model):
    seen = {}
    for m in model.modules():
        for t in list(m._parameters.values()) + list(m._buffers.values()):
            if t is not None:
                seen[id(t)] = t
    return list(seen.values())
