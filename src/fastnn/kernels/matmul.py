"""Matrix multiply kernels (float32/float64), the engine under Linear, conv and RNNs.

``out[M,N] (+)= op(a) @ op(b)`` in the BLIS style: op(b) is packed into k-major
micro-panels of NR columns, op(a) into k-major micro-panels of MR rows (both
zero-padded), and a micro-kernel keeps an MR x NR block of ``out`` in vector
registers while it walks K. Transposes cost nothing extra: packing reads either
layout. Threads own tiles of ``out``; K is summed in fixed blocks in a fixed
order, so results do not depend on the thread count. Tiny products and products
with very few rows skip the packing and run plain serial loops.
"""
import numpy as np
from numba import prange

from ._fnptr import call, handle
from ._jit import inline, kernel, linked_kernel, serial_kernel, typed
from ._threading import get_threads
from .activations import IDENTITY, bias_activation_row
from .aligned import empty_like_row
from .microkernel import KC, MR, NV, copy8, micro, micro_rows, pack_a

MC = 128  # most rows per tile: the tile's packed a block (MC x KC) stays in L2
NC = 2048  # most columns of out per column block
B_PACK = 1 << 21  # most elements of packed b held at once (kg rows x NC columns)
SERIAL_FLOPS = 1 << 19  # below this many multiply-adds one thread is faster
DIRECT_FLOPS = 1 << 13  # below this (or M < 4) skip packing altogether
GEMV_SPLIT_FLOPS = 1 << 18  # unpacked products (M < 4) this big split columns over threads
DIRECT_COLS = 64  # column block of that split (fixed: results never depend on threads)
ROWS_PANELS = 4  # a tile meeting at most this many NR-panels reads its rows of a unpacked


@inline
def unpacked(M, N, K):
    # whether op(a) (M, K) @ op(b) (K, N) runs unpacked (``_direct``): too small to pay
    # for packing, or too few rows to fill a tile
    return K == 0 or M < 4 or M * N * K < DIRECT_FLOPS


@typed
@serial_kernel
def _pack_b(bp, b, trans_b, u0, u1, g0, g1, j0, ncols, kcb, NR):
    # Panels u0..u1 of op(b)[g0:g1, j0:j0+ncols]. Panel u (K block u // npan of
    # kc rows at k0, NR columns q = u % npan) goes to bp[(k0-g0)*ldp + q*kc*NR +
    # k*NR + j], ldp = npan*NR, zero past ncols.
    npan = (ncols + NR - 1) // NR
    for u in range(u0, u1):
        k0 = g0 + u // npan * kcb
        kc = min(kcb, g1 - k0)
        q = u % npan
        cols = min(NR, ncols - q * NR)
        jb = j0 + q * NR
        panel = bp[(k0 - g0) * npan * NR + q * kc * NR:][:kc * NR]
        if cols < NR:
            panel[:] = 0
        for j in range(0, cols if trans_b else 0, 8):
            copy8(panel[j:], NR, b[jb + j:jb + min(j + 8, cols), k0:k0 + kc], min(8, cols - j), kc)
        for k in range(kc if not trans_b else 0):
            src = b[k0 + k, jb:jb + cols]
            dst = panel[k * NR:(k + 1) * NR]
            for j in range(cols):
                dst[j] = src[j]


