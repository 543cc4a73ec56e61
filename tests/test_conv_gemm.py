"""The implicit-GEMM convolution kernels (kernels/conv_gemm.py) against NumPy."""
import numpy as np
import pytest

from fastnn.kernels.conv_gemm import chunk_pixels, conv_gemm, conv_gemm_dw, wide_offsets
from fastnn.kernels.im2col import pad_image


def _padded(x, n, c0, Cg, ph, pw, tail):
    img = np.pad(x[n, c0:c0 + Cg], ((0, 0), (ph, ph), (pw, pw)))
    return np.concatenate([img.reshape(-1), np.zeros(tail, x.dtype)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C, OC, k, H, pad, dil", [(3, 5, 3, 7, 1, 1), (2, 9, 5, 9, 2, 1), (40, 16, 3, 6, 1, 2),
                                                   (1, 8, 1, 5, 0, 1)])
def test_pad_image_and_conv_gemm_match_numpy(dtype, C, OC, k, H, pad, dil):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, C, H, H)).astype(dtype)
    w = rng.standard_normal((OC, C * k * k)).astype(dtype)
    Hp = H + 2 * pad
    OH = Hp - dil * (k - 1)
    tail = k * dil
    plane = C * Hp * Hp + tail
    xpf = np.full(2 * plane, np.nan, dtype)  # pad_image must write every element it owns
    for b in range(2):
        pad_image(xpf[b * plane:(b + 1) * plane], x, b, 0, C, pad, pad, tail)
        np.testing.assert_array_equal(xpf[b * plane:(b + 1) * plane], _padded(x, b, 0, C, pad, pad, tail))
    offs = np.empty(C * k * k, np.int64)
    wide_offsets(offs, C, k, k, Hp, Hp, dil, dil)
    Pc = OH * Hp  # wide layout: Hp columns per output row, the last Hp - OW dropped
    out = np.full((OC, 2 * Pc + 3), np.nan, dtype)
    conv_gemm(out, w, xpf, plane, offs, Pc, 2 * Pc)
    for b in range(2):
        cols = np.stack([xpf[b * plane + o:b * plane + o + Pc] for o in offs])
        expected = w.astype(np.float64) @ cols.astype(np.float64)
        tol = 1e-4 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(out[:, b * Pc:(b + 1) * Pc], expected, rtol=tol, atol=tol * C * k * k)
    assert np.isnan(out[:, 2 * Pc:]).all()  # columns past ncol untouched


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C, OC, k, H, stride, accumulate", [(3, 5, 3, 9, 1, False), (20, 10, 3, 8, 2, True),
                                                             (1, 6, 5, 12, 1, False), (4, 40, 2, 300, 1, True)])
def test_conv_gemm_dw_matches_numpy(dtype, C, OC, k, H, stride, accumulate):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, C, H, H)).astype(dtype)
    plane = C * H * H + k
    xpf = np.concatenate([_padded(x, b, 0, C, 0, 0, k) for b in range(2)])
    OH = (H - k) // stride + 1
    rows = min(OH - 1, 3)  # output rows 1..rows
    offs = np.empty(C * k * k, np.int64)
    wide_offsets(offs, C, k, k, H, H, 1, 1)
    pix = np.empty(2 * rows * OH, np.int64)
    chunk_pixels(pix, plane, H, stride, stride, OH, 1, rows, 2)  # rows 1..rows of both samples
    d = rng.standard_normal((OC, pix.shape[0])).astype(dtype)
    dw = rng.standard_normal((OC, C * k * k)).astype(dtype)
    start = dw.astype(np.float64) if accumulate else 0.0
    conv_gemm_dw(dw, d, xpf, offs, pix, accumulate)
    cols = xpf[offs[:, None] + pix[None, :]].astype(np.float64)  # (Kg, ncol) im2col block
    expected = start + d.astype(np.float64) @ cols.T
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(dw, expected, rtol=tol, atol=tol * pix.shape[0])
    # chunk_pixels: sample b, output row oh, column ow reads the padded image at this offset
    b, r, ow = 1, rows - 1, OH - 1
    assert pix[(b * rows + r) * OH + ow] == b * plane + (1 + r) * stride * H + ow * stride
