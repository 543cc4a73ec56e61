"""2-D pooling kernels on planes: x (N*C, H, W) -> out (N*C, OH, OW), float32/float64.

``geom`` is the int tuple ``(KH, KW, SH, SW, PH, PW, DH, DW)``. Windows are clipped
to the input, so ``ceil_mode`` output sizes need nothing special here. Every
kernel is parallel over planes: an iteration owns its plane of the output (and of
dx in backward, where it adds in a fixed order), so results do not depend on the
thread count. The ``_serial`` variants run the same per-plane code on the calling
thread, for inputs too small to pay for a parallel launch.
"""
import math

import numpy as np
from numba import prange

from ._jit import RUNS, inline, kernel, noalias_kernel, serial_kernel
from .im2col import valid_range


@inline
def _ranges(KW, DW, PW, SW, W, OW):
    # per window column kw: the outputs [lo, hi) whose column kw lies in the input
    los = np.empty(KW, np.int64)
    his = np.empty(KW, np.int64)
    for kw in range(KW):
        los[kw], his[kw] = valid_range(kw * DW - PW, SW, W, OW)
    return los, his


@serial_kernel
def _max_plane(out, argmax, xf, H, W, geom, los, his, with_index):
    # one plane: out (OH, OW) = window maxima of xf (the flat H*W input plane); with
    # with_index, argmax (OH, OW) = their flat indices (see max_pool_forward). A
    # kernel of its own (not inlined): compiled once for both max_pool_forward variants
    KH, KW, SH, SW, PH, PW, DH, DW = geom
    OH, OW = out.shape
    for oh in range(OH):
        best = out[oh]
        for ow in range(OW):
            best[ow] = -math.inf
        for kh in range(KH):
            ih = oh * SH - PH + kh * DH
            for kw in range(KW if 0 <= ih < H else 0):
                off = kw * DW - PW
                lo, hi = los[kw], his[kw]
                src = xf[ih * W + lo * SW + off:]
                b = best[lo:hi]
                for i in range(hi - lo):
                    v = src[i * SW]
                    b[i] = v if (v > b[i]) | (v != v) else b[i]  # noqa: PLR0124 (NaN test)
        if not with_index:
            continue
        where = argmax[oh]
        for ow in range(OW):
            where[ow] = 0
        for kh in range(KH - 1, -1, -1):
            ih = oh * SH - PH + kh * DH
            for kw in range(KW - 1 if 0 <= ih < H else -1, -1, -1):
                off = kw * DW - PW
                lo, hi = los[kw], his[kw]
                src = xf[ih * W + lo * SW + off:]
                b = best[lo:hi]
                wv = where[lo:hi]
                base = ih * W + lo * SW + off
                for i in range(hi - lo):
                    v = src[i * SW]
                    hit = np.int32((v == b[i]) | (v != v))  # noqa: PLR0124 (arithmetic, not a branch)
                    wv[i] = wv[i] + hit * (np.int32(base + i * SW) - wv[i])


@kernel
def max_pool_forward(out, argmax, x, geom, with_index):
    """out[p, oh, ow] = max over the window of x[p] (overwritten); with_index:
    argmax[p, oh, ow] = ih * W + iw of the first element equal to it (or the first
    NaN, which wins), as PyTorch picks. Two branch-free sweeps of the window offsets
    over whole output rows: maxima forward, then indices in reverse order."""
    KW, SW, PW, DW = geom[1], geom[3], geom[5], geom[7]
    planes, H, W = x.shape
    los, his = _ranges(KW, DW, PW, SW, W, out.shape[2])
    for p in prange(planes):
        where = argmax[p] if with_index else argmax[0]
        _max_plane(out[p], where, x[p].reshape(-1), H, W, geom, los, his, with_index)


@serial_kernel
def max_pool_forward_serial(out, argmax, x, geom, with_index):
    """:func:`max_pool_forward` on the calling thread, for small inputs (the same
    result: each plane's work is the same code). out, x (N, C, H, W) and argmax
    (N, C, OH, OW), or any 4-D array when not with_index: no reshapes in Python."""
    KW, SW, PW, DW = geom[1], geom[3], geom[5], geom[7]
    N, C, H, W = x.shape
    los, his = _ranges(KW, DW, PW, SW, W, out.shape[3])
    for n in range(N):
        for c in range(C):
            _max_plane(out[n, c], argmax[n, c] if with_index else argmax[0, 0], x[n, c].reshape(-1),
                       H, W, geom, los, his, with_index)


@noalias_kernel
def _scatter_planes(dx, dout, argmax, p0, p1):
    # planes p0..p1 of dx (planes, H, W): zeros, then dx[p].flat[argmax[p, o]] +=
    # dout[p, o] in order. The one compiled body of both max_pool_backward kernels.
    for p in range(p0, p1):
        dxp, g, idx = dx[p].reshape(-1), dout[p].reshape(-1), argmax[p].reshape(-1)
        for i in range(dxp.shape[0]):
            dxp[i] = 0
        for o in range(g.shape[0]):
            dxp[idx[o]] += g[o]


