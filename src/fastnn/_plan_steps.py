"""The steps of an inference plan (``fastnn.inference``): one per traced call of a
plannable layer, each calling its kernel into a buffer it owns.

``make_steps`` turns a trace into steps: a Linear or convolution absorbs the
BatchNorm and the activation layer that alone consume its result (their steps then
pass the buffer through), and the other plannable layers get steps of their own.
A step checks its input against the trace and raises ``Diverged`` otherwise.
"""
import numpy as np

from .kernels import activations as act_k
from .kernels import conv as conv_k
from .kernels import conv1d as conv1d_k
from .kernels import matmul_packed as packed_k
from .kernels import norm as norm_k
from .kernels.elementwise import add as add_kernel
from .kernels._threading import get_threads
from .kernels.conv_plan import Workspace
from .nn.activation import GELU, LeakyReLU, ReLU, Sigmoid, Tanh
from .nn.conv import Conv2d
from .nn.containers import Sequential
from .nn.conv_extra import Conv1d
from .nn.dropout import Dropout, Dropout1d, Dropout2d
from .nn.linear import Flatten, Identity, Linear
from .nn.normalization import BatchNorm1d, BatchNorm2d
from .nn.pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from ._planstate import plan_state
from .ops.activation import ACTIVATION_KINDS, RELU, relu
from .ops.arith import ADD, add
from .ops.conv1d_packed import packs
from .ops.linear import linear_into
from .ops.pool import _NO_INDEX, adaptive_avg_plan, avg_pool_into, max_pool_into, pool_plan
from .tensor import _wrap

_ACTIVATIONS = (ReLU, LeakyReLU, Sigmoid, Tanh, GELU)
_LAYERS = (Linear, Conv1d, Conv2d)
_NORMS = (BatchNorm1d, BatchNorm2d)
PLANNABLE = frozenset(_ACTIVATIONS + _LAYERS + _NORMS + (MaxPool2d, AvgPool2d, AdaptiveAvgPool2d))
_VIEWS = frozenset((Flatten, Identity))  # layers that return a view of their input (no arithmetic)
_DROPOUTS = frozenset((Dropout, Dropout1d, Dropout2d))  # the input itself, in eval mode


class Diverged(Exception):
    """A planned layer was called out of the traced order, or on another input."""


class Step:
    """A call run as it is (a layer's forward, or an operation; it allocates its
    result), with no plan set meanwhile. The base of the planned steps: ``key`` is
    the module, or the operation's name, that the trace recorded."""

    def __init__(self, key, fn=None):
        self.key = key
        self.fn = key.forward if fn is None else fn

    def owned(self):
        return ()

    def __call__(self, *args):
        state = plan_state
        plan, state.plan = state.plan, None
        try:
            return self.fn(*args)
        finally:
            state.plan = plan


class _Buffered(Step):
    """A step computing into ``self.out`` from an input of the traced shape and dtype."""

    def __init__(self, key, x, out_shape):
        self.key = key
        self.shape, self.dtype = x.data.shape, x.data.dtype
        self.out = np.empty(out_shape, self.dtype)
        self.result = _wrap(self.out)
        # a strided input (a slice of a sequence, say) is gathered here first
        self.gather = None if x.data.flags.c_contiguous else np.empty(self.shape, self.dtype)

    def owned(self):
        return (self.out,) if self.gather is None else (self.out, self.gather)

    def __call__(self, x):
        xd = getattr(x, "data", None)
        if type(xd) is not np.ndarray or xd.shape != self.shape or xd.dtype != self.dtype:
            raise Diverged()
        if not xd.flags.c_contiguous:
            if self.gather is None:
                raise Diverged()
            np.copyto(self.gather, xd)
            xd = self.gather
        self.compute(xd)
        return self.result


class Passed(Step):
    """A call folded into the step before it: passes that step's result through."""

    def __init__(self, key, source):
        self.key = key
        self.source = source

    def __call__(self, *args):
        if len(args) != 1 or args[0] is not self.source.result:
            raise Diverged()
        return args[0]


class ResidualStep(Step):
    """``source + other`` (a residual add), then an activation, in place in the buffer
    of the layer step ``source`` whose result came straight into the add as argument
    ``index``."""

    def __init__(self, source, index, act):
        self.key = ADD
        self.source, self.index = source, index
        self.kind, self.slope = act
        self.flat = source.out.reshape(-1)

    def __call__(self, *args):
        if len(args) != 2 or args[self.index] is not self.source.result:
            raise Diverged()
        other = getattr(args[1 - self.index], "data", None)
        flat = self.flat
        if type(other) is not np.ndarray or other.shape != self.source.out.shape or other.dtype != flat.dtype \
                or not other.flags.c_contiguous:
            raise Diverged()
        add_kernel(flat, flat, other.reshape(-1))
        if self.kind != act_k.IDENTITY:
            act_k.activation_forward(flat, flat, self.kind, self.slope)
        return self.source.result


