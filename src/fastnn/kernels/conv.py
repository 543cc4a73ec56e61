"""2-D convolution (NCHW, float32/float64) as one GEMM per sample and group.

Any stride, padding, dilation, groups and rectangular kernel; ``geom`` is the int
tuple ``(KH, KW, SH, SW, PH, PW, DH, DW, G)``. Per sample n and group g, with
col (Kg, P) the im2col matrix (k = (cg, kh, kw) rows, P = OH*OW pixel columns):

    forward   out[n, g] (OCg, P)   = w[g] (OCg, Kg) @ col
    dweight   dw[g]     (OCg, Kg) += dout[n, g] (OCg, P) @ col^T
    dinput    dcol      (Kg, P)    = w[g]^T (Kg, OCg) @ dout[n, g];  dx[n] = col2im(dcol)

The output lands in NCHW directly (no transposes). Samples are split into slots,
one prange iteration each, with a private col buffer (from the layer's
:class:`Workspace`) that stays in cache while ``gemm_serial`` uses it. Weight and
bias gradients are summed per slot and merged in slot order; the number of slots
in backward depends only on the batch size (``SLOTS``), never on the thread
count, so results are bitwise reproducible. A batch smaller than the thread count
runs sample by sample with the parallel ``matmul`` instead.
"""
import numba
import numpy as np
from numba import prange

from . import activations as act_k
from ._jit import kernel, serial_kernel
from .matmul import gemm_serial, matmul

# Backward splits a batch into this many slots (fewer for smaller batches).
SLOTS = 8


@serial_kernel
def _valid(off, stride, size, out_size):
    # [lo, hi): the outputs o < out_size with 0 <= o * stride + off < size
    lo = 0 if off >= 0 else (stride - 1 - off) // stride
    hi = (size - 1 - off) // stride + 1 if size - 1 - off >= 0 else 0
    lo = min(lo, out_size)
    return lo, max(lo, min(hi, out_size))


@serial_kernel
def pad_copy(xp, x, n, c0, PH, PW):
    """xp[cg, PH + ih, PW + iw] = x[n, c0 + cg, ih, iw]; the border of xp (Cg, Hp, Wp)
    is not touched: the caller keeps it zero."""
    H, W = x.shape[2], x.shape[3]
    for cg in range(xp.shape[0]):
        for ih in range(H):
            src = x[n, c0 + cg, ih]
            dst = xp[cg, PH + ih, PW:PW + W]
            for i in range(W):
                dst[i] = src[i]


@serial_kernel
def im2col(col, xp, geom):
    """col[(cg*KH + kh)*KW + kw, oh*OW + ow] = xp[cg, oh*SH + kh*DH, ow*SW + kw*DW]
    (overwritten). xp (Cg, Hp, Wp): one sample's group, already zero-padded;
    col (Cg*KH*KW, OH*OW)."""
    KH, KW, SH, SW, PH, PW, DH, DW, G = geom
    Cg, Hp, Wp = xp.shape
    OH = (Hp - DH * (KH - 1) - 1) // SH + 1
    OW = (Wp - DW * (KW - 1) - 1) // SW + 1
    # inner loops index 1-D views from 0: LLVM then vectorises the unit-stride copies
    for cg in range(Cg):
        for kh in range(KH):
            for kw in range(KW):
                row = col[(cg * KH + kh) * KW + kw]
                for oh in range(OH):
                    dst = row[oh * OW:(oh + 1) * OW]
                    if SW == 1:
                        src = xp[cg, oh * SH + kh * DH, kw * DW:kw * DW + OW]
                        for i in range(OW):
                            dst[i] = src[i]
                    else:
                        xrow = xp[cg, oh * SH + kh * DH]
                        for i in range(OW):
                            dst[i] = xrow[i * SW + kw * DW]


