"""The steps of an inference plan: one per traced call, each calling its kernel into
a buffer it owns, or passing on the result of the step it was folded into, or
running the call as it is. A step checks its input against the trace and raises
``Diverged`` otherwise."""
import functools

import numpy as np

from .._planstate import call_unplanned
from ..kernels import activations as act_k
from ..kernels import aligned
from ..kernels import conv as conv_k
from ..kernels import conv1d as conv1d_k
from ..kernels import conv_lanes
from ..kernels import matmul_packed as packed_k
from ..kernels import norm as norm_k
from ..kernels import winograd
from ..kernels._threading import get_threads
from ..kernels.conv_plan import Workspace
from ..kernels.elementwise import add as add_kernel
from ..nn.conv import Conv2d
from ..nn.linear import Linear
from ..nn.pooling import AvgPool2d, MaxPool2d
from ..ops.arith import ADD
from ..ops.conv1d_packed import packs
from ..ops.linear import linear_call, linear_runner
from ..ops.pool import _NO_INDEX, adaptive_avg_plan, avg_pool_into, max_pool_into, pool_plan
from ..tensor import _wrap


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

    def __call__(self, *args, **kwargs):
        return call_unplanned(self.fn, *args, **kwargs)


class _Buffered(Step):
    """A step computing into ``self.out`` from an input of the traced shape and dtype."""

    uses_packs = False  # whether it reads the plan's packed weights (plan_state.packs)

    def __init__(self, key, x, out_shape, alloc):
        self.key = key
        self.shape, self.dtype = x.data.shape, x.data.dtype
        self.out = alloc(out_shape, self.dtype)
        self.result = _wrap(self.out)
        # a strided input (a slice of a sequence, say) is gathered here first
        self.gather = None if x.data.flags.c_contiguous else aligned.empty(self.shape, self.dtype)

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

    def bind(self, xd):
        """A zero-argument callable computing into ``self.out`` from the array ``xd``,
        which holds the traced shape and dtype, C-contiguous, and stays where it is
        (the buffer of the step before, in a plan's chain): no checks left to make."""
        return functools.partial(self.compute, xd)


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


def packed_weight(w, M, workspaces):
    """(w (N, K) packed for products with M rows, and the plan's gemm_packed workspace
    for its dtype: ``(bp, ap, tmp)``), or None when such a product does not pack."""
    if not packed_k.packs(M, w.shape[0], w.shape[1], w.dtype):
        return None
    if w.dtype not in workspaces:
        workspaces[w.dtype] = packed_k.workspace(w.dtype)
    return (packed_k.pack_weight(w, M),) + workspaces[w.dtype]


def _conv_work(workspaces):
    """The plan's own convolution scratch (its steps run one at a time), made once."""
    if "conv" not in workspaces:
        workspaces["conv"] = Workspace()
    return workspaces["conv"]


def _conv2d_geom(module):
    return module.kernel_size + module.stride + module._conv_padding + module.dilation + (module.groups,)


def pools_in_epilogue(module, x, out, pool):
    """True when the 2 x 2 max pool ``pool`` (a module) that takes the result of
    ``module(x)`` (``out``) can run in the epilogue of its LayerStep: a Conv2d the step
    runs with the batch in the vector lanes (``conv_lanes``), the pool of kernel and
    stride 2 without padding, dilation, rounding up or indices."""
    if not isinstance(module, Conv2d) or not isinstance(pool, MaxPool2d) or "forward" in pool.__dict__:
        return False
    if (tuple(pool.kernel_size), tuple(pool.stride), tuple(pool.padding), tuple(pool.dilation)) != \
            ((2, 2), (2, 2), (0, 0), (1, 1)) or pool.ceil_mode or pool.return_indices:
        return False
    return _conv2d_path(x.data.shape, module.weight.data.shape, out.data.shape, _conv2d_geom(module),
                        x.data.dtype) is conv_lanes


def _conv2d_path(x_shape, w_shape, out_shape, geom, dtype):
    # the kernel module a plan's Conv2d runs on: winograd, conv_lanes or conv
    if winograd.applies(x_shape, w_shape, geom, dtype):  # 3 x 3, stride 1, wide enough
        return winograd
    if conv_lanes.applies(x_shape, w_shape, out_shape, geom, dtype):  # many small images
        return conv_lanes
    return conv_k


