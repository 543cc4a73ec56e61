"""2-D convolution (NCHW, float32/float64): im2row + GEMM forward, GEMM + col2im backward.

Any stride, padding, dilation, groups and rectangular kernel. ``geom`` is the int
tuple ``(KH, KW, SH, SW, PH, PW, DH, DW, G)``. A batch is processed in chunks of
whole samples (the chunk size depends only on the shapes, never on the thread
count); per chunk and group g, with rows r = (sample, oh, ow) and columns
k = (cg, kh, kw):

    forward   outT[g] (R, OCg)  = col[g] (R, Kg) @ w[g] (OCg, Kg)^T
    dweight   dw[g]   (OCg, Kg) += doutNC[g] (OCg, R) @ colT[g] (Kg, R)^T
    dinput    dcol[g] (R, Kg)   = doutT[g] (R, OCg) @ wT[g] (Kg, OCg)^T

all on ``matmul``'s no-copy NT path. The layout kernels below move data between
NCHW and those row/column orders; every one is parallel over pieces of its output
that one iteration owns. The buffers live in a per-layer :class:`Workspace`.
"""
import numpy as np
from numba import prange

from ._jit import kernel, serial_kernel
from .activations import _forward_one
from .matmul import matmul

# Samples per chunk keep im2row's buffer near this many elements (it stays in cache).
CHUNK_ELEMENTS = 1 << 20
# Output pixels per block in the layout kernels (a block's transpose fits in L1).
PIX_BLOCK = 64


