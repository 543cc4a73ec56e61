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

from ._jit import kernel, serial_kernel
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
    return np.empty((threads, ROOM), dtype), np.empty((threads, MR * panel_width(dtype)), dtype)


def pack_weight(w, M):
    """w (N, K) packed for products (M, K) @ w.T (``packs(M, N, K)`` must hold)."""
    N, K = w.shape
    bp = np.empty(packed_size(N, K, w.dtype), w.dtype)
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


@kernel
def gemm_packed(out, a, bp, ap, tmp, threads):
    """out (M, N) = a (M, K) @ w.T with w packed by :func:`pack_weight` in ``bp``;
    ``ap``/``tmp`` from :func:`workspace`. ``threads``: numba's thread count."""
    M, N = out.shape
    K = a.shape[1]
    threads = min(threads, ap.shape[0])
    if M * N * K < SERIAL_FLOPS:
        threads = 1
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
            if threads == 1:
                _tiles(out, a, seg, ap[0], tmp[0], False, False, False, 0, ntiles, mc, per, g0, g1, j0, ncols, kcb, NR)
                continue
            for c in prange(threads):
                _tiles(out, a, seg, ap[c], tmp[c], False, False, False, c * ntiles // threads,
                       (c + 1) * ntiles // threads, mc, per, g0, g1, j0, ncols, kcb, NR)
