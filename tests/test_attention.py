"""scaled_dot_product_attention: the fused (flash-attention style) kernels against a
NumPy reference, float64 gradient checks (masks, causal, L != S, sizes that are not
multiples of the blocks), both backward schedules and thread counts, the unfused
dropout path, memory that stays linear, bad input, and PyTorch cross-checks."""
import tracemalloc

import numpy as np
import pytest

import fastnn
from fastnn.nn import functional as F


def data(shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def leaf(x):
    return fastnn.tensor(x, requires_grad=True)


def reference(q, k, v, mask=None, causal=False, scale=None):
    """softmax(q k^T * scale + mask) v in NumPy; bool masks: True takes part;
    rows with no key give zeros (as the kernel does)."""
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ np.swapaxes(k, -1, -2) * scale
    if causal:
        s = s + np.where(np.tril(np.ones(s.shape[-2:], bool)), 0, -np.inf)
    if mask is not None:
        s = s + (np.where(mask, 0, -np.inf) if mask.dtype == np.bool_ else mask)
    m = s.max(-1, keepdims=True)
    e = np.exp(s - np.where(np.isfinite(m), m, 0))
    total = e.sum(-1, keepdims=True)
    return (e / np.where(total > 0, total, 1)) @ v


# (q shape, key length S, value width Ev): L and S across several 64-blocks, sizes
# not multiples of the blocks or of the micro-tiles, L != S both ways
SHAPES = [((2, 3, 70, 20), 45, 24), ((1, 130, 8), 70, 8), ((5, 3), 7, 2)]


@pytest.mark.parametrize("shape,S,Ev", SHAPES)
@pytest.mark.parametrize("causal", [False, True])
def test_forward_matches_reference(shape, S, Ev, causal):
    q = data(shape, seed=1)
    k = data(shape[:-2] + (S, shape[-1]), seed=2)
    v = data(shape[:-2] + (S, Ev), seed=3)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    assert out.shape == shape[:-1] + (Ev,)
    np.testing.assert_allclose(out.data, reference(q, k, v, causal=causal), rtol=1e-10, atol=1e-12)


def test_float32_forward_and_scale():
    q, k, v = (data((2, 2, 100, 64), np.float32, seed=s) for s in (1, 2, 3))
    out = F.scaled_dot_product_attention(q, k, v, scale=0.3)
    assert out.dtype == np.float32
    want = reference(*(a.astype(np.float64) for a in (q, k, v)), scale=0.3)
    np.testing.assert_allclose(out.data, want, rtol=2e-4, atol=2e-5)


def masks(L, S):
    rng = np.random.default_rng(5)
    keep = rng.random((2, 1, L, S)) > 0.3
    keep[..., 0] = True  # every query sees a key
    return {"bool (N,1,L,S)": keep, "float (L,S)": rng.standard_normal((L, S)),
            "float (1,H,1,S)": rng.standard_normal((1, 3, 1, S)), "bool (S,)": rng.random(S) > 0.5}


@pytest.mark.parametrize("name", ["bool (N,1,L,S)", "float (L,S)", "float (1,H,1,S)", "bool (S,)"])
def test_masks_forward(name):
    q, k, v = data((2, 3, 67, 12), seed=1), data((2, 3, 80, 12), seed=2), data((2, 3, 80, 5), seed=3)
    mask = masks(67, 80)[name]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    np.testing.assert_allclose(out.data, reference(q, k, v, mask), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("causal,mask", [(False, None), (True, None), (False, "bool (N,1,L,S)"),
                                         (False, "float (1,H,1,S)")])
def test_gradcheck_fused(causal, mask):
    L, S = 67, 80
    q, k, v = data((2, 3, L, 12), seed=1), data((2, 3, S, 12), seed=2), data((2, 3, S, 5), seed=3)
    m = None if mask is None else masks(L, S)[mask]
    assert fastnn.gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, m, is_causal=causal),
                            (q, k, v), max_checks=40)


def test_gradcheck_small_and_unbatched():
    q, k, v = data((3, 5), seed=1), data((7, 5), seed=2), data((7, 2), seed=3)
    assert fastnn.gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=True), (q, k, v))


def backward(q, k, v, g, **kw):
    ts = [leaf(a) for a in (q, k, v)]
    out = F.scaled_dot_product_attention(*ts, **kw)
    out.backward(g)
    return [out.data] + [t.grad.data for t in ts]


