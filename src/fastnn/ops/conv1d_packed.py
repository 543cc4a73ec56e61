"""Short sequences for ``conv1d``: the output positions of a whole batch packed into
the GEMM panels of the direct 1-D kernels (``kernels.conv1d``).

The 2-D kernels pay a fixed cost per sample and output row (views, a small product
each, im2col row setup, a Python-side plan); a sequence is one row, so a batch of
short sequences (the MNIST-1D CNN: 19, 10, 5 outputs per sample) or a single one
(batch-1 inference) spends most of its time there. The direct kernels flatten
(sample, position) into one column index and make one call per layer.
"""
import numpy as np

from ..kernels import activations as act_k
from ..kernels import conv1d as conv1d_k
from ._util import _wrap, attach, direct_grad, recording
from .activation import activation as _activation

PACK_BELOW = 64  # sequences with fewer outputs than this run on the direct kernels


def packs(N, OL):
    """True if a batch of N sequences of OL outputs takes the direct kernels."""
    return OL < PACK_BELOW


def conv1d_packed(x, weight, bias, x3, w3, geom, out_shape, kind, slope, name):
    """conv1d of the validated C-contiguous (N, C, L) array ``x3`` (x's data), weight
    ``w3`` (OC, C/G, K, C-contiguous) and bias Tensor (or None); ``geom`` the 2-D
    geometry tuple of ``conv1d``. Returns the output Tensor (``out_shape``)."""
    if kind == act_k.GELU or slope < 0:  # its derivative needs the pre-activation: run it apart
        out = conv1d_packed(x, weight, bias, x3, w3, geom, out_shape, act_k.IDENTITY, 0.0, name)
        return _activation(out, kind, slope, name)
    N, C, L = x3.shape
    K, S, P, D, G = geom[1], geom[3], geom[5], geom[7], geom[8]
    OL = (L + 2 * P - D * (K - 1) - 1) // S + 1
    out3 = np.empty((N, w3.shape[0], OL), w3.dtype)
    geom1 = (S, P, D, G)
    conv1d_k.conv1d_forward(out3, x3, w3, None if bias is None else bias.data, geom1, kind, slope)
    out = _wrap(out3.reshape(out_shape))
    if recording(x, weight, bias):
        fused = out3 if kind != act_k.IDENTITY else None
        attach(out, _backward(x, weight, bias, x3, w3, geom1, fused, kind, slope),
               (x, weight, bias), "ConvolutionBackward0", saved=(x,))
    return out


def _grad_buffer(param):
    """(buffer the kernel writes, accumulate?, gradient to return): straight into
    ``param.grad`` where ``direct_grad`` allows it, else a new array returned."""
    target = direct_grad(param)
    if target is None:
        buf = np.empty(param.data.shape, param.data.dtype)
        return buf, False, buf
    return target[0], target[1], None


def _backward(x, weight, bias, x3, w3, geom1, out3, kind, slope):
    need_x, need_w = x.requires_grad, weight.requires_grad
    need_b = bias is not None and bias.requires_grad

    def backward(g):
        # forward: out3 = act(conv1d(x3, w3) + b)
        g3 = g.reshape(out3.shape if out3 is not None else (x3.shape[0], w3.shape[0], -1))
        if g3.dtype != w3.dtype or not g3.flags.c_contiguous:
            g3 = np.ascontiguousarray(g3, dtype=w3.dtype)
        dx = np.empty_like(x3) if need_x else None
        dw_buf, acc_w, dw = _grad_buffer(weight) if need_w else (None, False, None)
        db_buf, acc_b, db = _grad_buffer(bias) if need_b else (None, False, None)
        conv1d_k.conv1d_backward(dx, dw_buf, db_buf, g3, x3, w3, geom1, acc_w, acc_b, out3, kind, slope)
        return (None if dx is None else dx.reshape(x.data.shape)), dw, db

    return backward
