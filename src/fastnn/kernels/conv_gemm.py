"""Implicit GEMM for stride-1 convolutions: the im2col matrix is never written.

With stride 1 and the wide layout (see ``im2col``), row k = (cg, kh, kw) of a
sample's im2col matrix is one contiguous run of its zero-padded image, starting
at ``offs[k] = (cg*Hp + kh*DH)*Wp + kw*DW``. So the GEMM's packing step reads the
padded image directly: each NR-column panel of B is packed from those runs just
before the micro-kernel uses it, and stays in L1. That removes the im2col copy and
its second pass (the GEMM's own packing) over a matrix KH*KW times the image.

Serial: the convolution calls it per sample group from inside its parallel loop;
for a batch too small to split, ``conv_gemm_parallel`` splits one product's columns.
Same K blocking and micro-kernel as ``matmul``, so sums run in the same order.
"""
import numpy as np

from numba import prange

from ._fnptr import call, handle
from ._jit import inline, kernel, serial_kernel
from .im2col import pad_images
from .matmul import _pack_b
from .microkernel import KC, MR, NV, micro, micro_gather, micro_offs, micro_offs_rows, pack_a


@inline
def _pack_panel(bp, xpf, plane, offs, k0, kc, j0, cols, Pc, NR):
    # bp[k*NR + jj] = xpf[b*plane + offs[k0 + k] + p] for column j0 + jj = b*Pc + p,
    # jj < cols; zero for cols <= jj < NR. Samples sit ``plane`` elements apart.
    b = j0 // Pc
    p = j0 - b * Pc
    for k in range(kc):
        row = bp[k * NR:(k + 1) * NR]
        jj, bb, pp = 0, b, p
        while jj < cols:
            run = min(cols - jj, Pc - pp)
            src = xpf[bb * plane + offs[k0 + k] + pp:][:run]
            dst = row[jj:jj + run]
            for t in range(run):
                dst[t] = src[t]
            jj += run
            bb += 1
            pp = 0
        tail = row[cols:]
        for t in range(NR - cols):
            tail[t] = 0


