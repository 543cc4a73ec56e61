"""Winograd F(2x2, 3x3) convolution: 3 x 3, stride 1, for inference plans.

Each 2 x 2 block of output pixels (a tile) of an output channel is

    Y = A^T [ sum_c (G g_oc G^T) . (B^T d_c B) ] A

where d_c is the 4 x 4 input patch under the tile in channel c, g_oc the 3 x 3 kernel,
and ``.`` the elementwise product (Lavin and Gray, "Fast Algorithms for
Convolutional Neural Networks", 2016). The sum over c is, for each of the 16
elements e of the 4 x 4 transformed patch, a product U[e] (OC, C) @ V[e] (C, tiles):
16 products of 16 * OC * C per tile against 36 * OC * C for the direct convolution's
four pixels, 2.25x fewer multiply-adds. The weights' transform U = G g G^T is made
once (a plan's weights are constant) and packed for the micro-kernel; the input's
transform V is written straight into the micro-kernel's packed B panels, NR tiles a
panel; the output's transform adds the bias, applies the fused activation and
writes NCHW.

The transforms only add and subtract (G's halves are exact), so the result differs
from the direct convolution's by rounding alone, a few units in the last place
more (the transformed values are sums of up to 16 products' worth of terms).
Panels are the unit of work: every tile's result depends on its own panel only,
so the split over threads never changes a bit.
"""
import numpy as np
from numba import prange

from . import activations as act_k
from ._fnptr import call, handle
from ._jit import inline, kernel, serial_kernel
from .microkernel import KC, MR, NV, micro, pack_a

# G: the 3-tap kernel's transform (4 x 3); B^T and A^T are written out in the loops
_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])

MIN_CHANNELS = 32  # fewer channels in or out: the transforms cost more than the products save (measured)


def applies(x_shape, w_shape, geom):
    """Whether a convolution of ``x_shape`` (N, C, H, W) with ``w_shape`` and ``geom``
    (KH, KW, SH, SW, PH, PW, DH, DW, G) is one this kernel computes, and worth it."""
    KH, KW, SH, SW, PH, PW, DH, DW, G = geom
    return (KH == KW == 3 and SH == SW == DH == DW == G == 1 and 0 <= PH <= 2 and 0 <= PW <= 2
            and x_shape[1] >= MIN_CHANNELS and w_shape[0] >= MIN_CHANNELS
            and x_shape[2] + 2 * PH >= 3 and x_shape[3] + 2 * PW >= 3)


