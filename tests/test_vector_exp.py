"""The attention's softmax loops in explicit vectors (``kernels.vector_exp``) against
NumPy references in float64: exp's accuracy over its whole range (and 0 below -87,
for -inf, NaN for NaN), the forward's online-softmax step (running max, rescale and
sums, columns still all -inf, rows past ``bk`` untouched) and the backward's
probability rows (the causal limit, zeros past it, NaN spreading)."""
import numpy as np
import pytest
from numba import njit

from fastnn.kernels.vector_exp import online_cols, prob_row


@njit
def _online(st, m, lsum, alpha, bk):
    online_cols(st, m, lsum, alpha, bk)


@njit
def _rows(s, dp, a, shift, dl, scale, lims):
    for r in range(s.shape[0]):
        prob_row(s, dp, np.int64(r), a[r], shift[r], dl[r], scale, lims[r])


def _exp32(x):
    """exp through ``prob_row`` (a = 1, shift 0, no limit)."""
    s = np.array(x, np.float32).reshape(-1, 16)  # a copy: the rows are overwritten
    n = len(s)
    ones, zeros = np.ones(n, np.float32), np.zeros(n, np.float32)
    _rows(s, np.zeros_like(s), ones, zeros, zeros, np.float32(1), np.full(n, 16, np.int64))
    return s.ravel()


def _ulps(got, want):
    """|got - want| in units of float32's spacing at want."""
    return np.abs(got.astype(np.float64) - want) / np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)


def test_exp_accuracy_over_its_range():
    x = np.linspace(-86.9, 88.0, 1 << 16, dtype=np.float32)
    got = _exp32(x)
    assert _ulps(got, np.exp(x.astype(np.float64))).max() <= 2


def test_exp_edges():
    x = np.array([-np.inf, -1e30, -88.0, -87.0, -86.99, 0.0, -0.0, np.nan, 1e-30, -1e-30, 1.0, 88.0]
                 + [0.5] * 4, np.float32)
    got = _exp32(x)
    assert np.all(got[:4] == 0)  # at and below -87: 0
    assert np.isnan(got[7]) and np.all(np.isfinite(np.delete(got, 7)))
    np.testing.assert_array_equal(got[[5, 6, 8, 9]], 1)
    np.testing.assert_allclose(got[[4, 10, 11]], np.exp(x[[4, 10, 11]].astype(np.float64)), rtol=3e-7)


TINY = 1.7e-38  # exp(-87): below it the kernel gives 0 (no subnormals)


def online_reference(st, m, lsum, bk):
    """(st, m, lsum, alpha) after one online-softmax step: exp and the sums in float64,
    of exp's arguments rounded to float32 as the kernel rounds them; the max passes
    over NaN (a NaN logit spoils its own exp, and so its column's sum)."""
    new = np.fmax(m, np.nanmax(np.where(np.isnan(st[:bk]), -np.inf, st[:bk]), 0))
    shift = np.where(new > -np.inf, new, 0).astype(np.float32)
    alpha = np.exp((m - shift).astype(np.float64))
    st = st.astype(np.float64)
    st[:bk] = np.exp((st[:bk].astype(np.float32) - shift).astype(np.float64))
    return st, new, lsum * alpha + st[:bk].sum(0), alpha


@pytest.mark.parametrize("rows,bk,cols", [(64, 64, 64), (64, 37, 128), (5, 1, 64)])
def test_online_step_matches_reference(rows, bk, cols):
    rng = np.random.default_rng(rows + bk)
    st = (rng.standard_normal((rows, cols)) * 4).astype(np.float32)
    m = np.where(rng.random(cols) < 0.3, -np.inf, rng.standard_normal(cols) * 4).astype(np.float32)
    lsum = np.where(m > -np.inf, rng.random(cols) * 10, 0).astype(np.float32)
    st[:, 3] = -np.inf  # a column masked so far, and in this block: stays -inf, gives 0
    m[3], lsum[3] = -np.inf, 0
    st[:, 5] = -np.inf  # masked in this block only: its max, sum and alpha are kept
    m[5], lsum[5] = 1.5, 2.0
    st[0, 7] = 60.0  # a new max far above the old one: alpha underflows to 0
    m[7] = -40.0
    st[0, 9] = np.nan  # a NaN logit: its column's sum is NaN
    want = online_reference(st, m, lsum, bk)
    alpha = np.full(cols, 7, np.float32)
    before = st.copy()
    _online(st, m, lsum, alpha, np.int64(bk))
    for got, ref, rtol in zip((st, m, lsum, alpha), want, (3e-7, 0, 2e-6, 3e-7)):
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=TINY)
    np.testing.assert_array_equal(st[bk:], before[bk:])
    assert m[3] == -np.inf and lsum[3] == 0 and np.all(st[:bk, 3] == 0)
    assert alpha[5] == 1 and m[5] == np.float32(1.5) and lsum[5] == 2
    assert alpha[7] == 0 and m[7] == 60
    assert np.isnan(lsum[9]) and not np.isnan(np.delete(lsum, 9)).any()


def test_probability_rows_match_reference():
    rng = np.random.default_rng(3)
    rows, cols = 40, 64
    s = (rng.standard_normal((rows, cols)) * 3).astype(np.float32)
    dp = rng.standard_normal((rows, cols)).astype(np.float32)
    a = np.where(np.arange(rows) % 2, 0.125, 1).astype(np.float32)
    shift = (rng.standard_normal(rows) + 3).astype(np.float32)
    dl = rng.standard_normal(rows).astype(np.float32)
    lims = np.array([0, 1, 15, 16, 17, 63, 64, 64] * 5, np.int64)
    s[2, 4] = np.nan
    scale = np.float32(0.3)
    # exp's argument rounded once, as the kernel's fused multiply-add rounds it
    p = np.exp((s.astype(np.float64) * a[:, None] - shift[:, None]).astype(np.float32).astype(np.float64))
    d = p * (dp.astype(np.float64) - dl[:, None]) * scale
    live = np.arange(cols) < lims[:, None]
    _rows(s, dp, a, shift, dl, scale, lims)
    np.testing.assert_allclose(s, np.where(live, p, 0), rtol=3e-7, atol=TINY)
    np.testing.assert_allclose(dp, np.where(live, d, 0), rtol=2e-6, atol=1e-7)
    assert np.all(s[~live] == 0) and np.all(dp[~live] == 0)
    assert np.isnan(s[2, 4]) and np.isnan(dp[2, 4])


def test_other_types_are_refused():
    from numba.core.errors import TypingError
    x = np.zeros((4, 64))
    with pytest.raises(TypingError):
        _online(x, np.zeros(64), np.zeros(64), np.zeros(64), np.int64(4))
