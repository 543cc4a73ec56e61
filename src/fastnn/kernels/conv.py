"""2-D convolution (NCHW, float32/float64) as GEMMs over groups of samples.

Any stride, padding, dilation, groups and rectangular kernel; ``geom`` is the int
tuple ``(KH, KW, SH, SW, PH, PW, DH, DW, G)``. For a group of nb samples and a
channel group g, with col (Kg, nb*P) their im2col matrix side by side:

    forward   out (OCg, nb*P)  = w[g] (OCg, Kg) @ col
    dweight   dw[g] (OCg, Kg) += dout (OCg, nb*P) @ col^T
    dinput    dcol (Kg, P)     = w[g]^T (Kg, OCg) @ dout;       dx = col2im(dcol)

Stride-1 forwards never write col: ``conv_gemm`` packs its panels straight from
the padded images (the wide layout of ``im2col``, whose extra columns ``scatter``
drops), and panels that lie inside one image are not even packed: the micro-kernel
reads their rows in place. The weight gradient is computed transposed, dw^T = col @
dout^T, with the micro-kernel gathering col's elements straight from the padded
images (``conv_gemm_dw``), a block of pixels at a time. Where it costs at most 30% more
work, the input gradient is the forward convolution of dout with the flipped,
transposed kernel (``conv_plan.transposed_pays``); otherwise dcol and col2im, one
sample at a time.

The batch is split into slots (contiguous runs of samples), one ``prange``
iteration each, with scratch shared by all conv layers of the Python thread;
weight/bias gradients are summed per slot, then merged in slot order. Slots and
groups depend only on the shapes (``conv_plan.plan``), never on the thread count,
so results are bitwise reproducible. A batch smaller than the thread count runs
serially when small, else group by group on the parallel ``matmul`` (same groups,
same arithmetic).
"""
import numpy as np
from numba import prange

from . import activations as act_k
from . import winograd
from ._fnptr import call, handle
from ._jit import RUNS, SERIAL_BELOW, kernel, noalias_kernel, serial_kernel
from ._threading import get_threads
from .conv_gemm import (
    _blocking, chunk_pixels, conv_gemm, conv_gemm_dw, conv_gemm_parallel, parallel_handle, wide_offsets,
)
from .conv_plan import (  # noqa: F401  (output_size, plan: part of this module's interface)
    SERIAL_BELOW_MACS, dw_budget, layout, output_size, plan, scratch, transposed_geometry, transposed_pays,
    transposed_weight, workspace,
)
from .im2col import col2im, gather, pad_images
from .microkernel import MR, micro_gather1
from .matmul import gemm_serial, matmul
from .recurrent_product import pack_panels


@serial_kernel
def scatter(out, tmp, n0, nb, oc0, bias, has_bias, kind, slope, OH, pitch):
    """out[n0 + b, oc0 + o, oh*OW + ow] = act(tmp[o, (b*OH + oh)*pitch + ow] + bias[oc0 + o]),
    overwritten (tmp may be out[n0, oc0:] itself when nb == 1 and pitch == OW).
    out (N, OC, OH*OW); tmp (OCg, nb*OH*pitch)."""
    OW = out.shape[2] // OH
    for b in range(nb):
        for o in range(tmp.shape[0]):
            v0 = bias[oc0 + o] if has_bias else out.dtype.type(0)
            for oh in range(OH):
                src = tmp[o, (b * OH + oh) * pitch:(b * OH + oh) * pitch + OW]
                dst = out[n0 + b, oc0 + o, oh * OW:(oh + 1) * OW]
                if kind == act_k.RELU:
                    for p in range(OW):
                        v = src[p] + v0
                        dst[p] = v if v > 0 else v * 0
                elif kind != act_k.IDENTITY:
                    for p in range(OW):
                        dst[p] = act_k._forward_one(src[p] + v0, kind, slope)
                else:
                    for p in range(OW):
                        dst[p] = src[p] + v0


# a typed 0 for arguments: a literal 0 would compile the callee once more, for it
_ZERO = np.int64(0)

ROWS_MIN_DEPTH = 64  # the pixel-rows product of a few images needs products at least this deep

# flags of conv2d_slots
BACKWARD, POINTWISE, HAS_BIAS, NEED_DX, NEED_DW, NEED_DB = 1, 2, 4, 8, 16, 32


