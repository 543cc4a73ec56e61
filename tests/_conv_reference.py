"""Float64 NumPy references shared by the convolution kernels' tests."""
import numpy as np

from fastnn.kernels import activations as act_k


def conv2d_reference(x, w, b, geom):
    """The direct convolution in float64 (no groups): a sum over the taps of strided,
    shifted views of the padded images; ``geom`` (KH, KW, SH, SW, PH, PW, DH, DW, G)."""
    KH, KW, SH, SW, PH, PW, DH, DW, G = geom
    N, C, H, W = x.shape
    xp = np.zeros((N, C, H + 2 * PH, W + 2 * PW))
    xp[:, :, PH:PH + H, PW:PW + W] = x
    OH = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1
    OW = (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1
    out = np.zeros((N, w.shape[0], OH, OW))
    for kh in range(KH):
        for kw in range(KW):
            patch = xp[:, :, kh * DH:kh * DH + SH * (OH - 1) + 1:SH, kw * DW:kw * DW + SW * (OW - 1) + 1:SW]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, kh, kw].astype(np.float64))
    return out if b is None else out + b.astype(np.float64)[None, :, None, None]


def activation_reference(v, kind, slope):
    """A fused activation (``kernels.activations`` kinds) in NumPy."""
    if kind == act_k.RELU:
        return np.maximum(v, 0)
    if kind == act_k.LEAKY_RELU:
        return np.where(v > 0, v, v * slope)
    if kind == act_k.SIGMOID:
        return 1 / (1 + np.exp(-v))
    if kind == act_k.TANH:
        return np.tanh(v)
    return v
