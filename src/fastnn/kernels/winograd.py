"""Winograd F(2x2, 3x3) convolution: 3 x 3, stride 1, where it pays (``applies``).

Each 2 x 2 block of output pixels (a tile) of an output channel is

    Y = A^T [ sum_c (G g_oc G^T) . (B^T d_c B) ] A

where d_c is the 4 x 4 input patch under the tile in channel c, g_oc the 3 x 3 kernel,
and ``.`` the elementwise product (Lavin and Gray, "Fast Algorithms for
Convolutional Neural Networks", 2016). The sum over c is, for each of the 16
elements e of the 4 x 4 transformed patch, a product U[e] (OC, C) @ V[e] (C, tiles):
16 products of 16 * OC * C per tile against 36 * OC * C for the direct convolution's
four pixels, 2.25x fewer multiply-adds. The weights' transform U = G g G^T is made
and packed for the micro-kernel once per inference plan (its weights are constant),
or at each eager call (a pass over the weights); the input's
transform V, from images each thread pads itself, is written straight into the
micro-kernel's packed B panels, NR tiles a panel; the output's transform adds the
bias, applies the fused activation and writes NCHW. Both transforms run W tiles at
a time in vector registers (``_input_vectors``, ``_output_vectors``).

The transforms only add and subtract (G's halves are exact), so the result differs
from the direct convolution's by rounding alone, a few units in the last place
more (the transformed values are sums of up to 16 products' worth of terms).
Panels are the unit of work: every tile's result depends on its own panel only,
so the split over threads never changes a bit.
"""
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic

from . import activations as act_k
from ._fnptr import call, handle
from ._jit import inline, kernel, serial_kernel
from .im2col import pad_images
from .microkernel import KC, MR, NV, _bytes, _data, micro

LANES = 32  # bytes of the transforms' vectors: 8 float32 (a tile row of a 16 x 16 output is 8 tiles)
# where it pays, measured against the GEMM convolution on a plan (2 threads, batch 1 and
# 32): channels in and out at least MIN_CHANNELS each and MIN_SUM together (16 in and
# 16 out measured level, 3 in slower), and tile rows of at least one vector of tiles
MIN_CHANNELS, MIN_SUM = 8, 40