@pytest.mark.parametrize("heads", [1, 6])  # fewer heads than 2x threads: the split schedule
def test_threads_and_schedules_agree(threads, heads):
    q, k, v = data((heads, 150, 16), seed=1), data((heads, 90, 16), seed=2), data((heads, 90, 16), seed=3)
    g = data((heads, 150, 16), seed=4)
    results = threads(lambda: backward(q, k, v, g, is_causal=True))
    want = [reference(q, k, v, causal=True)]
    np.testing.assert_allclose(results[0][0], want[0], rtol=1e-10, atol=1e-12)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def reference_grads(q, k, v, g):
    """(dq, dk, dv) of the causal attention's <out, g> in NumPy (every query sees a key)."""
    scale = 1 / np.sqrt(q.shape[-1])
    s = q @ np.swapaxes(k, -1, -2) * scale + np.where(np.tril(np.ones((q.shape[-2], k.shape[-2]), bool)), 0, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    dp = g @ np.swapaxes(v, -1, -2)
    ds = p * (dp - (dp * p).sum(-1, keepdims=True)) * scale
    return ds @ k, np.swapaxes(ds, -1, -2) @ q, np.swapaxes(p, -1, -2) @ g


@pytest.mark.parametrize("heads,L,S", [(1, 200, 200), (6, 200, 200), (2, 150, 130)])
def test_causal_gradients_match_reference(heads, L, S):
    # several diagonal blocks (where the kernels skip the tiles causality hides), a
    # partial last one, and both backward schedules (1 head: split; 6: per head)
    q, k, v, g = data((heads, L, 24), seed=1), data((heads, S, 24), seed=2), data((heads, S, 24), seed=3), \
        data((heads, L, 24), seed=4)
    out, *grads = backward(q, k, v, g, is_causal=True)
    np.testing.assert_allclose(out, reference(q, k, v, causal=True), rtol=1e-10, atol=1e-12)
    for got, want in zip(grads, reference_grads(q, k, v, g)):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("heads", [1, 6])
def test_float32_causal_gradients(heads):
    # the float32 kernels' vector softmax loops (forward and backward), both schedules
    L, S, E = 150, 150, 64
    q, k, v, g = (data((heads, n, E), np.float32, seed=s) for s, n in ((1, L), (2, S), (3, S), (4, L)))
    out, *grads = backward(q, k, v, g, is_causal=True)
    assert out.dtype == np.float32 and all(x.dtype == np.float32 for x in grads)
    wide = [a.astype(np.float64) for a in (q, k, v, g)]
    np.testing.assert_allclose(out, reference(*wide[:3], causal=True), rtol=1e-4, atol=1e-5)
    for got, want in zip(grads, reference_grads(*wide)):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", ["bool (N,1,L,S)", "float (1,H,1,S)"])
def test_float32_masked_gradients(name):
    # masks added before the float32 exp; a query with no key gives zeros and zero grads
    L, S = 70, 80
    q, k, v, g = data((2, 3, L, 16), np.float32, 1), data((2, 3, S, 16), np.float32, 2), \
        data((2, 3, S, 8), np.float32, 3), data((2, 3, L, 8), np.float32, 4)
    mask = masks(L, S)[name]
    if mask.dtype == np.bool_:
        mask = mask.copy()
        mask[1, 0, 5] = False
    want = backward(*(a.astype(np.float64) for a in (q, k, v, g)), attn_mask=mask)
    got = backward(q, k, v, g, attn_mask=mask.astype(np.float32) if mask.dtype != np.bool_ else mask)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    if mask.dtype == np.bool_:
        assert np.all(got[0][1, :, 5] == 0) and np.all(got[1][1, :, 5] == 0)


def test_fully_masked_rows_give_zeros():
    q, k, v = data((1, 4, 6), seed=1), data((1, 5, 6), seed=2), data((1, 5, 3), seed=3)
    mask = np.ones((4, 5), bool)
    mask[2] = False
    ts = [leaf(a) for a in (q, k, v)]
    out = F.scaled_dot_product_attention(*ts, attn_mask=mask)
    out.sum().backward()
    assert np.all(out.data[0, 2] == 0) and np.all(ts[0].grad.data[0, 2] == 0)
    assert np.all(np.isfinite(ts[1].grad.data))


@pytest.mark.parametrize("causal", [False, True])
def test_nan_spreads_like_the_reference(causal):
    # a NaN in a query spoils its own row; a NaN in a key, every row that attends to it
    rng = np.random.default_rng(7)
    q, k, v = (rng.standard_normal((1, 2, 200, 16)).astype(np.float32) for _ in range(3))
    q[0, 0, 3, 5] = np.nan
    k[0, 1, 150, 0] = np.nan
    out = F.scaled_dot_product_attention(fastnn.from_numpy(q), fastnn.from_numpy(k), fastnn.from_numpy(v),
                                         is_causal=causal).data
    bad = np.zeros(out.shape, bool)
    bad[0, 0, 3] = True
    bad[0, 1, 150 if causal else 0:] = True
    np.testing.assert_array_equal(np.isnan(out), bad)


def test_keys_masked_in_early_blocks():
    # queries 0..69 see only keys >= 100 (a later 64-key block), query 80 no key: the online
    # softmax starts from all-masked blocks (max -inf) and must neither give NaN nor lose
    # the later keys; a per-key (Lm = 1) mask hiding the first block too
    L, S = 90, 150
    q, k, v = data((2, L, 8), seed=1), data((2, S, 8), seed=2), data((2, S, 3), seed=3)
    keep = np.ones((L, S), bool)
    keep[:70, :100] = False
    keep[80] = False
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    want = reference(q, k, v, keep)
    np.testing.assert_allclose(out.data, want, rtol=1e-10, atol=1e-12)
    assert np.all(out.data[:, 80] == 0)
    late = np.arange(S) >= 64
    np.testing.assert_allclose(F.scaled_dot_product_attention(q, k, v, attn_mask=late).data,
                               reference(q, k, v, late), rtol=1e-10, atol=1e-12)
    assert fastnn.gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, keep), (q, k, v),
                            max_checks=40)


