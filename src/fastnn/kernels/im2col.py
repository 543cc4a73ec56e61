"""Layout kernels of the convolution: zero-padded copy, im2col and its adjoint col2im.

``geom`` is the int tuple ``(KH, KW, SH, SW, PH, PW, DH, DW, G)``. The im2col
matrix of one sample's channel group has a row per k = (cg, kh, kw) and a column
per output pixel; several samples sit side by side, sample b in columns
``j0 = b * OH * OW`` onwards. All serial: the convolution calls them per sample
from inside its own parallel loop. Inner loops index 1-D views from 0, which lets
LLVM vectorise the unit-stride copies.
"""
from ._jit import serial_kernel


@serial_kernel
def _valid(off, stride, size, out_size):
    # [lo, hi): the outputs o < out_size with 0 <= o * stride + off < size
    lo = 0 if off >= 0 else (stride - 1 - off) // stride
    hi = (size - 1 - off) // stride + 1 if size - 1 - off >= 0 else 0
    lo = min(lo, out_size)
    return lo, max(lo, min(hi, out_size))


@serial_kernel
def pad_copy(xp, x, n, c0, PH, PW):
    """xp[cg, PH + ih, PW + iw] = x[n, c0 + cg, ih, iw]; the border of xp (Cg, Hp, Wp)
    is never written: the caller keeps it zero."""
    H, W = x.shape[2], x.shape[3]
    for cg in range(xp.shape[0]):
        for ih in range(H):
            src = x[n, c0 + cg, ih]
            dst = xp[cg, PH + ih, PW:PW + W]
            for i in range(W):
                dst[i] = src[i]


@serial_kernel
def im2col(col, xp, geom, j0):
    """col[(cg*KH + kh)*KW + kw, j0 + oh*OW + ow] = xp[cg, oh*SH + kh*DH, ow*SW + kw*DW]
    (overwritten). xp (Cg, Hp, Wp): one sample's channel group, already padded;
    col (Cg*KH*KW, >= j0 + OH*OW)."""
    KH, KW, SH, SW, PH, PW, DH, DW, G = geom
    Cg, Hp, Wp = xp.shape
    OH = (Hp - DH * (KH - 1) - 1) // SH + 1
    OW = (Wp - DW * (KW - 1) - 1) // SW + 1
    for cg in range(Cg):
        for kh in range(KH):
            for kw in range(KW):
                row = col[(cg * KH + kh) * KW + kw]
                for oh in range(OH):
                    dst = row[j0 + oh * OW:j0 + (oh + 1) * OW]
                    if SW == 1:
                        src = xp[cg, oh * SH + kh * DH, kw * DW:kw * DW + OW]
                        for i in range(OW):
                            dst[i] = src[i]
                    else:
                        xrow = xp[cg, oh * SH + kh * DH]
                        for i in range(OW):
                            dst[i] = xrow[i * SW + kw * DW]


@serial_kernel
def gather(col, xp, x, n0, nb, c0, geom):
    """im2col of samples n0..n0+nb-1, channels c0.., side by side in col (Kg, nb*P)
    (overwritten); with padding through xp (Cg, Hp, Wp), whose border must be zero."""
    Cg = col.shape[0] // (geom[0] * geom[1])
    P = col.shape[1] // nb
    for b in range(nb):
        if geom[4] == 0 and geom[5] == 0:
            im2col(col, x[n0 + b, c0:c0 + Cg], geom, b * P)
        else:
            pad_copy(xp, x, n0 + b, c0, geom[4], geom[5])
            im2col(col, xp, geom, b * P)


@serial_kernel
def col2im(dx, col, n, c0, geom, j0):
    """dx[n, c0 + cg] = the adjoint of :func:`im2col` at columns j0..: each col entry
    added to the pixel it was read from (overwritten; untouched pixels get 0), in a
    fixed order. dx (N, C, H, W); col (Cg*KH*KW, >= j0 + OH*OW)."""
    KH, KW, SH, SW, PH, PW, DH, DW, G = geom
    H, W = dx.shape[2], dx.shape[3]
    OH = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1
    OW = (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1
    Cg = col.shape[0] // (KH * KW)
    planes = dx[n, c0:c0 + Cg].reshape(-1)
    for i in range(planes.shape[0]):
        planes[i] = 0
    for cg in range(Cg):
        for kh in range(KH):
            for kw in range(KW):
                row = col[(cg * KH + kh) * KW + kw]
                off = kw * DW - PW
                lo, hi = _valid(off, SW, W, OW)
                for oh in range(OH):
                    ih = oh * SH - PH + kh * DH
                    if ih < 0 or ih >= H:
                        continue
                    src = row[j0 + oh * OW + lo:j0 + oh * OW + hi]
                    if SW == 1:
                        dst = dx[n, c0 + cg, ih, lo + off:hi + off]
                        for i in range(hi - lo):
                            dst[i] += src[i]
                    else:
                        xrow = dx[n, c0 + cg, ih]
                        for i in range(hi - lo):
                            xrow[(lo + i) * SW + off] += src[i]
