"""Matrix multiply kernels (float32/float64), the engine under Linear, conv and RNNs.

The core is ``gemm_nt``: ``out[M,N] (+)= a[M,K] @ bt[N,K]^T`` with both operands
row-major along K, so every inner product reads two contiguous rows. Its 4x4
register block keeps 16 running sums that LLVM vectorises along K; tiles of
64x64 outputs are split over threads, each tile walks K in cache-sized blocks.
Other transposes are packed into row-major-along-K order first (``transpose``).
"""
import numpy as np
from numba import prange

from ._jit import inline, kernel

TILE_M = 64
TILE_N = 64
BLOCK_K = 256
# Below this many multiply-adds a single thread is faster than a parallel launch.
SERIAL_FLOPS = 1 << 18


@inline
def _block4x4(out, a, bt, i, j, k0, k1, first):
    # out[i:i+4, j:j+4] (+)= a[i:i+4, k0:k1] @ bt[j:j+4, k0:k1]^T
    s00 = s01 = s02 = s03 = a.dtype.type(0)
    s10 = s11 = s12 = s13 = a.dtype.type(0)
    s20 = s21 = s22 = s23 = a.dtype.type(0)
    s30 = s31 = s32 = s33 = a.dtype.type(0)
    for k in range(k0, k1):
        a0 = a[i, k]
        a1 = a[i + 1, k]
        a2 = a[i + 2, k]
        a3 = a[i + 3, k]
        b0 = bt[j, k]
        b1 = bt[j + 1, k]
        b2 = bt[j + 2, k]
        b3 = bt[j + 3, k]
        s00 += a0 * b0
        s01 += a0 * b1
        s02 += a0 * b2
        s03 += a0 * b3
        s10 += a1 * b0
        s11 += a1 * b1
        s12 += a1 * b2
        s13 += a1 * b3
        s20 += a2 * b0
        s21 += a2 * b1
        s22 += a2 * b2
        s23 += a2 * b3
        s30 += a3 * b0
        s31 += a3 * b1
        s32 += a3 * b2
        s33 += a3 * b3
    if first:
        out[i, j] = s00
        out[i, j + 1] = s01
        out[i, j + 2] = s02
        out[i, j + 3] = s03
        out[i + 1, j] = s10
        out[i + 1, j + 1] = s11
        out[i + 1, j + 2] = s12
        out[i + 1, j + 3] = s13
        out[i + 2, j] = s20
        out[i + 2, j + 1] = s21
        out[i + 2, j + 2] = s22
        out[i + 2, j + 3] = s23
        out[i + 3, j] = s30
        out[i + 3, j + 1] = s31
        out[i + 3, j + 2] = s32
        out[i + 3, j + 3] = s33
    else:
        out[i, j] += s00
        out[i, j + 1] += s01
        out[i, j + 2] += s02
        out[i, j + 3] += s03
        out[i + 1, j] += s10
        out[i + 1, j + 1] += s11
        out[i + 1, j + 2] += s12
        out[i + 1, j + 3] += s13
        out[i + 2, j] += s20
        out[i + 2, j + 1] += s21
        out[i + 2, j + 2] += s22
        out[i + 2, j + 3] += s23
        out[i + 3, j] += s30
        out[i + 3, j + 1] += s31
        out[i + 3, j + 2] += s32
        out[i + 3, j + 3] += s33


@inline
def _block1x1(out, a, bt, i, j, k0, k1, first):
    s = a.dtype.type(0)
    for k in range(k0, k1):
        s += a[i, k] * bt[j, k]
    if first:
        out[i, j] = s
    else:
        out[i, j] += s


@inline
def _tile(out, a, bt, i0, i1, j0, j1, accumulate):
    # All of K for the output tile out[i0:i1, j0:j1], in BLOCK_K slices.
    K = a.shape[1]
    i4 = i0 + (i1 - i0) // 4 * 4
    j4 = j0 + (j1 - j0) // 4 * 4
    for k0 in range(0, max(K, 1), BLOCK_K):
        k1 = min(k0 + BLOCK_K, K)
        first = k0 == 0 and not accumulate
        for i in range(i0, i4, 4):
            for j in range(j0, j4, 4):
                _block4x4(out, a, bt, i, j, k0, k1, first)
            for j in range(j4, j1):
                for r in range(4):
                    _block1x1(out, a, bt, i + r, j, k0, k1, first)
        for i in range(i4, i1):
            for j in range(j0, j1):
                _block1x1(out, a, bt, i, j, k0, k1, first)


@kernel
def gemm_nt(out, a, bt, accumulate):
    """out[M,N] = a[M,K] @ bt[N,K]^T, or ``+=`` when ``accumulate``.

    All arrays C-contiguous. Parallel over 64x64 output tiles (each thread owns
    its tiles; the sum over K is serial and fixed, so results do not depend on
    the thread count). Small products run serially.
    """
    M = out.shape[0]
    N = out.shape[1]
    K = a.shape[1]
    tiles_m = (M + TILE_M - 1) // TILE_M
    tiles_n = (N + TILE_N - 1) // TILE_N
    if M * N * K < SERIAL_FLOPS or tiles_m * tiles_n == 1:
        _tile(out, a, bt, 0, M, 0, N, accumulate)
        return
    for t in prange(tiles_m * tiles_n):
        tm = t // tiles_n
        tn = t - tm * tiles_n
        i0 = tm * TILE_M
        j0 = tn * TILE_N
        _tile(out, a, bt, i0, min(i0 + TILE_M, M), j0, min(j0 + TILE_N, N), accumulate)


@kernel
def transpose(out, x):
    """out[N,M] = x[M,N]^T (overwrites out). Parallel over 32-row blocks of out."""
    M = x.shape[0]
    N = x.shape[1]
    blocks = (N + 31) // 32
    if M * N < 65536:
        for j in range(N):
            for i in range(M):
                out[j, i] = x[i, j]
        return
    for bj in prange(blocks):
        j0 = bj * 32
        j1 = min(j0 + 32, N)
        for i0 in range(0, M, 32):
            i1 = min(i0 + 32, M)
            for j in range(j0, j1):
                for i in range(i0, i1):
                    out[j, i] = x[i, j]


def matmul(out, a, b, trans_a=False, trans_b=False, accumulate=False):
    """out[M,N] (+)= op(a) @ op(b), with op(x) = x.T when the flag is set.

    The one entry point the layers and other kernels' callers use; ``a``, ``b``
    and ``out`` must be C-contiguous 2-D arrays of one float dtype. Overwrites
    ``out`` unless ``accumulate``. Not callable from inside a kernel.
    """
    lhs = a if not trans_a else _transposed(a)
    rhs_t = b if trans_b else _transposed(b)
    gemm_nt(out, lhs, rhs_t, accumulate)


def _transposed(x):
    t = np.empty((x.shape[1], x.shape[0]), dtype=x.dtype)
    transpose(t, x)
    return t
