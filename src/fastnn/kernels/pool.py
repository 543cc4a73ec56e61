"""2-D pooling kernels on planes: x (N*C, H, W) -> out (N*C, OH, OW), float32/float64.

``geom`` is the int tuple ``(KH, KW, SH, SW, PH, PW, DH, DW)``. Windows are clipped
to the input, so ``ceil_mode`` output sizes need nothing special here. Every
kernel is parallel over planes: an iteration owns its plane of the output (and of
dx in backward, where it adds in a fixed order), so results do not depend on the
thread count.
"""
import math

from numba import prange

from ._jit import inline, kernel


@kernel
def max_pool_forward(out, argmax, x, geom):
    """out[p, oh, ow] = max over the window of x[p]; argmax = ih * W + iw of that
    element (both overwritten). Ties keep the first; a NaN wins (the last one),
    as in PyTorch."""
    KH, KW, SH, SW, PH, PW, DH, DW = geom
    planes, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    for p in prange(planes):
        for oh in range(OH):
            h0 = oh * SH - PH
            for ow in range(OW):
                w0 = ow * SW - PW
                best = -math.inf
                where = -1
                for kh in range(KH):
                    ih = h0 + kh * DH
                    if ih < 0 or ih >= H:
                        continue
                    for kw in range(KW):
                        iw = w0 + kw * DW
                        if iw < 0 or iw >= W:
                            continue
                        v = x[p, ih, iw]
                        if where < 0 or v > best or math.isnan(v):
                            best = v
                            where = ih * W + iw
                out[p, oh, ow] = best
                argmax[p, oh, ow] = where


@kernel
def max_pool_backward(dx, dout, argmax):
    """dx[p] = sum of dout[p, o] scattered to argmax[p, o] (overwritten)."""
    planes, H, W = dx.shape
    OH, OW = dout.shape[1], dout.shape[2]
    for p in prange(planes):
        for ih in range(H):
            for iw in range(W):
                dx[p, ih, iw] = 0
        for oh in range(OH):
            for ow in range(OW):
                i = argmax[p, oh, ow]
                dx[p, i // W, i % W] += dout[p, oh, ow]


@inline
def _window(o, size, out_size, k, s, pad, adaptive):
    # (start, end, span) of output o's window along one axis, clipped to the input;
    # span is the unclipped length counted by count_include_pad (PyTorch's rule)
    if adaptive:
        start = (o * size) // out_size
        end = ((o + 1) * size + out_size - 1) // out_size
        return start, end, end - start
    start = o * s - pad
    end = min(start + k, size + pad)
    span = end - start
    return max(start, 0), min(end, size), span


@kernel
def avg_pool_forward(out, x, geom, adaptive, include_pad):
    """out[p, oh, ow] = mean of x[p] over the window (overwritten). Fixed windows
    from geom (KH, KW, SH, SW, PH, PW), or PyTorch's adaptive windows; the divisor
    counts padding when include_pad (count_include_pad)."""
    KH, KW, SH, SW, PH, PW = geom[0], geom[1], geom[2], geom[3], geom[4], geom[5]
    planes, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    for p in prange(planes):
        for oh in range(OH):
            h0, h1, hspan = _window(oh, H, OH, KH, SH, PH, adaptive)
            for ow in range(OW):
                w0, w1, wspan = _window(ow, W, OW, KW, SW, PW, adaptive)
                s = x.dtype.type(0)
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        s += x[p, ih, iw]
                count = hspan * wspan if include_pad else (h1 - h0) * (w1 - w0)
                out[p, oh, ow] = s / count


@kernel
def avg_pool_backward(dx, dout, geom, adaptive, include_pad):
    """dx[p] = each dout[p, o] / divisor spread over its window (overwritten)."""
    KH, KW, SH, SW, PH, PW = geom[0], geom[1], geom[2], geom[3], geom[4], geom[5]
    planes, H, W = dx.shape
    OH, OW = dout.shape[1], dout.shape[2]
    for p in prange(planes):
        for ih in range(H):
            for iw in range(W):
                dx[p, ih, iw] = 0
        for oh in range(OH):
            h0, h1, hspan = _window(oh, H, OH, KH, SH, PH, adaptive)
            for ow in range(OW):
                w0, w1, wspan = _window(ow, W, OW, KW, SW, PW, adaptive)
                count = hspan * wspan if include_pad else (h1 - h0) * (w1 - w0)
                g = dout[p, oh, ow] / count
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        dx[p, ih, iw] += g
