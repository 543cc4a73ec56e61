"""Convolution with the batch in the vector lanes: many small images, few channels.

The GEMM convolution (``conv``) puts output pixels in the micro-kernel's vectors,
along the padded input rows (the wide layout), so a row of a small image computes
its padding columns too: 4 of every 14 columns on LeNet's 10 x 10 outputs. Here the
images of a block of L (one 64-byte vector: 16 float32 or 8 float64) fill the lanes
instead:

* the input is copied once per call into ``xl`` (NB, C, Hp, Wp, L), zero-padded,
  lane l of block b holding image b*L + l;
* the micro-kernel's B row for tap k = (c, kh, kw) and the output pixels (oh, ow)
  and (oh, ow + 1) is then 2L contiguous elements of ``xl``, read in place
  (``micro_offs``), against A: the weights, packed once per plan;
* its tile lands in ``yl`` (NB, OCp, OH, OWp, L), from which each work item writes
  its own output rows, adding the bias and applying the fused activation.

Nothing is padded but the output channels to whole MR tiles (as in the GEMM
convolution), the images past N in the last block and, for an odd OW, one pixel a
row. Stride 1 across (any stride down), any padding and dilation, no groups. A work
item is an output row of a block of images: its sums never depend on the thread count.
"""
import numpy as np
from numba import prange

from . import activations as act_k
from ._fnptr import call, handle
from ._jit import inline, kernel, serial_kernel
from .microkernel import KC, MR, micro_offs_rows, pack_a, transpose8

VECTOR = 64  # bytes: the images of a block (L) fill one vector


def lanes(dtype):
    """Images per block (L) for ``dtype``."""
    return VECTOR // np.dtype(dtype).itemsize