@kernel
def max_pool_backward(dx, dout, argmax):
    """dx[p] = sum of dout[p, o] scattered to argmax[p, o] (overwritten). dx (planes,
    H, W), dout and argmax (planes, OH, OW)."""
    planes = dx.shape[0]
    runs = min(planes, RUNS)
    for q in prange(runs):
        r = np.int64(q)  # (the prange index is unsigned: one compile of the callee)
        _scatter_planes(dx, dout, argmax, r * planes // runs, (r + 1) * planes // runs)


@serial_kernel
def max_pool_backward_serial(dx, dout, argmax):
    """:func:`max_pool_backward` on the calling thread, for small inputs (the same
    per-plane code). dx (N, C, H, W), dout and argmax (N, C, OH, OW)."""
    N, C, H, W = dx.shape
    OH, OW = dout.shape[2], dout.shape[3]
    _scatter_planes(dx.reshape((N * C, H, W)), dout.reshape((N * C, OH, OW)), argmax.reshape((N * C, OH, OW)),
                    N - N, N * C)


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


@serial_kernel
def _avg_plane(out, x, geom, adaptive, include_pad, los, his):
    # one plane: out (OH, OW) = window means of x (H, W); see avg_pool_forward. A
    # kernel of its own (not inlined): compiled once for both avg_pool_forward variants
    KH, KW, SH, SW, PH, PW = geom[0], geom[1], geom[2], geom[3], geom[4], geom[5]
    H, W = x.shape
    OH, OW = out.shape
    for oh in range(OH):
        h0, h1, hspan = _window(oh, H, OH, KH, SH, PH, adaptive)
        acc = out[oh]
        if adaptive:
            for ow in range(OW):
                w0, w1, wspan = _window(ow, W, OW, KW, SW, PW, adaptive)
                s = x.dtype.type(0)
                if w0 == 0 and w1 == W:  # whole rows: one contiguous run
                    run = x.reshape(-1)[h0 * W:h1 * W]
                    for i in range(run.shape[0]):
                        s += run[i]
                for ih in range(h0, h1 if w1 - w0 < W else h0):
                    xrow = x[ih, w0:w1]
                    for i in range(w1 - w0):
                        s += xrow[i]
                acc[ow] = s / ((h1 - h0) * (w1 - w0))
            continue
        for ow in range(OW):
            acc[ow] = 0
        for ih in range(h0, h1):
            xrow = x[ih]
            for kw in range(KW):
                off = kw - PW
                for ow in range(los[kw], his[kw]):
                    acc[ow] += xrow[ow * SW + off]
        for ow in range(OW):
            w0, w1, wspan = _window(ow, W, OW, KW, SW, PW, adaptive)
            acc[ow] /= hspan * wspan if include_pad else (h1 - h0) * (w1 - w0)


@kernel
def avg_pool_forward(out, x, geom, adaptive, include_pad):
    """out[p, oh, ow] = mean of x[p] over the window (overwritten). Fixed windows
    from geom (KH, KW, SH, SW, PH, PW), or PyTorch's adaptive windows; the divisor
    counts padding when include_pad (count_include_pad). Fixed windows sum whole
    rows per window offset (vectorised along ow)."""
    los, his = _ranges(geom[1], 1, geom[5], geom[3], x.shape[2], out.shape[2])
    for p in prange(x.shape[0]):
        _avg_plane(out[p], x[p], geom, adaptive, include_pad, los, his)


@serial_kernel
def avg_pool_forward_serial(out, x, geom, adaptive, include_pad):
    """:func:`avg_pool_forward` on the calling thread, for small inputs (the same
    result: each plane's work is the same code). out, x (N, C, H, W)."""
    los, his = _ranges(geom[1], 1, geom[5], geom[3], x.shape[3], out.shape[3])
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            _avg_plane(out[n, c], x[n, c], geom, adaptive, include_pad, los, his)


@kernel
def avg_pool_backward(dx, dout, geom, adaptive, include_pad):
    """dx[p] = each dout[p, o] / divisor spread over its window (overwritten)."""
    planes = dx.shape[0]
    runs = min(planes, RUNS)
    for q in prange(runs):
        r = np.int64(q)  # (the prange index is unsigned: one compile of the callee)
        _avg_backward_planes(dx, dout, geom, adaptive, include_pad, r * planes // runs, (r + 1) * planes // runs)


@noalias_kernel
def _avg_backward_planes(dx, dout, geom, adaptive, include_pad, p0, p1):
    # planes p0..p1 of avg_pool_backward (a kernel of its own: compiled inside the
    # parallel loop, these loops cost 0.5 CPU s more)
    KH, KW, SH, SW, PH, PW = geom[0], geom[1], geom[2], geom[3], geom[4], geom[5]
    H, W = dx.shape[1], dx.shape[2]
    OH, OW = dout.shape[1], dout.shape[2]
    for p in range(p0, p1):
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


# Windows that tile the plane: kernel == stride, no padding, dilation 1, every window
# inside the input (trailing rows/columns that fit no window are skipped). The loop
# over ow runs innermost from 0, so the 2-wide case vectorises (interleaved loads);
# arrays are indexed in 4-D, with no per-row views (each view costs an atomic
# reference count, which threads would contend on). The update rule is
# max_pool_forward's, in its order (kh, then kw): b = v when v > b or v is NaN;
# starting from -inf that makes the first element the start value. Its index moves
# with b except once b is NaN, which gives max_pool_forward's "first element equal
# to the maximum, or the first NaN".


@inline
def _tiled_plane(out, argmax, x, n, c, KH, KW, with_index):
    # plane (n, c): out, argmax (.., OH, OW) from x (.., H, W); argmax is only
    # written with_index. See max_pool_tiled_forward.
    OH, OW = out.shape[2], out.shape[3]
    W = x.shape[3]
    if KH == 2 and KW == 2:  # the common 2x2: both rows in one sweep
        for oh in range(OH):
            ih = 2 * oh
            for ow in range(OW):
                v0 = x[n, c, ih, 2 * ow]
                v1 = x[n, c, ih, 2 * ow + 1]
                v2 = x[n, c, ih + 1, 2 * ow]
                v3 = x[n, c, ih + 1, 2 * ow + 1]
                c1 = (v1 > v0) | (v1 != v1)  # noqa: PLR0124 (NaN test)
                b1 = v1 if c1 else v0
                c2 = (v2 > b1) | (v2 != v2)  # noqa: PLR0124
                b2 = v2 if c2 else b1
                c3 = (v3 > b2) | (v3 != v3)  # noqa: PLR0124
                out[n, c, oh, ow] = v3 if c3 else b2
                if with_index:
                    i = ih * W + 2 * ow
                    i = i + 1 if c1 & (v0 == v0) else i  # noqa: PLR0124
                    i = (ih + 1) * W + 2 * ow if c2 & (b1 == b1) else i  # noqa: PLR0124
                    i = (ih + 1) * W + 2 * ow + 1 if c3 & (b2 == b2) else i  # noqa: PLR0124
                    argmax[n, c, oh, ow] = np.int32(i)
        return
    for oh in range(OH):
        for ow in range(OW):
            ih = oh * KH
            iw = ow * KW
            b = x[n, c, ih, iw]
            i = ih * W + iw
            for kh in range(KH):
                for kw in range(1 if kh == 0 else 0, KW):
                    v = x[n, c, ih + kh, iw + kw]
                    take = (v > b) | (v != v)  # noqa: PLR0124
                    if with_index and take & (b == b):  # noqa: PLR0124
                        i = (ih + kh) * W + iw + kw
                    b = v if take else b
            out[n, c, oh, ow] = b
            if with_index:
                argmax[n, c, oh, ow] = np.int32(i)


@kernel
def max_pool_tiled_forward(out, argmax, x, KH, KW, with_index):
    """:func:`max_pool_forward` (the same values and indices) for windows that tile
    the plane: kernel (KH, KW) == stride, no padding, dilation 1, OH * KH <= H and
    OW * KW <= W. out, x (N, C, H, W); argmax (N, C, OH, OW), or any 4-D int32
    array when not with_index. Parallel over planes."""
    planes = x.shape[0] * x.shape[1]
    runs = min(planes, RUNS)
    for p in prange(runs):
        q = np.int64(p)  # (the prange index is unsigned: one compile of the callee)
        _tiled_planes(out, argmax, x, q * planes // runs, (q + 1) * planes // runs, KH, KW, with_index)


@noalias_kernel
def _tiled_planes(out, argmax, x, p0, p1, KH, KW, with_index):
    # planes p0..p1 (plane p = n * C + c) of max_pool_tiled_forward: the one compiled
    # body of both kernels, which call it (inlined in both, the plane's loops were most
    # of their compile time: in the cnn demo 1.86 + 0.74 -> 0.33 + 0.07 + 0.68 CPU s).
    # out, argmax and x never overlap (noalias_kernel: the loops vectorise as they did
    # inlined in the parallel loop; without it the big layers ran up to 1.4x slower).
    C = x.shape[1]
    for p in range(p0, p1):
        _tiled_plane(out, argmax, x, p // C, p % C, KH, KW, with_index)


@serial_kernel
def max_pool_tiled_forward_serial(out, argmax, x, KH, KW, with_index):
    """:func:`max_pool_tiled_forward` on the calling thread, for small inputs."""
    planes = x.shape[0] * x.shape[1]
    _tiled_planes(out, argmax, x, planes - planes, planes, KH, KW, with_index)
