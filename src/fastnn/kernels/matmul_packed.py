"""Products with a constant right-hand side packed once: the weights of an inference
plan's Linear layers (``fastnn.inference``).

``gemm`` packs op(b) into NR-column micro-panels on every call. For ``x @ w.T`` with
constant ``w``, :func:`pack_weight` lays out, once, exactly what ``gemm`` would pack for
an (M, K) left operand: every column block and K group, one after another. Then
:func:`gemm_packed` runs ``gemm``'s tiles over it with the packing room for the rows of
``x`` taken from a caller's workspace, so a call allocates nothing, and its result is
bitwise ``matmul``'s (the same blocks, summed in the same order).
"""
import numba
import numpy as np
from numba import prange

from . import aligned
from ._fnptr import call, handle
from ._jit import kernel, serial_kernel, typed
from .activations import IDENTITY, bias_activation_row
from .matmul import DIRECT_FLOPS, NC, SERIAL_FLOPS, _pack_b, _plan, _tiles, column_tiles
from .microkernel import KC, MR, NV

ROOM = (128 + MR) * KC  # packing room for the rows of a per thread: (MC + MR) x KC


def panel_width(dtype):
    """NR, the columns of a micro-panel for ``dtype``."""
    return NV * (64 // np.dtype(dtype).itemsize)


def packs(M, N, K, dtype):
    """True when ``matmul`` of (M, K) @ (K, N) packs its right operand as is (not tiny,
    at least four rows, and not the swapped layout of very narrow outputs)."""
    return M >= 4 and K > 0 and M * N * K >= DIRECT_FLOPS and not (2 * N <= panel_width(dtype) and M > N)


def packed_size(N, K, dtype):
    """Elements of the packed w.T of a (N, K) weight."""
    NR = panel_width(dtype)
    return K * NR * sum((min(NC, N - j0) + NR - 1) // NR for j0 in range(0, N, NC))


def workspace(dtype):
    """A (threads, room) array for the rows of a (one row per thread numba may use)
    and a (threads, MR * NR) one for edge tiles."""
    threads = numba.config.NUMBA_NUM_THREADS
    return aligned.empty((threads, ROOM), dtype), aligned.empty((threads, MR * panel_width(dtype)), dtype)


def pack_weight(w, M):
    """w (N, K) packed for products (M, K) @ w.T (``packs(M, N, K)`` must hold)."""
    N, K = w.shape
    bp = aligned.empty(packed_size(N, K, w.dtype), w.dtype)
    _pack_all(bp, w, np.empty((M, N), w.dtype), np.empty((M, K), w.dtype))
    return bp


@serial_kernel
def _pack_all(bp, w, out, a):
    # every (column block, K group) of op(b) = w.T, in gemm's loop order
    _, b, _, tb, _, R, Q, K, NR, kcb, kg, mc, ntm = _plan(out, a, w, False, True, 1)
    off = 0
    for j0 in range(0, Q, NC):
        ncols = min(NC, Q - j0)
        npan = (ncols + NR - 1) // NR
        for g0 in range(0, K, kg):
            g1 = min(g0 + kg, K)
            size = (g1 - g0) * npan * NR
            _pack_b(bp[off:off + size], b, tb, 0, npan * ((g1 - g0 + kcb - 1) // kcb), g0, g1, j0, ncols, kcb, NR)
            off += size


@typed
@serial_kernel
def _epilogue(out, bias, kind, slope, has_bias, t0, t1, mc, per, npan, j0, ncols, NR):
    # act(out + bias) on the part of out that tiles t0..t1 of a column block cover
    # (as ``_tiles`` numbers them), while it is still in this thread's cache
    M = out.shape[0]
    ntn = (npan + per - 1) // per
    for t in range(t0, t1):
        i0 = t // ntn * mc
        ja = j0 + t % ntn * per * NR
        jb = min(j0 + ncols, ja + per * NR)
        for i in range(i0, min(i0 + mc, M)):
            bias_activation_row(out[i, ja:jb], bias[ja:jb] if has_bias else bias, kind, slope, has_bias)


@kernel
def gemm_packed(out, a, bp, ap, tmp, threads, bias, kind, slope, has_bias):
    """out (M, N) = act(a (M, K) @ w.T + bias) with w packed by :func:`pack_weight` in
    ``bp``; ``ap``/``tmp`` from :func:`workspace`; bias (N,) (read only when
    ``has_bias``), kind and slope as in ``activations`` (the epilogue runs on each
    thread's tiles as they are finished, the arithmetic of ``bias_activation_forward``).
    ``threads``: numba's thread count."""
    M, N = out.shape
    K = a.shape[1]
    threads = min(threads, ap.shape[0])
    if M * N * K < SERIAL_FLOPS:
        threads = 1
    epilogue = has_bias or kind != IDENTITY
    _, _, _, _, _, R, Q, K, NR, kcb, kg, mc, ntm = _plan(out, a, out, False, True, threads)
    off = 0
    for j0 in range(0, Q, NC):
        ncols = min(NC, Q - j0)
        npan, per, ntiles = column_tiles(ncols, NR, threads, ntm)
        for g0 in range(0, K, kg):
            g1 = min(g0 + kg, K)
            size = (g1 - g0) * npan * NR
            seg = bp[off:off + size]
            off += size
            last = epilogue and g1 == K
            if threads == 1:
                _tiles(out, a, seg, ap[0], tmp[0], False, False, False, 0, ntiles, mc, per, g0, g1, j0, ncols, kcb, NR)
                if last:
                    _epilogue(out, bias, kind, slope, has_bias, 0, ntiles, mc, per, npan, j0, ncols, NR)
                continue
            for c in prange(threads):
                t0, t1 = c * ntiles // threads, (c + 1) * ntiles // threads
                _tiles(out, a, seg, ap[c], tmp[c], False, False, False, t0, t1, mc, per, g0, g1, j0, ncols, kcb, NR)
                if last:
                    _epilogue(out, bias, kind, slope, has_bias, t0, t1, mc, per, npan, j0, ncols, NR)


@serial_kernel
def _row_tile(out, a, bp, ap, tmp, rt, mc, bias, kind, slope, has_bias):
    # rows rt*mc + [0, mc) of out = act(a @ w.T + bias), w packed in bp: every column
    # block and K group of ``gemm_packed``, in its order, for this one row tile (the
    # same sums, so the same bits)
    _, _, _, _, _, R, Q, K, NR, kcb, kg, _, _ = _plan(out, a, out, False, True, 1)
    off = 0
    for j0 in range(0, Q, NC):
        ncols = min(NC, Q - j0)
        npan = (ncols + NR - 1) // NR
        for g0 in range(0, K, kg):
            g1 = min(g0 + kg, K)
            size = (g1 - g0) * npan * NR
            _tiles(out, a, bp[off:off + size], ap, tmp, False, False, False, rt, rt + 1, mc, npan, g0, g1, j0,
                   ncols, kcb, NR)
            off += size
        if has_bias or kind != IDENTITY:
            _epilogue(out, bias, kind, slope, has_bias, rt, rt + 1, mc, npan, npan, j0, ncols, NR)


@kernel
def ffn_packed(out, x, h, bp1, bias1, kind, slope, has_bias1, bp2, bias2, has_bias2, ap, tmp, threads, fn):
    """A feed-forward block: h (M, F) = act(x (M, E) @ w1.T + bias1), then out (M, E')
    = h @ w2.T + bias2, with w1, w2 packed by :func:`pack_weight` for M rows (both
    products must be ones ``packs`` accepts). Row tile by row tile: a thread computes
    a tile's hidden rows and at once the output rows from them, while they are in its
    cache, so there is one parallel region and h makes no round trip through memory.
    Bitwise two ``gemm_packed`` calls (the same K blocks, in the same order; tiles
    never split columns here). ``fn``: :func:`ffn_handle`, ``_row_tile`` called
    through its address (``_fnptr``), so its body is not compiled again in here."""
    M = x.shape[0]
    threads = min(threads, ap.shape[0])
    if M * h.shape[1] * x.shape[1] < SERIAL_FLOPS:
        threads = 1
    mc, ntm = _plan(h, x, h, False, True, threads)[11:]  # the row tiles of both products
    ident, zero = np.int64(IDENTITY), np.float64(0.0)
    if threads == 1:
        for rt in range(ntm):
            call(fn, (h, x, bp1, ap[0], tmp[0], rt, mc, bias1, kind, slope, has_bias1))
            call(fn, (out, h, bp2, ap[0], tmp[0], rt, mc, bias2, ident, zero, has_bias2))
        return
    for c in prange(threads):
        for r in range(c * ntm // threads, (c + 1) * ntm // threads):
            rt = np.int64(r)
            call(fn, (h, x, bp1, ap[c], tmp[c], rt, mc, bias1, kind, slope, has_bias1))
            call(fn, (out, h, bp2, ap[c], tmp[c], rt, mc, bias2, ident, zero, has_bias2))


def ffn_handle(h, x, bp1, ap, tmp, bias1, kind, slope, has_bias1):
    """The ``fn`` argument of :func:`ffn_packed` (given its arguments of these names)."""
    return handle(_row_tile, (h, x, bp1, ap[0], tmp[0], 0, 0, bias1, int(kind), float(slope), bool(has_bias1)))
