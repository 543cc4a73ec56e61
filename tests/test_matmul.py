"""matmul kernels against NumPy: shapes, transposes, accumulate, dtypes, threads."""
import numba
import numpy as np
import pytest

from fastnn.kernels import matmul as mm

# Odd sizes (not multiples of MR, NR, KC, MC), tiny ones that take the direct
# path, and ones big enough for the packed and the parallel paths.
SHAPES = [  # M, N, K
    (1, 1, 1), (1, 17, 5), (3, 5, 7), (4, 3, 2), (5, 1, 63), (17, 63, 65),
    (63, 65, 129), (65, 129, 63), (129, 17, 300), (8, 32, 256), (16, 64, 513),
    (130, 70, 600), (200, 33, 257), (1, 256, 784), (64, 512, 128), (257, 129, 3),
    (300, 6, 50), (200, 16, 30), (100, 1, 40), (1000, 10, 128), (37, 8, 9),  # few columns
]
TOL = {np.float32: 2e-5, np.float64: 1e-12}


def _operands(rng, M, N, K, trans_a, trans_b, dtype):
    a = rng.standard_normal((K, M) if trans_a else (M, K)).astype(dtype)
    b = rng.standard_normal((N, K) if trans_b else (K, N)).astype(dtype)
    return a, b


def _reference(a, b, trans_a, trans_b):
    """op(a) @ op(b) in float64 (the obviously-correct product)."""
    a64 = a.astype(np.float64)
    b64 = b.astype(np.float64)
    return (a64.T if trans_a else a64) @ (b64.T if trans_b else b64)


