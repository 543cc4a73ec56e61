"""Direct 1-D convolution (N, C, L) for short sequences: GEMMs over a whole batch.

``conv`` handles a sequence as an image of height 1 and pays a fixed cost per
sample and row (views, a product per sample group, im2col setup); for the short
sequences of small 1-D CNNs (tens of outputs each) that cost dominates. Here a run
of samples is laid out "wide": the padded input split by stride phase,
xw[c, ph, n*Lq + m] = x[n, c, m*S + ph - P] (Lq = ceil((L + 2P) / S)), so row
(c, kw) of the im2col matrix, over all samples at once, is the contiguous run
xw[c, kw*D % S, kw*D // S:] at wide column j = n*Lq + m. Columns with m >= OL are
no output (dropped in the forward, zero gradient in backward). ``geom`` is the int
tuple (stride, padding, dilation, groups); for channel group g, Kg = C/G * K rows
k = (c, kw) and OCg = OC/G:

    forward  out (OCg, j) = act(w[g] (OCg, Kg) @ col (Kg, j) + bias)
    dinput   dcol (Kg, j) = w[g]^T @ dout (OCg, j);   dx = dcol added back into xw's layout
    dweight  dw[g]^T (Kg, OCg) (+)= col (Kg, j) @ dout^T (j, OCg)

The products run on the GEMM micro-kernel, K blocked as in ``matmul``: the forward
and dinput read their B rows in place (``micro_offs``: runs of xw, rows of the wide
dout) and write a whole row of wide outputs, which the end copies out sample by
sample; dweight copies each im2col row once (unit-stride, its no-output columns
zeroed), reads them in place (``micro_rows``) and packs dout^T by 8 x 8 transposes.
Converting between (N, C, L) and the wide layout costs about as much as the
products at these sizes, so each direction has a loop order of its own (dinput
merges the phases over whole rows, then copies rows). The batch is split
into slots of samples (a prange iteration each); one slot runs serially with no
parallel launch. The backward's slots are a function of the shapes only (its
weight-gradient sums depend on the split), so results are bitwise the same at any
thread count; the forward's results do not depend on the split, so it takes one
slot per thread.
"""
import functools

import numpy as np
from numba import prange

from . import activations as act_k
from ._fnptr import call, handle
from ._jit import inline, kernel, serial_kernel
from ._threading import get_threads
from .conv import sum_slots
from .conv_plan import workspace
from .microkernel import KC, MR, NV, copy8, micro_gather, micro_offs, micro_rows, pack_a
from .recurrent_product import pack_panels, panel_shape, panel_width

FORWARD, NEED_DX, NEED_DW, NEED_DB, HAS_BIAS, ACC_W, ACC_B = 1, 2, 4, 8, 16, 32, 64
SLOT_MACS = 1 << 19  # work per slot (a prange iteration): at least this many multiply-adds, counting
SLOT_COPIES = 16  # each output as this many more: the layout copies around the products
MAX_SLOTS = 16
ROWS_MIN_DEPTH = 16  # a single-slot forward on position rows needs products at least this deep


@inline
def _blocks(K):
    # K split into equal blocks of at most KC (as in matmul): the block size
    nk = (K + KC - 1) // KC
    return (K + nk - 1) // nk


