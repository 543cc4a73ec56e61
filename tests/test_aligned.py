"""kernels.aligned: arrays on a 64-byte boundary for the products' packs and the plan's buffers."""
import numpy as np
import pytest
from numba import njit

from fastnn.kernels import aligned
from fastnn.kernels import matmul_packed


@pytest.mark.parametrize("shape, dtype", [((64, 33), np.float32), (5000, np.float64), ((3, 7, 50), np.int64),
                                          (np.int64(2048), "float32"), ((3, 5), np.float32), ((0, 4), np.float64)])
def test_empty_starts_on_a_cache_line(shape, dtype):
    for _ in range(8):  # several allocations: NumPy alone lands 16 or 32 bytes off about as often as not
        a = aligned.empty(shape, dtype)
        assert a.ctypes.data % aligned.ALIGN == 0
        assert a.shape == ((int(shape),) if np.ndim(shape) == 0 else shape) and a.dtype == np.dtype(dtype)
        assert a.flags.c_contiguous and a.flags.writeable
        a[...] = 7
        assert (a == 7).all()


def test_bytes_view_has_at_least_one_byte_and_is_aligned():
    assert aligned.bytes_view(0).size == 1
    b = aligned.bytes_view(100_000)
    assert b.size == 100_000 and b.dtype == np.uint8 and b.ctypes.data % aligned.ALIGN == 0


def test_a_kernels_row_is_aligned():
    @njit
    def rows(n, like):
        out = np.empty(4, np.int64)
        for i in range(4):
            r = aligned.empty_like_row(n + i, like)
            out[i] = r.ctypes.data % aligned.ALIGN + (r.size != n + i)
        return out

    for like in (np.zeros(1, np.float32), np.zeros(1)):
        assert (rows(1000, like) == 0).all()


def test_packed_weights_and_workspaces_are_aligned():
    w = np.random.default_rng(0).standard_normal((96, 40), dtype=np.float32)
    bp = matmul_packed.pack_weight(w, 64)
    ap, tmp = matmul_packed.workspace(np.float32)
    for a in (bp, ap, tmp):
        assert a.ctypes.data % aligned.ALIGN == 0
    assert all(row.ctypes.data % aligned.ALIGN == 0 for row in ap)
