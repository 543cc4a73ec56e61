"""From a trace to steps: a Linear or convolution takes in the BatchNorm, the
activation and the residual add (and the activation after it) that its result goes
into as a temporary; every other call gets a step of its own; a plain Sequential
of steps and views runs as a loop."""
import numpy as np

from ..kernels import activations as act_k
from ..kernels import aligned
from ..nn.activation import GELU, LeakyReLU, ReLU, Sigmoid, Tanh
from ..nn.containers import Sequential
from ..nn.conv import Conv2d
from ..nn.conv_extra import Conv1d
from ..nn.dropout import Dropout, Dropout1d, Dropout2d
from ..nn.linear import Flatten, Identity, Linear
from ..nn.normalization import BatchNorm1d, BatchNorm2d
from ..nn.pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from ..nn.transformer import TransformerEncoderLayer
from ..ops.activation import ACTIVATION_KINDS, RELU, relu
from ..ops.arith import ADD, add
from .encoder_step import EncoderLayerStep, encoder_ok, plain_encoder_kwargs
from .recurrent_step import RECURRENT, RecurrentStep, recurrent_ok
from .steps import (
    ActivationStep, LayerStep, NormStep, Passed, PoolStep, ResidualStep, Step, _Buffered, pools_in_epilogue,
)

_ACTIVATIONS = (ReLU, LeakyReLU, Sigmoid, Tanh, GELU)
_LAYERS = (Linear, Conv1d, Conv2d)
_NORMS = (BatchNorm1d, BatchNorm2d)
PLANNABLE = frozenset(_ACTIVATIONS + _LAYERS + _NORMS + RECURRENT + (MaxPool2d, AvgPool2d, AdaptiveAvgPool2d,
                                                                     TransformerEncoderLayer))
_VIEWS = frozenset((Flatten, Identity))  # layers that return a view of their input (no arithmetic)
_DROPOUTS = frozenset((Dropout, Dropout1d, Dropout2d))  # the input itself, in eval mode


def plain_kwargs(module, kwargs):
    """True when a call's keyword arguments leave it what a step computes: none, or an
    encoder layer's masks left None (``TransformerEncoder`` passes them by name)."""
    return not kwargs or (type(module) is TransformerEncoderLayer and plain_encoder_kwargs(kwargs))


def _epilogue(module):
    """(kind, slope) of an activation layer a preceding layer can fuse, or None."""
    act = getattr(module, "epilogue", None) if isinstance(module, _ACTIVATIONS) else None
    return None if act is None else (ACTIVATION_KINDS[act[0]], float(act[1]))


def _plain(module, x, out, rank=None):
    """True when a traced call can be planned: float input of the weight's dtype
    (when it has one) and ``rank`` dims, a Tensor result, the class's own forward."""
    xd = getattr(x, "data", None)
    if type(xd) is not np.ndarray or xd.dtype.kind != "f" or type(getattr(out, "data", None)) is not np.ndarray:
        return False
    if (module is not None and "forward" in module.__dict__) or (rank is not None and xd.ndim != rank):
        return False
    w = getattr(module, "weight", None)
    return w is None or w.data.dtype == xd.dtype


def _folds(bn, layer, rank):
    """True when BatchNorm ``bn`` (eval, running statistics) normalises the output
    channels of ``layer`` (whose output has ``rank`` dims), so it folds into it."""
    if not isinstance(bn, _NORMS) or bn.training or not bn.track_running_stats or "forward" in bn.__dict__:
        return False
    if isinstance(layer, Conv2d):
        return isinstance(bn, BatchNorm2d)
    return isinstance(bn, BatchNorm1d) and rank == (3 if isinstance(layer, Conv1d) else 2)


def _layer_ok(module, x, out):
    if isinstance(module, Linear):
        return _plain(module, x, out) and x.data.ndim >= 2
    return _plain(module, x, out, module._dims + 2) and module._explicit is None


