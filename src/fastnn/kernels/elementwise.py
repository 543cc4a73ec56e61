"""Small elementwise and reduction kernels shared by several layers."""
from numba import prange

from ._jit import SERIAL_BELOW, kernel

# Reductions split their input into chunks of this many elements; the split does
# not depend on the thread count, so sums are bitwise reproducible.
CHUNK = 4096


@kernel
def add(out, a, b):
    """out = a + b on flat arrays (overwrites; out may alias a or b)."""
    n = out.shape[0]
    if n < SERIAL_BELOW:
        for i in range(n):
            out[i] = a[i] + b[i]
    else:
        for i in prange(n):
            out[i] = a[i] + b[i]


@kernel
def column_sum(out, x, accumulate):
    """out[j] (+)= sum_i x[i, j]. x (M, N). Parallel over 64-column blocks (each
    iteration owns its columns); rows summed in order, so results are exact
    across thread counts."""
    M, N = x.shape
    blocks = (N + 63) // 64
    if M * N < SERIAL_BELOW:
        for j in range(N):
            if not accumulate:
                out[j] = 0
        for i in range(M):
            for j in range(N):
                out[j] += x[i, j]
        return
    for b in prange(blocks):
        j0 = b * 64
        j1 = min(j0 + 64, N)
        if not accumulate:
            for j in range(j0, j1):
                out[j] = 0
        for i in range(M):
            for j in range(j0, j1):
                out[j] += x[i, j]


@kernel
def dropout_forward(out, mask, x, uniform, p):
    """mask[i] = (uniform[i] >= p) / (1 - p); out[i] = x[i] * mask[i] (overwrites both)."""
    n = x.shape[0]
    scale = 1 / (1 - p)
    for i in prange(n):
        keep = scale if uniform[i] >= p else 0 * scale
        mask[i] = keep
        out[i] = x[i] * keep


@kernel
def multiply(out, a, b):
    """out = a * b on flat arrays (overwrites)."""
    n = out.shape[0]
    if n < SERIAL_BELOW:
        for i in range(n):
            out[i] = a[i] * b[i]
    else:
        for i in prange(n):
            out[i] = a[i] * b[i]
