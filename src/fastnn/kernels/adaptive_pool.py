"""Adaptive max pooling on planes: x (P, H, W) -> out (P, OH, OW), float32/float64.

Output (oh, ow) takes the maximum over PyTorch's adaptive window: input rows
floor(oh * H / OH) .. ceil((oh + 1) * H / OH) - 1, columns alike (windows may
overlap, and may repeat rows when OH > H). The backward is ``pool.max_pool_backward``
(a scatter through the flat indices written here). Parallel over planes: each
iteration owns its plane, so results do not depend on the thread count.
"""
from numba import prange

from ._jit import kernel


@kernel
def adaptive_max_forward(out, argmax, x, with_index):
    """out[p, oh, ow] = max of x[p] over the adaptive window (overwritten); with
    with_index, argmax[p, oh, ow] = ih * W + iw of the first element equal to it (or
    the first NaN, which wins), as ``max_pool_forward`` picks; argmax is not touched
    otherwise (any 3-D int32 array)."""
    planes, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    for p in prange(planes):
        for oh in range(OH):
            h0 = (oh * H) // OH
            h1 = ((oh + 1) * H + OH - 1) // OH
            for ow in range(OW):
                w0 = (ow * W) // OW
                w1 = ((ow + 1) * W + OW - 1) // OW
                best = x[p, h0, w0]
                where = h0 * W + w0
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        v = x[p, ih, iw]
                        if (v > best) | ((v != v) & (best == best)):  # noqa: PLR0124 (NaN tests)
                            best = v
                            where = ih * W + iw
                out[p, oh, ow] = best
                if with_index:
                    argmax[p, oh, ow] = where