def _single(call, alloc, workspaces):
    """The step of a call that absorbs nothing (``alloc(shape, dtype)``: its buffer)."""
    key, x, out = call.key, call.inputs[0] if call.inputs else None, call.out
    if key is RELU:
        ok = x is not None and _plain(None, x, out)
        return ActivationStep(key, x, act_k.RELU, 0.0, alloc) if ok else Step(key, relu)
    if key is ADD:
        return Step(key, add)
    if x is None:
        return Step(key)
    if isinstance(key, _NORMS):
        ok = _plain(key, x, out) and not key.training and key.track_running_stats and x.data.ndim >= 2
        return NormStep(key, x, alloc) if ok else Step(key)
    if isinstance(key, _ACTIVATIONS):
        act = _epilogue(key)
        if act is None and isinstance(key, GELU) and key.approximate == "none":
            act = (ACTIVATION_KINDS["gelu"], 0.0)
        return ActivationStep(key, x, *act, alloc) if act is not None and _plain(key, x, out) else Step(key)
    if isinstance(key, RECURRENT):
        return RecurrentStep(key, x, workspaces) if recurrent_ok(key, x) else Step(key)
    if isinstance(key, TransformerEncoderLayer):
        ok = _plain(key, x, out, 3) and encoder_ok(key, x)
        return EncoderLayerStep(key, x, workspaces, alloc) if ok else Step(key)
    if isinstance(key, (MaxPool2d, AvgPool2d, AdaptiveAvgPool2d)):
        ok = _plain(key, x, out, 4) and not getattr(key, "return_indices", False) \
            and getattr(key, "divisor_override", None) is None
        return PoolStep(key, x, out, alloc) if ok else Step(key)
    return Step(key)


def _act_of(call):
    """(kind, slope) when ``call`` is an activation a preceding step can apply, or None."""
    if call.key is RELU:
        return (act_k.RELU, 0.0)
    return _epilogue(call.key) if "forward" not in getattr(call.key, "__dict__", {}) else None


def make_steps(calls):
    """Steps for the traced ``calls``: a Linear or convolution takes in the BatchNorm,
    the activation and the residual add (and the activation after it) that its result
    goes into, each as a temporary; every other call gets a step of its own."""
    n = len(calls)
    producer = {id(c.out): i for i, c in enumerate(calls)}
    consumer = [None] * n  # (call, argument index) that took call i's output as a temporary
    for j, c in enumerate(calls):
        for k, (a, temporary) in enumerate(zip(c.inputs or (), c.temporary or ())):
            i = producer.get(id(a))
            if temporary and i is not None and i < j and calls[i].out is a:
                consumer[i] = (j, k)
    ends = [n if consumer[i] is None else consumer[i][0] for i in range(n)]  # last call reading each output
    steps, workspaces, buffers = [None] * n, {}, _Buffers()
    for i, c in enumerate(calls):
        if steps[i] is not None:
            continue
        module, x = c.key, c.inputs[0] if c.inputs else None
        if not isinstance(module, _LAYERS) or x is None or not _layer_ok(module, x, c.out):
            steps[i] = _single(c, buffers.taker(i, ends[i]), workspaces)
            continue
        bn, act, folded, last = None, (act_k.IDENTITY, 0.0), [], i
        j = consumer[i]
        if j is not None and _folds(calls[j[0]].key, module, c.out.data.ndim):
            bn, last = calls[j[0]].key, j[0]
            folded.append(last)
        j = consumer[last]
        if j is not None and _act_of(calls[j[0]]) is not None:
            act, last = _act_of(calls[j[0]]), j[0]
            folded.append(last)
        pooled, j = None, consumer[last]
        if j is not None and pools_in_epilogue(module, x, c.out, calls[j[0]].key):
            pooled, last = calls[j[0]].out, j[0]
            folded.append(last)
        residual = None
        j = consumer[last]
        if (pooled is None and j is not None and calls[j[0]].key is ADD
                and calls[j[0]].out.data.shape == c.out.data.shape):
            after = consumer[j[0]]
            residual = (j, _act_of(calls[after[0]]) if after is not None else None, after)
            last = j[0] if residual[1] is None else after[0]
        # the buffer lives until the last call reading it under any of its names
        step = steps[i] = LayerStep(module, x, c.out, bn, act, workspaces, buffers.taker(i, ends[last]), pooled)
        for j in folded:
            steps[j] = Passed(calls[j].key, step)
        if residual is not None:
            (add_at, index), act2, after = residual
            steps[add_at] = ResidualStep(step, index, act2 or (act_k.IDENTITY, 0.0))
            if act2 is not None:
                steps[after[0]] = Passed(calls[after[0]].key, step)
    return steps