def applies(x_shape, w_shape, geom, dtype):
    """Whether a convolution of ``x_shape`` (N, C, H, W) with ``w_shape`` and ``geom``
    (KH, KW, SH, SW, PH, PW, DH, DW, G) in ``dtype`` is one this kernel computes, and
    one it computes faster than the GEMM convolution."""
    KH, KW, SH, SW, PH, PW, DH, DW, G = geom
    C, OC = x_shape[1], w_shape[0]
    OW = x_shape[3] + 2 * PW - 2
    return (KH == KW == 3 and SH == SW == DH == DW == G == 1 and 0 <= PH <= 2 and 0 <= PW <= 2
            and min(C, OC) >= MIN_CHANNELS and C + OC >= MIN_SUM and x_shape[2] + 2 * PH >= 3
            and (OW + 1) // 2 >= LANES // np.dtype(dtype).itemsize)


# an eager call transforms the weights each time (about 10 ns per pair of channels,
# where a tile saves about 0.2 ns per pair): below this many tiles it does not pay
EAGER_MIN_TILES = 128


def pays_eagerly(out_shape):
    """Whether an eager call (weights transformed per call) producing ``out_shape``
    (N, OC, OH, OW) has enough tiles to pay for its weight transform."""
    N, _, OH, OW = out_shape
    return N * ((OH + 1) // 2) * ((OW + 1) // 2) >= EAGER_MIN_TILES


@inline
def _geometry(C, OC, itemsize):
    # (NR, kcb, rows, sb, sm, sa): tiles a panel, K (the channels) in equal blocks of at
    # most KC, the output channels rounded up to whole MR-row micro-tiles, and the
    # distances between the 16 products' B panels, results and packed weights: a cache
    # line more than their sizes, so that the transforms' 16 streams do not all fall
    # into the same L1 sets (at 4 KiB apart, 16 streams thrash an 8-way cache: 4x slower)
    nk = (C + KC - 1) // KC
    NR, rows, skew = NV * (64 // itemsize), (OC + MR - 1) // MR * MR, 64 // itemsize
    return NR, (C + nk - 1) // nk, rows, C * NR + skew, rows * NR + skew, rows * C + skew


def packed_size(C, OC, dtype):
    """Elements of ``pack_weight``'s ap for C input and OC output channels."""
    return 16 * _geometry.py_func(C, OC, np.dtype(dtype).itemsize)[5]


def pack_weight(ap, weight):
    """``ap`` (flat, ``packed_size``) = the weights (OC, C, 3, 3) transformed, U[e] =
    G g G^T (in float64, then ap's dtype), and packed for the micro-kernel: U[e]'s K
    block k0 and row group i at ``e*sa + k0*rows + i*kc`` (``_geometry``), rows past
    OC zero. Returns ap."""
    OC, C = weight.shape[:2]
    _, kcb, rows, _, _, sa = _geometry.py_func(C, OC, ap.itemsize)
    _transform_weight(ap, weight, kcb, rows, sa)
    return ap


@serial_kernel
def _transform_weight(ap, w, kcb, rows, stride):
    # pack_weight's work: per (oc, c), t = G g (4 x 3), then U = t G^T (4 x 4), with
    # G's rows (1, 0, 0), (1, 1, 1) / 2, (1, -1, 1) / 2, (0, 0, 1)
    OC, C = w.shape[0], w.shape[1]
    t = np.empty((4, 3))
    for k0 in range(0, C, kcb):
        kc = min(kcb, C - k0)
        for oc in range(rows):
            for k in range(kc):
                at = k0 * rows + oc // MR * MR * kc + k * MR + oc % MR
                if oc >= OC:
                    for e in range(16):
                        ap[e * stride + at] = 0
                    continue
                g = w[oc, k0 + k]
                for j in range(3):
                    g0, g1, g2 = np.float64(g[0, j]), np.float64(g[1, j]), np.float64(g[2, j])
                    t[0, j], t[1, j], t[2, j], t[3, j] = g0, (g0 + g1 + g2) * 0.5, (g0 - g1 + g2) * 0.5, g2
                for i in range(4):
                    t0, t1, t2 = t[i, 0], t[i, 1], t[i, 2]
                    ap[(4 * i) * stride + at] = t0
                    ap[(4 * i + 1) * stride + at] = (t0 + t1 + t2) * 0.5
                    ap[(4 * i + 2) * stride + at] = (t0 - t1 + t2) * 0.5
                    ap[(4 * i + 3) * stride + at] = t2


def _lanes(fty):
    return LANES // _bytes(fty)


@inline
def _lanes_of(a):
    return LANES // a.itemsize


@intrinsic
def _input_vectors(typingctx, bp, b_off, sb, src, s_off, ld):
    """The input transform of W consecutive tiles (W: LANES bytes of elements), in
    vector registers: bp.data[b_off + e*sb + w] = (B^T d B)[e] of tile w, whose 4 x 4
    patch has row i at src.data[s_off + i*ld + 2w:][:4]. Each row is read as two
    vectors at 2w and two at 2w + 2, split into even and odd elements by shuffles."""
    sig = types.void(bp, b_off, sb, src, s_off, ld)

    def codegen(context, builder, signature, args):
        bp, b_off, sb, src, s_off, ld = args
        fty = context.get_value_type(signature.args[0].dtype)
        W, size, i64 = _lanes(fty), _bytes(fty), ir.IntType(64)
        vty = ir.VectorType(fty, W)
        bb = _data(context, builder, signature.args[0], bp, b_off)
        eb = _data(context, builder, signature.args[3], src, s_off)
        even = ir.Constant(ir.VectorType(ir.IntType(32), W), list(range(0, 2 * W, 2)))
        odd = ir.Constant(ir.VectorType(ir.IntType(32), W), list(range(1, 2 * W, 2)))

        def load(i, off):
            p = builder.gep(eb, [builder.add(builder.mul(ld, ir.Constant(i64, i)), ir.Constant(i64, off))],
                            inbounds=True)
            return builder.load(builder.bitcast(p, vty.as_pointer()), align=size)

        d = []  # d[i][col]: row i of the patches, column col, a vector over the W tiles
        for i in range(4):
            lo, hi, lo2, hi2 = load(i, 0), load(i, W), load(i, 2), load(i, W + 2)
            d.append([builder.shuffle_vector(lo, hi, even), builder.shuffle_vector(lo, hi, odd),
                      builder.shuffle_vector(lo2, hi2, even), builder.shuffle_vector(lo2, hi2, odd)])

        def bt(x0, x1, x2, x3):  # B^T's rows: x0 - x2, x1 + x2, x2 - x1, x1 - x3
            return [builder.fsub(x0, x2), builder.fadd(x1, x2), builder.fsub(x2, x1), builder.fsub(x1, x3)]

        rows = [bt(d[0][col], d[1][col], d[2][col], d[3][col]) for col in range(4)]  # rows[col][a]
        for a in range(4):
            for b, v in enumerate(bt(rows[0][a], rows[1][a], rows[2][a], rows[3][a])):
                p = builder.gep(bb, [builder.mul(sb, ir.Constant(i64, 4 * a + b))], inbounds=True)
                builder.store(v, builder.bitcast(p, vty.as_pointer()), align=size)
        return context.get_dummy_value()

    return sig, codegen


@inline
def _input_transform(bp, xpf, base, Wp, c, sb, j, L, NR):
    # bp[e*sb + c*NR + j + u] = (B^T d B)[e] for the L tiles of one tile row, tile u's
    # patch at xpf[base + i*Wp + 2u:][:4] (row i): B^T over the rows (d0 - d2, d1 + d2,
    # d2 - d1, d1 - d3), then the same over the columns; W tiles at a time in vector
    # registers (``_input_vectors``), the last vector writing up to W - 1 columns past
    # L, which a later call overwrites (the caller's order) or that no result reads
    W = _lanes_of(bp)
    for u in range(0, L, W):
        _input_vectors(bp, c * NR + j + u, sb, xpf, base + 2 * u, Wp)


def _output_math(context, builder, signature, args, m_at, bias, relu):
    """(y00, y01, y10, y11): A^T M A + bias of W tiles as vectors, M[e] the vector at
    element ``m_off + e*sm`` of the array m, where (m, m_off, sm) are ``args[m_at:m_at +
    3]``, then ReLU'd where the i1 ``relu`` is set (``v if v > 0 else v * 0``: NaN stays
    NaN)."""
    m, m_off, sm = args[m_at], args[m_at + 1], args[m_at + 2]
    fty = context.get_value_type(signature.args[m_at].dtype)
    W, size, i64, i32 = _lanes(fty), _bytes(fty), ir.IntType(64), ir.IntType(32)
    vty = ir.VectorType(fty, W)
    mb = _data(context, builder, signature.args[m_at], m, m_off)
    q = []
    for e in range(16):
        p = builder.gep(mb, [builder.mul(sm, ir.Constant(i64, e))], inbounds=True)
        q.append(builder.load(builder.bitcast(p, vty.as_pointer()), align=size))
    s0 = [builder.fadd(builder.fadd(q[b], q[4 + b]), q[8 + b]) for b in range(4)]
    s1 = [builder.fsub(builder.fsub(q[4 + b], q[8 + b]), q[12 + b]) for b in range(4)]
    splat = builder.shuffle_vector(builder.insert_element(ir.Constant(vty, ir.Undefined), bias, ir.Constant(i32, 0)),
                                   ir.Constant(vty, ir.Undefined), ir.Constant(ir.VectorType(i32, W), [0] * W))
    zero = ir.Constant(vty, None)

    def finish(v):
        v = builder.fadd(v, splat)
        return builder.select(relu, builder.select(builder.fcmp_ordered(">", v, zero), v, builder.fmul(v, zero)), v)

    return [finish(y) for s in (s0, s1)
            for y in (builder.fadd(builder.fadd(s[0], s[1]), s[2]), builder.fsub(builder.fsub(s[1], s[2]), s[3]))]


@intrinsic
def _output_vectors(typingctx, out, o_off, ow, two_rows, m, m_off, sm, bias, relu):
    """The output transform of W consecutive tiles in vector registers: with M[e] =
    m.data[m_off + e*sm:][:W], y = A^T M A + bias (then ReLU when ``relu``), stored
    interleaved: out.data[o_off + 2w + dx] = y[0, dx] of tile w, and, when ``two_rows``,
    out.data[o_off + ow + 2w + dx] = y[1, dx]."""
    sig = types.void(out, o_off, ow, two_rows, m, m_off, sm, bias, relu)

    def codegen(context, builder, signature, args):
        out, o_off, ow, two_rows = args[:4]
        fty = context.get_value_type(signature.args[0].dtype)
        W, size, i32 = _lanes(fty), _bytes(fty), ir.IntType(32)
        wide = ir.VectorType(fty, 2 * W).as_pointer()
        relu = builder.icmp_unsigned("!=", args[8], ir.Constant(args[8].type, 0))
        y00, y01, y10, y11 = _output_math(context, builder, signature, args, 4, args[7], relu)
        ob = _data(context, builder, signature.args[0], out, o_off)
        pairs = ir.Constant(ir.VectorType(i32, 2 * W), [k // 2 + (k % 2) * W for k in range(2 * W)])
        builder.store(builder.shuffle_vector(y00, y01, pairs), builder.bitcast(ob, wide), align=size)
        with builder.if_then(builder.icmp_unsigned("!=", two_rows, ir.Constant(two_rows.type, 0))):
            builder.store(builder.shuffle_vector(y10, y11, pairs),
                          builder.bitcast(builder.gep(ob, [ow], inbounds=True), wide), align=size)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _output_rows(typingctx, dst, d_off, ld, m, m_off, sm, bias):
    """:func:`_output_vectors`' y = A^T M A + bias of W tiles, no activation, stored as
    four rows: dst.data[d_off + k*ld + w] = y[k // 2, k % 2] of tile w."""
    sig = types.void(dst, d_off, ld, m, m_off, sm, bias)

    def codegen(context, builder, signature, args):
        dst, d_off, ld = args[:3]
        fty = context.get_value_type(signature.args[0].dtype)
        size, i64 = _bytes(fty), ir.IntType(64)
        vty = ir.VectorType(fty, _lanes(fty)).as_pointer()
        y00, y01, y10, y11 = _output_math(context, builder, signature, args, 3, args[6], ir.Constant(ir.IntType(1), 0))
        db = _data(context, builder, signature.args[0], dst, d_off)
        for k, v in enumerate((y00, y01, y10, y11)):
            p = builder.gep(db, [builder.mul(ld, ir.Constant(i64, k))], inbounds=True)
            builder.store(v, builder.bitcast(p, vty), align=size)
        return context.get_dummy_value()

    return sig, codegen


@inline
def _output_tiles(out, m, bias, has_bias, kind, slope, eo, n, ty, tx0, j, L, sm, NR):
    # out[n, o, 2ty + dy, 2(tx0 + u) + dx] = act(A^T M A + bias[o]) for the L tiles of one
    # tile row at columns j.. of the panel's products m[e*sm + o*NR + jj]: A^T over
    # M's rows (m0 + m1 + m2, m1 - m2 - m3), then over the columns, W tiles at a time in
    # vector registers. Stored from there (``_output_vectors``) when the activation is
    # none or ReLU, for the tiles whose two columns are inside; the rest through eo's
    # rows 0-3 (``_output_rows``, reading up to W - 1 columns of m past L), activated and
    # interleaved into out's two rows one by one
    OC, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    two_rows = 2 * ty + 1 < OH
    full = min(L, (OW - 2 * tx0) // 2)  # tiles whose two columns are both inside
    W = _lanes_of(out)
    # tiles 0..vectors from vector registers, a last vector overlapping the one before
    # (its tiles computed twice, stored twice, the same values) instead of a scalar tail
    vectors = full if (kind == act_k.IDENTITY or kind == act_k.RELU) and full >= W else 0
    ld = eo.shape[1]
    y00, y01, y10, y11 = eo[0], eo[1], eo[2], eo[3]
    for o in range(OC):
        b = bias[o] if has_bias else out.dtype.type(0)
        row = ((n * OC + o) * OH + 2 * ty) * OW + 2 * tx0
        for g in range(0, vectors, W):
            u = min(g, vectors - W)
            _output_vectors(out, row + 2 * u, OW, two_rows, m, o * NR + j + u, sm, b, kind == act_k.RELU)
        for u in range(vectors, L, W):
            _output_rows(eo, u - vectors, ld, m, o * NR + j + u, sm, b)
        for dy in range((2 if two_rows else 1) if vectors < L else 0):
            ya, yb = (y00, y01) if dy == 0 else (y10, y11)
            dst = out[n, o, 2 * ty + dy, 2 * (tx0 + vectors):]
            for u in range(L - vectors):
                dst[2 * u] = ya[u] if kind == act_k.IDENTITY else act_k._forward_one(ya[u], kind, slope)
                if vectors + u < full:
                    dst[2 * u + 1] = yb[u] if kind == act_k.IDENTITY else act_k._forward_one(yb[u], kind, slope)


@inline
def _next_run(j, n, ty, tx0, L, th, tw):
    # (column, image, tile row, first tile) of the run after one of L tiles
    tx0 += L
    if tx0 == tw:
        tx0 = 0
        ty += 1
        if ty == th:
            ty = 0
            n += 1
    return j + L, n, ty, tx0


@serial_kernel
def winograd_panels(out, x, ap, bias, has_bias, kind, slope, PH, PW, p_lo, p_hi, bp, m, eo, xpf):
    """out (N, OC, OH, OW) = act(conv3x3(x, w) + bias) for the tiles of panels p_lo..p_hi
    (NR tiles each, numbered over (n, tile row, tile column)), overwritten; stride 1,
    padding (PH, PW). ap: the packed transformed weights (``pack_weight``); bias (OC,)
    (read when ``has_bias``). Scratch: bp (16*sb), m (16*sm) (``_geometry``), eo (4,
    tiles a row + W) and xpf (``padded_size``): the images the panels cover, padded
    (``im2col.pad_images``) with a tail the vector loads may read into."""
    N, C, H, W = x.shape
    OC, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    NR, kcb, rows, sb, sm, sa = _geometry(C, OC, x.itemsize)
    th, tw = (OH + 1) // 2, (OW + 1) // 2
    per_image = th * tw
    T = N * per_image
    if p_lo >= p_hi:
        return
    Hp, Wp = H + 2 * PH, W + 2 * PW
    tail = _tail(Wp, x)
    plane = C * Hp * Wp + tail
    first = p_lo * NR // per_image
    pad_images(xpf, x, first, (min(p_hi * NR, T) - 1) // per_image + 1 - first, 0, C, PH, PW, tail)
    for pnl in range(p_lo, p_hi):
        t0 = pnl * NR
        cols = min(NR, T - t0)
        if cols < NR:  # the last panel's missing tiles: zero columns, whose results go nowhere
            for k in range(16 * C):
                row = bp[k // C * sb + k % C * NR:][cols:NR]
                for t in range(NR - cols):
                    row[t] = 0
        n0 = t0 // per_image  # the panel's first tile
        ty0 = (t0 - n0 * per_image) // tw
        tx00 = t0 - n0 * per_image - ty0 * tw
        for c in range(C):  # (channel by channel, runs in order: each overwrites what the one before spilt)
            j, n, ty, tx0 = 0, n0, ty0, tx00
            while j < cols:  # the panel's tiles, a run of one tile row at a time
                L = min(tw - tx0, cols - j)
                base = (n - first) * plane + (c * Hp + 2 * ty) * Wp + 2 * tx0
                _input_transform(bp, xpf, base, Wp, c, sb, j, L, NR)
                j, n, ty, tx0 = _next_run(j, n, ty, tx0, L, th, tw)
        for e in range(16):
            for k0 in range(0, C, kcb):
                kc = min(kcb, C - k0)
                for i in range(0, rows, MR):
                    micro(m, e * sm + i * NR, NR, ap, e * sa + k0 * rows + i * kc, bp, e * sb + k0 * NR,
                          kc, k0 > 0)
        j, n, ty, tx0 = 0, n0, ty0, tx00
        while j < cols:
            L = min(tw - tx0, cols - j)
            _output_tiles(out, m, bias, has_bias, kind, slope, eo, n, ty, tx0, j, L, sm, NR)
            j, n, ty, tx0 = _next_run(j, n, ty, tx0, L, th, tw)


@inline
def _tail(Wp, like):
    # zeros after each padded image: a patch's fourth row and column may lie one past
    # the padded image (an odd output's dropped row or column), and the vector loads
    # read up to 2W + 1 elements past a tile row's last patch
    return Wp + 4 * _lanes_of(like) + 4


def padded_size(x_shape, dtype, PH, PW, images):
    """Elements of ``winograd_panels``' xpf for ``images`` padded images of ``x_shape``."""
    C, H, W = x_shape[1:]
    Wp = W + 2 * PW
    return images * (C * (H + 2 * PH) * Wp + _tail.py_func(Wp, np.empty(0, dtype)))


@kernel
def winograd_parallel(out, x, ap, bias, has_bias, kind, slope, PH, PW, npan, bps, ms, eos, xpfs, fn):
    """:func:`winograd_panels` of panels 0..npan, split into ``bps.shape[0]`` runs of
    panels, one a thread, each with its own row of the scratch (each pads the images
    its panels cover itself: padded by one thread, they would have to move to the
    other's cache); ``fn``: the handle of ``winograd_panels`` for these arguments
    (:func:`_fnptr.handle`)."""
    parts = bps.shape[0]
    for c in prange(parts):
        call(fn, (out, x, ap, bias, has_bias, kind, slope, PH, PW, c * npan // parts, (c + 1) * npan // parts,
                  bps[c], ms[c], eos[c], xpfs[c]))


def forward_runner(out, x, weight, bias, geom, kind, slope, threads, work, keep=True):
    """``run(x)``: out = act(conv2d(x, weight) + bias) by Winograd F(2x2, 3x3) for inputs
    of ``x``'s shape and dtype (``applies`` must hold), the weights transformed and
    packed now, scratch from ``work`` (a ``conv_plan.Workspace``), the panels split over
    at most ``threads`` threads. ``keep``: the runner runs again and again (a plan's),
    so the packed weights get an array of their own; else they go into ``work`` too."""
    N, C = x.shape[:2]
    OC, OH, OW = out.shape[1:]
    dt = x.dtype
    NR, _, _, sb, sm, _ = _geometry.py_func(C, OC, dt.itemsize)
    size = packed_size(C, OC, dt)
    ap = pack_weight(np.empty(size, dt) if keep else work.view("winograd_ap", (size,), dt),
                     np.ascontiguousarray(weight, dt))
    has_bias = bias is not None
    bias = np.ascontiguousarray(bias, dt) if has_bias else ap[:1]
    kind, slope = int(kind), float(slope)
    PH, PW = geom[4], geom[5]
    th, tw = (OH + 1) // 2, (OW + 1) // 2
    npan = -(-N * th * tw // NR)
    parts = max(1, min(threads, npan))
    images = min(N, -(-(-(-npan // parts) * NR) // (th * tw)) + 1)  # the most one part's panels cover
    bps = work.view("winograd_b", (parts, 16 * sb), dt)
    ms = work.view("winograd_m", (parts, 16 * sm), dt)
    eos = work.view("winograd_eo", (parts, 4, tw + LANES // dt.itemsize), dt)
    xpfs = work.view("winograd_x", (parts, padded_size(x.shape, dt, PH, PW, images)), dt)
    args = (out, x, ap, bias, has_bias, kind, slope, PH, PW)
    if parts == 1:
        def run(x):
            winograd_panels(out, x, ap, bias, has_bias, kind, slope, PH, PW, 0, npan, bps[0], ms[0], eos[0], xpfs[0])
        return run
    fn = handle(winograd_panels, args + (0, 0, bps[0], ms[0], eos[0], xpfs[0]))

    def run(x):
        winograd_parallel(out, x, ap, bias, has_bias, kind, slope, PH, PW, npan, bps, ms, eos, xpfs, fn)
    return run