def test_dropout_path():
    q, k, v = data((2, 9, 4), seed=1), data((2, 6, 4), seed=2), data((2, 6, 3), seed=3)

    def fn(a, b, c):
        fastnn.manual_seed(7)
        return F.scaled_dot_product_attention(a, b, c, dropout_p=0.4)

    assert fastnn.gradcheck(fn, (q, k, v))
    plain = F.scaled_dot_product_attention(q, k, v).data
    assert not np.allclose(fn(q, k, v).data, plain)
    assert np.all(F.scaled_dot_product_attention(q, k, v, dropout_p=1.0).data == 0)


def test_mask_with_grad_runs_unfused():
    q, k, v = data((2, 5, 4), seed=1), data((2, 6, 4), seed=2), data((2, 6, 3), seed=3)
    bias = data((5, 6), seed=4)
    assert fastnn.gradcheck(lambda a, m: F.scaled_dot_product_attention(a, k, v, attn_mask=m), (q, bias))


def test_memory_is_linear_in_sequence_length():
    # a (4096, 4096) float32 score matrix would take 64 MiB; the fused path stays
    # at a few times the inputs' size (each 4096 x 16 x 4 B = 256 KiB)
    q, k, v = (leaf(data((1, 4096, 16), np.float32, seed=s)) for s in (1, 2, 3))
    F.scaled_dot_product_attention(q[:, :70], k[:, :70], v[:, :70], is_causal=True).sum().backward()  # compile
    tracemalloc.start()
    try:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        out.sum().backward()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak


def test_errors_name_the_shapes():
    q, k, v = data((2, 5, 4)), data((2, 6, 4)), data((2, 6, 3))
    with pytest.raises(RuntimeError, match=r"attn_mask of shape \(5, 7\)"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((5, 7), bool))
    with pytest.raises(RuntimeError, match="is_causal"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((5, 6), bool), is_causal=True)
    with pytest.raises(RuntimeError, match=r"\(2, 5, 4\), \(2, 6, 3\)"):
        F.scaled_dot_product_attention(q, data((2, 6, 3)), v)
    with pytest.raises(RuntimeError, match="same dtype"):
        F.scaled_dot_product_attention(q, k.astype(np.float32), v)
    with pytest.raises(TypeError, match="bool or float mask"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((5, 6), np.int64))
    with pytest.raises(ValueError, match="dropout_p"):
        F.scaled_dot_product_attention(q, k, v, dropout_p=1.5)


@pytest.mark.parametrize("causal,mask", [(True, None), (False, "float (1,H,1,S)"), (False, "bool (N,1,L,S)")])
def test_matches_torch(causal, mask):
    torch = pytest.importorskip("torch")
    L, S = 70, 80 if not causal else 70
    q, k, v = data((2, 3, L, 16), np.float32, 1), data((2, 3, S, 16), np.float32, 2), data((2, 3, S, 8), np.float32, 3)
    g = data((2, 3, L, 8), np.float32, 4)
    m = None if mask is None else masks(L, S)[mask]
    m = m.astype(np.float32) if m is not None and m.dtype != np.bool_ else m
    mine = backward(q, k, v, g, attn_mask=m, is_causal=causal)
    ts = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    out = torch.nn.functional.scaled_dot_product_attention(*ts, attn_mask=None if m is None else torch.tensor(m),
                                                           is_causal=causal)
    out.backward(torch.tensor(g))
    for a, b in zip(mine, [out.detach().numpy()] + [t.grad.numpy() for t in ts]):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=2e-5)