@inline
def _blocking(K, M, itemsize):
    # (NR, kcb, rows): the panel width, K split into equal blocks of at most KC (as in
    # matmul, so sums run in the same order), M rounded up to whole MR-row panels
    nk = (K + KC - 1) // KC
    return NV * (64 // itemsize), (K + nk - 1) // nk, (M + MR - 1) // MR * MR


@inline
def _tile(out, i, j0, cols, ap, aoff, bp, kc, add, tmp, NR):
    # out[i:i+MR, j0:j0+cols] (+)= the micro-tile of A panel ``aoff`` and the packed B
    # panel; tiles at the bottom or right edge go through ``tmp``
    ldo = out.shape[1]
    if cols == NR and i + MR <= out.shape[0]:
        micro(out, i * ldo + j0, ldo, ap, aoff, bp, 0, kc, add)
        return
    micro(tmp, 0, NR, ap, aoff, bp, 0, kc, False)
    _from_tmp(out, i, j0, cols, tmp, add, NR)


@inline
def _from_tmp(out, i, j0, cols, tmp, add, NR):
    # out[i:i+MR, j0:j0+cols] (+)= the edge tile computed into tmp (rows past out's end dropped)
    for r in range(min(MR, out.shape[0] - i)):
        orow = out[i + r, j0:j0 + cols]
        trow = tmp[r * NR:r * NR + cols]
        for c in range(cols):
            orow[c] = orow[c] + trow[c] if add else trow[c]


@serial_kernel
def conv_gemm(out, w, xpf, plane, offs, Pc, j_lo, j_hi):
    """out[o, j] = sum_k w[o, k] * B[k, j] for j_lo <= j < j_hi (overwritten), where
    B[k, b*Pc + p] = xpf[b*plane + offs[k] + p]; j_lo a multiple of NR (the panel
    width), so a column's sums never depend on the range it was computed in.

    out (OCg, >= j_hi) C-contiguous, or with rows past OCg up to a multiple of MR, which
    then take the padding rows of the tiles (no edge copy); w (OCg, Kg) C-contiguous; xpf flat padded
    images ``plane`` elements apart (each run of Pc elements from every offset
    must lie inside xpf); offs (Kg,) int64.
    """
    OCg, Kg = w.shape
    NR, kcb, rows = _blocking(Kg, OCg, out.itemsize)
    ap = np.empty(rows * Kg, out.dtype)
    bp = np.empty(kcb * NR, out.dtype)
    tmp = np.empty(MR * NR, out.dtype)
    for k0 in range(0, Kg, kcb):  # all of w, K block by K block: rows x kc at ap[k0*rows]
        pack_a(ap[k0 * rows:], w, False, 0, OCg, k0, min(kcb, Kg - k0))
    ldo = out.shape[1]
    for j0 in range(j_lo, j_hi, NR):
        cols = min(NR, j_hi - j0)
        b = j0 // Pc
        p = j0 - b * Pc
        inplace = cols == NR and p + NR <= Pc  # every row of the panel: NR elements of one image
        for k0 in range(0, Kg, kcb):
            kc = min(kcb, Kg - k0)
            add = k0 > 0
            if inplace:  # the micro-kernel reads the runs where they are: no packing
                for i in range(0, OCg, MR):
                    aoff = k0 * rows + i * kc
                    if i + MR <= out.shape[0]:  # (a last tile of a few rows on as few: the same sums)
                        micro_offs_rows(OCg - i, out, i * ldo + j0, ldo, ap, aoff, xpf, b * plane + p, offs, k0, kc,
                                        add)
                    else:
                        micro_offs(tmp, 0, NR, ap, aoff, xpf, b * plane + p, offs, k0, kc, False)
                        _from_tmp(out, i, j0, cols, tmp, add, NR)
                continue
            _pack_panel(bp, xpf, plane, offs, k0, kc, j0, cols, Pc, NR)
            for i in range(0, OCg, MR):
                _tile(out, i, j0, cols, ap, k0 * rows + i * kc, bp, kc, add, tmp, NR)


@kernel
def conv_gemm_parallel(out, w, xpfs, x, pad, offs, Pc, ncols, threads, fn):
    """:func:`conv_gemm` of columns 0..ncols, split into runs of whole panels over
    ``threads`` threads (the same bits as one call: every column's sums are its own).
    For a few large images, where the batch is too small to split. Each thread first
    pads the images itself, into its own row of ``xpfs`` (``pad``: (n0, nb, c0, Cg,
    PH, PW, tail), the arguments of ``im2col.pad_images``, and the padded images'
    distance ``plane``): padded once by the calling thread, the image's cache lines had to move to
    the other core's cache (about 34 us for a 32-channel 32 x 32 image, against 9 us
    for the copy itself). ``fn``: the handle of ``conv_gemm`` for these arguments
    (``_fnptr``; :func:`parallel_handle`)."""
    NR = NV * (64 // out.itemsize)
    npan = (ncols + NR - 1) // NR
    parts = max(1, min(threads, npan, xpfs.shape[0]))
    n0, nb, c0, Cg, PH, PW, tail, plane = pad
    for c in prange(parts):
        j_lo = c * npan // parts * NR
        j_hi = min(ncols, (c + 1) * npan // parts * NR)
        pad_images(xpfs[c], x, n0, nb, c0, Cg, PH, PW, tail)
        call(fn, (out, w, xpfs[c], plane, offs, Pc, j_lo, j_hi))


def parallel_handle(out, w, xpf, plane, offs, Pc):
    """The ``fn`` argument of :func:`conv_gemm_parallel` (given its arguments of these names)."""
    return handle(conv_gemm, (out, w, xpf, plane, offs, Pc, 0, 0))


@serial_kernel
def wide_offsets(offs, Cg, KH, KW, Hp, Wp, DH, DW):
    """offs[(cg*KH + kh)*KW + kw] = (cg*Hp + kh*DH)*Wp + kw*DW (overwritten)."""
    for cg in range(Cg):
        for kh in range(KH):
            for kw in range(KW):
                offs[(cg * KH + kh) * KW + kw] = (cg * Hp + kh * DH) * Wp + kw * DW


@serial_kernel
def conv_gemm_dw(dw, d, xpf, offs, pix, accumulate):
    """dw[o, k] (+)= sum_p d[o, p] * xpf[offs[k] + pix[p]]: the weight gradient's
    product with the im2col matrix read in place (``+=`` when ``accumulate``).
    dw (OCg, Kg) and d (OCg, ncol) C-contiguous; offs (Kg,) and pix (ncol,) int64:
    column k of row p of op(b) sits at offs[k] + pix[p] in xpf.

    Computed transposed, dw^T = im2col @ d^T, when that pads the product's tiles no
    more than the direct way does (``_dw_transposed``: the im2col matrix is not
    copied at all); otherwise directly, the im2col rows gathered into packed
    panels (``_dw_direct``: fewer wasted lanes when there are few output channels).
    """
    OCg, Kg = dw.shape
    NR = NV * (64 // dw.itemsize)
    transposed = (Kg + MR - 1) // MR * MR * ((OCg + NR - 1) // NR * NR)
    direct = (OCg + MR - 1) // MR * MR * ((Kg + NR - 1) // NR * NR)
    if transposed <= direct:
        _dw_transposed(dw, d, xpf, offs, pix, accumulate)
    else:
        _dw_direct(dw, d, xpf, offs, pix, accumulate)


@serial_kernel
def _dw_transposed(dw, d, xpf, offs, pix, accumulate):
    # conv_gemm_dw as dw^T = im2col @ d^T: the micro-kernel gathers im2col's elements
    # straight from the image (``micro_gather``), d^T is the packed operand (one
    # transposing copy of d, shared by every row of taps)
    OCg, Kg = dw.shape
    K = d.shape[1]
    NR, kcb, rows = _blocking(K, Kg, dw.itemsize)
    npan = (OCg + NR - 1) // NR
    nk = (K + kcb - 1) // kcb
    bp = np.empty(nk * npan * kcb * NR, dw.dtype)
    _pack_b(bp, d, True, 0, nk * npan, 0, K, 0, OCg, kcb, NR)  # d^T, NR-column panels
    taps = np.empty(rows, np.int64)  # offs, its last row group padded with a valid offset
    for k in range(rows):  # (plain loops: slice assignments compile helpers of their own)
        taps[k] = offs[k] if k < Kg else offs[0]
    ldt = npan * NR
    dwt = np.empty((rows, ldt), dw.dtype)  # dw^T, padded to whole micro-tiles
    for k0 in range(0, K, kcb):
        kc = min(kcb, K - k0)
        for q in range(npan):
            boff = k0 * npan * NR + q * kc * NR
            for i in range(0, rows, MR):
                micro_gather(dwt, i * ldt + q * NR, ldt, xpf, taps, i, pix, k0, bp, boff, kc, k0 > 0)
    for o in range(OCg):
        drow = dw[o]
        for k in range(Kg):
            drow[k] = drow[k] + dwt[k, o] if accumulate else dwt[k, o]


@serial_kernel
def _dw_direct(dw, d, xpf, offs, pix, accumulate):
    # conv_gemm_dw as dw = d @ im2col^T: the im2col rows gathered straight into the
    # GEMM's packed panels (one transposing copy, no im2col block)
    OCg, Kg = dw.shape
    K = d.shape[1]
    NR, kcb, rows = _blocking(K, OCg, dw.itemsize)
    ap = np.empty(rows * kcb, dw.dtype)
    bp = np.empty(kcb * NR, dw.dtype)
    tmp = np.empty(MR * NR, dw.dtype)
    for k0 in range(0, K, kcb):
        kc = min(kcb, K - k0)
        add = accumulate or k0 > 0
        pack_a(ap, d, False, 0, OCg, k0, kc)
        for j0 in range(0, Kg, NR):
            cols = min(NR, Kg - j0)
            col_offs = offs[j0:j0 + cols]
            for p in range(kc):
                row = bp[p * NR:(p + 1) * NR]
                at = pix[k0 + p]
                for jj in range(cols):
                    row[jj] = xpf[col_offs[jj] + at]
                for jj in range(cols, NR):
                    row[jj] = 0
            for i in range(0, OCg, MR):
                _tile(dw, i, j0, cols, ap, i * kc, bp, kc, add, tmp, NR)


@serial_kernel
def chunk_pixels(pix, plane, Wp, SH, SW, OW, oh0, rows, samples):
    """pix[(b*rows + r)*OW + ow] = b*plane + (oh0 + r)*SH*Wp + ow*SW (overwritten): where
    output pixel (b, oh0 + r, ow) of a chunk reads its padded image (kernel offset 0)."""
    for b in range(samples):
        for r in range(rows):
            base = b * plane + (oh0 + r) * SH * Wp
            dst = pix[(b * rows + r) * OW:(b * rows + r + 1) * OW]
            for ow in range(OW):
                dst[ow] = base + ow * SW
