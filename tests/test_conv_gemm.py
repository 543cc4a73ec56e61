"""The implicit-GEMM convolution kernels (kernels/conv_gemm.py) against NumPy."""
import numpy as np
import pytest
from numba import njit

from fastnn.kernels.conv_gemm import (_dw_direct, _dw_transposed, chunk_pixels, conv_gemm, conv_gemm_dw,
                                      conv_gemm_parallel, parallel_handle, wide_offsets)
from fastnn.kernels.im2col import pad_image
from fastnn.kernels.microkernel import MR, NV, micro, micro_cols, micro_gather, micro_offs, micro_rows


@njit
def _micro(c, c_off, ldc, ap, a_off, bp, b_off, kc, add):
    micro(c.reshape(-1), c_off, ldc, ap, a_off, bp, b_off, kc, add)


@njit
def _micro_gather(c, c_off, ldc, a, rows, r_off, cols, k_off, bp, b_off, kc, add):
    micro_gather(c.reshape(-1), c_off, ldc, a, rows, r_off, cols, k_off, bp, b_off, kc, add)


@njit
def _micro_offs(c, c_off, ldc, ap, a_off, b, b_off, offs, o_off, kc, add):
    micro_offs(c.reshape(-1), c_off, ldc, ap, a_off, b, b_off, offs, o_off, kc, add)


@njit
def _micro_strided(cols, c, c_off, ldc, a, a_off, lda, bp, b_off, kc, add):
    if cols:
        micro_cols(c.reshape(-1), c_off, ldc, a, a_off, lda, bp, b_off, kc, add)
    else:
        micro_rows(c.reshape(-1), c_off, ldc, a, a_off, lda, bp, b_off, kc, add)