def _bn_affine(bn):
    """(scale, shift) in float64 with bn(x) = x * scale + shift per channel (eval mode)."""
    scale = 1.0 / np.sqrt(np.asarray(bn.running_var.data, np.float64) + bn.eps)
    shift = -np.asarray(bn.running_mean.data, np.float64) * scale
    if bn.affine:
        scale = scale * bn.weight.data
        shift = shift * bn.weight.data + bn.bias.data
    return scale, shift


class LayerStep(_Buffered):
    """Linear, Conv1d or Conv2d with a folded BatchNorm and a fused activation."""

    def __init__(self, module, x, out, bn, act, workspaces):
        super().__init__(module, x, out.data.shape)
        w, b = module.weight.data, None if module.bias is None else module.bias.data
        if bn is not None:
            scale, shift = _bn_affine(bn)
            w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
            b = shift if b is None else b * scale + shift
        self.w = np.ascontiguousarray(w, dtype=self.dtype)
        self.b = None if b is None else np.ascontiguousarray(b, dtype=self.dtype)
        self.kind, self.slope = act
        if isinstance(module, Linear):
            K = self.w.shape[1]
            self.out2 = self.out.reshape(-1, self.w.shape[0])
            self.in_shape2 = (self.out2.shape[0], K)
            self.compute = self._linear
            if packed_k.packs(self.out2.shape[0], self.w.shape[0], K, self.dtype):  # pre-pack the weight
                self.packed = packed_k.pack_weight(self.w, self.out2.shape[0])
                if self.dtype not in workspaces:
                    workspaces[self.dtype] = packed_k.workspace(self.dtype)
                self.ap, self.tmp = workspaces[self.dtype]
                self.has_bias = self.b is not None
                self.bias = self.b if self.has_bias else self.w[0]
                self.compute = self._linear_packed
        elif isinstance(module, Conv2d):
            geom = module.kernel_size + module.stride + module._conv_padding + module.dilation + (module.groups,)
            if "conv" not in workspaces:
                workspaces["conv"] = Workspace()  # the plan's own scratch: its steps run one at a time
            example = x.data if self.gather is None else self.gather
            self.compute = conv_k.forward_runner(self.out, example, self.w, self.b, geom, self.kind, self.slope,
                                                 workspaces["conv"])
        else:
            (k,), (s,), (p,), (d,) = module.kernel_size, module.stride, module._conv_padding, module.dilation
            N, OC, OL = self.out.shape
            if packs(N, OL):
                self.geom = (s, p, d, module.groups)
                self.compute = self._conv1d
            else:  # long sequences: the 2-D kernels on height-1 views
                self.geom = (1, k, 1, s, 0, p, 1, d, module.groups)
                self.w4 = self.w.reshape(OC, -1, 1, k)
                self.out4 = self.out.reshape(N, OC, 1, OL)
                self.compute = self._conv1d_as_2d

    def _linear(self, xd):
        linear_into(self.out2, xd.reshape(self.in_shape2), self.w, self.b, self.kind, self.slope)

    def _linear_packed(self, xd):
        out2 = self.out2
        packed_k.gemm_packed(out2, xd.reshape(self.in_shape2), self.packed, self.ap, self.tmp, get_threads())
        if self.has_bias or self.kind != act_k.IDENTITY:
            act_k.bias_activation_forward(out2, self.bias, self.kind, self.slope, self.has_bias)

    def _conv1d(self, xd):
        conv1d_k.conv1d_forward(self.out, xd, self.w, self.b, self.geom, self.kind, self.slope)

    def _conv1d_as_2d(self, xd):
        N, C, L = xd.shape
        conv_k.conv2d_forward(self.out4, xd.reshape(N, C, 1, L), self.w4, self.b, self.geom, self.kind, self.slope)


class NormStep(_Buffered):
    """A BatchNorm on its own in eval mode: the eager kernel, on the module's statistics."""

    def __init__(self, module, x):
        super().__init__(module, x, x.data.shape)
        N, C = self.shape[:2]
        self.out3 = self.out.reshape(N, C, -1)
        self.in3 = (N, C, self.out3.shape[2])
        self.affine = module.affine
        self.args = (module.weight.data, module.bias.data) if module.affine else (module.running_mean.data,) * 2

    def compute(self, xd):
        bn = self.key
        norm_k.batch_norm_eval_forward(self.out3, xd.reshape(self.in3), bn.running_mean.data, bn.running_var.data,
                                       *self.args, bn.eps, self.affine)


