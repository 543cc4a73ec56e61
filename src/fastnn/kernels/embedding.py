"""Embedding lookup (a row gather) and its gradient (a race-free scatter-add)."""
from numba import prange

from ._jit import SERIAL_BELOW, kernel, serial_kernel

# The gradient's rows are split into this many blocks, one per parallel iteration.
# The sum for each row runs in index order whatever the split, so results do not
# depend on the thread count.
ROW_BLOCKS = 16


@kernel
def embedding_forward(out, weight, idx):
    """out[i, :] = weight[idx[i], :] (overwrites). idx (M,) int64, already range-checked.

    out (M, D), weight (V, D). Parallel over the M output rows.
    """
    M = idx.shape[0]
    D = weight.shape[1]
    if M * D < SERIAL_BELOW:
        for i in range(M):
            out[i, :] = weight[idx[i], :]
    else:
        for i in prange(M):
            out[i, :] = weight[idx[i], :]


@serial_kernel
def _scatter_rows(dweight, dout, idx, padding_idx, accumulate, r0, r1):
    # dweight[r0:r1] (+)= the rows of dout whose index falls in [r0, r1), in index order.
    if not accumulate:
        dweight[r0:r1, :] = 0
    for i in range(idx.shape[0]):
        r = idx[i]
        if r >= r0 and r < r1 and r != padding_idx:
            row = dweight[r]
            src = dout[i]
            for j in range(row.shape[0]):
                row[j] += src[j]


@kernel
def embedding_backward(dweight, dout, idx, padding_idx, accumulate):
    """dweight[idx[i], :] += dout[i, :] for every i with idx[i] != padding_idx.

    dweight (V, D) is zeroed first unless ``accumulate``; dout (M, D); padding_idx -1
    for none. Parallel over blocks of dweight's rows: each iteration scans all of idx
    and adds only into the rows it owns, so no two threads ever add to one row.
    """
    V, D = dweight.shape
    M = idx.shape[0]
    if M * D < SERIAL_BELOW:  # (M - M: a variable 0, so both calls share one compile)
        _scatter_rows(dweight, dout, idx, padding_idx, accumulate, M - M, V)
        return
    blocks = min(ROW_BLOCKS, V)
    per = (V + blocks - 1) // blocks
    for b in prange(blocks):
        _scatter_rows(dweight, dout, idx, padding_idx, accumulate, b * per, min(b * per + per, V))