@typed
@serial_kernel
def _tiles(out, a, bp, ap, tmp, trans_a, accumulate, swap, t0, t1, mc, per, g0, g1, j0, ncols, kcb, NR):
    # Tiles t0..t1 of C[:, j0:j0+ncols] = op(a) @ (b packed in bp) for the K range
    # g0..g1, C = out (or out^T when ``swap``); tile t has rows (t // ntn)*mc + [0, mc)
    # and NR-panels (t % ntn)*per + [0, per). Per K block: pack the tile's rows of
    # op(a) into ``ap`` ((mc + MR) * kcb elements at least), then MR x NR micro-tiles
    # (edge and swapped ones through ``tmp``, MR * NR elements). A tile meeting few
    # panels (``ROWS_PANELS``) reads whole MR-row groups of a row-major a in place:
    # packing would cost more than it saves (the same sums, in the same order).
    M, N = out.shape
    rows = N if swap else M
    npan = (ncols + NR - 1) // NR
    ntn = (npan + per - 1) // per
    direct = not trans_a and not swap and per <= ROWS_PANELS and a.strides[1] == a.itemsize
    lda = a.strides[0] // a.itemsize
    for t in range(t0, t1):
        i0 = t // ntn * mc
        i1 = min(i0 + mc, rows)
        packed = i0 + (i1 - i0) // MR * MR if direct else i0  # rows from here on are packed
        for k0 in range(g0, g1, kcb):
            kc = min(kcb, g1 - k0)
            add = accumulate or k0 > 0
            if packed < i1:
                pack_a(ap, a, trans_a, packed, i1 - packed, k0, kc)
            for q in range(t % ntn * per, min(t % ntn * per + per, npan)):
                boff = (k0 - g0) * npan * NR + q * kc * NR
                j = j0 + q * NR
                cols = min(NR, j0 + ncols - j)
                for i in range(i0, i1, MR):
                    aoff = (i - packed) * kc
                    if cols == NR and i + MR <= i1 and not swap:
                        if i < packed:
                            micro_rows(out, i * N + j, N, a, i * lda + k0, lda, bp, boff, kc, add)
                        else:
                            micro(out, i * N + j, N, ap, aoff, bp, boff, kc, add)
                        continue
                    if i < packed:
                        micro_rows(tmp, 0, NR, a, i * lda + k0, lda, bp, boff, kc, False)
                    else:
                        micro(tmp, 0, NR, ap, aoff, bp, boff, kc, False)
                    mr = min(MR, i1 - i)
                    for c in range(cols if swap else 0):
                        ocol = out[j + c, i:i + mr]
                        for r in range(mr):
                            ocol[r] = ocol[r] + tmp[r * NR + c] if add else tmp[r * NR + c]
                    for r in range(0 if swap else mr):
                        orow = out[i + r, j:j + cols]
                        trow = tmp[r * NR:r * NR + cols]
                        for c in range(cols):
                            orow[c] = orow[c] + trow[c] if add else trow[c]


@linked_kernel  # (linked: a caller's constant flags pick its loops when LLVM inlines it)
def _direct(out, a, b, trans_a, trans_b, accumulate, j0, j1):
    # Unpacked serial out[:, j0:j1] (+)= op(a) @ op(b)[:, j0:j1] for tiny products and
    # M < 4 rows: row axpys over contiguous rows of b, or dot products with rows of
    # b^T, four at a time so each load of a feeds four sums. Every element's sum runs
    # over k in order, so a column split gives the same bits. (Not ``typed``: with
    # j0 a constant 0, LLVM drops the index checks from its loops, 4-10% faster.)
    M = out.shape[0]
    K = a.shape[0] if trans_a else a.shape[1]
    for i in range(M):
        orow = out[i]
        if not accumulate:
            for j in range(j0, j1):
                orow[j] = 0
        for k in range(K if not trans_b else 0):
            aik = a[k, i] if trans_a else a[i, k]
            brow = b[k]
            for j in range(j0, j1):
                orow[j] += aik * brow[j]
        if not trans_b:
            continue
        if trans_a:
            for j in range(j0, j1):
                brow = b[j]
                s = out.dtype.type(0)
                for k in range(K):
                    s += a[k, i] * brow[k]
                orow[j] += s
            continue
        arow = a[i]
        j4 = j0 + (j1 - j0) // 4 * 4
        for j in range(j0, j4, 4):
            b0, b1, b2, b3 = b[j], b[j + 1], b[j + 2], b[j + 3]
            s0 = s1 = s2 = s3 = out.dtype.type(0)
            for k in range(K):
                ak = arow[k]
                s0 += ak * b0[k]
                s1 += ak * b1[k]
                s2 += ak * b2[k]
                s3 += ak * b3[k]
            orow[j] += s0
            orow[j + 1] += s1
            orow[j + 2] += s2
            orow[j + 3] += s3
        for j in range(j4, j1):
            brow = b[j]
            s = out.dtype.type(0)
            for k in range(K):
                s += arow[k] * brow[k]
            orow[j] += s