@inline
def _wide_input(xw, x, n0, nb, Lq, S, P):
    # xw[c, ph, n*Lq + m] = x[n0 + n, c, m*S + ph - P] for n < nb, zero outside x and past
    # the last sample: row (c, kw) of the wide im2col matrix is xw[c, kw*D % S, kw*D // S:]
    L = x.shape[2]
    flat = xw.reshape(-1)
    for i in range(flat.shape[0]):
        flat[i] = 0
    for c in range(xw.shape[0]):
        for ph in range(S):
            dst = xw[c, ph]
            lo = min(Lq, (P - ph + S - 1) // S)  # m from lo to hi read x
            hi = max(lo, min(Lq, (L - 1 + P - ph) // S + 1))
            for n in range(nb):
                src, seg = x[n0 + n, c, ph - P + lo * S:], dst[n * Lq + lo:n * Lq + hi]
                for m in range(seg.shape[0]):
                    seg[m] = src[m * S]


@inline
def _narrow_input(dx, dxw, n0, nb, Lq, S, P):
    # the inverse of _wide_input: dx[n0 + n, c, i] = dxw[c, ph, n*Lq + m] for i = m*S + ph - P,
    # phases merged back into padded rows (a long loop), then the rows copied out
    L, Lp = dx.shape[2], Lq * S
    r = np.empty(nb * Lp if S > 1 else 0, dx.dtype)
    for c in range(dx.shape[1]):
        if S == 1:
            r = dxw[c, 0]
        elif S == 2:
            a, b = dxw[c, 0], dxw[c, 1]
            for q in range(nb * Lq):
                r[2 * q] = a[q]
                r[2 * q + 1] = b[q]
        else:
            for ph in range(S):
                src = dxw[c, ph]
                for q in range(nb * Lq):
                    r[q * S + ph] = src[q]
        for n in range(nb):
            dst, seg = dx[n0 + n, c], r[n * Lp + P:]
            for i in range(L):
                dst[i] = seg[i]


@inline
def _store(dst, src, v0, kind, slope):
    # dst = act(src + v0)
    if kind == act_k.IDENTITY:
        for q in range(dst.shape[0]):
            dst[q] = src[q] + v0
    elif kind == act_k.RELU:  # branch-free: a select, vectorised
        zero = dst.dtype.type(0)
        for q in range(dst.shape[0]):
            v = src[q] + v0
            dst[q] = v if v > 0 else v * zero
    else:
        for q in range(dst.shape[0]):
            dst[q] = act_k._forward_one(src[q] + v0, kind, slope)


@inline
def _geometry(L, K, S, P, D, nb):
    # (Lq, wide columns, row length of the wide arrays: a tail for the kernel offsets and
    # for whole NR-column panels)
    Lq = (L + 2 * P + S - 1) // S
    return Lq, nb * Lq, nb * Lq + (K - 1) * D // S + 2 * NV * 16


@inline
def _row_offsets(offs, K, D, S, row_len):
    # offs[kk] = where row kk = (c, kw) of a group's wide im2col matrix starts in the flat
    # (C/G, S, row_len) wide input: (c*S + kw*D % S)*row_len + kw*D // S (no division later)
    for kk in range(offs.shape[0]):
        e = kk % K * D
        offs[kk] = (kk // K * S + e % S) * row_len + e // S


@serial_kernel
def _forward(out, x, w2, bias, n0, n1, geom, flags, kind, slope):
    # out[n0:n1] = act(conv1d(x, w) + bias); w2 (OC, Kg)
    S, P, D, G = geom
    OL, K = out.shape[2], w2.shape[1] * G // x.shape[1]
    OCg, Kg = w2.shape[0] // G, w2.shape[1]
    Cg = Kg // K
    NR = NV * (64 // out.itemsize)
    kcb, rows = _blocks(Kg), (OCg + MR - 1) // MR * MR
    Lq, npw, row_len = _geometry(x.shape[2], K, S, P, D, n1 - n0)
    xw = np.empty((x.shape[1], S, row_len), out.dtype)
    _wide_input(xw, x, n0, n1 - n0, Lq, S, P)
    offs = np.empty(Kg, np.int64)
    _row_offsets(offs, K, D, S, row_len)
    ap = np.empty(rows * Kg, out.dtype)
    ldy = (npw + NR - 1) // NR * NR
    yw = np.empty(rows * ldy, out.dtype)  # a group's outputs in the wide layout: (rows, ldy)
    for g in range(G):
        for k0 in range(0, Kg, kcb):  # all of w[g], K block by K block: rows x kc at ap[k0*rows]
            pack_a(ap[k0 * rows:], w2[g * OCg:(g + 1) * OCg], False, 0, OCg, k0, min(kcb, Kg - k0))
        xg = xw[g * Cg:(g + 1) * Cg].reshape(-1)
        for j0 in range(0, npw, NR):  # wide column j = n*Lq + m: output m of sample n0 + n if m < OL
            for k0 in range(0, Kg, kcb):  # B's rows read in place: row k at xg[offs[k] + j0:]
                kc = min(kcb, Kg - k0)
                for i in range(0, OCg, MR):
                    micro_offs(yw, i * ldy + j0, ldy, ap, k0 * rows + i * kc, xg, j0, offs, k0, kc, k0 > 0)
        for o in range(OCg):  # the valid outputs, sample by sample
            oc = g * OCg + o
            v0 = bias[oc] if flags & HAS_BIAS else out.dtype.type(0)
            for n in range(n1 - n0):
                _store(out[n0 + n, oc], yw[o * ldy + n * Lq:o * ldy + n * Lq + OL], v0, kind, slope)


@serial_kernel
def _forward_rows(out, x, xp, bp, rows, cols, tmp, bias, geom, flags, kind, slope):
    # out = act(conv1d(x, w) + bias) as out^T (positions, OC) = col^T @ w^T: the output
    # positions of every sample are the product's rows (MR a tile) and the output
    # channels its columns, so short sequences fill no wide NR-column panels of which
    # most would be padding, and nothing is packed per call: A is read in place from
    # the padded input xp (N, C, L + 2P) (``micro_gather``: row r at rows[r], column
    # (c, kw) at cols), B is w^T packed once, bp (G, Q, Kg, NR) (pack_panels). The
    # same sums, K blocks and epilogue as ``_forward``: the same bits.
    S, P, D, G = geom
    N, C, L = x.shape
    OC, OL = out.shape[1], out.shape[2]
    Q, Kg, NR = bp.shape[1], bp.shape[2], bp.shape[3]
    OCg, kcb, M = OC // G, _blocks(Kg), N * OL
    zero = out.dtype.type(0)
    for n in range(N):
        for c in range(C):
            src, dst = x[n, c], xp[n, c]
            for i in range(P):
                dst[i] = zero
                dst[P + L + i] = zero
            for i in range(L):
                dst[P + i] = src[i]
    for g in range(G):
        for q in range(Q):
            width = min(NR, OCg - q * NR)
            for r0 in range(0, M, MR):
                for k0 in range(0, Kg, kcb):
                    micro_gather(tmp, 0, NR, xp, rows, r0, cols, g * Kg + k0, bp, ((g * Q + q) * Kg + k0) * NR,
                                 min(kcb, Kg - k0), k0 > 0)
                for r in range(min(MR, M - r0)):
                    n = (r0 + r) // OL
                    m = r0 + r - n * OL
                    t = tmp[r * NR:]
                    for j in range(width):
                        oc = g * OCg + q * NR + j
                        v0 = bias[oc] if flags & HAS_BIAS else zero
                        out[n, oc, m] = act_k._forward_one(t[j] + v0, kind, slope)


def _rows_pay(N, OL, OCg, Kg, Lq, NR):
    """True when the position-rows product (``_forward_rows``) pads less work than the
    wide one (positions to whole MR tiles and channels to NR panels, against wide
    columns to NR panels and channels to MR tiles), with products deep enough (Kg)
    that its scalar epilogue is not most of the time (measured: 1 input channel and
    5 taps run faster wide, 32 channels and 3 taps 2.5-3.5x faster on rows)."""
    def up(a, b):
        return (a + b - 1) // b * b
    return Kg >= ROWS_MIN_DEPTH and up(N * OL, MR) * up(OCg, NR) <= up(N * Lq, NR) * up(OCg, MR)


def _rows_call(out, x, w2, bias, geom, flags, kind, slope, work):
    """``_forward_rows`` bound to its operands: w^T packed and the gather offsets made
    here (arrays of this call's own), the padded input and the tile in ``work``."""
    S, P, D, G = geom
    N, C, L = x.shape
    OC, OL = out.shape[1], out.shape[2]
    OCg, Kg = OC // G, w2.shape[1]
    K, Cg, Lp = Kg // (C // G), C // G, L + 2 * P
    bp = np.empty((G,) + panel_shape(Kg, OCg, out.dtype), out.dtype)  # (G, Q, Kg, NR)
    for g in range(G):
        pack_panels(bp[g], w2[g * OCg:(g + 1) * OCg], True)
    M = N * OL
    rows = np.zeros((M + MR - 1) // MR * MR, np.int64)
    r = np.arange(M)
    rows[:M] = r // OL * C * Lp + r % OL * S
    k = np.arange(Kg)
    cols = ((np.arange(G)[:, None] * Cg + k[None, :] // K) * Lp + k[None, :] % K * D).reshape(-1)
    xp = work.view("conv1d_rows_xp", (N, C, Lp), out.dtype)
    tmp = work.view("conv1d_rows_tmp", (MR * bp.shape[3],), out.dtype)
    return functools.partial(_forward_rows, out, x, xp, bp, rows, cols, tmp, bias, geom, flags, kind, slope)


@inline
def _grad_from_output(dst, g, y, kind, slope):
    # dst = g * act'(pre-activation), from the activation's output y (the kinds a layer
    # fuses: their derivative follows from y; the expressions of activations._backward_range,
    # without its GELU branch, which cost _backward 0.3-0.4 s more cold compile)
    if kind == act_k.RELU:
        for i in range(dst.shape[0]):
            dst[i] = g[i] if y[i] > 0 else g[i] * 0
    elif kind == act_k.LEAKY_RELU:
        for i in range(dst.shape[0]):
            dst[i] = g[i] if y[i] > 0 else g[i] * slope
    elif kind == act_k.SIGMOID:
        for i in range(dst.shape[0]):
            dst[i] = g[i] * y[i] * (1 - y[i])
    elif kind == act_k.TANH:
        for i in range(dst.shape[0]):
            dst[i] = g[i] * (1 - y[i] * y[i])
    else:
        for i in range(dst.shape[0]):
            dst[i] = g[i]


@inline
def _wide_grad(gw, dout, yact, n0, nb, Lq, kind, slope):
    # gw[oc, n*Lq + m] = dout[n0 + n, oc, m] * act'(...) for m < OL (the fused activation's
    # derivative from its output yact; none for IDENTITY), zero elsewhere
    OL = dout.shape[2]
    flat = gw.reshape(-1)
    for i in range(flat.shape[0]):
        flat[i] = 0
    for oc in range(gw.shape[0]):
        dst = gw[oc]
        for n in range(nb):
            _grad_from_output(dst[n * Lq:n * Lq + OL], dout[n0 + n, oc], yact[n0 + n, oc], kind, slope)


@serial_kernel
def _dinput(dx, gw, w2, n0, n1, geom):
    # dx[n0:n1] = the input gradient (overwritten) from gw, dout in _wide_grad's layout
    S, P, D, G = geom
    L = dx.shape[2]
    OCg, Kg = w2.shape[0] // G, w2.shape[1]
    Cg = dx.shape[1] // G
    K = Kg // Cg
    NR = NV * (64 // dx.itemsize)
    kcb, rows = _blocks(OCg), (Kg + MR - 1) // MR * MR
    Lq, npw, row_len = _geometry(L, K, S, P, D, n1 - n0)
    dxw = np.zeros((dx.shape[1], S, row_len), dx.dtype)  # dx in _wide_input's layout
    offs = np.empty(Kg, np.int64)
    _row_offsets(offs, K, D, S, row_len)
    ap = np.empty(rows * OCg, dx.dtype)
    tmp = np.empty(rows * NR, dx.dtype)
    gf, goffs = gw.reshape(-1), np.arange(gw.shape[0]) * row_len  # B's rows: gw's, read in place
    for g in range(G):
        for k0 in range(0, OCg, kcb):  # w[g]^T (Kg, OCg), K block by K block
            pack_a(ap[k0 * rows:], w2[g * OCg:(g + 1) * OCg], True, 0, Kg, k0, min(kcb, OCg - k0))
        for j0 in range(0, npw, NR):
            cols = min(NR, npw - j0)
            for k0 in range(0, OCg, kcb):
                kc = min(kcb, OCg - k0)
                for i in range(0, Kg, MR):
                    micro_offs(tmp, i * NR, NR, ap, k0 * rows + i * kc, gf, j0, goffs, g * OCg + k0, kc, k0 > 0)
            dg = dxw[g * Cg:(g + 1) * Cg].reshape(-1)
            for kk in range(Kg):  # col2im: add each column back where it was read
                dst = dg[offs[kk] + j0:]
                src = tmp[kk * NR:kk * NR + cols]
                for jj in range(cols):
                    dst[jj] += src[jj]
    _narrow_input(dx, dxw, n0, n1 - n0, Lq, S, P)


@serial_kernel
def _dweight(dw2, db, gw, dout, x, n0, n1, geom, flags):
    # dw2 (OC, Kg), db (OC,): the sums over samples n0:n1, overwritten (added to with ACC_W/ACC_B);
    # gw: dout in _wide_grad's layout
    S, P, D, G = geom
    OL = dout.shape[2]
    OCg, Kg = dw2.shape[0] // G, dw2.shape[1]
    Cg = x.shape[1] // G
    K = Kg // Cg
    NR = NV * (64 // dw2.itemsize)
    Lq, npw, row_len = _geometry(x.shape[2], K, S, P, D, n1 - n0)
    rows, ncol = (Kg + MR - 1) // MR * MR, (OCg + NR - 1) // NR * NR
    kcb = _blocks(npw)
    xw = np.empty((x.shape[1] if flags & NEED_DW else 0, S, row_len), dw2.dtype)
    _wide_input(xw, x, n0, n1 - n0, Lq, S, P)
    offs = np.empty(Kg, np.int64)
    _row_offsets(offs, K, D, S, row_len)
    col = np.empty((rows if flags & NEED_DW else 0, npw), dw2.dtype)  # a group's im2col rows
    bp = np.empty(kcb * ncol, dw2.dtype)
    acc = np.empty(rows * ncol, dw2.dtype)
    zero = dw2.dtype.type(0)
    for g in range(G if flags & NEED_DW else 0):
        xg = xw[g * Cg:(g + 1) * Cg].reshape(-1)
        for kk in range(rows):  # A: the wide im2col rows in place, unit-stride copies
            dst = col[kk]
            if kk >= Kg:
                dst[:] = zero
                continue
            src = xg[offs[kk]:offs[kk] + npw]
            for p in range(npw):
                dst[p] = src[p]
            for n in range(n1 - n0):  # columns that are no output: 0 (not x * 0, which may be NaN)
                seg = dst[n * Lq:(n + 1) * Lq]
                for m in range(OL, Lq):
                    seg[m] = zero
        for k0 in range(0, npw, kcb):
            kc = min(kcb, npw - k0)
            for j0 in range(0, ncol, NR):  # B: dout^T columns j0..j0+NR, k-major, 8 x 8 transposes
                panel = bp[j0 * kc:(j0 + NR) * kc]
                for r0 in range(0, NR, 8):
                    valid = max(0, min(8, OCg - j0 - r0))
                    if valid < 8:
                        for p in range(kc):
                            for jj in range(valid, 8):
                                panel[p * NR + r0 + jj] = zero
                    o = g * OCg + j0 + r0
                    copy8(panel[r0:], NR, gw[o:o + valid, k0:k0 + kc], valid, kc)
                for i in range(0, rows, MR):
                    micro_rows(acc, i * ncol + j0, ncol, col, i * npw + k0, npw, panel, 0, kc, k0 > 0)
        for o in range(OCg):
            dst = dw2[g * OCg + o]
            for kk in range(Kg):
                a = acc[kk * ncol + o]
                dst[kk] = dst[kk] + a if flags & ACC_W else a
    for oc in range(dw2.shape[0] if flags & NEED_DB else 0):  # gw's rows: dout with zeros between samples
        s, row = dw2.dtype.type(0), gw[oc, :npw]
        for q in range(npw):
            s += row[q]
        db[oc] = db[oc] + s if flags & ACC_B else s


@serial_kernel
def _backward(dout, dx, dw2, db, x, w2, yact, n0, n1, geom, flags, kind, slope):
    # one slot of the backward: dout (times the fused activation's derivative, from its
    # output yact) in the wide layout, then dx, dw and db from it
    S, P, D, G = geom
    Lq, npw, row_len = _geometry(x.shape[2], w2.shape[1] * G // x.shape[1], S, P, D, n1 - n0)
    gw = np.empty((dout.shape[1], row_len), dout.dtype)
    _wide_grad(gw, dout, yact, n0, n1 - n0, Lq, kind, slope)
    if flags & NEED_DX:
        _dinput(dx, gw, w2, n0, n1, geom)
    if flags & (NEED_DW | NEED_DB):
        _dweight(dw2, db, gw, dout, x, n0, n1, geom, flags)


@kernel
def conv1d_slots(y, dx, dw_parts, db_parts, x, w2, bias, yact, geom, flags, kind, slope, fn):
    """Every slot, in parallel: the forward (FORWARD: y = out) or the backward (y =
    dout, yact the fused activation's output); slot s covers samples s*N//S to (s+1)*N//S (S = dw_parts.shape[0]) and
    writes its own dw_parts[s], db_parts[s]. Each slot is a call of ``fn``, the handle
    of ``_forward`` or ``_backward`` (``_slot_handle``): called through its address,
    their bodies compile once, serially, never again inside this shell (``_fnptr``: 6.8 -> 0.9
    compile CPU s)."""
    N, S = x.shape[0], dw_parts.shape[0]
    for p in prange(S):
        s = np.int64(p)
        if flags & FORWARD:
            call(fn, (y, x, w2, bias, s * N // S, (s + 1) * N // S, geom, flags, kind, slope))
        else:
            call(fn, (y, dx, dw_parts[s], db_parts[s], x, w2, yact, s * N // S, (s + 1) * N // S, geom, flags, kind,
                      slope))


def _slot_handle(y, dx, dw_parts, db_parts, x, w2, bias, yact, geom, flags, kind, slope):
    """The ``fn`` argument of conv1d_slots (whose arguments these are): the handle of
    the slot kernel for the arguments of the shell's call (same slicing)."""
    if flags & FORWARD:
        return handle(_forward, (y, x, w2, bias, 0, 0, geom, flags, kind, slope))
    return handle(_backward, (y, dx, dw_parts[0], db_parts[0], x, w2, yact, 0, 0, geom, flags, kind, slope))


def slots(N, OL, OC, Kg, threads=None):
    """Slots for N samples. With ``threads``, at most that many (the forward: its
    results do not depend on the split). Without, a function of the shapes only (the
    backward: its weight-gradient sums depend on the split), and a power of two, so
    that the slots share out evenly over 2, 4, 8 or 16 threads (5 slots on 2 threads
    kept one thread busy with 3)."""
    work = N * OL * OC * (Kg + SLOT_COPIES) // SLOT_MACS
    s = max(1, min(N, MAX_SLOTS, MAX_SLOTS if threads is None else threads, work))
    return s if threads is not None else 1 << (s.bit_length() - 1)


def conv1d_forward(out, x, weight, bias, geom, kind=0, slope=0.0):
    """out (N, OC, OL) = act(conv1d(x, weight) + bias), overwritten.

    x (N, C, L), weight (OC, C/G, K), bias (OC,) or None: C-contiguous, one dtype;
    ``geom`` (stride, padding, dilation, groups); ``kind``/``slope`` a fused
    activation (``activations``).
    """
    forward_call(out, x, weight, bias, geom, kind, slope)()


def forward_call(out, x, weight, bias, geom, kind=0, slope=0.0, work=None, reuse=False):
    """A zero-argument callable running :func:`conv1d_forward` on these very arrays
    (an inference plan's fixed buffers), the slots and the slot kernel's handle chosen
    once; scratch from ``work`` (a ``Workspace``; this thread's by default).
    ``reuse``: the callable will run many times (a plan's), so a single-slot forward
    may take the position-rows product, whose setup (w^T packed, gather offsets:
    about 17 us) a single call would not pay back; the same bits either way."""
    N, OC, OL = out.shape
    w2 = weight.reshape(OC, -1)
    flags = FORWARD + HAS_BIAS * (bias is not None)
    bias = w2[0] if bias is None else bias
    S = slots(N, OL, OC, w2.shape[1], get_threads())
    if S == 1:
        Lq = (x.shape[2] + 2 * geom[1] + geom[0] - 1) // geom[0]
        if reuse and _rows_pay(N, OL, OC // geom[3], w2.shape[1], Lq, panel_width(out.dtype)):
            return _rows_call(out, x, w2, bias, geom, flags, kind, float(slope), workspace() if work is None else work)
        return functools.partial(_forward, out, x, w2, bias, 0, N, geom, flags, kind, float(slope))
    work = workspace() if work is None else work
    # dw_parts/db_parts: unused, their first axis the slot count
    args = (out, x, work.view("conv1d_no_dw", (S, 1, 1), x.dtype), work.view("conv1d_no_db", (S, 1), x.dtype),
            x, w2, bias, out, geom, flags, kind, float(slope))
    return functools.partial(conv1d_slots, *args, _slot_handle(*args))


def forward_runner(out, x, weight, bias, geom, kind=0, slope=0.0, work=None, reuse=False):
    """``run(x)``: :func:`forward_call`'s work for any input of ``x``'s shape and type
    (the first layer of an inference plan, whose input is the caller's): the path,
    slots and scratch chosen once, as ``forward_call`` chooses them for ``x``."""
    call = forward_call(out, x, weight, bias, geom, kind, slope, work, reuse)
    fn, args = call.func, call.args
    at = [i for i, a in enumerate(args) if a is x]
    head, tail = args[:at[0]], args[at[-1] + 1:]
    if len(at) == 1:
        return lambda x: fn(*head, x, *tail)
    mid = args[at[0] + 1:at[1]]  # (conv1d_slots takes the input twice: as x, and as its unused dx)
    assert len(at) == 2, "forward_runner: the input at more than two places"
    return lambda x: fn(*head, x, *mid, x, *tail)


def conv1d_backward(dx, dweight, dbias, dout, x, weight, geom, accumulate_w=False, accumulate_b=False,
                    act_out=None, kind=0, slope=0.0):
    """Gradients of conv1d: dx overwritten; dweight, dbias overwritten or added to
    (``accumulate_*``); any may be None to skip it. dout (N, OC, OL) C-contiguous,
    shapes as in :func:`conv1d_forward`. With an activation fused into the forward
    (``kind``: ReLU, LeakyReLU with slope >= 0, Sigmoid or Tanh), dout is the gradient
    of its output ``act_out`` (N, OC, OL), whose derivative is applied here."""
    N, OC, OL = dout.shape
    w2 = weight.reshape(OC, -1)
    flags = NEED_DX * (dx is not None) + NEED_DW * (dweight is not None) + NEED_DB * (dbias is not None)
    S = slots(N, OL, OC, w2.shape[1])
    dxa = x if dx is None else dx
    yact, kind = (dout, 0) if act_out is None else (act_out, kind)
    if S == 1:
        flags += ACC_W * accumulate_w + ACC_B * accumulate_b
        dw2 = w2 if dweight is None else dweight.reshape(OC, -1)
        _backward(dout, dxa, dw2, w2[0] if dbias is None else dbias, x, w2, yact, 0, N, geom, flags, kind,
                  float(slope))
        return
    work = workspace()
    dw_parts = work.view("conv1d_dw", (S,) + w2.shape, x.dtype)
    db_parts = work.view("conv1d_db", (S, OC), x.dtype)
    args = (dout, dxa, dw_parts, db_parts, x, w2, w2[0], yact, geom, flags, kind, float(slope))
    conv1d_slots(*args, _slot_handle(*args))
    if dweight is not None:
        sum_slots(dweight.reshape(-1), dw_parts.reshape(S, -1), accumulate_w)
    if dbias is not None:
        sum_slots(dbias, db_parts, accumulate_b)