def _up(a, b):
    return -(-a // b) * b


def _tile_rows(OC):
    # output channels computed: whole MR tiles, the last one on 4, 6 or MR rows
    last = OC % MR
    return OC - last + (0 if last == 0 else 4 if last <= 4 else 6 if last <= 6 else MR)


def applies(x_shape, w_shape, out_shape, geom, dtype):
    """Whether this kernel computes the convolution (``geom`` (KH, KW, SH, SW, PH, PW,
    DH, DW, G); ``x_shape`` (N, C, H, W); ``w_shape`` (OC, C, KH, KW)), and pads
    enough less work than the wide GEMM convolution to pay for its copies in and out:
    at most 0.85 of it. Padded here: images to whole blocks, rows to pairs of pixels,
    the channels of a last tile to 4 or 6 rows; there: the padding columns of every
    row, channels to whole MR tiles. Measured on a plan, 2 threads, batch 64: LeNet's
    1 -> 6 5 x 5 on 28 x 28 (0.66 of the work) and 6 -> 16 5 x 5 on 14 x 14 (0.71)
    1.3x and 1.6x as fast, 16 -> 32 3 x 3 on 10 x 10 (0.83) 1.3x; at 0.89 and 0.94
    (3 x 3 on 16 x 16 and 32 x 32) 1.05x and 0.75x."""
    KH, KW, SH, SW, PH, PW, DH, DW, G = geom
    N, C, H, W = x_shape
    OC, OH, OW = out_shape[1:]
    L = lanes(dtype)
    if G != 1 or SW != 1 or N < L or OH < 1 or OW < 1:
        return False
    ours = _up(N, L) * OH * _up(OW, 2) * _tile_rows(OC)
    wide = N * OH * (W + 2 * PW) * _up(OC, MR)
    return 20 * ours <= 17 * wide


@serial_kernel
def _lanes_in(xf, x, i0, i1, PH, PW, dims):
    # xl[b, c, PH:PH + H, PW:PW + W] = image block b's channel c for items i = b * C + c
    # in i0..i1; xl (NB, C, Hp, Wp, L), the head of xf, whose padding (and the lanes
    # past N) stay the zeros they were made with. 8 images x 8 pixels at a time go
    # through vector shuffles (``transpose8``), the rest element by element.
    N, C, Hp, Wp, L = dims[0], dims[1], dims[2], dims[3], dims[11]
    H, W = x.shape[2], x.shape[3]
    lx = C * H * W  # x's image stride
    blocks = (W + 7) // 8 if W >= 8 else 0  # blocks of 8 pixels a row
    xs = x.reshape(-1)
    for i in range(i0, i1):
        b, c = i // C, i % C
        nl = min(L, N - b * L)
        l8 = nl // 8 * 8
        for h in range(H):
            d0 = ((b * C + c) * Hp + h + PH) * Wp * L + PW * L  # xl[b, c, h + PH, PW, 0]
            s0 = ((b * L * C + c) * H + h) * W  # x[b * L, c, h, 0]
            for l in range(0, l8, 8):
                for wb in range(blocks):  # (the last block ends the row, overlapping the one before)
                    w = min(8 * wb, W - 8)
                    transpose8(xf, d0 + w * L + l, L, xs, s0 + l * lx + w, lx)
            for l in range(nl):
                src = xs[s0 + l * lx:s0 + l * lx + W]
                dst = xf[d0 + l:]
                for w in range(W if l < l8 and W >= 8 else 0, W):
                    dst[w * L] = src[w]


@inline
def _bias_act(row, bias, has_bias, kind, slope):
    # row = act(row + bias) in place (a contiguous run: vector loops)
    if has_bias:
        for j in range(row.shape[0]):
            row[j] += bias
    act_k.activation_row(row, kind, slope)


@serial_kernel
def _lanes_rows(out, xf, yf, ap, offs, bias, has_bias, kind, slope, dims, i0, i1):
    # rows i = b * R + r of out (R = out.shape[2]) for i0 <= i < i1: the products of
    # every channel tile and pixel pair of conv output row r, or of rows 2r and 2r + 1
    # when ``pooled`` (a 2 x 2 max pool follows), into yl (flat yf); then out[n, :, r, :]
    # for the block's images, with bias and activation (and the pool). xf: xl flat (a
    # pair's second pixel may read one vector past a block's end); dims (N, C, Hp, Wp,
    # OC, OCp, OH, OW, OWp, K, SH, L, pooled)
    N, C, Hp, Wp, OC, OCp, OH, OW, OWp, K, SH, L, pooled = dims
    R, RW = out.shape[2], out.shape[3]  # out's rows and row width
    ldc = OH * OWp * L
    lo = OC * R * RW  # out's image stride
    of = out.reshape(-1)
    for i in range(i0, i1):
        b = i // R
        r = i - b * R
        oh0 = 2 * r if pooled else r
        for oh in range(oh0, oh0 + 1 + pooled):
            x0 = (b * C * Hp + oh * SH) * Wp * L
            y0 = (b * OCp * OH + oh) * OWp * L
            for ow in range(0, OW, 2):
                for p in range(OCp // MR):
                    c_off = y0 + p * MR * ldc + ow * L
                    for k0 in range(0, K, KC):  # (the last tile's rows on as few as compute them)
                        kc = min(KC, K - k0)
                        micro_offs_rows(OC - p * MR, yf, c_off, ldc, ap, OCp * k0 + p * MR * kc, xf, x0 + ow * L,
                                        offs, k0, kc, k0 > 0)
        nl = min(L, N - b * L)  # images in the block
        l8 = nl // 8 * 8
        blocks = (RW + 7) // 8 if RW >= 8 else 0  # blocks of 8 pixels a row
        y0 = (b * OCp * OH + oh0) * OWp * L
        for oc in range(OC):
            # the channel's row of the block, (OW, L) lane-major: bias and activation
            # on it as it is (contiguous: vector loops), the pool into its head, then
            # transposed into out
            row = yf[y0 + oc * ldc:y0 + oc * ldc + OW * L]
            # (the row, and the one below when pooled, padding pixel included: one call)
            both = yf[y0 + oc * ldc:y0 + oc * ldc + (OWp * pooled + OW) * L]
            _bias_act(both, bias[oc] if has_bias else row[0], has_bias, kind, slope)
            if pooled:
                below = yf[y0 + oc * ldc + OWp * L:y0 + oc * ldc + OWp * L + OW * L]
                for w in range(RW):  # max_pool2d's order, NaN winning: (0, 0), (0, 1), (1, 0), (1, 1)
                    for l in range(L):
                        m = row[2 * w * L + l]
                        v = row[(2 * w + 1) * L + l]
                        m = v if v > m or v != v else m  # noqa: PLR0124 (NaN test)
                        v = below[2 * w * L + l]
                        m = v if v > m or v != v else m  # noqa: PLR0124
                        v = below[(2 * w + 1) * L + l]
                        row[w * L + l] = v if v > m or v != v else m  # noqa: PLR0124
            d0 = ((b * L * OC + oc) * R + r) * RW  # out[b * L, oc, r, 0]
            for l in range(0, l8, 8):
                for wb in range(blocks):  # (the last block ends the row, overlapping the one before)
                    w = min(8 * wb, RW - 8)
                    transpose8(of, d0 + l * lo + w, lo, yf, y0 + oc * ldc + w * L + l, L)
            for l in range(nl):  # rows under 8 pixels, and the images past whole 8s
                dst = of[d0 + l * lo:d0 + l * lo + RW]
                for w in range(RW if l < l8 and RW >= 8 else 0, RW):
                    dst[w] = row[w * L + l]


@kernel
def lanes_parallel(out, x, xf, yf, ap, offs, bias, has_bias, kind, slope, dims, PH, PW, parts_in, parts_rows, fn_in,
                   fn_rows):
    """The input copied into the lanes (items: image blocks x channels) in ``parts_in``
    runs, then the rows (items: image blocks x output rows) in ``parts_rows`` runs, one
    a thread; ``fn_in``, ``fn_rows``: the handles of ``_lanes_in`` and ``_lanes_rows``
    for these arguments (``_fnptr``). (Two counts Numba cannot prove equal: it fuses
    two ``prange`` loops of one count into one, which would start rows on inputs not
    yet copied.)"""
    NB = (dims[0] + dims[11] - 1) // dims[11]
    n_in, n_rows = NB * dims[1], NB * out.shape[2]
    for t in prange(parts_in):
        call(fn_in, (xf, x, t * n_in // parts_in, (t + 1) * n_in // parts_in, PH, PW, dims))
    for t in prange(parts_rows):
        call(fn_rows, (out, xf, yf, ap, offs, bias, has_bias, kind, slope, dims, t * n_rows // parts_rows,
                       (t + 1) * n_rows // parts_rows))


def pack_weight(weight):
    """The weights (OC, C, KH, KW) as the micro-kernel's A: for each K block of at most
    KC taps, MR-row panels (k-major), the channels past OC zero."""
    OC = weight.shape[0]
    w2 = np.ascontiguousarray(weight).reshape(OC, -1)
    K, OCp = w2.shape[1], _up(OC, MR)
    ap = np.empty(OCp * K, w2.dtype)
    for k0 in range(0, K, KC):
        kc = min(KC, K - k0)
        pack_a(ap[OCp * k0:OCp * (k0 + kc)], w2, False, 0, OC, k0, kc)
    return ap


def conv_size(x_shape, geom):
    """(OH, OW) of the convolution of ``x_shape`` by ``geom``."""
    KH, KW, SH, SW, PH, PW, DH, DW, G = geom
    return ((x_shape[2] + 2 * PH - DH * (KH - 1) - 1) // SH + 1, (x_shape[3] + 2 * PW - DW * (KW - 1) - 1) // SW + 1)


def forward_runner(out, x, weight, bias, geom, kind, slope, threads, pooled=False):
    """``run(x)``: out = act(conv2d(x, weight) + bias) for inputs of ``x``'s shape and
    dtype (``applies`` must hold), the weights packed and the buffers made now (a
    plan's: they are its own), the work split over at most ``threads`` threads.
    ``pooled``: out = max_pool2d(act(conv2d(x, weight) + bias), 2) instead (kernel and
    stride 2, no padding, rounding down), the pool's values bit for bit."""
    KH, KW, SH, SW, PH, PW, DH, DW, G = geom
    N, C, H, W = x.shape
    OC = out.shape[1]
    OH, OW = conv_size(x.shape, geom)
    if out.shape[2:] != ((OH // 2, OW // 2) if pooled else (OH, OW)):
        raise ValueError(f"conv_lanes.forward_runner: output of shape {out.shape} for a convolution to {(OH, OW)}"
                         + (", pooled" if pooled else ""))
    dt = x.dtype
    L = lanes(dt)
    NB, Hp, Wp, OCp, OWp = -(-N // L), H + 2 * PH, W + 2 * PW, _up(OC, MR), _up(OW, 2)
    ap = pack_weight(weight.astype(dt, copy=False))
    K = ap.shape[0] // OCp
    k = np.arange(K)
    c, kh, kw = k // (KH * KW), k // KW % KH, k % KW
    offs = ((c * Hp + kh * DH) * Wp + kw * DW) * L
    size = NB * C * Hp * Wp * L
    xf = np.zeros(size + 2 * L, dt)  # (+ the vector a row's last pair may read past the end)
    yf = np.empty(NB * OCp * OH * OWp * L, dt)
    has_bias = bias is not None
    bias = np.ascontiguousarray(bias, dt) if has_bias else ap[:1]
    kind, slope = int(kind), float(slope)
    dims = (N, C, Hp, Wp, OC, OCp, OH, OW, OWp, K, SH, L, int(pooled))
    rows = NB * out.shape[2]
    parts_in, parts_rows = max(1, min(threads, NB * C)), max(1, min(threads, rows))
    if parts_rows == 1:
        def run(x):
            _lanes_in(xf, x, 0, NB * C, PH, PW, dims)
            _lanes_rows(out, xf, yf, ap, offs, bias, has_bias, kind, slope, dims, 0, rows)
        return run
    fn_in = handle(_lanes_in, (xf, x, 0, 0, PH, PW, dims))
    fn_rows = handle(_lanes_rows, (out, xf, yf, ap, offs, bias, has_bias, kind, slope, dims, 0, 0))

    def run(x):
        lanes_parallel(out, x, xf, yf, ap, offs, bias, has_bias, kind, slope, dims, PH, PW, parts_in, parts_rows,
                       fn_in, fn_rows)
    return run