class ActivationStep(_Buffered):
    """A pointwise activation layer on its own."""

    def __init__(self, module, x, kind, slope):
        super().__init__(module, x, x.data.shape)
        self.kind, self.slope = kind, slope
        self.flat = self.out.reshape(-1)

    def compute(self, xd):
        act_k.activation_forward(self.flat, xd.reshape(-1), self.kind, self.slope)


class PoolStep(_Buffered):
    """MaxPool2d, AvgPool2d or AdaptiveAvgPool2d on a batch of images."""

    def __init__(self, module, x, out):
        super().__init__(module, x, out.data.shape)
        shape = x.data.shape
        if isinstance(module, MaxPool2d):
            self.plan = pool_plan("max_pool2d", shape, module.kernel_size, module.stride, module.padding,
                                  module.dilation, module.ceil_mode)
            self.compute = self._max
            return
        if isinstance(module, AvgPool2d):
            _, geom, serial, _ = pool_plan("avg_pool2d", shape, module.kernel_size, module.stride,
                                           module.padding, 1, module.ceil_mode)
            self.args = (serial, geom, False, bool(module.count_include_pad))
        else:
            _, serial, geom = adaptive_avg_plan(shape, module.output_size)
            self.args = (serial, geom, True, False)
        self.compute = self._avg

    def _max(self, xd):
        max_pool_into(self.out, _NO_INDEX, xd, self.plan)

    def _avg(self, xd):
        avg_pool_into(self.out, xd, *self.args)


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


def _single(call):
    """The step of a call that absorbs nothing."""
    key, x, out = call.key, call.inputs[0] if call.inputs else None, call.out
    if key is RELU:
        ok = x is not None and _plain(None, x, out)
        return ActivationStep(key, x, act_k.RELU, 0.0) if ok else Step(key, relu)
    if key is ADD:
        return Step(key, add)
    if x is None:
        return Step(key)
    if isinstance(key, _NORMS):
        ok = _plain(key, x, out) and not key.training and key.track_running_stats and x.data.ndim >= 2
        return NormStep(key, x) if ok else Step(key)
    if isinstance(key, _ACTIVATIONS):
        act = _epilogue(key)
        if act is None and isinstance(key, GELU) and key.approximate == "none":
            act = (ACTIVATION_KINDS["gelu"], 0.0)
        return ActivationStep(key, x, *act) if act is not None and _plain(key, x, out) else Step(key)
    if isinstance(key, (MaxPool2d, AvgPool2d, AdaptiveAvgPool2d)):
        ok = _plain(key, x, out, 4) and not getattr(key, "return_indices", False) \
            and getattr(key, "divisor_override", None) is None
        return PoolStep(key, x, out) if ok else Step(key)
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
    steps, workspaces = [None] * n, {}
    for i, c in enumerate(calls):
        if steps[i] is not None:
            continue
        module, x = c.key, c.inputs[0] if c.inputs else None
        if not isinstance(module, _LAYERS) or x is None or not _layer_ok(module, x, c.out):
            steps[i] = _single(c)
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
        steps[i] = LayerStep(module, x, c.out, bn, act, workspaces)
        for j in folded:
            steps[j] = Passed(calls[j].key, steps[i])
        j = consumer[last]
        if j is not None and calls[j[0]].key is ADD and calls[j[0]].out.data.shape == c.out.data.shape:
            add_at, index = j
            after = consumer[add_at]
            act2 = _act_of(calls[after[0]]) if after is not None else None
            steps[add_at] = ResidualStep(steps[i], index, act2 or (act_k.IDENTITY, 0.0))
            if act2 is not None:
                steps[after[0]] = Passed(calls[after[0]].key, steps[i])
    return steps


def flat_chain(model, steps):
    """The calls that replace ``model``'s forward when it is a ``Sequential`` whose
    children are each a step (in order) or a view or eval-mode dropout: its steps (the
    folded ones left out) and the views' ``forward``, one after another. None otherwise."""
    if type(model) is not Sequential or "forward" in model.__dict__:
        return None
    chain, k = [], 0
    for child in model._modules.values():
        if "forward" in child.__dict__:
            return None
        if k < len(steps) and steps[k].key is child:
            if not isinstance(steps[k], Passed):
                chain.append(steps[k])
            k += 1
        elif type(child) in _VIEWS:
            chain.append(child.forward)
        elif type(child) not in _DROPOUTS or child.training:
            return None
    return chain if k == len(steps) else None