def _padded(x, n, c0, Cg, ph, pw, tail):
    img = np.pad(x[n, c0:c0 + Cg], ((0, 0), (ph, ph), (pw, pw)))
    return np.concatenate([img.reshape(-1), np.zeros(tail, x.dtype)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C, OC, k, H, pad, dil", [(3, 5, 3, 7, 1, 1), (2, 9, 5, 9, 2, 1), (40, 16, 3, 6, 1, 2),
                                                   (1, 8, 1, 5, 0, 1), (30, 20, 3, 20, 1, 1)])
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
    conv_gemm(out, w, xpf, plane, offs, Pc, 0, 2 * Pc)
    for b in range(2):
        cols = np.stack([xpf[b * plane + o:b * plane + o + Pc] for o in offs])
        expected = w.astype(np.float64) @ cols.astype(np.float64)
        tol = 1e-4 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(out[:, b * Pc:(b + 1) * Pc], expected, rtol=tol, atol=tol * C * k * k)
    assert np.isnan(out[:, 2 * Pc:]).all()  # columns past ncol untouched


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("add", [False, True])
def test_micro_kernel_reading_rows_in_place_gives_the_packed_bits(dtype, add):
    # micro_offs reads B's rows where they lie (runs of b at b_off + offs[o_off + k]);
    # micro reads the same rows packed: the same sums in the same order, so the same bits
    rng = np.random.default_rng(1)
    NR = NV * 64 // np.dtype(dtype).itemsize
    kc, o_off, b_off = 37, 3, 5
    b = rng.standard_normal(4000).astype(dtype)
    offs = rng.integers(0, 4000 - NR - b_off, o_off + kc + 2).astype(np.int64)
    ap = rng.standard_normal(MR * kc + 7).astype(dtype)
    bp = np.stack([b[b_off + o:b_off + o + NR] for o in offs[o_off:o_off + kc]]).reshape(-1)
    c0 = rng.standard_normal((MR + 1, NR + 3)).astype(dtype)
    expected, got = c0.copy(), c0.copy()
    _micro(expected, NR + 3 + 1, NR + 3, ap, 7, bp, 0, kc, add)
    _micro_offs(got, NR + 3 + 1, NR + 3, ap, 7, b, b_off, offs, o_off, kc, add)
    np.testing.assert_array_equal(got, expected)
    a = ap[7:].reshape(kc, MR).T.astype(np.float64)
    ref = a @ bp.reshape(kc, NR).astype(np.float64)
    tile = c0[1:, 1:NR + 1].astype(np.float64) + ref if add else ref
    np.testing.assert_allclose(got[1:, 1:NR + 1], tile, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(got[0], c0[0])  # nothing outside the tile
    np.testing.assert_array_equal(got[:, 0], c0[:, 0])
    np.testing.assert_array_equal(got[:, NR + 1:], c0[:, NR + 1:])


@pytest.mark.parametrize("way", ["chosen", "transposed", "direct"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C, OC, k, H, stride, accumulate", [(3, 5, 3, 9, 1, False), (20, 10, 3, 8, 2, True),
                                                             (1, 6, 5, 12, 1, False), (4, 40, 2, 300, 1, True),
                                                             (7, 35, 3, 11, 1, True)])
def test_conv_gemm_dw_matches_numpy(way, dtype, C, OC, k, H, stride, accumulate):
    # both ways of the weight gradient (conv_gemm_dw picks one by the shapes)
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
    kernel = {"chosen": conv_gemm_dw, "transposed": _dw_transposed, "direct": _dw_direct}[way]
    kernel(dw, d, xpf, offs, pix, accumulate)
    cols = xpf[offs[:, None] + pix[None, :]].astype(np.float64)  # (Kg, ncol) im2col block
    expected = start + d.astype(np.float64) @ cols.T
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(dw, expected, rtol=tol, atol=tol * pix.shape[0])
    # chunk_pixels: sample b, output row oh, column ow reads the padded image at this offset
    b, r, ow = 1, rows - 1, OH - 1
    assert pix[(b * rows + r) * OH + ow] == b * plane + (1 + r) * stride * H + ow * stride


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("add", [False, True])
def test_micro_kernel_gathering_a_gives_the_packed_bits(dtype, add):
    # micro_gather reads A(r, k) at a[rows[r_off + r] + cols[k_off + k]]; micro reads the
    # same elements packed: the same sums in the same order, so the same bits
    rng = np.random.default_rng(2)
    NR = NV * 64 // np.dtype(dtype).itemsize
    kc, r_off, k_off = 29, 2, 4
    a = rng.standard_normal(3000).astype(dtype)
    rows = rng.integers(0, 1500, r_off + MR + 3).astype(np.int64)
    cols = rng.integers(0, 1500, k_off + kc + 3).astype(np.int64)
    A = a[rows[r_off:r_off + MR, None] + cols[None, k_off:k_off + kc]]  # (MR, kc)
    ap = np.ascontiguousarray(A.T).reshape(-1)  # k-major MR-row panel
    bp = rng.standard_normal(kc * NR + 9).astype(dtype)
    c0 = rng.standard_normal((MR + 2, NR + 1)).astype(dtype)
    expected, got = c0.copy(), c0.copy()
    _micro(expected, NR + 1, NR + 1, ap, 0, bp, 9, kc, add)
    _micro_gather(got, NR + 1, NR + 1, a, rows, r_off, cols, k_off, bp, 9, kc, add)
    np.testing.assert_array_equal(got, expected)
    ref = A.astype(np.float64) @ bp[9:].reshape(kc, NR).astype(np.float64)
    tile = c0[1:MR + 1, :NR].astype(np.float64) + ref if add else ref
    np.testing.assert_allclose(got[1:MR + 1, :NR], tile, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(got[0], c0[0])  # nothing outside the tile
    np.testing.assert_array_equal(got[MR + 1], c0[MR + 1])
    np.testing.assert_array_equal(got[:, NR], c0[:, NR])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cols", [False, True])
def test_micro_kernel_reading_a_block_in_place_gives_the_packed_bits(dtype, cols):
    # micro_cols reads A(r, k) at a[a_off + k*lda + r] (a block holding A^T), micro_rows
    # at a[a_off + r*lda + k]; micro reads the same elements packed: the same bits
    rng = np.random.default_rng(4)
    NR = NV * 64 // np.dtype(dtype).itemsize
    kc, lda, r0, k0 = 23, 40, 5, 3
    block = rng.standard_normal((50, lda)).astype(dtype)  # 2-D, as the attention's blocks
    A = block[k0:k0 + kc, r0:r0 + MR].T if cols else block[r0:r0 + MR, k0:k0 + kc]  # (MR, kc)
    a_off = k0 * lda + r0 if cols else r0 * lda + k0
    ap = np.ascontiguousarray(A.T).reshape(-1)
    bp = rng.standard_normal(kc * NR + 4).astype(dtype)
    c0 = rng.standard_normal((MR + 2, NR + 1)).astype(dtype)
    for add in (False, True):
        expected, got = c0.copy(), c0.copy()
        _micro(expected, NR + 1, NR + 1, ap, 0, bp, 4, kc, add)
        _micro_strided(cols, got, NR + 1, NR + 1, block, a_off, lda, bp, 4, kc, add)
        np.testing.assert_array_equal(got, expected)
        ref = A.astype(np.float64) @ bp[4:].reshape(kc, NR).astype(np.float64)
        tile = c0[1:MR + 1, :NR].astype(np.float64) + ref if add else ref
        np.testing.assert_allclose(got[1:MR + 1, :NR], tile, rtol=1e-5, atol=1e-4)
        np.testing.assert_array_equal(got[0], c0[0])  # nothing outside the tile
        np.testing.assert_array_equal(got[:, NR], c0[:, NR])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_column_split_gives_the_bits_of_one_call(dtype):
    # conv_gemm_parallel splits the columns into runs of whole panels, one per thread;
    # every column's sums are its own, so any split gives conv_gemm's bits
    rng = np.random.default_rng(3)
    C, OC, k, H = 6, 11, 3, 13
    x = rng.standard_normal((1, C, H, H)).astype(dtype)
    w = rng.standard_normal((OC, C * k * k)).astype(dtype)
    Hp = H + 2
    plane = C * Hp * Hp + k
    xpf = np.empty(plane, dtype)
    pad_image(xpf, x, 0, 0, C, 1, 1, k)
    offs = np.empty(C * k * k, np.int64)
    wide_offsets(offs, C, k, k, Hp, Hp, 1, 1)
    Pc = H * Hp
    expected = np.full((OC, Pc + 2), np.nan, dtype)
    conv_gemm(expected, w, xpf, plane, offs, Pc, 0, Pc)
    for threads in (1, 2, 3, 7, 100):
        got = np.full_like(expected, np.nan)
        xpfs = np.full((min(threads, 8), plane + 5), np.nan, dtype)  # each thread pads its own copy
        conv_gemm_parallel(got, w, xpfs, x, (0, 1, 0, C, 1, 1, k, plane), offs, Pc, Pc, threads,
                           parallel_handle(got, w, xpfs[0], plane, offs, Pc))
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(xpfs[0, :plane], xpf)
