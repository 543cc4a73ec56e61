"""Small elementwise and reduction kernels shared by several layers."""
import numpy as np
from numba import prange

from ._jit import BLOCK, SERIAL_BELOW, inline, kernel, noalias_kernel, serial_kernel

# Reductions split their input into chunks of this many elements; the split does
# not depend on the thread count, so sums are bitwise reproducible.
CHUNK = 4096


@inline
def copy_run(dst, i, src, j, n):
    # dst[i:i + n] = src[j:j + n] on 1-D arrays, inside a kernel. A loop, not a slice
    # assignment: Numba links its shape-mismatch error (string formatting and unicode
    # helpers, ~0.8 s of compile) into every kernel that assigns an array to a slice.
    for k in range(n):
        dst[i + k] = src[j + k]


@serial_kernel
def _add_range(out, a, b, lo, hi):
    # out[lo:hi] = a[lo:hi] + b[lo:hi]. From 0 over views: vectorises (see
    # activations._forward_range); in place (out is a, or out is b: a + b is b + a, NaN
    # payloads aside) a loop of its own: LLVM's run-time overlap check would send it to a
    # scalar loop (3x slower). A kernel called by both of add's branches: its three
    # loops compile once, not twice in add (add's compile CPU 1.17 -> 0.84 s).
    out, a, b = out[lo:hi], a[lo:hi], b[lo:hi]
    if out.ctypes.data == a.ctypes.data:
        for i in range(out.shape[0]):
            out[i] += b[i]
        return
    if out.ctypes.data == b.ctypes.data:
        for i in range(out.shape[0]):
            out[i] += a[i]
        return
    for i in range(out.shape[0]):
        out[i] = a[i] + b[i]


@kernel
def add(out, a, b):
    """out = a + b on flat arrays (overwrites; out may alias a or b)."""
    n = out.shape[0]
    if n < SERIAL_BELOW:
        _add_range(out, a, b, n - n, n)  # (n - n: a variable 0, one compile of the callee)
    else:
        for blk in prange((n + BLOCK - 1) // BLOCK):  # fixed blocks: see _jit.BLOCK
            i = np.int64(blk)  # (the prange index is unsigned: one compile of the callee)
            _add_range(out, a, b, i * BLOCK, min(n, (i + 1) * BLOCK))


@noalias_kernel
def _sum_rows(out, x, r0, r1, accumulate):
    # out[:] (+)= sum of rows r0..r1 of x, added in order (whole rows: vectorises). The
    # one compiled body of column_sum's three calls (out never overlaps x).
    if not accumulate:
        for j in range(out.shape[0]):  # a loop, not out[:] = 0: in a parallel kernel that is a parfor
            out[j] = 0
    for i in range(r0, r1):
        row = x[i]
        for j in range(out.shape[0]):
            out[j] += row[j]


@kernel
def column_sum(out, x, accumulate):
    """out[j] (+)= sum_i x[i, j] (the bias gradient). x (M, N).

    Memory-bound: on two cores a parallel split loses to one thread streaming whole
    rows (measured up to 3M elements), so only inputs of 4M+ elements split the rows into a
    number of chunks that depends only on M (never on the thread count), sum each
    chunk in parallel into its own partial row, then add the partials in order:
    the same result at any thread count.
    """
    M, N = x.shape
    if M * N < (1 << 22) or M < 512:
        _sum_rows(out, x, M - M, M, accumulate)  # (M - M: a variable 0, one compile of the callee)
        return
    chunks = min(64, M // 256)
    partial = np.empty((chunks, N), x.dtype)
    for ci in prange(chunks):
        c = np.int64(ci)  # (the prange index is unsigned: one compile of the callee)
        _sum_rows(partial[c], x, c * M // chunks, (c + 1) * M // chunks, False)
    _sum_rows(out, partial, M - M, chunks, accumulate)


@inline
def _dropout_views(out, mask, x, uniform, p, scale):
    for i in range(x.shape[0]):
        keep = scale if uniform[i] >= p else 0 * scale
        mask[i] = keep
        out[i] = x[i] * keep


@kernel
def dropout_forward(out, mask, x, uniform, p):
    """mask[i] = (uniform[i] >= p) / (1 - p); out[i] = x[i] * mask[i] (overwrites both)."""
    n = x.shape[0]
    scale = 1 / (1 - p)
    for blk in prange((n + BLOCK - 1) // BLOCK):  # fixed blocks: see _jit.BLOCK
        lo, hi = blk * BLOCK, min(n, (blk + 1) * BLOCK)
        _dropout_views(out[lo:hi], mask[lo:hi], x[lo:hi], uniform[lo:hi], p, scale)


@inline
def _multiply_views(out, a, b):
    for i in range(out.shape[0]):
        out[i] = a[i] * b[i]


@kernel
def multiply(out, a, b):
    """out = a * b on flat arrays (overwrites)."""
    n = out.shape[0]
    if n < SERIAL_BELOW:
        _multiply_views(out, a, b)
    else:
        for blk in prange((n + BLOCK - 1) // BLOCK):  # fixed blocks: see _jit.BLOCK
            lo, hi = blk * BLOCK, min(n, (blk + 1) * BLOCK)
            _multiply_views(out[lo:hi], a[lo:hi], b[lo:hi])
