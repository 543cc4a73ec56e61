"""The recurrent product h @ W on matmul's register-blocked micro-kernel.

A recurrent layer multiplies a few rows by the same weight matrix at every step,
so the weights are packed once per call (``pack_panels``, the micro-kernel's B
operand) and only the rows are packed per step (``pack_rows``). Every output is
summed over K in the same order whatever the rows around it, so splitting the
batch into chunks (``chunking``) does not change any result.
"""
import numpy as np

from ._jit import serial_kernel
from .microkernel import MR, NV, ROW_PANELS, micro, micro_row, micro_row1

ROWS_ALONE = 3  # up to this many rows, times_packed_row row by row beats padding them to an MR panel


@serial_kernel
def pack_rows(ap, a, n0, rows):
    # ap[p*MR*K + k*MR + r] = a[n0 + p*MR + r, k] for `rows` rows of a (N, K), in
    # MR-row panels, zero past `rows`: the A operand of the micro-kernel.
    K = a.shape[1]
    for p in range((rows + MR - 1) // MR):
        panel = ap[p * MR * K:(p + 1) * MR * K]
        valid = min(MR, rows - p * MR)
        if valid < MR:
            panel[:] = 0
        if valid == 8 and MR == 8:  # whole panels: 8 rows at once, contiguous stores
            src = a[n0 + p * MR:n0 + p * MR + 8]
            for k in range(K):
                panel[8 * k], panel[8 * k + 1] = src[0, k], src[1, k]
                panel[8 * k + 2], panel[8 * k + 3] = src[2, k], src[3, k]
                panel[8 * k + 4], panel[8 * k + 5] = src[4, k], src[5, k]
                panel[8 * k + 6], panel[8 * k + 7] = src[6, k], src[7, k]
            continue
        for r in range(valid):
            src = a[n0 + p * MR + r]
            dst = panel[r:]
            for k in range(K):
                dst[k * MR] = src[k]


@serial_kernel
def times_packed(out, ap, bp, rows, add):
    # out[r*C + c] (+)= sum_k A[r, k] B[k, c] for r < rows rounded up to MR: A packed
    # by pack_rows, B (K, C) packed as bp (C/NR, K, NR) by pack_panels; out is (rows_p, C).
    Q, K, NR = bp.shape
    C = Q * NR
    for q in range(Q):
        for p in range((rows + MR - 1) // MR):
            micro(out, p * MR * C + q * NR, C, ap, p * MR * K, bp, q * K * NR, K, add)


@serial_kernel
def times_packed_row(out, o_off, a, bp, add):
    # out[o_off + c] (+)= sum_k a[k] B[k, c] for the Q*NR columns of B packed as bp
    # (Q, K, NR): one row, unpadded, its sums as times_packed's (same order over k).
    Q, K, NR = bp.shape
    q = 0
    while q + ROW_PANELS <= Q:
        micro_row(out, o_off + q * NR, a, 0, bp, q * K * NR, K * NR, K, add)
        q += ROW_PANELS
    for p in range(q, Q):
        micro_row1(out, o_off + p * NR, a, 0, bp, p * K * NR, K * NR, K, add)


@serial_kernel
def times_packed_rows(out, ap, a, n0, rows, bp, add):
    # out[r*C + c] (+)= sum_k a[n0 + r, k] B[k, c] for r < rows (B packed as bp; C its
    # padded width; out holds rows rounded up to MR): row by row for a few rows, else
    # in MR-row panels (packed into ap).
    # The same sums either way, so a row's result does not depend on the rows around it.
    if rows <= ROWS_ALONE:
        C = bp.shape[0] * bp.shape[2]
        for r in range(rows):
            times_packed_row(out, r * C, a[n0 + r], bp, add)
        return
    pack_rows(ap, a, n0, rows)
    times_packed(out, ap, bp, rows, add)


@serial_kernel
def times_rows(out, ldc, a, n0, rows, w, add):
    # out[r*ldc + c] (+)= sum_k a[n0 + r, k] w[c, k] for r < rows, c < C; w (C, K).
    # For batches smaller than one MR panel: dot products, no padding to MR rows.
    C, K = w.shape
    for r in range(rows):
        src = a[n0 + r]
        o = out[r * ldc:r * ldc + C]
        for c in range(C):
            wr = w[c]
            s = out.dtype.type(0)
            for k in range(K):
                s += src[k] * wr[k]
            o[c] = o[c] + s if add else s


def panel_width(dtype):
    """Columns per packed panel (the micro-kernel's NR) for ``dtype``."""
    return NV * (64 // np.dtype(dtype).itemsize)


@serial_kernel
def pack_panels(bp, b, trans):
    """bp[q, k, j] = op(b)[k, q*NR + j], zero past op(b)'s C columns (overwrites bp).

    The micro-kernel's B operand: op(b) (K, C) is b, or b^T when ``trans``;
    bp (ceil(C/NR), K, NR) from panel_shape().
    """
    Q, K, NR = bp.shape
    C = b.shape[0] if trans else b.shape[1]
    for q in range(Q):
        cols = min(NR, C - q * NR)
        panel = bp[q]
        if cols < NR:
            panel[:, :] = 0
        for k in range(K if not trans else 0):
            src = b[k, q * NR:q * NR + cols]
            dst = panel[k]
            for j in range(cols):
                dst[j] = src[j]
        for j in range(cols if trans else 0):
            src = b[q * NR + j]
            for k in range(K):
                panel[k, j] = src[k]


def panel_shape(K, C, dtype):
    """The shape of pack_panels' output for an op(b) of K x C."""
    NR = panel_width(dtype)
    return ((C + NR - 1) // NR, K, NR)


def chunking(N, threads):
    """(rows per chunk, number of chunks): whole MR-row panels split over the threads."""
    panels = (N + MR - 1) // MR
    per = (panels + threads - 1) // threads
    chunk = per * MR
    return chunk, (N + chunk - 1) // chunk