def _check(out, ref, a, b, trans_a, trans_b, dtype):
    # error relative to sum_k |op(a)[i,k]| |op(b)[k,j]|, the scale of rounding
    scale = _reference(np.abs(a), np.abs(b), trans_a, trans_b) + 1.0
    assert np.all(np.abs(out - ref) <= TOL[dtype] * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("accumulate", [False, True])
def test_matches_numpy(dtype, trans_a, trans_b, accumulate):
    rng = np.random.default_rng(0)
    for M, N, K in SHAPES:
        a, b = _operands(rng, M, N, K, trans_a, trans_b, dtype)
        out = rng.standard_normal((M, N)).astype(dtype)
        ref = _reference(a, b, trans_a, trans_b) + (out if accumulate else 0)
        mm.matmul(out, a, b, trans_a=trans_a, trans_b=trans_b, accumulate=accumulate)
        _check(out, ref, a, b, trans_a, trans_b, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_serial_matches_parallel_bitwise(dtype):
    rng = np.random.default_rng(1)
    for M, N, K in [(3, 5, 7), (130, 70, 600), (1000, 300, 260)]:
        for trans_a in (False, True):
            for trans_b in (False, True):
                a, b = _operands(rng, M, N, K, trans_a, trans_b, dtype)
                out = np.empty((M, N), dtype)
                serial = np.empty((M, N), dtype)
                mm.matmul(out, a, b, trans_a, trans_b)
                mm.gemm_serial(serial, a, b, trans_a, trans_b, False)
                assert np.array_equal(out, serial)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unpacked_rows_give_the_packed_bits(dtype):
    # a product meeting few column panels reads its rows of a in place (micro_rows); the
    # same columns of a wide product pack them: every element must be the same sum
    rng = np.random.default_rng(2)
    NR = mm.NV * (64 // np.dtype(dtype).itemsize)
    for M, K in [(1000, 300), (203, 520), (37, 64)]:
        a = rng.standard_normal((M, K)).astype(dtype)
        b = rng.standard_normal((K, 12 * NR)).astype(dtype)
        wide, narrow = np.empty((M, 12 * NR), dtype), np.empty((M, 3 * NR + 5), dtype)
        mm.matmul(wide, a, b)
        mm.matmul(narrow, a, np.ascontiguousarray(b[:, :3 * NR + 5]))
        assert np.array_equal(narrow, wide[:, :3 * NR + 5])
        _check(narrow, _reference(a, b[:, :3 * NR + 5], False, False), a, b[:, :3 * NR + 5], False, False, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_packed_products_with_their_epilogue_give_matmul_bits(dtype):
    # gemm_packed = matmul, then bias_activation_forward, bit for bit: serial and
    # parallel, several column blocks and K groups (the epilogue after the last)
    from fastnn.kernels import activations as act
    from fastnn.kernels import matmul_packed as packed
    rng = np.random.default_rng(3)
    ap, tmp = packed.workspace(dtype)
    cases = [(2048, 384, 128, act.RELU, True), (64, 128, 512, act.GELU, True), (40, 2100, 1500, act.RELU, True),
             (9, 40, 64, act.IDENTITY, True), (300, 70, 96, act.IDENTITY, False), (77, 300, 33, act.LEAKY_RELU, False)]
    for M, N, K, kind, has_bias in cases:
        a, w = rng.standard_normal((M, K)).astype(dtype), rng.standard_normal((N, K)).astype(dtype)
        bias = rng.standard_normal(N).astype(dtype) if has_bias else w[0]
        want = np.empty((M, N), dtype)
        mm.matmul(want, a, w, trans_b=True)
        if has_bias or kind != act.IDENTITY:
            act.bias_activation_forward(want, bias, kind, 0.1, has_bias)
        assert packed.packs(M, N, K, dtype)
        got = np.empty((M, N), dtype)
        packed.gemm_packed(got, a, packed.pack_weight(w, M), ap, tmp, numba.get_num_threads(), bias, kind, 0.1,
                           has_bias)
        assert np.array_equal(got, want), (M, N, K)



@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_feed_forward_gives_two_packed_products_bits(dtype):
    # ffn_packed (both products row tile by row tile, one parallel region) = gemm_packed
    # of x with w1 (its epilogue), then of h with w2, bit for bit: serial and parallel,
    # a hidden width over several column blocks (NC) and a K over several K groups
    from fastnn.kernels import activations as act
    from fastnn.kernels import matmul_packed as packed
    rng = np.random.default_rng(5)
    ap, tmp = packed.workspace(dtype)
    threads = numba.get_num_threads()
    cases = [(2048, 128, 512, act.RELU, True, False), (200, 32, 64, act.GELU, False, True),
             (333, 70, 2100, act.RELU, True, True), (64, 1500, 2100, act.IDENTITY, False, False)]
    for M, E, F, kind, has_b1, has_b2 in cases:
        x = rng.standard_normal((M, E)).astype(dtype)
        w1, w2 = rng.standard_normal((F, E)).astype(dtype), rng.standard_normal((E, F)).astype(dtype)
        b1, b2 = rng.standard_normal(F).astype(dtype), rng.standard_normal(E).astype(dtype)
        assert packed.packs(M, F, E, dtype) and packed.packs(M, E, F, dtype)
        bp1, bp2 = packed.pack_weight(w1, M), packed.pack_weight(w2, M)
        h_want, want = np.empty((M, F), dtype), np.empty((M, E), dtype)
        packed.gemm_packed(h_want, x, bp1, ap, tmp, threads, b1, kind, 0.0, has_b1)
        packed.gemm_packed(want, h_want, bp2, ap, tmp, threads, b2, act.IDENTITY, 0.0, has_b2)
        for t in sorted({1, threads}):
            h, got = np.empty((M, F), dtype), np.empty((M, E), dtype)
            fn = packed.ffn_handle(h, x, bp1, ap, tmp, b1, kind, 0.0, has_b1)
            packed.ffn_packed(got, x, h, bp1, b1, kind, 0.0, has_b1, bp2, b2, has_b2, ap, tmp, t, fn)
            assert np.array_equal(h, h_want) and np.array_equal(got, want), (M, E, F, t)


def test_k_zero():
    a = np.empty((4, 0), np.float32)
    b = np.empty((0, 6), np.float32)
    out = np.full((4, 6), 7.0, np.float32)
    mm.matmul(out, a, b, accumulate=True)
    assert np.all(out == 7.0)
    mm.matmul(out, a, b)
    assert np.all(out == 0.0)
    big = np.full((300, 300), 3.0)
    mm.matmul(big, np.empty((300, 0)), np.empty((0, 300)))
    assert np.all(big == 0.0)


def _unaligned(x):
    """A copy of ``x`` whose data starts one byte past an aligned address."""
    raw = np.zeros(x.nbytes + 1, np.uint8)
    y = np.frombuffer(raw.data, x.dtype, x.size, offset=1).reshape(x.shape)
    y[...] = x
    assert not y.flags.aligned
    return y


@pytest.mark.parametrize("shape", [(64, 96, 80), (2, 512, 300), (300, 7, 90)])  # packed, split GEMV, swapped
def test_read_only_and_unaligned_operands_give_the_same_bits(shape):
    # the parallel kernel calls its parts through handles made for its operands'
    # types: a read-only or unaligned operand gets handles (or copies) of its own
    M, N, K = shape
    rng = np.random.default_rng(3)
    a, b = _operands(rng, M, N, K, False, True, np.float32)
    want = np.empty((M, N), np.float32)
    mm.matmul(want, a, b, False, True)
    for ro_a, ro_b in [(True, False), (False, True), (True, True)]:
        x, y = a.copy(), b.copy()
        x.flags.writeable, y.flags.writeable = not ro_a, not ro_b
        out = np.empty_like(want)
        mm.matmul(out, x, y, False, True)
        assert np.array_equal(out, want)
    out = np.empty_like(want)
    mm.matmul(out, _unaligned(a), _unaligned(b), False, True)
    assert np.array_equal(out, want)
    out = _unaligned(np.ones_like(want))
    mm.matmul(out, a, b, False, True, accumulate=True)
    assert np.array_equal(out, want + 1)

def test_nan_propagates():
    rng = np.random.default_rng(2)
    a, b = _operands(rng, 100, 90, 300, False, False, np.float32)
    a[5, 7] = np.nan
    out = np.empty((100, 90), np.float32)
    mm.matmul(out, a, b)
    assert np.all(np.isnan(out[5])) and np.isfinite(np.delete(out, 5, axis=0)).all()


# Shapes past the serial threshold, across K blocks (K > KC), column blocks
# (N > NC), packed-b groups (K * N > B_PACK) and few-column (swapped) products.
THREAD_SHAPES = [(128, 256, 784), (1024, 96, 300), (37, 300, 1100), (16, 2100, 20),
                 (8, 2048, 1500), (200, 48, 27), (5000, 6, 25), (3000, 16, 150)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, False), (True, True)])
def test_thread_count_independent(dtype, trans_a, trans_b):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 threads")
    rng = np.random.default_rng(3)
    before = numba.get_num_threads()
    try:
        for M, N, K in THREAD_SHAPES:
            a, b = _operands(rng, M, N, K, trans_a, trans_b, dtype)
            init = rng.standard_normal((M, N)).astype(dtype)
            results = []
            for threads in (1, 2):
                numba.set_num_threads(threads)
                out = init.copy()
                mm.matmul(out, a, b, trans_a, trans_b, accumulate=True)
                results.append(out)
            assert np.array_equal(results[0], results[1])
            _check(results[1], _reference(a, b, trans_a, trans_b) + init, a, b, trans_a, trans_b, dtype)
    finally:
        numba.set_num_threads(before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transposing_copy_matches_element_by_element(dtype):
    # copy8 (the packing under every product): whole 8-row groups of unit-stride rows
    # go 8 x 8 blocks at a time through vector shuffles, the tails and other layouts
    # element by element; dst[k*ld + r] = src[r, k] and nothing else written
    from fastnn.kernels.microkernel import copy8
    rng = np.random.default_rng(4)
    base = rng.standard_normal((12, 300)).astype(dtype)
    for rows in (8, 7, 1):
        for kc in (1, 7, 8, 9, 16, 37, 128, 259):
            for src in (base[1:1 + rows, 3:3 + kc], base[::-1][:rows, :kc], base[:, ::-1][:rows, :kc]):
                for ld in (8, 11, 32):
                    dst = np.full(kc * ld + 16, -7, dtype)
                    copy8(dst, ld, src, rows, kc)
                    want = np.full_like(dst, -7)
                    for k in range(kc):
                        want[k * ld:k * ld + rows] = src[:, k]
                    assert np.array_equal(dst, want), (rows, kc, ld, src.strides)


@pytest.mark.parametrize("budget", [16, 6, 4, 3, 2, 1])
@pytest.mark.parametrize("rows,vectors", [(8, 2), (6, 2), (4, 2), (1, 8), (1, 2), (8, 1)])
def test_sub_tiles_cover_the_micro_tile_once_within_the_register_budget(rows, vectors, budget):
    from fastnn.kernels.microkernel import sub_tiles

    seen = []
    for r0, nr, v0, nv in sub_tiles(rows, vectors, budget):
        assert nr >= 1 and nv >= 1 and (nr * nv <= budget or nr == nv == 1)
        seen += [(r, v) for r in range(r0, r0 + nr) for v in range(v0, v0 + nv)]
    assert sorted(seen) == [(r, v) for r in range(rows) for v in range(vectors)]


def test_register_budget_follows_the_target_features():
    from fastnn.kernels.microkernel import register_budget

    assert register_budget("+64bit,+avx,+avx2,+fma,+avx512f,+avx512bw") == 16
    assert register_budget("+64bit,+avx,+avx2,+fma,-avx512f,-avx512bw") == 6
    assert register_budget("+64bit,+sse4.2,-avx,-avx2,-avx512f") == 3
    assert register_budget("") == 3


TILES = """
import json
import numba
import numpy as np
from numba.core.registry import cpu_target
from fastnn.kernels.microkernel import MR, NV, ROW_PANELS, micro, micro_row, register_budget

@numba.njit
def tiles(c, row, ap, bp, kc, nr):
    micro(c, 0, nr, ap, 0, bp, 0, kc, 0)  # the MR x NR tile
    micro(c, 0, nr, ap, 0, bp, 0, kc, 1)  # and added to it
    micro_row(row, 0, ap, 0, bp, 0, kc * nr, kc, 0)  # one row times ROW_PANELS panels

rng = np.random.default_rng(5)
nr, kc = NV * 16, 300
ap = rng.standard_normal(MR * kc).astype(np.float32)
bp = rng.standard_normal(ROW_PANELS * kc * nr).astype(np.float32)
c, row = np.zeros(MR * nr, np.float32), np.zeros(ROW_PANELS * nr, np.float32)
tiles(c, row, ap, bp, kc, nr)
print(json.dumps({"budget": register_budget(cpu_target.target_context.codegen()._tm_features),
                  "bits": [c.view(np.uint32).tolist(), row.view(np.uint32).tolist()]}))
"""


def test_the_micro_kernel_gives_the_same_bits_whatever_the_register_budget(tmp_path):
    """On a target with fewer vector registers (here LLVM's generic x86-64: SSE, 16 xmm,
    its FMAs calls to ``fmaf``) the micro-tiles are computed as more, smaller sub-tiles:
    every output is the same chain of FMAs, so the same bits as this machine's tiles."""
    import contextlib
    import io
    import json
    import os
    import platform
    import subprocess
    import sys

    if numba.config.CPU_NAME is not None or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("needs an x86-64 host and no NUMBA_CPU_NAME of its own")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(TILES, {})
    host = json.loads(printed.getvalue())
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), NUMBA_CPU_NAME="generic")
    proc = subprocess.run([sys.executable, "-c", TILES], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    generic = json.loads(proc.stdout.strip().splitlines()[-1])
    assert generic["budget"] == 3 and host["budget"] in (6, 16)
    assert generic["bits"] == host["bits"]