@serial_kernel
def _forward_group(out, x, w3, bias, cols, tmp, xpf, n0, nb, geom, flags, kind, slope, OH, pitch):
    # out[n0:n0+nb] for every channel group
    G, OCg = w3.shape[0], w3.shape[1]
    Cg = x.shape[1] // G
    P = out.shape[2]
    Pc = OH * pitch
    direct_in = flags & POINTWISE and nb == 1  # the input itself is the im2col matrix
    direct_out = nb == 1 and Pc == P  # the product lands in NCHW as it is
    KH, KW, SH, SW, PH, PW, DH, DW, _ = geom
    Hp, Wp = x.shape[2] + 2 * PH, x.shape[3] + 2 * PW
    implicit = SH == 1 and SW == 1 and pitch == Wp and not direct_in  # see conv_gemm
    plane = Cg * Hp * Wp + KW * DW
    offs = np.empty(w3.shape[2] if implicit else 0, np.int64)
    if implicit:
        wide_offsets(offs, Cg, KH, KW, Hp, Wp, DH, DW)
    R = (OCg + MR - 1) // MR * MR  # the rows of tmp's product (whole tiles) when it has room
    R = R if R * nb * Pc <= tmp.shape[0] else OCg
    for g in range(G):
        dst = out[n0, g * OCg:(g + 1) * OCg] if direct_out else tmp[:OCg * nb * Pc].reshape((OCg, nb * Pc))
        if implicit:
            pad_images(xpf, x, n0, nb, g * Cg, Cg, PH, PW, KW * DW)  # side by side, each with a zero tail
            # (into tmp: output channels rounded up to whole MR-row tiles, no edge copies)
            conv_gemm(dst if direct_out else tmp[:R * nb * Pc].reshape((R, nb * Pc)), w3[g], xpf, plane, offs, Pc,
                      _ZERO, nb * Pc)
        else:
            col = cols[:w3.shape[2] * nb * Pc].reshape((w3.shape[2], nb * Pc))
            src = x[n0, g * Cg:(g + 1) * Cg].reshape((Cg, P)) if direct_in else col
            if not direct_in:
                gather(col, xpf, x, n0, nb, g * Cg, geom, pitch)
            gemm_serial(dst, w3[g], src, False, False, False)
        if not direct_out or flags & HAS_BIAS or kind != act_k.IDENTITY:
            scatter(out, dst, n0, nb, g * OCg, bias, flags & HAS_BIAS != 0, kind, slope, OH, pitch)


@serial_kernel
def _forward_rows(out, x, xpf, bp, rows, cols, tmp, bias, geom, flags, kind, slope):
    # out (N, OC, P) = act(conv2d(x, w) + bias) of a few images (G == 1) as out^T
    # (positions, OC) = col^T @ w^T: the output pixels are the product's rows (MR a tile,
    # no padding to whole NR-column panels of the wide layout, no columns past each
    # row's end) and the channels its columns, in one-vector panels (16 float32: a small
    # channel count padded to 16, not 32). A is read in place from the padded images
    # xpf (``micro_gather1``: pixel r at rows[r], tap k at cols[k]); B is w^T packed once
    # (bp (Q, Kg, W)). The same sums and K blocks as the wide product: the same bits.
    KH, KW, SH, SW, PH, PW, DH, DW, G = geom
    N, OC, P = out.shape
    Q, Kg, W = bp.shape
    kcb, M = _blocking(Kg, OC, out.itemsize)[1], N * P  # the wide product's K blocks: its sums
    pad_images(xpf, x, 0, N, 0, x.shape[1], PH, PW, KW * DW)
    for q in range(Q):
        width = min(W, OC - q * W)
        for r0 in range(0, M, MR):
            for k0 in range(0, Kg, kcb):
                micro_gather1(tmp, 0, W, xpf, rows, r0, cols, k0, bp, (q * Kg + k0) * W, min(kcb, Kg - k0), k0 > 0)
            for r in range(min(MR, M - r0)):
                n = (r0 + r) // P
                p = r0 + r - n * P
                t = tmp[r * W:r * W + width]
                for j in range(width):
                    oc = q * W + j
                    v = t[j] + bias[oc] if flags & HAS_BIAS else t[j]
                    out[n, oc, p] = act_k._forward_one(v, kind, slope)