@kernel
def im2row(col, x, n0, geom, transposed):
    """col[g, r, k] = x[n0 + n, g*Cg + cg, ih, iw] (0 in the padding), overwritten;
    with ``transposed`` the layout is col[g, k, r] instead.

    x (N, C, H, W); col (G, nc*OH*OW, Kg) or (G, Kg, nc*OH*OW). Parallel over
    (g, sample, output row): each iteration owns those rows (columns) of col.
    """
    KH, KW, SH, SW, PH, PW, DH, DW, G = geom
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    Cg = C // G
    Kg = Cg * KH * KW
    R = col.shape[2] if transposed else col.shape[1]
    OH = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1
    OW = (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1
    nc = R // (OH * OW)
    for it in prange(G * nc * OH):
        g = it // (nc * OH)
        nl = (it // OH) % nc
        oh = it % OH
        n = n0 + nl
        r0 = (nl * OH + oh) * OW
        if transposed:
            for cg in range(Cg):
                c = g * Cg + cg
                for kh in range(KH):
                    ih = oh * SH - PH + kh * DH
                    for kw in range(KW):
                        k = (cg * KH + kh) * KW + kw
                        for ow in range(OW):
                            iw = ow * SW - PW + kw * DW
                            if 0 <= ih < H and 0 <= iw < W:
                                col[g, k, r0 + ow] = x[n, c, ih, iw]
                            else:
                                col[g, k, r0 + ow] = 0
        else:
            for ow in range(OW):
                r = r0 + ow
                for cg in range(Cg):
                    c = g * Cg + cg
                    for kh in range(KH):
                        ih = oh * SH - PH + kh * DH
                        for kw in range(KW):
                            iw = ow * SW - PW + kw * DW
                            k = (cg * KH + kh) * KW + kw
                            if 0 <= ih < H and 0 <= iw < W:
                                col[g, r, k] = x[n, c, ih, iw]
                            else:
                                col[g, r, k] = 0


@kernel
def col2im(dx, dcol, n0, geom):
    """dx[n0 + n, c] = sum of dcol[g, r, k] over the (r, k) that im2row read from
    each pixel (overwritten; pixels no window touches get 0): im2row's adjoint.

    dx (N, C, H, W); dcol (G, nc*OH*OW, Kg). Parallel over (sample, channel)
    planes, each summed by one iteration in a fixed order.
    """
    KH, KW, SH, SW, PH, PW, DH, DW, G = geom
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    Cg = C // G
    OH = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1
    OW = (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1
    nc = dcol.shape[1] // (OH * OW)
    for it in prange(nc * C):
        nl = it // C
        c = it % C
        n = n0 + nl
        g = c // Cg
        cg = c % Cg
        for ih in range(H):
            for iw in range(W):
                dx[n, c, ih, iw] = 0
        for oh in range(OH):
            for kh in range(KH):
                ih = oh * SH - PH + kh * DH
                if ih < 0 or ih >= H:
                    continue
                k0 = (cg * KH + kh) * KW
                for ow in range(OW):
                    r = (nl * OH + oh) * OW + ow
                    for kw in range(KW):
                        iw = ow * SW - PW + kw * DW
                        if 0 <= iw < W:
                            dx[n, c, ih, iw] += dcol[g, r, k0 + kw]


@kernel
def conv_epilogue(out, outT, bias, n0, has_bias, kind, slope):
    """out[n0 + n, g*OCg + o, p] = act(outT[g, n*P + p, o] + bias[g*OCg + o]), overwritten.

    out (N, OC, P); outT (G, nc*P, OCg); bias (OC,) read only if has_bias;
    act from ``activations`` (kind, slope). Parallel over (sample, group, pixel block).
    """
    OC, P = out.shape[1], out.shape[2]
    G, R, OCg = outT.shape
    nc = R // P
    blocks = (P + PIX_BLOCK - 1) // PIX_BLOCK
    for it in prange(nc * G * blocks):
        nl = it // (G * blocks)
        g = (it // blocks) % G
        p0 = (it % blocks) * PIX_BLOCK
        p1 = min(p0 + PIX_BLOCK, P)
        for o in range(OCg):
            oc = g * OCg + o
            b = bias[oc] if has_bias else out.dtype.type(0)
            for p in range(p0, p1):
                out[n0 + nl, oc, p] = _forward_one(outT[g, nl * P + p, o] + b, kind, slope)


@kernel
def conv_dout_layouts(doutT, doutNC, dout, n0):
    """doutT[g, n*P + p, o] = doutNC[g, o, n*P + p] = dout[n0 + n, g*OCg + o, p] (both overwritten).

    dout (N, OC, P); doutT (G, nc*P, OCg); doutNC (G, OCg, nc*P). Parallel over
    (sample, group, pixel block).
    """
    P = dout.shape[2]
    G, R, OCg = doutT.shape
    nc = R // P
    blocks = (P + PIX_BLOCK - 1) // PIX_BLOCK
    for it in prange(nc * G * blocks):
        nl = it // (G * blocks)
        g = (it // blocks) % G
        p0 = (it % blocks) * PIX_BLOCK
        p1 = min(p0 + PIX_BLOCK, P)
        for o in range(OCg):
            oc = g * OCg + o
            for p in range(p0, p1):
                v = dout[n0 + nl, oc, p]
                doutNC[g, o, nl * P + p] = v
                doutT[g, nl * P + p, o] = v


@kernel
def conv_bias_backward(dbias, dout, accumulate):
    """dbias[oc] (+)= sum over n, p of dout[n, oc, p]. Parallel over channels (each
    iteration owns one; the sum order is fixed)."""
    N, OC, P = dout.shape
    for oc in prange(OC):
        s = dout.dtype.type(0)
        for n in range(N):
            for p in range(P):
                s += dout[n, oc, p]
        if accumulate:
            dbias[oc] += s
        else:
            dbias[oc] = s


@serial_kernel
def batched_transpose(out, x):
    """out[g, j, i] = x[g, i, j] (overwritten). Small arrays (conv weights) only."""
    G, M, K = x.shape
    for g in range(G):
        for i in range(M):
            for j in range(K):
                out[g, j, i] = x[g, i, j]


class Workspace:
    """Flat reusable buffers for one layer, grown when a larger shape or another
    dtype arrives; ``view(name, shape, dtype)`` returns a contiguous view."""

    def __init__(self):
        self._buffers = {}

    def view(self, name, shape, dtype):
        size = int(np.prod(shape))
        buf = self._buffers.get(name)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = np.empty(max(size, 1), dtype)
            self._buffers[name] = buf
        return buf[:size].reshape(shape)

    def clear(self):
        self._buffers.clear()


def output_size(size, kernel_size, stride, padding, dilation):
    """Convolution output length along one axis (may be <= 0 for bad shapes)."""
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1


def chunk_samples(N, rows_per_sample, cols):
    """Samples per chunk: balanced chunks whose im2row buffer holds about
    CHUNK_ELEMENTS. Depends only on the shapes."""
    per = max(1, min(N, CHUNK_ELEMENTS // max(1, rows_per_sample * cols)))
    chunks = (N + per - 1) // per
    return (N + chunks - 1) // chunks


def conv2d_forward(out, x, weight, bias, geom, work, kind=0, slope=0.0):
    """out (N, OC, OH, OW) = act(conv2d(x, weight) + bias), overwritten.

    x (N, C, H, W), weight (OC, C/G, KH, KW), bias (OC,) or None; C-contiguous,
    one dtype. ``kind``/``slope`` pick a fused activation (``activations``).
    """
    N = x.shape[0]
    OC, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    G = geom[8]
    OCg, Kg, P = OC // G, weight[0].size, OH * OW
    w3 = weight.reshape(G, OCg, Kg)
    out3 = out.reshape(N, OC, P)
    has_bias = bias is not None
    bias_arr = bias if has_bias else weight.reshape(-1)[:1]
    per = chunk_samples(N, P, G * Kg)
    for n0 in range(0, N, per):
        nc = min(per, N - n0)
        col = work.view("col", (G, nc * P, Kg), x.dtype)
        outT = work.view("outT", (G, nc * P, OCg), x.dtype)
        im2row(col, x, n0, geom, False)
        for g in range(G):
            matmul(outT[g], col[g], w3[g], trans_b=True)
        conv_epilogue(out3, outT, bias_arr, n0, has_bias, kind, float(slope))


def conv2d_backward(dx, dweight, dbias, dout, x, weight, geom, work, accumulate_w=False, accumulate_b=False):
    """Gradients of conv2d: dx overwritten; dweight, dbias overwritten or added to
    (``accumulate_*``). Any of dx, dweight, dbias may be None to skip it.

    dout (N, OC, OH, OW); shapes as in :func:`conv2d_forward`.
    """
    N = x.shape[0]
    OC, OH, OW = dout.shape[1], dout.shape[2], dout.shape[3]
    G = geom[8]
    OCg, Kg, P = OC // G, weight[0].size, OH * OW
    dout3 = dout.reshape(N, OC, P)
    if dbias is not None:
        conv_bias_backward(dbias, dout3, accumulate_b)
    if dx is None and dweight is None:
        return
    wT = work.view("wT", (G, Kg, OCg), x.dtype)
    batched_transpose(wT, weight.reshape(G, OCg, Kg))
    dw3 = dweight.reshape(G, OCg, Kg) if dweight is not None else None
    per = chunk_samples(N, P, G * Kg)
    for n0 in range(0, N, per):
        nc = min(per, N - n0)
        doutT = work.view("doutT", (G, nc * P, OCg), x.dtype)
        doutNC = work.view("doutNC", (G, OCg, nc * P), x.dtype)
        conv_dout_layouts(doutT, doutNC, dout3, n0)
        if dw3 is not None:
            colT = work.view("col", (G, Kg, nc * P), x.dtype)
            im2row(colT, x, n0, geom, True)
            for g in range(G):
                matmul(dw3[g], doutNC[g], colT[g], trans_b=True, accumulate=accumulate_w or n0 > 0)
        if dx is not None:
            dcol = work.view("col", (G, nc * P, Kg), x.dtype)
            for g in range(G):
                matmul(dcol[g], doutT[g], wT[g], trans_b=True)
            col2im(dx, dcol, n0, geom)