class _Buffers:
    """The steps' output buffers: one is reused by a later step once every call that
    reads it has run (the trace says which; a result a name held is read till the end)."""

    def __init__(self):
        self.free, self.busy = [], []  # arrays of bytes; (last reader, array)

    def taker(self, at, end):
        """``alloc(shape, dtype)`` for the step of call ``at``, read until call ``end``."""
        def alloc(shape, dtype):
            still = []
            for last, buf in self.busy:
                (self.free.append(buf) if last < at else still.append((last, buf)))
            self.busy = still
            nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
            fits = [k for k, b in enumerate(self.free) if b.size >= nbytes]
            if fits:
                buf = self.free.pop(min(fits, key=lambda k: self.free[k].size))
            else:
                buf = aligned.bytes_view(nbytes)  # (starts on a cache line)
            self.busy.append((end, buf))
            return buf[:nbytes].view(dtype).reshape(shape)
        return alloc


def flat_chain(model, steps):
    """The calls that replace ``model``'s forward when it is a ``Sequential`` whose
    children are each a step (in order), a view, an eval-mode dropout or a module of
    no parameters, buffers or children that made no step (a custom ``x[:, -1]``, say):
    its steps (the folded ones left out), the views' ``forward`` and those modules
    themselves, one after another. None otherwise."""
    if type(model) is not Sequential or "forward" in model.__dict__:
        return None
    chain, k = [], 0
    for child in model._modules.values():
        if "forward" in child.__dict__:
            return None
        if k < len(steps) and steps[k].key is child:
            if isinstance(steps[k], RecurrentStep):  # Sequential passes on a recurrent layer's output
                chain.append(steps[k].output)
            elif not isinstance(steps[k], Passed):
                chain.append(steps[k])
            k += 1
        elif type(child) in _VIEWS:
            chain.append(child.forward)
        elif type(child) in _DROPOUTS:
            if child.training:
                return None
        elif not (child._parameters or child._buffers or child._modules):
            # (a step its forward made would be the next one: the count below then fails)
            chain.append(child)
        else:
            return None
    return chain if k == len(steps) else None


def bound_chain(chain):
    """``(first, calls, last, packs)`` running ``chain`` (``flat_chain``'s) with each step
    after the first bound to its input where it lies: the buffer of the buffered step
    before it, reshaped to what the trace saw when only views (``Flatten``,
    ``Identity``) stand between them, so that the views cost nothing and no step
    checks an input the plan made itself. ``first`` is called with the model's input
    (and checks it), then each of ``calls`` with no argument; ``last.result`` is the
    output. None when the chain holds anything else: a step run as it is, a view at
    its end, an input the buffer before cannot be viewed as. ``packs``: whether a
    step reads the plan's packed weights (``_planstate.plan_state.packs``)."""
    first = chain[0] if chain and isinstance(chain[0], _Buffered) else None
    if first is None or not isinstance(chain[-1], _Buffered):
        return None
    calls, prev = [], first
    for item in chain[1:]:
        if not isinstance(item, _Buffered):
            if getattr(item, "__self__", None).__class__ not in _VIEWS:
                return None
            continue
        if item.gather is not None or item.dtype != prev.dtype or prev.out.size != int(np.prod(item.shape)):
            return None
        xd = prev.out.reshape(item.shape)
        if not np.shares_memory(xd, prev.out):
            return None
        calls.append(item.bind(xd))
        prev = item
    return first, calls, prev, any(step.uses_packs for step in chain if isinstance(step, _Buffered))
