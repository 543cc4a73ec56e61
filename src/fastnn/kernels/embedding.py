"""Embedding lookup (a row gather) and its gradient (a race-free scatter-add)."""
from numba import prange

from ._jit import SERIAL_BELOW, kernel

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


@kernel
def embedding_backward(dweight, dout, idx, padding_idx, accumulate):
    """dweight[idx[i], :] += dout[i, :] for every i with idx[i] != padding_idx.

    dweight (V, D) is zeroed first unless ``accumulate``; dout (M, D); padding_idx -1
    for none. Parallel over blocks of dweight's rows: each iteration scans all of idx
    and adds only into the rows it owns, so no two threads ever add to one row.
    """
    V, D = dweight.shape
    M = idx.shape[0]
    blocks = min(ROW_BLOCKS, V) if M * D >= SERIAL_BELOW else 1
    per = (V + blocks - 1) // blocks
    for b in prange(blocks):
        r0 = b * per
        r1 = min(r0 + per, V)
        if not accumulate:
            dweight[r0:r1, :] = 0
        for i in range(M):
            r = idx[i]
            if r >= r0 and r < r1 and r != padding_idx:
                for j in range(D):
                    dweight[r, j] += dout[i, j]