def _rows_runner(out3, x, w3, bias, geom, flags, kind, slope, OH, pitch, work):
    """``run(x)`` on ``_forward_rows`` for these shapes, or None where it does not pay:
    groups, shallow products (Kg < ROWS_MIN_DEPTH: the transposing scalar epilogue
    would be most of the time; ResNet's first layer, 27 deep on a 32 x 32 image, ran
    5x slower), or no less padded work than the wide product's (pixels to whole MR
    tiles and channels to 16, against wide columns to NR panels and channels to MR)."""
    N, OC, P = out3.shape
    KH, KW, SH, SW, PH, PW, DH, DW, G = geom
    Kg, W = w3.shape[2], 64 // out3.itemsize

    def up(a, b):
        return (a + b - 1) // b * b
    if G != 1 or Kg < ROWS_MIN_DEPTH or up(N * P, MR) * up(OC, W) >= up(N * OH * pitch, 2 * W) * up(OC, MR):
        return None
    C, Hp, Wp = x.shape[1], x.shape[2] + 2 * PH, x.shape[3] + 2 * PW
    OW = P // OH
    plane = C * Hp * Wp + KW * DW
    bp = np.empty(((OC + W - 1) // W, Kg, W), out3.dtype)
    pack_panels(bp, w3[0], True)
    r = np.arange(N * P)
    rows = np.zeros(up(N * P, MR), np.int64)
    rows[:N * P] = r // P * plane + (r % P) // OW * SH * Wp + r % OW * SW
    cols = np.empty(Kg, np.int64)
    wide_offsets(cols, C, KH, KW, Hp, Wp, DH, DW)
    xpf = work.view("conv_rows_xpf", (N * plane,), out3.dtype)
    tmp = work.view("conv_rows_tmp", (MR * W,), out3.dtype)

    def run(x):
        _forward_rows(out3, x, xpf, bp, rows, cols, tmp, bias, geom, flags, kind, slope)
    return run


@serial_kernel
def _dweight_chunks(dw, dout, x, tmp, xpf, n0, nb, g, geom, first, OH):
    # dw (OCg, Kg) (+)= dout[n0:n0+nb, group g] @ im2col^T (overwritten first when
    # ``first``), a block of about dw_budget(Kg) output pixels at a time: whole samples
    # side by side when they fit (xpf holds nb padded images), else row ranges of one.
    # The im2col matrix is read in place (conv_gemm_dw).
    KH, KW, SH, SW, PH, PW, DH, DW, G = geom
    OCg, Kg = dw.shape
    Cg = x.shape[1] // G
    Hp, Wp = x.shape[2] + 2 * PH, x.shape[3] + 2 * PW
    P = dout.shape[2]
    OW = P // OH
    plane = Cg * Hp * Wp + KW * DW
    budget = dw_budget(Kg)
    spg = min(nb, max(1, budget // P))  # samples per product
    nch = (P + budget - 1) // budget  # row ranges per sample (1 when samples fit whole)
    rows = (OH + nch - 1) // nch
    offs = np.empty(Kg, np.int64)
    wide_offsets(offs, Cg, KH, KW, Hp, Wp, DH, DW)
    pix = np.empty(spg * rows * OW, np.int64)
    for b0 in range(0, nb, spg):
        bs = min(spg, nb - b0)
        pad_images(xpf, x, n0 + b0, bs, g * Cg, Cg, PH, PW, KW * DW)
        for oh0 in range(0, OH, rows):
            nr = min(OH, oh0 + rows) - oh0
            run = nr * OW  # columns per sample
            ncol = bs * run
            d = tmp[:OCg * ncol].reshape((OCg, ncol))
            for b in range(bs):
                for o in range(OCg):
                    src = dout[n0 + b0 + b, g * OCg + o, oh0 * OW:oh0 * OW + run]
                    dst = d[o, b * run:(b + 1) * run]
                    for p in range(run):
                        dst[p] = src[p]
            chunk_pixels(pix, plane, Wp, SH, SW, OW, oh0, nr, bs)
            conv_gemm_dw(dw, d, xpf, offs, pix[:ncol], not (first and b0 == 0 and oh0 == 0))


@serial_kernel
def _backward_group(dx, dw_part, db_part, dout, x, w3, cols, tmp, xpf, n0, nb, geom, flags, first, OH, pitch):
    # this group's share of dw_part/db_part (overwritten when ``first``), and dx[n0:n0+nb]
    # (NEED_DX: only convolutions without a transposed_geometry); narrow layout (pitch == OW)
    G, OCg, Kg = w3.shape[0], w3.shape[1], w3.shape[2]
    Cg = x.shape[1] // G
    P = dout.shape[2]
    direct_in = flags & POINTWISE and nb == 1  # the input itself is the im2col matrix
    for g in range(G):
        if flags & NEED_DW and direct_in:
            gemm_serial(dw_part[g], dout[n0, g * OCg:(g + 1) * OCg], x[n0, g * Cg:(g + 1) * Cg].reshape((Cg, P)),
                        False, True, not first)
        elif flags & NEED_DW:
            _dweight_chunks(dw_part[g], dout, x, tmp, xpf, n0, nb, g, geom, first, OH)
        for b in range(nb if flags & NEED_DX else 0):  # one sample at a time: a small column matrix
            d = dout[n0 + b, g * OCg:(g + 1) * OCg]
            if direct_in:
                gemm_serial(dx[n0, g * Cg:(g + 1) * Cg].reshape((Cg, P)), w3[g], d, True, False, False)
                continue
            dcol = cols[:Kg * P].reshape((Kg, P))
            gemm_serial(dcol, w3[g], d, True, False, False)
            col2im(dx, dcol, n0 + b, g * Cg, geom)
    for o in range(dout.shape[1] if flags & NEED_DB else 0):
        s = dout.dtype.type(0)
        for b in range(nb):
            row = dout[n0 + b, o]
            for p in range(P):
                s += row[p]
        db_part[o] = s if first else db_part[o] + s


@kernel
def conv2d_slots(y, dx, dw_parts, vecs, x, w3, cols, tmps, xps, geom, per_gemm, flags, kind, slope, OH, pitch, fn):
    """Forward (flags without BACKWARD): y = out (N, OC, P) = act(conv2d(x, w) + vecs[0]),
    overwritten (vecs[0] = bias, read if HAS_BIAS). Backward: y = dout; dx (N, C, H, W)
    overwritten (NEED_DX); dw_parts (S, G, OCg, Kg) and vecs = db_parts (S, OC)
    overwritten with each slot's sums (NEED_DW, NEED_DB). w3 (G, OCg, Kg); per slot s:
    cols[s], tmps[s] flat scratch, xps[s] the flat padded-input scratch of ``gather``;
    ``pitch``: the im2col layout (see ``im2col``). Parallel over slots, each group of
    samples a call of ``fn``, the handle of ``_backward_group`` or ``_forward_group``
    (``_group_handle``): called through its address, their bodies compile once, serially,
    and never again inside this shell (``_fnptr``: 13.1 -> 1.2 compile CPU s)."""
    N = x.shape[0]
    S = cols.shape[0]
    for p in prange(S):
        s = np.int64(p)
        n1 = (s + 1) * N // S
        for n0 in range(s * N // S, n1, per_gemm):
            nb = min(per_gemm, n1 - n0)
            if flags & BACKWARD:
                call(fn, (dx, dw_parts[s], vecs[s], y, x, w3, cols[s], tmps[s], xps[s], n0, nb, geom, flags,
                          n0 == s * N // S, OH, pitch))
            else:
                call(fn, (y, x, w3, vecs[0], cols[s], tmps[s], xps[s], n0, nb, geom, flags, kind, slope, OH, pitch))


def _group_handle(y, dx, dw_parts, vecs, x, w3, cols, tmps, xps, geom, flags, kind, slope, OH, pitch):
    """The ``fn`` argument of conv2d_slots (whose arguments these are): the handle of the
    group kernel for the arguments of the shell's call (same slicing)."""
    if flags & BACKWARD:
        return handle(_backward_group, (dx, dw_parts[0], vecs[0], y, x, w3, cols[0], tmps[0], xps[0], 0, 0, geom,
                                        flags, True, OH, pitch))
    return handle(_forward_group, (y, x, w3, vecs[0], cols[0], tmps[0], xps[0], 0, 0, geom, flags, kind, slope, OH,
                                   pitch))


@noalias_kernel
def _sum_blocks(out, parts, b0, b1, accumulate):
    # blocks b0..b1 (1024 elements each) of sum_slots: the one compiled body of both its
    # branches (out never overlaps parts)
    M = parts.shape[1]
    for b in range(b0, b1):
        i0, i1 = b * 1024, min(b * 1024 + 1024, M)
        total = parts[0, i0:i1]
        for s in range(1, parts.shape[0]):
            part = parts[s, i0:i1]
            for i in range(i1 - i0):
                total[i] += part[i]
        dst = out[i0:i1]
        for i in range(i1 - i0):
            dst[i] = dst[i] + total[i] if accumulate else total[i]


@kernel
def sum_slots(out, parts, accumulate):
    """out[i] (+)= sum_s parts[s, i], summed in slot order into parts[0] (which is
    overwritten). Parallel over blocks of i, vectorised along i; serial below
    SERIAL_BELOW elements, where a parallel launch costs more than the sums."""
    S, M = parts.shape
    blocks = (M + 1023) // 1024
    if S * M < SERIAL_BELOW:
        _sum_blocks(out, parts, blocks - blocks, blocks, accumulate)  # (a variable 0: one compile of the callee)
    else:
        runs = min(blocks, RUNS)
        for p in prange(runs):
            r = np.int64(p)  # (the prange index is unsigned: one compile of the callee)
            _sum_blocks(out, parts, r * blocks // runs, (r + 1) * blocks // runs, accumulate)


def _groups(N, slots, per_gemm):
    """``(slot, first sample, samples)`` of every product, in conv2d_slots' order."""
    for s in range(slots):
        n1 = (s + 1) * N // slots
        for n0 in range(s * N // slots, n1, per_gemm):
            yield s, n0, min(per_gemm, n1 - n0)


def conv2d_forward(out, x, weight, bias, geom, kind=0, slope=0.0):
    """out (N, OC, OH, OW) = act(conv2d(x, weight) + bias), overwritten.

    x (N, C, H, W), weight (OC, C/G, KH, KW), bias (OC,) or None; C-contiguous,
    one dtype. ``kind``/``slope`` pick a fused activation (``activations``). A 3 x 3,
    stride-1 convolution wide and large enough to pay runs by Winograd F(2x2, 3x3)
    (``winograd``: 2.25x fewer multiply-adds, results within rounding), the weights
    transformed for this one call.
    """
    if winograd.applies(x.shape, weight.shape, geom, x.dtype) and winograd.pays_eagerly(out.shape):
        winograd.forward_runner(out, x, weight, bias, geom, kind, slope, get_threads(), workspace(), keep=False)(x)
        return
    forward_runner(out, x, weight, bias, geom, kind, slope)(x)


def forward_runner(out, x, weight, bias, geom, kind=0, slope=0.0, work=None, reuse=False):
    """``run(x)``: :func:`conv2d_forward` into ``out`` for inputs of ``x``'s shape and
    type, with the layout, scratch (from ``work``, a ``Workspace``; this thread's by
    default) and path chosen once. An inference plan keeps one per layer.
    ``reuse``: the runner will run many times (a plan's), so a few small images may
    take the pixel-rows product, whose setup (w^T packed, gather offsets) one call
    would not pay back; the same bits either way."""
    work = workspace() if work is None else work
    N, C = x.shape[0], x.shape[1]
    OC, P = out.shape[1], out.shape[2] * out.shape[3]
    G = geom[8]
    OCg, Cg = OC // G, C // G
    w3 = weight.reshape(G, OCg, -1)
    out3 = out.reshape(N, OC, P)
    has_bias = bias is not None
    bias = bias if has_bias else weight.reshape(-1)[:1]
    pointwise = geom[:6] == (1, 1, 1, 1, 0, 0)
    OH, pitch = layout(x.shape, geom, out.shape[2:])
    slots, per_gemm, cols, tmps, xps = scratch(x, geom, OC, w3.shape[2], OH, pitch, work=work)
    slope = float(slope)
    flags = POINTWISE * pointwise + HAS_BIAS * has_bias
    Kg, Pc = w3.shape[2], OH * pitch
    few = N < get_threads()
    if few and N * OC * Kg * P < SERIAL_BELOW_MACS:
        # a few small images (batch-1 inference): the slot kernel's steps, serially on this
        # thread, with no parallel launch (same groups, same arithmetic), or pixel rows
        rows = _rows_runner(out3, x, w3, bias, geom, flags, kind, slope, OH, pitch, work) if reuse else None
        if rows is not None:
            return rows
        groups = [(cols[s], tmps[s], xps[s], n0, nb) for s, n0, nb in _groups(N, slots, per_gemm)]

        def run(x):
            for col, tmp, xp, n0, nb in groups:
                _forward_group(out3, x, w3, bias, col, tmp, xp, n0, nb, geom, flags, kind, slope, OH, pitch)
        return run
    if not few:
        args = (out3, x, work.view("no_parts", (1, 1, 1, 1), x.dtype), bias.reshape(1, -1))
        rest = (w3, cols, tmps, xps, geom, per_gemm, flags, kind, slope, OH, pitch,
                _group_handle(*args, x, w3, cols, tmps, xps, geom, flags, kind, slope, OH, pitch))

        def run(x):
            conv2d_slots(out3, x, args[2], args[3], x, *rest)
        return run

    # few, large: _forward_group's steps, parallel inside each product: stride-1
    # products over column runs (conv_gemm_parallel), the others on the parallel matmul
    KH, KW, SH, SW, PH, PW, DH, DW, _ = geom
    Hp, Wp = x.shape[2] + 2 * PH, x.shape[3] + 2 * PW
    implicit = SH == 1 and SW == 1 and pitch == Wp
    plane = Cg * Hp * Wp + KW * DW
    offs = np.empty(Kg if implicit else 0, np.int64)
    if implicit:
        wide_offsets(offs, Cg, KH, KW, Hp, Wp, DH, DW)
        xpfs = work.view("xps_threads", (get_threads(), xps.shape[1]), x.dtype)  # one padded copy a thread
        fn = parallel_handle(tmps[0, :OCg * Pc].reshape(OCg, -1), w3[0], xpfs[0], plane, offs, Pc)

    def run(x):
        for s, n0, nb in _groups(N, slots, per_gemm):
            col = cols[s, :Kg * nb * Pc].reshape(-1, nb * Pc)
            direct_out = nb == 1 and Pc == P
            for g in range(G):
                dst = out3[n0, g * OCg:(g + 1) * OCg] if direct_out else tmps[s, :OCg * nb * Pc].reshape(OCg, -1)
                if pointwise and nb == 1:
                    matmul(dst, w3[g], x[n0, g * Cg:(g + 1) * Cg].reshape(Cg, P))
                elif implicit:
                    conv_gemm_parallel(dst, w3[g], xpfs, x, (n0, nb, g * Cg, Cg, PH, PW, KW * DW, plane), offs, Pc,
                                       nb * Pc, get_threads(), fn)
                else:
                    gather(col, xps[s], x, n0, nb, g * Cg, geom, pitch)
                    matmul(dst, w3[g], col)
                if not direct_out or has_bias or kind:
                    scatter(out3, dst, n0, nb, g * OCg, bias, has_bias, kind, slope, OH, pitch)
    return run


def conv2d_backward(dx, dweight, dbias, dout, x, weight, geom, accumulate_w=False, accumulate_b=False):
    """Gradients of conv2d: dx overwritten; dweight, dbias overwritten or added to
    (``accumulate_*``). Any of dx, dweight, dbias may be None to skip it.

    dout (N, OC, OH, OW) C-contiguous; shapes as in :func:`conv2d_forward`.
    """
    N = x.shape[0]
    OC, P = dout.shape[1], dout.shape[2] * dout.shape[3]
    G = geom[8]
    if dx is not None and transposed_geometry(geom) is not None and transposed_pays(x.shape, dout.shape, geom):
        # stride 1: dx is the convolution of dout with the flipped, transposed kernel,
        # the forward's implicit GEMM, with no input-sized column matrix to scatter back
        conv2d_forward(dx, dout, transposed_weight(weight, G), None, transposed_geometry(geom))
        dx = None
    w3 = weight.reshape(G, OC // G, -1)
    Kg = w3.shape[2]
    OH, pitch = dout.shape[2], dout.shape[3]  # narrow: measured faster than wide in backward
    slots, per_gemm, cols, tmps, xps = scratch(x, geom, OC, Kg, OH, pitch, backward=True, dx_cols=dx is not None)
    dw_parts = workspace().view("dw_parts", (slots, G, OC // G, Kg), x.dtype)
    db_parts = workspace().view("db_parts", (slots, OC), x.dtype)
    flags = (BACKWARD + POINTWISE * (geom[:6] == (1, 1, 1, 1, 0, 0)) + NEED_DX * (dx is not None)
             + NEED_DW * (dweight is not None) + NEED_DB * (dbias is not None))
    args = (dout.reshape(N, OC, P), x if dx is None else dx, dw_parts, db_parts, x, w3, cols, tmps, xps, geom)
    conv2d_slots(*args, per_gemm, flags, 0, 0.0, OH, pitch, _group_handle(*args, flags, 0, 0.0, OH, pitch))
    if dweight is not None:
        sum_slots(dweight.reshape(-1), dw_parts.reshape(slots, -1), accumulate_w)
    if dbias is not None:
        sum_slots(dbias, db_parts, accumulate_b)
