"""The recurrence split over threads by hidden units (recurrent.sequence_forward_split),
what an inference plan runs for a batch of one MR panel of rows: the same bits as the
batch-split sequence_forward for every cell type, part layout and thread count (also
more parts than threads, and a garbage sync array), the atomics it hands work over
with, and the plan's results against the eager layer."""
import numba
import numpy as np
import pytest

import fastnn
from fastnn import nn
from fastnn.kernels import _atomic, aligned
from fastnn.kernels import recurrent as rk
from fastnn.kernels import recurrent_product as rp
from fastnn.kernels.microkernel import MR

from _recurrent_models import States

MODES = {"rnn_tanh": rk.RNN_TANH, "rnn_relu": rk.RNN_RELU, "lstm": rk.LSTM, "gru": rk.GRU}


def _problem(mode, T, N, H, dtype, rng, In=24):
    # x and W_ih in eighths of small integers: the input product is exact in any
    # order, so both paths start from the same gates bit for bit
    G = rk.GATES[mode] * H
    x = (rng.integers(-8, 9, (T * N, In)) / 8).astype(dtype)
    w_ih = (rng.integers(-4, 5, (G, In)) / 32).astype(dtype)
    w_hh = (rng.standard_normal((G, H)) / np.sqrt(H)).astype(dtype)
    bias = rng.standard_normal(G).astype(dtype)
    b_hn = rng.standard_normal(H).astype(dtype)
    hs = np.zeros((T + 1, N, H), dtype)
    aux = np.zeros((T + 1, N, H), dtype)
    hs[0] = rng.standard_normal((N, H))
    aux[0] = rng.standard_normal((N, H))
    return x, w_ih, w_hh, bias, b_hn, hs, aux


