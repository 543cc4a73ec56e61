"""Short sequences for ``conv1d``: a batch packed into a few long rows.

The 2-D kernels pay a fixed cost per output row and per sample (views, a small
product each, im2col row setup). A sequence is one row, so a batch of short
sequences (the MNIST-1D CNN: 19, 10, 5 outputs per sample) spends most of its time
there. Here the batch is laid out as M "images" of height 1, each holding nper
samples side by side, every sample zero-padded to a segment of ``seg`` elements
(a multiple of the stride, at least L + 2 * padding), and convolved with no
padding: output j of an image is output j % q of sample j // q (q = seg / stride),
valid for j % q < OL; the others straddle two samples and are dropped. Their
gradients are zero in backward, so they add nothing to dx, dw or db.
"""
import numpy as np

from ..kernels import activations as act_k
from ..kernels import conv as conv_k
from ._util import _wrap, attach, direct_grad, recording
from .activation import activation as _activation
from .activation import fused_activation_grad

PACK_BELOW = 64  # pack batches whose sequences have fewer outputs than this ...
PACK_MIN_BATCH = 4  # ... and at least this many samples
ROWS = (8, 16)  # pack into between 8 and 16 rows (the conv kernels' slots)


def packs(N, OL):
    return N >= PACK_MIN_BATCH and OL < PACK_BELOW


def _layout(N, L, K, S, P, D):
    # (samples per row, rows, segment, outputs per segment, row width)
    seg = -(-(L + 2 * P) // S) * S
    lo, hi = -(-N // ROWS[1]), -(-N // ROWS[0])
    nper = next((n for n in range(lo, hi + 1) if N % n == 0), hi)
    return nper, -(-N // nper), seg, seg // S, nper * seg + D * (K - 1)


def conv1d_packed(x, weight, bias, x3, w4, geom, out_shape, kind, slope, name):
    """conv1d of the validated (N, C, L) array ``x3`` (x's data), weight ``w4`` (OC, C/G,
    1, K) and bias Tensor (or None) through the packed layout; ``geom`` the 2-D
    geometry of the plain convolution. Returns the output Tensor (``out_shape``)."""
    if kind == act_k.GELU or slope < 0:  # its derivative needs the pre-activation: run it apart
        out = conv1d_packed(x, weight, bias, x3, w4, geom, out_shape, act_k.IDENTITY, 0.0, name)
        return _activation(out, kind, slope, name)
    N, C, L = x3.shape
    K, S, P, D, G = geom[1], geom[3], geom[5], geom[7], geom[8]
    OC = w4.shape[0]
    OL = (L + 2 * P - D * (K - 1) - 1) // S + 1
    nper, M, seg, q, W = _layout(N, L, K, S, P, D)
    big = (1, K, 1, S, 0, 0, 1, D, G)
    xb = np.zeros((M, C, 1, W), x3.dtype)
    body = xb[:, :, 0, :nper * seg].reshape(M, C, nper, seg)
    src = x3 if M * nper == N else np.concatenate([x3, np.zeros((M * nper - N, C, L), x3.dtype)])
    body[..., P:P + L] = src.reshape(M, nper, C, L).transpose(0, 2, 1, 3)
    ob = np.empty((M, OC, 1, nper * q), x3.dtype)
    conv_k.conv2d_forward(ob, xb, w4, None if bias is None else bias.data, big, kind, slope)
    out3 = ob.reshape(M, OC, nper, q)[..., :OL].transpose(0, 2, 1, 3).reshape(M * nper, OC, OL)[:N]
    out = _wrap(out3.reshape(out_shape))
    if recording(x, weight, bias):
        fused = ob if kind != act_k.IDENTITY else None
        attach(out, _backward(x, weight, bias, xb, w4, big, fused, kind, slope, (N, OC, OL), (nper, seg, q, P)),
               (x, weight, bias), "ConvolutionBackward0", saved=(x,))
    return out


def _backward(x, weight, bias, xb, w4, big, ob, kind, slope, shape, layout):
    need_x, need_w = x.requires_grad, weight.requires_grad
    need_b = bias is not None and bias.requires_grad
    M, C = xb.shape[:2]
    (N, OC, OL), (nper, seg, q, P) = shape, layout
    L = x.data.shape[-1]

    def backward(g):
        # forward: ob = act(conv(xb, w) + b); out = the valid outputs of ob
        g3 = g.reshape(N, OC, OL)
        if M * nper != N:
            g3 = np.concatenate([g3, np.zeros((M * nper - N, OC, OL), g3.dtype)])
        gb = np.zeros((M, OC, nper, q), w4.dtype)
        gb[..., :OL] = g3.reshape(M, nper, OC, OL).transpose(0, 2, 1, 3)
        gb = gb.reshape(M, OC, 1, nper * q)
        if ob is not None:
            gb = fused_activation_grad(gb, ob, kind, slope)
        dxb = np.empty(xb.shape, w4.dtype) if need_x else None
        dw = db = None
        dw_buf = db_buf = None
        acc_w = acc_b = False
        if need_w:
            target = direct_grad(weight)
            dw_buf, acc_w = (np.empty(weight.data.shape, w4.dtype), False) if target is None else target
            dw = dw_buf if target is None else None
        if need_b:
            target = direct_grad(bias)
            db_buf, acc_b = (np.empty(OC, w4.dtype), False) if target is None else target
            db = db_buf if target is None else None
        conv_k.conv2d_backward(dxb, dw_buf, db_buf, gb, xb, w4, big, acc_w, acc_b)
        dx = None
        if need_x:
            body = dxb[:, :, 0, :nper * seg].reshape(M, C, nper, seg)[..., P:P + L]
            dx = body.transpose(0, 2, 1, 3).reshape(M * nper, C, L)[:N].reshape(x.data.shape)
        return dx, dw, db

    return backward