class LayerStep(_Buffered):
    """Linear, Conv1d or Conv2d with a folded BatchNorm and a fused activation (and a
    Conv2d with the 2 x 2 max pool after it: ``pools_in_epilogue``, ``pooled``)."""

    linear = conv1d = False  # a Linear unpacked, a Conv1d on conv1d's kernels: ``bind`` binds their calls

    def __init__(self, module, x, out, bn, act, workspaces, alloc, pooled=None):
        super().__init__(module, x, (out if pooled is None else pooled).data.shape, alloc)
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
            packed = packed_weight(self.w, self.out2.shape[0], workspaces)  # pre-pack the weight
            if packed is None:
                self.compute = linear_runner(self.out2, self.in_shape2, self.w, self.b, self.kind, self.slope)
                self.linear = True
            else:
                self.packed, self.ap, self.tmp = packed
                self.has_bias = self.b is not None
                self.bias = self.b if self.has_bias else self.w[0]
                self.compute = self._linear_packed
        elif isinstance(module, Conv2d):
            geom = _conv2d_geom(module)
            example = x.data if self.gather is None else self.gather
            path = _conv2d_path(example.shape, self.w.shape, out.data.shape, geom, self.dtype)
            if path is winograd:
                self.compute = winograd.forward_runner(self.out, example, self.w, self.b, geom, self.kind, self.slope,
                                                       get_threads(), _conv_work(workspaces))
            elif path is conv_lanes:  # (with the pool when pools_in_epilogue said it applies)
                self.compute = conv_lanes.forward_runner(self.out, example, self.w, self.b, geom, self.kind,
                                                         self.slope, get_threads(), pooled=pooled is not None)
            else:
                self.compute = conv_k.forward_runner(self.out, example, self.w, self.b, geom, self.kind, self.slope,
                                                     _conv_work(workspaces), reuse=True)
        else:
            (k,), (s,), (p,), (d,) = module.kernel_size, module.stride, module._conv_padding, module.dilation
            N, OC, OL = self.out.shape
            if packs(N, OL):
                self.geom = (s, p, d, module.groups)
                self.work = _conv_work(workspaces)
                # (as the calls ``bind`` makes, position rows included: the first step's
                # input is the caller's, so its path is chosen here, once)
                example = x.data if self.gather is None else self.gather
                self.compute = conv1d_k.forward_runner(self.out, example, self.w, self.b, self.geom, self.kind,
                                                       self.slope, self.work, reuse=True)
                self.conv1d = True
            else:  # long sequences: the 2-D kernels on height-1 views
                self.geom = (1, k, 1, s, 0, p, 1, d, module.groups)
                self.w4 = self.w.reshape(OC, -1, 1, k)
                self.out4 = self.out.reshape(N, OC, 1, OL)
                self.compute = self._conv1d_as_2d

    def bind(self, xd):
        if self.linear:
            return linear_call(self.out2, xd.reshape(self.in_shape2), self.w, self.b, self.kind, self.slope)
        if self.conv1d:
            return conv1d_k.forward_call(self.out, xd, self.w, self.b, self.geom, self.kind, self.slope, self.work,
                                         reuse=True)
        return super().bind(xd)

    def _linear_packed(self, xd):
        packed_k.gemm_packed(self.out2, xd.reshape(self.in_shape2), self.packed, self.ap, self.tmp, get_threads(),
                             self.bias, self.kind, self.slope, self.has_bias)

    def _conv1d_as_2d(self, xd):
        N, C, L = xd.shape
        conv_k.conv2d_forward(self.out4, xd.reshape(N, C, 1, L), self.w4, self.b, self.geom, self.kind, self.slope)


class NormStep(_Buffered):
    """A BatchNorm on its own in eval mode: the eager kernel, on the module's statistics."""

    def __init__(self, module, x, alloc):
        super().__init__(module, x, x.data.shape, alloc)
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

    def __init__(self, module, x, kind, slope, alloc):
        super().__init__(module, x, x.data.shape, alloc)
        self.kind, self.slope = kind, slope
        self.flat = self.out.reshape(-1)

    def compute(self, xd):
        act_k.activation_forward(self.flat, xd.reshape(-1), self.kind, self.slope)


class PoolStep(_Buffered):
    """MaxPool2d, AvgPool2d or AdaptiveAvgPool2d on a batch of images."""

    def __init__(self, module, x, out, alloc):
        super().__init__(module, x, out.data.shape, alloc)
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