def _by_rows(mode, x, w_ih, w_hh, bias, b_hn, hs, aux):
    """The input product, then sequence_forward on one chunk of rows (what the split
    stands in for)."""
    hs, aux = hs.copy(), aux.copy()
    T, N, H = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
    G = w_hh.shape[0]
    gates = (x.astype(np.float64) @ w_ih.T.astype(np.float64)).astype(x.dtype).reshape(T, N, G)
    chunk, chunks = rp.chunking(N, 1)
    wp = np.zeros(rp.panel_shape(H, G, gates.dtype), gates.dtype)
    rp.pack_panels(wp, w_hh, True)
    nr = rp.panel_width(gates.dtype)
    hw = np.zeros((chunks, chunk * ((G + nr - 1) // nr * nr)), gates.dtype)
    ap = np.zeros((chunks, chunk * G), gates.dtype)
    fn = rk.forward_handle(hs, aux, gates, bias, b_hn, wp, w_hh, hw, ap, mode)
    rk.sequence_forward(hs, aux, gates, bias, b_hn, wp, w_hh, hw, ap, chunk, mode, True, fn)
    return hs, aux


def _by_units(mode, x, w_ih, w_hh, bias, b_hn, hs, aux, parts, patience=None):
    hs, aux = hs.copy(), aux.copy()
    T, N, H = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
    G, In = w_ih.shape
    dt = x.dtype
    bounds = rk.split_bounds(H, parts, dt)
    assert bounds is not None and len(bounds) - 1 == parts
    order = rk.split_order(H, G // H, bounds)  # every gate column permuted, part by part
    bias = bias[order]
    wp = aligned.empty(rp.panel_shape(H, G, dt), dt)
    rp.pack_panels(wp, np.ascontiguousarray(w_hh[order]), True)
    wip = aligned.empty(rp.panel_shape(In, G, dt), dt)
    rp.pack_panels(wip, np.ascontiguousarray(w_ih[order]), True)
    gates = np.full((T, N, G), np.nan, dt)
    hw = np.full((parts, MR * G), np.nan, dt)
    ap = np.full((parts, MR * max(H, In)), np.nan, dt)
    gs = np.full((parts, G), np.nan, dt)
    sync = aligned.empty(rk.sync_size(T, N, parts), np.int64)
    sync[:] = 3  # what a previous call or garbage left: the kernel starts from zero
    if patience is None:
        patience = rk.split_patience(wp, parts)
    fn = rk.split_handle(hs, aux, gates, x, wip, bias, b_hn, wp, hw, ap, gs, sync, bounds, mode, patience)
    rk.sequence_forward_split(hs, aux, gates, x, wip, bias, b_hn, wp, hw, ap, gs, sync, bounds, mode, patience, fn)
    want = (x.astype(np.float64) @ w_ih[order].T.astype(np.float64)).astype(dt)
    np.testing.assert_array_equal(gates.reshape(T * N, G), want)  # the input product, whole
    return hs, aux


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("dtype,H,parts", [(np.float32, 64, 1), (np.float32, 64, 2), (np.float32, 96, 2),
                                           (np.float32, 128, 4),
                                           (np.float64, 32, 2), (np.float64, 48, 3)])
def test_split_gives_the_bits_of_the_row_chunks(mode, dtype, H, parts, rng, threads):
    # rows one by one (N <= 3) and in a padded panel (N = 5, 8), the input product on
    # whole and partial panels of MR rows (T * N = 5 ... 40); parts of one and of
    # two panels per gate (H = 96: 1 + 2); as many parts as threads, and more (4 parts
    # on 2 threads, or any parts on 1: a thread runs the parts the others do not reach);
    # parts run twice when a thread runs out of patience
    for N in (1, 3, 5, MR):
        problem = _problem(MODES[mode], 5, N, H, dtype, rng)
        want = _by_rows(MODES[mode], *problem)
        for patience in (None, 0):  # no patience: every part not done when a thread looks runs twice
            for got in threads(lambda: _by_units(MODES[mode], *problem, parts, patience)):
                for g, w in zip(got, want):
                    _same(g, w)


def _same(got, want):
    # The two kernels inline the one cell loop into different callers; the optimised
    # build compiles both copies alike (the same bits), but a bounds-checked build
    # (NUMBA_BOUNDSCHECK=1) contracts or reassociates GRU's sums differently in one
    # copy, so there only the rounding agrees: a few units in the last place
    if numba.config.BOUNDSCHECK:
        ulp = np.finfo(got.dtype).eps
        np.testing.assert_allclose(got, want, rtol=8 * ulp, atol=8 * ulp)
    else:
        np.testing.assert_array_equal(got, want)


def test_split_bounds_take_whole_panels():
    NR = rp.panel_width(np.float32)
    np.testing.assert_array_equal(rk.split_bounds(3 * NR, 2, np.float32), [0, NR, 3 * NR])
    np.testing.assert_array_equal(rk.split_bounds(4 * NR, 8, np.float32), [0, NR, 2 * NR, 3 * NR, 4 * NR])
    np.testing.assert_array_equal(rk.split_bounds(4 * NR, 1, np.float32), [0, 4 * NR])  # one thread: one part
    assert rk.split_bounds(NR, 2, np.float32) is None  # one panel
    assert rk.split_bounds(2 * NR + 4, 2, np.float32) is None  # not whole panels
    order = rk.split_order(2 * NR, 3, rk.split_bounds(2 * NR, 2, np.float32))
    assert sorted(order) == list(range(6 * NR))
    assert list(order[:2 * NR]) == list(range(NR)) + list(range(2 * NR, 3 * NR))


@numba.njit(parallel=True)
def _contend(sync, claims, wins, n):
    for c in numba.prange(wins.shape[0]):
        for i in range(n):
            _atomic.fetch_add(sync, 0, 1)
        for f in range(claims.shape[0]):
            if _atomic.load_acquire(claims, f) == 0 and _atomic.compare_swap(claims, f, 0, c + 1):
                wins[c] += 1
            _atomic.pause()


def test_atomics_count_and_claim_exactly_once(threads):
    def run():
        sync = np.zeros(8, np.int64)
        claims = np.zeros(5000, np.int64)
        wins = np.zeros(4, np.int64)
        _contend(sync, claims, wins, 20000)
        return sync[0], wins.sum(), np.all(claims > 0), np.all(claims <= 4)

    for total, won, all_claimed, owners in threads(run):
        assert total == 4 * 20000
        assert won == 5000 and all_claimed and owners


@pytest.mark.parametrize("layer,shape,dtype", [
    (nn.LSTM(16, 64, batch_first=True), (1, 7, 16), np.float32),
    (nn.GRU(8, 96, num_layers=2), (6, 3, 8), np.float32),
    (nn.RNN(5, 64, nonlinearity="relu", bidirectional=True), (4, 2, 5), np.float64),
], ids=["lstm", "gru", "rnn_relu"])
def test_plan_on_the_split_equals_the_eager_layer(layer, shape, dtype, rng):
    from fastnn.inference.recurrent_step import RecurrentStep
    model = States(layer.to(dtype)).eval()
    compiled = fastnn.compile(model)
    x = rng.standard_normal(shape).astype(dtype)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for _ in range(2):
        with fastnn.no_grad():
            want = [t.data for t in model(x)]
            for _ in range(3):
                for g, w in zip(compiled(x), want):
                    np.testing.assert_allclose(g.data, w, **tol)
        with fastnn.no_grad():  # a weight update rebuilds the plan
            layer.weight_hh_l0.mul_(0.5)
    from fastnn.inference import _PLANS
    steps = [s for p in _PLANS[model].values() for s in getattr(p, "steps", ()) if isinstance(s, RecurrentStep)]
    assert steps and all(d.bounds is not None for s in steps for dirs in s.layers for d in dirs)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two threads")
def test_plan_results_do_not_depend_on_the_thread_count(rng):
    # one thread runs the split too (every part): the same bits as two
    model = States(nn.LSTM(700, 64, batch_first=True)).eval()  # (a deep input product: K blocks)
    x = rng.standard_normal((2, 9, 700)).astype(np.float32)
    runs = []
    for threads in (1, 2):
        with fastnn.set_num_threads(threads), fastnn.no_grad():
            compiled = fastnn.compile(model)
            compiled(x)
            runs.append([t.data for t in compiled(x)])
        fastnn.inference.reset(model)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