@inline
def _geometry(C, OC, itemsize):
    # (NR, kcb, rows, sb, sm): tiles a panel, K (the channels) in equal blocks of at most
    # KC, the output channels rounded up to whole MR-row micro-tiles, and the distances
    # between the 16 products' B panels and results in the scratch: a cache line more
    # than their sizes, so that the transforms' 16 streams do not all fall into the same
    # L1 sets (at 4 KiB apart, 16 streams thrash an 8-way cache: 4x slower)
    nk = (C + KC - 1) // KC
    NR, rows = NV * (64 // itemsize), (OC + MR - 1) // MR * MR
    return NR, (C + nk - 1) // nk, rows, C * NR + 64 // itemsize, rows * NR + 64 // itemsize


def pack_weight(weight, dtype):
    """The weights (OC, C, 3, 3) transformed (U[e] = G g G^T, in float64, then ``dtype``)
    and packed for the micro-kernel: flat, U[e]'s K block k0 and row group i at
    ``e*rows*C + k0*rows + i*kc``."""
    OC, C = weight.shape[:2]
    u = np.einsum("ik,ockl,jl->ijoc", _G, np.asarray(weight, np.float64), _G).reshape(16, OC, C)
    u = np.ascontiguousarray(u, dtype=dtype)
    _, kcb, rows, _, _ = _geometry.py_func(C, OC, np.dtype(dtype).itemsize)
    ap = np.zeros(16 * rows * C, dtype)
    for e in range(16):
        for k0 in range(0, C, kcb):
            pack_a(ap[e * rows * C + k0 * rows:], u[e], False, 0, OC, k0, min(kcb, C - k0))
    return ap


@inline
def _input_rows(eo, x, n, c, y0, x0, L, H, W):
    # eo[i, :2L + 2] = x[n, c, y0 + i, x0:x0 + 2L + 2] for i < 4, zero outside the image:
    # the rows under L tiles of one tile row, padded
    width = 2 * L + 2
    lo, hi = min(max(0, -x0), width), max(min(width, W - x0), 0)
    for i in range(4):
        dst = eo[i]
        iy = y0 + i
        if iy < 0 or iy >= H or hi <= lo:
            for k in range(width):
                dst[k] = 0
            continue
        for k in range(lo):
            dst[k] = 0
        src = x[n, c, iy, x0 + lo:x0 + hi]
        inner = dst[lo:hi]
        for k in range(hi - lo):
            inner[k] = src[k]
        for k in range(hi, width):
            dst[k] = 0


@inline
def _input_transform(bp, eo, c, sb, j, L, NR):
    # bp[e*sb + c*NR + j + u] = (B^T d B)[e] for the L tiles of one tile row, d's rows in
    # eo[0:4], tile u's columns at 2u..2u+3: B^T over the rows (d0 - d2, d1 + d2,
    # d2 - d1, d1 - d3), then the same over the columns. One loop, scalar: split into
    # loops of few streams that LLVM vectorises, it measured 2x slower (a tile row is
    # 16 tiles or fewer: the vector loops' set-up costs more than they save)
    r0, r1, r2, r3 = eo[0], eo[1], eo[2], eo[3]
    b0 = bp[c * NR + j:]  # (views indexed from 0: no wraparound checks)
    v0, v1, v2, v3 = b0[:L], b0[sb:sb + L], b0[2 * sb:2 * sb + L], b0[3 * sb:3 * sb + L]
    v4, v5, v6, v7 = b0[4 * sb:4 * sb + L], b0[5 * sb:5 * sb + L], b0[6 * sb:6 * sb + L], b0[7 * sb:7 * sb + L]
    v8, v9, v10, v11 = b0[8 * sb:8 * sb + L], b0[9 * sb:9 * sb + L], b0[10 * sb:10 * sb + L], b0[11 * sb:11 * sb + L]
    v12, v13 = b0[12 * sb:12 * sb + L], b0[13 * sb:13 * sb + L]
    v14, v15 = b0[14 * sb:14 * sb + L], b0[15 * sb:15 * sb + L]
    for u in range(L):
        k = 2 * u
        a00, a01, a02, a03 = r0[k] - r2[k], r0[k + 1] - r2[k + 1], r0[k + 2] - r2[k + 2], r0[k + 3] - r2[k + 3]
        a10, a11, a12, a13 = r1[k] + r2[k], r1[k + 1] + r2[k + 1], r1[k + 2] + r2[k + 2], r1[k + 3] + r2[k + 3]
        a20, a21, a22, a23 = r2[k] - r1[k], r2[k + 1] - r1[k + 1], r2[k + 2] - r1[k + 2], r2[k + 3] - r1[k + 3]
        a30, a31, a32, a33 = r1[k] - r3[k], r1[k + 1] - r3[k + 1], r1[k + 2] - r3[k + 2], r1[k + 3] - r3[k + 3]
        v0[u], v1[u], v2[u], v3[u] = a00 - a02, a01 + a02, a02 - a01, a01 - a03
        v4[u], v5[u], v6[u], v7[u] = a10 - a12, a11 + a12, a12 - a11, a11 - a13
        v8[u], v9[u], v10[u], v11[u] = a20 - a22, a21 + a22, a22 - a21, a21 - a23
        v12[u], v13[u], v14[u], v15[u] = a30 - a32, a31 + a32, a32 - a31, a31 - a33


@inline
def _output_tiles(out, m, bias, has_bias, kind, slope, eo, n, ty, tx0, j, L, sm, NR):
    # out[n, o, 2ty + dy, 2(tx0 + u) + dx] = act(A^T M A + bias[o]) for the L tiles of one
    # tile row at columns j.. of the panel's products m[e*sm + o*NR + jj]: A^T over
    # M's rows (m0 + m1 + m2, m1 - m2 - m3), then over the columns, into eo's rows 0-3,
    # then interleaved into out's two rows
    OC, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    two_rows = 2 * ty + 1 < OH
    full = min(L, (OW - 2 * tx0) // 2)  # tiles whose two columns are both inside
    y00, y01, y10, y11 = eo[0], eo[1], eo[2], eo[3]
    step = sm
    for o in range(OC):
        b = bias[o] if has_bias else out.dtype.type(0)
        q = m[o * NR + j:]
        q0, q1, q2, q3 = q[:L], q[step:step + L], q[2 * step:2 * step + L], q[3 * step:3 * step + L]
        q4, q5, q6, q7 = q[4 * step:4 * step + L], q[5 * step:5 * step + L], q[6 * step:6 * step + L], \
            q[7 * step:7 * step + L]
        q8, q9, q10, q11 = q[8 * step:8 * step + L], q[9 * step:9 * step + L], q[10 * step:10 * step + L], \
            q[11 * step:11 * step + L]
        q12, q13, q14, q15 = q[12 * step:12 * step + L], q[13 * step:13 * step + L], q[14 * step:14 * step + L], \
            q[15 * step:15 * step + L]
        for u in range(L):
            m00, m01, m02, m03 = q0[u], q1[u], q2[u], q3[u]
            m10, m11, m12, m13 = q4[u], q5[u], q6[u], q7[u]
            m20, m21, m22, m23 = q8[u], q9[u], q10[u], q11[u]
            m30, m31, m32, m33 = q12[u], q13[u], q14[u], q15[u]
            s00, s01, s02, s03 = m00 + m10 + m20, m01 + m11 + m21, m02 + m12 + m22, m03 + m13 + m23
            s10, s11, s12, s13 = m10 - m20 - m30, m11 - m21 - m31, m12 - m22 - m32, m13 - m23 - m33
            y00[u] = s00 + s01 + s02 + b
            y01[u] = s01 - s02 - s03 + b
            y10[u] = s10 + s11 + s12 + b
            y11[u] = s11 - s12 - s13 + b
        for dy in range(2 if two_rows else 1):
            ya, yb = (y00, y01) if dy == 0 else (y10, y11)
            dst = out[n, o, 2 * ty + dy, 2 * tx0:]
            if kind == act_k.RELU:
                for u in range(full):
                    va, vb = ya[u], yb[u]
                    dst[2 * u] = va if va > 0 else va * 0
                    dst[2 * u + 1] = vb if vb > 0 else vb * 0
            elif kind != act_k.IDENTITY:
                for u in range(full):
                    dst[2 * u] = act_k._forward_one(ya[u], kind, slope)
                    dst[2 * u + 1] = act_k._forward_one(yb[u], kind, slope)
            else:
                for u in range(full):
                    dst[2 * u] = ya[u]
                    dst[2 * u + 1] = yb[u]
            if full < L:  # the row's last tile, its second column past the edge
                va = ya[full]
                dst[2 * full] = act_k._forward_one(va, kind, slope) if kind != act_k.IDENTITY else va


@serial_kernel
def winograd_panels(out, x, ap, bias, has_bias, kind, slope, PH, PW, p_lo, p_hi, bp, m, eo):
    """out (N, OC, OH, OW) = act(conv3x3(x, w) + bias) for the tiles of panels p_lo..p_hi
    (NR tiles each, numbered over (n, tile row, tile column)), overwritten; stride 1,
    padding (PH, PW). ap: the packed transformed weights (``pack_weight``); bias (OC,)
    (read when ``has_bias``); bp (16*sb), m (16*sm) (``_geometry``) and eo (4, 2 * tiles a row + 2):
    scratch."""
    N, C, H, W = x.shape
    OC, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    NR, kcb, rows, sb, sm = _geometry(C, OC, x.itemsize)
    th, tw = (OH + 1) // 2, (OW + 1) // 2
    per_image = th * tw
    T = N * per_image
    for pnl in range(p_lo, p_hi):
        t0 = pnl * NR
        cols = min(NR, T - t0)
        if cols < NR:  # the last panel's missing tiles: zero columns, whose results go nowhere
            for k in range(16 * C):
                row = bp[k // C * sb + k % C * NR:][cols:NR]
                for t in range(NR - cols):
                    row[t] = 0
        j = 0
        while j < cols:  # the panel's tiles, a run of one tile row at a time
            t = t0 + j
            n = t // per_image
            ty = (t - n * per_image) // tw
            tx0 = t - n * per_image - ty * tw
            L = min(tw - tx0, cols - j)
            for c in range(C):
                _input_rows(eo, x, n, c, 2 * ty - PH, 2 * tx0 - PW, L, H, W)
                _input_transform(bp, eo, c, sb, j, L, NR)
            j += L
        for e in range(16):
            for k0 in range(0, C, kcb):
                kc = min(kcb, C - k0)
                for i in range(0, rows, MR):
                    micro(m, e * sm + i * NR, NR, ap, e * rows * C + k0 * rows + i * kc, bp, e * sb + k0 * NR,
                          kc, k0 > 0)
        j = 0
        while j < cols:
            t = t0 + j
            n = t // per_image
            ty = (t - n * per_image) // tw
            tx0 = t - n * per_image - ty * tw
            L = min(tw - tx0, cols - j)
            _output_tiles(out, m, bias, has_bias, kind, slope, eo, n, ty, tx0, j, L, sm, NR)
            j += L


@kernel
def winograd_parallel(out, x, ap, bias, has_bias, kind, slope, PH, PW, npan, bps, ms, eos, fn):
    """:func:`winograd_panels` of panels 0..npan, split into ``bps.shape[0]`` runs of
    panels, one a thread, each with its own row of the scratch; ``fn``: the handle of
    ``winograd_panels`` for these arguments (:func:`_fnptr.handle`)."""
    parts = bps.shape[0]
    for c in prange(parts):
        call(fn, (out, x, ap, bias, has_bias, kind, slope, PH, PW, c * npan // parts, (c + 1) * npan // parts,
                  bps[c], ms[c], eos[c]))


def forward_runner(out, x, weight, bias, geom, kind, slope, threads, work):
    """``run(x)``: out = act(conv2d(x, weight) + bias) by Winograd F(2x2, 3x3) for inputs
    of ``x``'s shape and dtype (``applies`` must hold), the weights transformed and
    packed now, scratch from ``work`` (a ``conv_plan.Workspace``), the panels split over
    at most ``threads`` threads."""
    N, C = x.shape[:2]
    OC, OH, OW = out.shape[1:]
    dt = x.dtype
    NR, _, _, sb, sm = _geometry.py_func(C, OC, dt.itemsize)
    ap = pack_weight(weight, dt)
    has_bias = bias is not None
    bias = np.ascontiguousarray(bias, dt) if has_bias else ap[:1]
    kind, slope = int(kind), float(slope)
    PH, PW = geom[4], geom[5]
    tw = (OW + 1) // 2
    npan = -(-N * ((OH + 1) // 2) * tw // NR)
    parts = max(1, min(threads, npan))
    bps = work.view("winograd_b", (parts, 16 * sb), dt)
    ms = work.view("winograd_m", (parts, 16 * sm), dt)
    eos = work.view("winograd_eo", (parts, 4, 2 * tw + 2), dt)
    if parts == 1:
        def run(x):
            winograd_panels(out, x, ap, bias, has_bias, kind, slope, PH, PW, 0, npan, bps[0], ms[0], eos[0])
        return run
    fn = handle(winograd_panels, (out, x, ap, bias, has_bias, kind, slope, PH, PW, 0, 0, bps[0], ms[0], eos[0]))

    def run(x):
        winograd_parallel(out, x, ap, bias, has_bias, kind, slope, PH, PW, npan, bps, ms, eos, fn)
    return run