@typed
@serial_kernel
def _plan(out, a, b, trans_a, trans_b, threads):
    # Blocking of C = op(a) @ op(b) = out, or C = op(b)^T @ op(a)^T = out^T when out
    # has few columns (``swap``, so the long side runs along vectors): C is R x Q;
    # K in equal blocks of kcb <= KC; b packed kg rows (whole blocks) x NC columns at
    # a time; row tiles of mc (a multiple of MR; a multiple of ``threads`` tiles).
    M, N = out.shape
    K = a.shape[0] if trans_a else a.shape[1]
    NR = NV * (64 // out.itemsize)
    swap = 2 * N <= NR and M > N
    R, Q = (N, M) if swap else (M, N)
    nk = (K + KC - 1) // KC
    kcb = (K + nk - 1) // nk
    kg = max(1, B_PACK // ((min(Q, NC) + NR - 1) // NR * NR * kcb)) * kcb
    ntm = (max((R + MC - 1) // MC, threads) + threads - 1) // threads * threads
    mc = ((R + ntm - 1) // ntm + MR - 1) // MR * MR
    if swap:
        return b, a, not trans_b, not trans_a, swap, R, Q, K, NR, kcb, kg, mc, (R + mc - 1) // mc
    return a, b, trans_a, trans_b, swap, R, Q, K, NR, kcb, kg, mc, (R + mc - 1) // mc


@typed
@serial_kernel
def gemm_serial(out, a, b, trans_a, trans_b, accumulate):
    """out[M,N] = op(a) @ op(b), or ``+=`` when ``accumulate``, on the calling thread.

    Same arithmetic (and bitwise the same result) as :func:`gemm`; safe to call
    from inside another kernel's ``prange`` loop. Allocates its packing buffers.
    """
    M, N = out.shape
    K = a.shape[0] if trans_a else a.shape[1]
    if unpacked(M, N, K):
        _direct(out, a, b, trans_a, trans_b, accumulate, 0, N)
        return
    a, b, ta, tb, swap, R, Q, K, NR, kcb, kg, mc, ntm = _plan(out, a, b, trans_a, trans_b, 1)
    bp = empty_like_row(min(kg, K) * (min(Q, NC) + NR), out)
    ap = empty_like_row((mc + MR) * kcb, out)
    tmp = empty_like_row(MR * NR, out)
    for j0 in range(0, Q, NC):
        ncols = min(NC, Q - j0)
        npan = (ncols + NR - 1) // NR
        for g0 in range(0, K, kg):
            g1 = min(g0 + kg, K)
            _pack_b(bp, b, tb, 0, npan * ((g1 - g0 + kcb - 1) // kcb), g0, g1, j0, ncols, kcb, NR)
            _tiles(out, a, bp, ap, tmp, ta, accumulate, swap, 0, ntm, mc, npan, g0, g1, j0, ncols, kcb, NR)


@inline
def column_tiles(ncols, NR, threads, ntm):
    # (NR-panels, panels per tile, tiles) of a column block of ncols: the block's
    # panels split into enough runs that ntm row tiles x runs keep ``threads`` busy
    npan = (ncols + NR - 1) // NR
    ntn = min(npan, (threads + ntm - 1) // ntm)
    per = (npan + ntn - 1) // ntn
    return npan, per, ntm * ((npan + per - 1) // per)


@kernel
def gemm(out, a, b, trans_a, trans_b, accumulate, threads, fns):
    """out[M,N] = op(a) @ op(b), or ``+=`` when ``accumulate``; op(x) = x.T if flagged.

    Per block of NC columns and kg rows of op(b): pack it (parallel over panels),
    then tiles of out (mc rows x a run of NR-panels), one contiguous run of tiles
    per thread; each tile packs its rows of op(a). ``threads``: numba's thread
    count. Small products run on the calling thread (same result either way).
    ``fns``: the handles of _direct, _pack_b and _tiles for these arrays, rows of an
    int64 (3, 2) array (:func:`gemm_handles`; an array is quicker to pass than a
    tuple). The shell calls them through their addresses, so their bodies compile
    once, serially, and never again inside it (``_fnptr``).
    """
    direct, pack, tiles = (fns[0, 0], fns[0, 1]), (fns[1, 0], fns[1, 1]), (fns[2, 0], fns[2, 1])
    M, N = out.shape
    K = a.shape[0] if trans_a else a.shape[1]
    if unpacked(M, N, K):
        if threads == 1 or M * N * K < GEMV_SPLIT_FLOPS or N < 2 * DIRECT_COLS:
            call(direct, (out, a, b, trans_a, trans_b, accumulate, N - N, N))
            return
        # a big matrix-vector product (batch of 1-3): fixed column blocks in parallel
        for ci in prange((N + DIRECT_COLS - 1) // DIRECT_COLS):
            c = np.int64(ci)
            call(direct, (out, a, b, trans_a, trans_b, accumulate, c * DIRECT_COLS,
                          min(N, (c + 1) * DIRECT_COLS)))
        return
    if M * N * K < SERIAL_FLOPS:
        threads = 1
    a, b, ta, tb, swap, R, Q, K, NR, kcb, kg, mc, ntm = _plan(out, a, b, trans_a, trans_b, threads)
    bp = empty_like_row(min(kg, K) * (min(Q, NC) + NR), out)
    # each thread's a-panel and edge-tile buffers, carved from one block allocated
    # here: views passed in a tuple do not keep Numba from hoisting a per-iteration
    # allocation out of the prange loop (then all threads would share one)
    line = 64 // out.itemsize
    na = ((mc + MR) * kcb + line - 1) // line * line
    stride = na + (MR * NR + line - 1) // line * line
    work = empty_like_row(threads * stride, out)
    for j0 in range(0, Q, NC):
        ncols = min(NC, Q - j0)
        npan, per, ntiles = column_tiles(ncols, NR, threads, ntm)
        for g0 in range(0, K, kg):
            g1 = min(g0 + kg, K)
            npack = npan * ((g1 - g0 + kcb - 1) // kcb)
            if threads == 1:
                call(pack, (bp, b, tb, npack - npack, npack, g0, g1, j0, ncols, kcb, NR))
                call(tiles, (out, a, bp, work[:na], work[na:na + MR * NR], ta, accumulate, swap, ntiles - ntiles,
                             ntiles, mc, per, g0, g1, j0, ncols, kcb, NR))
                continue
            # (two loops of counts Numba cannot prove equal, so it never fuses them: every
            # tile must wait for the whole block to be packed)
            packers, tilers = max(1, min(threads, npack)), max(1, min(threads, ntiles))
            for ci in prange(packers):
                c = np.int64(ci)
                call(pack, (bp, b, tb, c * npack // packers, (c + 1) * npack // packers,
                            g0, g1, j0, ncols, kcb, NR))
            for ci in prange(tilers):
                c = np.int64(ci)
                w0 = c * stride
                call(tiles, (out, a, bp, work[w0:w0 + na], work[w0 + na:w0 + na + MR * NR], ta, accumulate, swap,
                             c * ntiles // tilers, (c + 1) * ntiles // tilers, mc, per, g0, g1, j0, ncols, kcb,
                             NR))


_GEMM_FNS = {}  # (dtype, a writeable, b writeable) -> gemm's fns; dtype alone: both writeable


def gemm_handles(out, a, b):
    """The ``fns`` argument of :func:`gemm` for these arrays (C-contiguous, aligned):
    the handles of _direct, _pack_b and _tiles for the types gemm calls them with.
    After ``_plan`` may swap a and b, both have their unified type: read-only if
    either is."""
    key = (out.dtype, a.flags.writeable, b.flags.writeable)
    fns = _GEMM_FNS.get(key)
    if fns is None:
        dtype, wa, wb = key

        def like(shape, writeable):
            x = np.zeros(shape, dtype)
            x.flags.writeable = writeable
            return x

        row, both = like(1, True), like((1, 1), wa and wb)
        fns = _GEMM_FNS[key] = np.array([
            handle(_direct, (out, like((1, 1), wa), like((1, 1), wb), False, False, False, 0, 0)),
            handle(_pack_b, (row, both, False, 0, 0, 0, 0, 0, 0, 0, 0)),
            handle(_tiles, (out, both, row, row, row, False, False, False, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))], np.int64)
        if wa and wb:
            _GEMM_FNS[dtype] = fns
    return fns


@typed
@serial_kernel
def linear_serial(out, x, w, bias, kind, slope, has_bias):
    """out = act(x @ w.T + bias) on the calling thread: a small Linear forward in one call.

    x (M, K), w (N, K), out (M, N); bias (N,) (ignored unless has_bias); kind,
    slope as in ``activations``. The product is :func:`gemm_serial`'s and the
    epilogue ``bias_activation_forward``'s row by row, so the result is bitwise
    theirs; for products under ``GEMV_SPLIT_FLOPS`` (what :func:`matmul` runs serially).
    """
    M, N, K = out.shape[0], out.shape[1], x.shape[1]
    if unpacked(M, N, K):
        # (gemm_serial's unpacked path, called with constant flags: a batch of one to
        # three compiles to the dot-product loop alone; 2-4% faster than through
        # gemm_serial, which takes its flags at run time)
        _direct(out, x, w, False, True, False, 0, N)
    else:
        gemm_serial(out, x, w, False, True, False)
    if has_bias or kind != IDENTITY:
        for i in range(out.shape[0]):
            bias_activation_row(out[i], bias, kind, slope, has_bias)


def matmul(out, a, b, trans_a=False, trans_b=False, accumulate=False):
    """out[M,N] (+)= op(a) @ op(b), with op(x) = x.T when the flag is set.

    The one entry point the layers use; ``a``, ``b`` and ``out`` must be
    C-contiguous 2-D arrays of one float dtype. Overwrites ``out`` unless
    ``accumulate``. From inside a kernel call :func:`gemm_serial` instead.
    """
    if out.shape[0] * out.shape[1] * (a.shape[0] if trans_a else a.shape[1]) < GEMV_SPLIT_FLOPS:
        # small: runs on this thread anyway; skip the parallel kernel's guard (same bits)
        gemm_serial(out, a, b, trans_a, trans_b, accumulate)
        return
    fns = _GEMM_FNS.get(out.dtype) if a.flags.behaved and b.flags.behaved and out.flags.aligned else None
    if fns is None:  # (the first call, or an operand read-only or not aligned: rare)
        if not (out.flags.aligned and a.flags.aligned and b.flags.aligned):  # gemm's handles are for aligned ones
            a, b = np.require(a, requirements="CA"), np.require(b, requirements="CA")
            if not out.flags.aligned:
                dest = np.empty_like(out)
                if accumulate:
                    dest[...] = out
                matmul(dest, a, b, trans_a, trans_b, accumulate)
                out[...] = dest
                return
        fns = gemm_handles(out, a, b)
    gemm(out, a, b, trans_a, trans_b, accumulate, get_threads(), fns)