@serial_kernel
def _gather(col, xp, x, n, c0, geom):
    # col = im2col of sample n's channels c0.. (through the padded copy xp if padding)
    if geom[4] == 0 and geom[5] == 0:
        im2col(col, x[n, c0:c0 + col.shape[0] // (geom[0] * geom[1])], geom)
    else:
        pad_copy(xp, x, n, c0, geom[4], geom[5])
        im2col(col, xp, geom)


@serial_kernel
def col2im(dx, col, n, c0, geom):
    """dx[n, c0 + cg] = the adjoint of :func:`im2col`: each col entry added back to the
    pixel it was read from (overwritten; untouched pixels get 0), in a fixed order."""
    KH, KW, SH, SW, PH, PW, DH, DW, G = geom
    H, W = dx.shape[2], dx.shape[3]
    OH = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1
    OW = (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1
    Cg = col.shape[0] // (KH * KW)
    planes = dx[n, c0:c0 + Cg].reshape(-1)
    for i in range(planes.shape[0]):
        planes[i] = 0
    for cg in range(Cg):
        for kh in range(KH):
            for kw in range(KW):
                row = col[(cg * KH + kh) * KW + kw]
                off = kw * DW - PW
                lo, hi = _valid(off, SW, W, OW)
                for oh in range(OH):
                    ih = oh * SH - PH + kh * DH
                    if ih < 0 or ih >= H:
                        continue
                    src = row[oh * OW + lo:oh * OW + hi]
                    if SW == 1:
                        dst = dx[n, c0 + cg, ih, lo + off:hi + off]
                        for i in range(hi - lo):
                            dst[i] += src[i]
                    else:
                        xrow = dx[n, c0 + cg, ih]
                        for i in range(hi - lo):
                            xrow[(lo + i) * SW + off] += src[i]


@serial_kernel
def bias_act(out, n, bias, has_bias, kind, slope):
    """out[n, o, :] = act(out[n, o, :] + bias[o]) in place. out (N, OC, P)."""
    for o in range(out.shape[1]):
        row = out[n, o]
        b = bias[o] if has_bias else out.dtype.type(0)
        if kind == act_k.RELU:
            for p in range(row.shape[0]):
                v = row[p] + b
                row[p] = v if v > 0 else v * 0
        elif kind != act_k.IDENTITY:
            for p in range(row.shape[0]):
                row[p] = act_k._forward_one(row[p] + b, kind, slope)
        elif has_bias:
            for p in range(row.shape[0]):
                row[p] += b


@serial_kernel
def _forward_sample(out, x, w3, bias, col, xp, n, geom, pointwise, has_bias, kind, slope):
    # out[n] for every group, then the bias/activation epilogue while it is in cache
    G, OCg, Kg = w3.shape
    Cg = x.shape[1] // G
    for g in range(G):
        src = x[n, g * Cg:(g + 1) * Cg].reshape((Cg, out.shape[2])) if pointwise else col
        if not pointwise:
            _gather(col, xp, x, n, g * Cg, geom)
        gemm_serial(out[n, g * OCg:(g + 1) * OCg], w3[g], src, False, False, False)
    if has_bias or kind != act_k.IDENTITY:
        bias_act(out, n, bias, has_bias, kind, slope)


@kernel
def conv2d_forward_slots(out, x, w3, bias, cols, xps, geom, pointwise, has_bias, kind, slope):
    """out (N, OC, P) = act(conv2d(x, w) + bias), overwritten. w3 (G, OCg, Kg);
    cols (S, Kg, P) and xps (S, Cg, Hp, Wp) (zero border) scratch, one per slot.
    Parallel over S slots of samples."""
    N = x.shape[0]
    S = cols.shape[0]
    for s in prange(S):
        for n in range(s * N // S, (s + 1) * N // S):
            _forward_sample(out, x, w3, bias, cols[s], xps[s], n, geom, pointwise, has_bias, kind, slope)


@serial_kernel
def _backward_sample(dx, dw_part, db_part, dout, x, w3, col, xp, n, geom, pointwise, need_dx, need_dw, need_db,
                     first):
    # this sample's share of dw_part/db_part (overwritten when ``first``) and dx[n]
    G, OCg, Kg = w3.shape
    Cg = x.shape[1] // G
    P = dout.shape[2]
    for g in range(G):
        d = dout[n, g * OCg:(g + 1) * OCg]
        if need_dw:
            src = x[n, g * Cg:(g + 1) * Cg].reshape((Cg, P)) if pointwise else col
            if not pointwise:
                _gather(col, xp, x, n, g * Cg, geom)
            gemm_serial(dw_part[g], d, src, False, True, not first)
        if need_dx:
            if pointwise:
                gemm_serial(dx[n, g * Cg:(g + 1) * Cg].reshape((Cg, P)), w3[g], d, True, False, False)
            else:
                gemm_serial(col, w3[g], d, True, False, False)
                col2im(dx, col, n, g * Cg, geom)
    for o in range(dout.shape[1] if need_db else 0):
        row = dout[n, o]
        s = dout.dtype.type(0)
        for p in range(P):
            s += row[p]
        db_part[o] = s if first else db_part[o] + s


@kernel
def conv2d_backward_slots(dx, dw_parts, db_parts, dout, x, w3, cols, xps, geom, pointwise, need_dx, need_dw,
                          need_db):
    """dx (N, C, H, W) overwritten; dw_parts (S, G, OCg, Kg) and db_parts (S, OC)
    overwritten with each slot's sums over its samples. dout (N, OC, P).
    Parallel over S slots of samples (each owns its parts and its samples' dx)."""
    N = x.shape[0]
    S = cols.shape[0]
    for s in prange(S):
        for n in range(s * N // S, (s + 1) * N // S):
            _backward_sample(dx, dw_parts[s], db_parts[s], dout, x, w3, cols[s], xps[s], n, geom, pointwise,
                             need_dx, need_dw, need_db, n == s * N // S)


@kernel
def sum_slots(out, parts, accumulate):
    """out[i] (+)= sum_s parts[s, i], s in order. Parallel over blocks of i."""
    S, M = parts.shape
    blocks = (M + 1023) // 1024
    for b in prange(blocks):
        for i in range(b * 1024, min(b * 1024 + 1024, M)):
            v = parts[0, i]
            for s in range(1, S):
                v += parts[s, i]
            out[i] = out[i] + v if accumulate else v


class Workspace:
    """Flat reusable buffers for one layer, grown when a larger shape or another
    dtype arrives. ``view(name, shape, dtype)`` returns a contiguous view; with a
    ``zero_tag`` the buffer is zero-filled whenever it is new or the tag (the layout
    whose untouched entries must stay zero) changes."""

    def __init__(self):
        self._buffers = {}
        self._tags = {}

    def view(self, name, shape, dtype, zero_tag=None):
        size = int(np.prod(shape))
        buf = self._buffers.get(name)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = np.empty(max(size, 1), dtype)
            self._buffers[name] = buf
            self._tags.pop(name, None)
        if zero_tag is not None and self._tags.get(name) != zero_tag:
            buf.fill(0)
            self._tags[name] = zero_tag
        return buf[:size].reshape(shape)

    def clear(self):
        self._buffers.clear()
        self._tags.clear()


def output_size(size, kernel_size, stride, padding, dilation):
    """Convolution output length along one axis (may be <= 0 for bad shapes)."""
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1


def _is_pointwise(geom):
    return geom[:6] == (1, 1, 1, 1, 0, 0)


def _scratch(work, slots, x, geom, Kg, P):
    """Per-slot im2col buffers (slots, Kg, P) and zero-bordered padded inputs."""
    G, PH, PW = geom[8], geom[4], geom[5]
    Cg, H, W = x.shape[1] // G, x.shape[2], x.shape[3]
    cols = work.view("cols", (slots, Kg, P), x.dtype)
    padded = (Cg, H + 2 * PH, W + 2 * PW) if PH or PW else (1, 1, 1)
    xps = work.view("xps", (slots,) + padded, x.dtype, zero_tag=padded + (PH, PW))
    return cols, xps


def conv2d_forward(out, x, weight, bias, geom, work, kind=0, slope=0.0):
    """out (N, OC, OH, OW) = act(conv2d(x, weight) + bias), overwritten.

    x (N, C, H, W), weight (OC, C/G, KH, KW), bias (OC,) or None; C-contiguous,
    one dtype. ``kind``/``slope`` pick a fused activation (``activations``).
    """
    N = x.shape[0]
    OC, P = out.shape[1], out.shape[2] * out.shape[3]
    G = geom[8]
    OCg = OC // G
    w3 = weight.reshape(G, OCg, -1)
    out3 = out.reshape(N, OC, P)
    has_bias = bias is not None
    bias = bias if has_bias else weight.reshape(-1)[:1]
    pointwise = _is_pointwise(geom)
    threads = numba.get_num_threads()
    cols, xps = _scratch(work, min(N, threads), x, geom, w3.shape[2], P)
    if N >= threads:
        conv2d_forward_slots(out3, x, w3, bias, cols, xps, geom, pointwise, has_bias, kind, float(slope))
        return
    Cg = x.shape[1] // G
    for n in range(N):  # fewer samples than threads: parallel inside each product instead
        for g in range(G):
            src = x[n, g * Cg:(g + 1) * Cg].reshape(Cg, P) if pointwise else cols[0]
            if not pointwise:
                _gather(cols[0], xps[0], x, n, g * Cg, geom)
            matmul(out3[n, g * OCg:(g + 1) * OCg], w3[g], src)
        if has_bias or kind:
            bias_act(out3, n, bias, has_bias, kind, float(slope))


def conv2d_backward(dx, dweight, dbias, dout, x, weight, geom, work, accumulate_w=False, accumulate_b=False):
    """Gradients of conv2d: dx overwritten; dweight, dbias overwritten or added to
    (``accumulate_*``). Any of dx, dweight, dbias may be None to skip it.

    dout (N, OC, OH, OW) C-contiguous; shapes as in :func:`conv2d_forward`.
    """
    N = x.shape[0]
    OC, P = dout.shape[1], dout.shape[2] * dout.shape[3]
    G = geom[8]
    w3 = weight.reshape(G, OC // G, -1)
    Kg = w3.shape[2]
    S = min(N, SLOTS)
    cols, xps = _scratch(work, S, x, geom, Kg, P)
    dw_parts = work.view("dw_parts", (S, G, OC // G, Kg), x.dtype)
    db_parts = work.view("db_parts", (S, OC), x.dtype)
    need_dx, need_dw, need_db = dx is not None, dweight is not None, dbias is not None
    conv2d_backward_slots(dx if need_dx else x, dw_parts, db_parts, dout.reshape(N, OC, P), x, w3, cols, xps, geom,
                          _is_pointwise(geom), need_dx, need_dw, need_db)
    if need_dw:
        sum_slots(dweight.reshape(-1), dw_parts.reshape(S, -1), accumulate_w)
    if need_db:
        sum_slots(dbias, db_parts, accumulate_b)
