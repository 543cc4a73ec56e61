"""Layout kernels of the convolution: im2col (through a zero-padded copy) and col2im.

``geom`` is the int tuple ``(KH, KW, SH, SW, PH, PW, DH, DW, G)``. The im2col
matrix of one sample's channel group has a row per k = (cg, kh, kw) and
``OH * pitch`` columns, output pixel (oh, ow) in column ``oh * pitch + ow``; several
samples sit side by side, sample b from column ``j0 = b * OH * pitch``.

* narrow layout, ``pitch == OW``: any stride.
* wide layout, stride 1, ``pitch == Wp`` (the padded width): each row is then one
  contiguous run of the padded input, so im2col is a plain copy per row; the
  ``Wp - OW`` extra columns per output row hold values the caller ignores (their
  outputs are dropped, their gradients are zero).

All serial: the convolution calls them per sample group from inside its own
parallel loop. Inner loops index 1-D views from 0, which lets LLVM vectorise.
"""
from ._jit import inline, serial_kernel


@inline
def valid_range(off, stride, size, out_size):
    # [lo, hi): the outputs o < out_size with 0 <= o * stride + off < size
    lo = 0 if off >= 0 else (stride - 1 - off) // stride
    hi = (size - 1 - off) // stride + 1 if size - 1 - off >= 0 else 0
    lo = min(lo, out_size)
    return lo, max(lo, min(hi, out_size))


@serial_kernel
def pad_image(xpf, x, n, c0, Cg, PH, PW, tail):
    """xpf = channels c0..c0+Cg of sample n, each zero-padded by PH rows and PW columns
    to (Hp, Wp), then ``tail`` zeros: every element of xpf[:Cg*Hp*Wp + tail] is
    written, so the scratch needs no zeroing and can be shared by layers."""
    H, W = x.shape[2], x.shape[3]
    Hp, Wp = H + 2 * PH, W + 2 * PW
    for cg in range(Cg):
        plane = xpf[cg * Hp * Wp:(cg + 1) * Hp * Wp]
        top = plane[:PH * Wp]
        for i in range(PH * Wp):
            top[i] = 0
        for ih in range(H):
            row = plane[(PH + ih) * Wp:(PH + ih + 1) * Wp]
            src = x[n, c0 + cg, ih]
            dst = row[PW:PW + W]
            right = row[PW + W:]
            for i in range(PW):
                row[i] = 0
            for i in range(W):
                dst[i] = src[i]
            for i in range(PW):
                right[i] = 0
        bottom = plane[(PH + H) * Wp:]
        for i in range(PH * Wp):
            bottom[i] = 0
    end = xpf[Cg * Hp * Wp:Cg * Hp * Wp + tail]
    for i in range(tail):
        end[i] = 0


@serial_kernel
def pad_images(xpf, x, n0, nb, c0, Cg, PH, PW, tail):
    """:func:`pad_image` of samples n0..n0+nb side by side: sample n0 + b in
    xpf[b*plane:(b+1)*plane], plane = Cg*Hp*Wp + tail (each with its zero tail)."""
    plane = Cg * (x.shape[2] + 2 * PH) * (x.shape[3] + 2 * PW) + tail
    for b in range(nb):
        pad_image(xpf[b * plane:(b + 1) * plane], x, n0 + b, c0, Cg, PH, PW, tail)


@serial_kernel
def gather(col, xpf, x, n0, nb, c0, geom, pitch):
    """im2col of samples n0..n0+nb-1, channels c0..c0+Cg: col[k, b*OH*pitch + oh*pitch + ow]
    = x[n0 + b, c0 + cg, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW] (0 in the padding),
    overwritten. col (Kg, nb*OH*pitch); xpf: flat scratch of Cg*Hp*Wp + KW*DW elements
    (overwritten: the padded image of one sample at a time)."""
    KH, KW, SH, SW, PH, PW, DH, DW, _ = geom
    H, W = x.shape[2], x.shape[3]
    Hp, Wp = H + 2 * PH, W + 2 * PW
    OH = (Hp - DH * (KH - 1) - 1) // SH + 1
    OW = (Wp - DW * (KW - 1) - 1) // SW + 1
    Cg = col.shape[0] // (KH * KW)
    Pc = OH * pitch
    wide = SH == 1 and SW == 1 and pitch == Wp
    xp = xpf[:Cg * Hp * Wp].reshape((Cg, Hp, Wp))
    for b in range(nb):
        pad_image(xpf, x, n0 + b, c0, Cg, PH, PW, KW * DW)
        for k in range(col.shape[0]):
            cg, kh, kw = k // (KH * KW), k // KW % KH, k % KW
            row = col[k, b * Pc:(b + 1) * Pc]
            if wide:  # one run of the padded image (it may end in the zero tail)
                src = xpf[(cg * Hp + kh * DH) * Wp + kw * DW:]
                for i in range(Pc):
                    row[i] = src[i]
                continue
            for oh in range(OH):
                dst = row[oh * pitch:oh * pitch + OW]
                if SW == 1:
                    src = xp[cg, oh * SH + kh * DH, kw * DW:kw * DW + OW]
                    for i in range(OW):
                        dst[i] = src[i]
                else:
                    xrow = xp[cg, oh * SH + kh * DH]
                    for i in range(OW):
                        dst[i] = xrow[i * SW + kw * DW]


@serial_kernel
def col2im(dx, col, n, c0, geom):
    """dx[n, c0 + cg] = the adjoint of :func:`gather` for one sample (narrow layout):
    each col entry added to the pixel it was read from (overwritten; untouched pixels
    get 0; padding is never read), in a fixed order. dx (N, C, H, W); col
    (Cg*KH*KW, OH*OW)."""
    KH, KW, SH, SW, PH, PW, DH, DW, _ = geom
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
                lo, hi = valid_range(off, SW, W, OW)
                for oh in range(OH):
                    ih = oh * SH - PH + kh * DH
                    if ih < 0 or ih >= H:
                        continue
                    src = row[oh * OW + lo:oh * OW + hi]
                    if SW == 1:
                        dst = dx[n, c0 + cg, ih, lo + off:hi + off]
                        for i in range(hi - lo):
                            dst[i] += src[i]
                    else:
                        xrow = dx[n, c0 + cg, ih]
                        for i in range(hi - lo):
                            xrow[(lo + i) * SW + off] += src[i]
