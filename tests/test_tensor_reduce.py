"""Reductions, the softmax family and sorting on fastnn Tensors: kernels against the
slow references, float64 gradient checks, PyTorch cross-checks, errors."""
import numpy as np
import pytest

import fastnn
from fastnn.kernels import softmax as softmax_k
from fastnn.ops._util import as_tensor

import reference


def leaf(a, grad=True):
    """A float64 (or given-dtype) leaf Tensor around a copy of ``a``."""
    t = as_tensor(np.array(a))
    return t.requires_grad_() if grad else t


def randn(rng, *shape):
    return rng.standard_normal(shape)


def check(fn, *arrays, **kw):
    assert fastnn.gradcheck(fn, tuple(leaf(a) for a in arrays), **kw)


# ----------------------------------------------------------------- kernels
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (300, 500)])  # the last one runs in parallel
@pytest.mark.parametrize("log", [False, True])
def test_softmax_kernels_match_reference(rng, threads, dtype, shape, log):
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    want_y = reference.log_softmax(x) if log else reference.softmax(x)
    want_dx = reference.softmax_grad(want_y, g, log)
    tol = 1e-5 if dtype == np.float32 else 1e-12

    def run():
        y = np.empty_like(x)
        softmax_k.softmax_rows_forward(y, x, log)
        dx = np.empty_like(x)
        softmax_k.softmax_rows_backward(dx, g, y, log)
        return y, dx

    results = threads(run)
    for y, dx in results:
        assert y.dtype == dtype and dx.dtype == dtype
        np.testing.assert_allclose(y, want_y, rtol=tol, atol=tol)
        np.testing.assert_allclose(dx, want_dx, rtol=tol * 10, atol=tol * 10)
    np.testing.assert_array_equal(results[0][0], results[-1][0])  # rows are owned: same bits


def test_log_softmax_is_stable():
    x = np.array([[1000.0, 0.0, -1000.0], [-90.0, -90.0, -90.0]], np.float32)  # exp underflows
    y = fastnn.log_softmax(x, 1).data
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y[0], [0.0, -1000.0, -2000.0])
    np.testing.assert_allclose(y[1], [-np.log(3)] * 3, rtol=1e-5)
    np.testing.assert_allclose(fastnn.softmax(x, 1).data[0], [1, 0, 0])


# ----------------------------------------------------------------- gradient checks
@pytest.mark.parametrize("dim,keepdim", [(None, False), (0, False), (-1, True), ((0, 2), False), ((-1, 0), True),
                                         (1, True)])
@pytest.mark.parametrize("op", ["sum", "mean", "var", "std", "amax", "amin", "norm", "logsumexp"])
def test_reduction_gradients(rng, op, dim, keepdim):
    if op == "logsumexp" and dim is None:
        dim = (0, 1, 2)
    fn = getattr(fastnn, op)
    check(lambda t: fn(t, dim=dim, keepdim=keepdim), randn(rng, 3, 4, 5))


def test_reduction_gradients_non_contiguous(rng):
    base = randn(rng, 5, 6, 4)
    for op in ("sum", "mean", "var", "std", "amax", "logsumexp", "prod", "softmax", "log_softmax"):
        fn = getattr(fastnn, op)
        t = leaf(base)
        assert fastnn.gradcheck(lambda t: fn(t.permute(2, 0, 1)[:, ::2], 1), (t,), max_checks=40)


@pytest.mark.parametrize("kwargs", [dict(unbiased=False), dict(correction=0), dict(correction=2),
                                    dict(correction=1, keepdim=True)])
def test_var_std_corrections(rng, kwargs):
    x = randn(rng, 4, 6)
    for op in (fastnn.var, fastnn.std):
        check(lambda t: op(t, 1, **kwargs), x)
        check(lambda t: op(t, **kwargs), x)


def test_prod_gradient_with_zeros(rng):
    x = randn(rng, 4, 5)
    x[1, 2] = 0.0  # one zero in row 1
    x[2, 0] = x[2, 3] = 0.0  # two zeros in row 2
    check(lambda t: fastnn.prod(t, 1), x)
    check(lambda t: fastnn.prod(t, -2, keepdim=True), x)
    check(lambda t: fastnn.prod(t), randn(rng, 2, 3))
    y = randn(rng, 3, 2)
    y[0, 0] = 0.0
    check(lambda t: fastnn.prod(t), y)


def test_cumsum_trace_gradients(rng):
    x = randn(rng, 3, 4, 2)
    for d in (0, 1, -1):
        check(lambda t: fastnn.cumsum(t, d), x)
    check(lambda t: fastnn.trace(t), randn(rng, 3, 5))
    check(lambda t: fastnn.trace(t.t()), randn(rng, 4, 3))


@pytest.mark.parametrize("p", ["fro", 2, 1, 3, 1.5, 0.5, float("inf"), -float("inf"), 0])
def test_norm_gradients(rng, p):
    x = randn(rng, 3, 4)
    check(lambda t: fastnn.norm(t, p), x)
    check(lambda t: fastnn.norm(t, p, dim=1, keepdim=True), x)
    check(lambda t: fastnn.norm(t, p, dim=(0, -1)), x)


@pytest.mark.parametrize("dim", [0, 1, 2, -1, -3])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_gradients_every_dim(rng, op, dim):
    fn = getattr(fastnn, op)
    check(lambda t: fn(t, dim), randn(rng, 3, 4, 5))


def test_softmax_implicit_dim_and_dtype(rng):
    x = randn(rng, 2, 3, 4)
    with pytest.warns(UserWarning, match="Implicit dimension"):
        y = fastnn.softmax(x)
    np.testing.assert_allclose(y.data, reference.softmax(x, axis=0))
    with pytest.warns(UserWarning):
        np.testing.assert_allclose(fastnn.log_softmax(x[0]).data, np.log(reference.softmax(x[0], axis=1)))
    t = leaf(x.astype(np.float32))
    y = fastnn.log_softmax(t, -1, dtype=np.float64)
    assert y.dtype == np.float64
    y.sum().backward()
    assert t.grad.dtype == np.float32 and t.grad.shape == t.shape
    assert fastnn.softmax(leaf(3.0, grad=False), 0).item() == 1.0


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", [0, -1, 1])
def test_max_min_dim_gradients(rng, dim, keepdim):
    x = randn(rng, 3, 4, 5)
    for op in (fastnn.max, fastnn.min):
        check(lambda t: op(t, dim, keepdim).values, x)
        assert op(leaf(x), dim, keepdim=keepdim).indices.dtype == np.int64
    check(lambda t: fastnn.max(t), x)
    check(lambda t: t.min(), x)


def test_sort_topk_value_gradients(rng):
    x = randn(rng, 4, 6)
    for d in (0, -1):
        check(lambda t: fastnn.sort(t, d)[0], x)
        check(lambda t: fastnn.sort(t, d, descending=True).values, x)
        check(lambda t: fastnn.topk(t, 3, d).values, x)
        check(lambda t: fastnn.topk(t, 2, d, largest=False)[0], x)


def test_tie_gradients():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])
    t = leaf(x)
    fastnn.max(t, 1).values.sum().backward()  # to the index returned
    np.testing.assert_array_equal(t.grad.data, [[0, 1, 0], [1, 0, 0]])
    t = leaf(x)
    fastnn.amax(t, 1).sum().backward()  # split evenly
    np.testing.assert_array_equal(t.grad.data, [[0, 0.5, 0.5], [0.5, 0.5, 0]])
    t = leaf(x)
    fastnn.max(t).backward()  # whole tensor: split evenly
    np.testing.assert_array_equal(t.grad.data, [[0, 0.5, 0.5], [0, 0, 0]])


# ----------------------------------------------------------------- semantics and dtypes
def test_dtypes_and_shapes(rng):
    x32 = randn(rng, 3, 4).astype(np.float32)
    for op in (fastnn.sum, fastnn.mean, fastnn.var, fastnn.std, fastnn.amax, fastnn.norm, fastnn.prod):
        assert op(x32).dtype == np.float32 and op(x32).shape == ()
    ints = np.arange(12, dtype=np.int32).reshape(3, 4)
    assert fastnn.sum(ints).dtype == np.int64 and fastnn.sum(ints).item() == 66
    assert fastnn.sum(ints > 5, 1).dtype == np.int64
    assert fastnn.cumsum(ints, 0).dtype == np.int64 and fastnn.prod(ints[:, 1:], 1).dtype == np.int64
    assert fastnn.trace(ints).dtype == np.int64
    assert fastnn.sum(x32, dtype=np.float64).dtype == np.float64
    assert fastnn.sum(x32, dim=None, keepdim=True).shape == (1, 1)
    assert fastnn.sum(x32, ()).shape == ()
    assert fastnn.argmax(x32, keepdim=True).shape == (1, 1)
    assert fastnn.amax(x32, ()).shape == ()
    assert fastnn.var(x32, False).item() == pytest.approx(np.var(x32), rel=1e-5)  # var(input, unbiased)
    with pytest.raises(RuntimeError, match="mean"):
        fastnn.mean(ints)
    assert fastnn.mean(ints, dtype=np.float64).item() == pytest.approx(5.5)


def test_float32_sum_accumulates_like_numpy(rng):
    x = (rng.standard_normal(100_003) + 1000).astype(np.float32)
    assert fastnn.sum(x).item() == np.sum(x)
    assert fastnn.mean(x).item() == np.mean(x)


def test_zero_dim_inputs():
    s = leaf(2.5)
    for op in (fastnn.sum, fastnn.mean, fastnn.amax, fastnn.logsumexp):
        assert op(s, 0).shape == ()
    assert fastnn.max(s, 0).indices.item() == 0
    assert fastnn.sort(s).values.item() == 2.5
    assert fastnn.cumsum(s, -1).item() == 2.5
    assert fastnn.nonzero(s).shape == (1, 0)
    assert fastnn.log_softmax(s, 0).item() == 0.0
    out = fastnn.sum(s, 0) * 2
    out.backward()
    assert s.grad.item() == 2.0


def test_non_differentiable_ops():
    x = np.array([[3.0, 1.0, 3.0, 2.0], [0.0, 0.0, 5.0, 0.0]])
    assert fastnn.argmax(x).item() == 6 and fastnn.argmin(x, 1).tolist() == [1, 0]
    assert fastnn.argsort(x, 1, descending=True).tolist() == [[0, 2, 3, 1], [2, 0, 1, 3]]
    values, indices = fastnn.sort(x, 1, descending=True, stable=True)
    assert indices.tolist() == [[0, 2, 3, 1], [2, 0, 1, 3]] and values.tolist()[0] == [3, 3, 2, 1]
    assert fastnn.topk(x, 2).indices.tolist() == [[0, 2], [2, 0]]
    assert fastnn.all(x > -1).item() and fastnn.any(x, 1).tolist() == [True, True]
    assert fastnn.all(x, (0, 1), keepdim=True).shape == (1, 1)
    assert fastnn.nonzero(x[1]).tolist() == [[2]]
    assert [t.tolist() for t in fastnn.nonzero(x, as_tuple=True)] == [[0, 0, 0, 0, 1], [0, 1, 2, 3, 2]]
    values, inverse, counts = fastnn.unique(x, return_inverse=True, return_counts=True)
    assert values.tolist() == [0, 1, 2, 3, 5] and counts.tolist() == [3, 1, 1, 2, 1]
    assert inverse.shape == x.shape and inverse.dtype == np.int64
    assert np.array_equal(values.data[inverse.data], x)


def test_max_with_tensor_is_maximum():
    if not hasattr(fastnn.ops, "maximum"):
        pytest.skip("maximum not written yet")
    a, b = leaf([1.0, 5.0]), leaf([3.0, 2.0])
    assert fastnn.max(a, b).tolist() == [3.0, 5.0] and a.min(b).tolist() == [1.0, 2.0]


def test_tensor_methods(rng):
    t = leaf(randn(rng, 3, 4))
    assert t.sum(1).shape == (3,) and t.max(dim=1)[0].shape == (3,) and t.softmax(-1).shape == (3, 4)
    assert t.topk(2, dim=0).values.shape == (2, 4) and t.amax(1).shape == (3,)
    assert t.logsumexp(1, keepdim=True).shape == (3, 1) and t.std(0, correction=0).shape == (4,)


def test_tensor_norm_method(rng):
    x = randn(rng, 3, 4)
    assert leaf(x).norm(dim=1).tolist() == fastnn.norm(x, dim=1).tolist()


# ----------------------------------------------------------------- errors
def test_errors():
    x = np.zeros((2, 3))
    for op in (fastnn.sum, fastnn.mean, fastnn.amax, fastnn.softmax, fastnn.log_softmax, fastnn.cumsum,
               fastnn.argmax, fastnn.sort, fastnn.logsumexp):
        with pytest.raises(IndexError, match=op.__name__):
            op(x, 2)
    with pytest.raises(IndexError, match="sum"):
        fastnn.sum(x, (0, -3))
    with pytest.raises(RuntimeError, match="sum"):
        fastnn.sum(x, (1, -1))
    with pytest.raises(RuntimeError, match="max"):
        fastnn.max(np.zeros(0))
    with pytest.raises(IndexError, match="max"):
        fastnn.max(np.zeros((0, 3)), 0)
    with pytest.raises(RuntimeError, match="amin"):
        fastnn.amin(np.zeros((0, 3)))
    with pytest.raises(IndexError, match="argmax"):
        fastnn.argmax(np.zeros(0))
    with pytest.raises(RuntimeError, match="topk"):
        fastnn.topk(x, 4)
    with pytest.raises(RuntimeError, match="trace"):
        fastnn.trace(np.zeros(3))
    with pytest.raises(ValueError, match="norm"):
        fastnn.norm(x, "nuc")
    assert fastnn.softmax(np.zeros((0, 3)), 1).shape == (0, 3)
    assert fastnn.logsumexp(np.zeros((0, 3)), 0).tolist() == [-np.inf] * 3


# ----------------------------------------------------------------- PyTorch cross-checks
CASES = [
    ("sum", lambda m, t: m.sum(t, (0, 2), keepdim=True)),
    ("mean", lambda m, t: m.mean(t, -1)),
    ("var", lambda m, t: m.var(t, 1, unbiased=False)),
    ("var_correction", lambda m, t: m.var(t, (0, 1), correction=2)),
    ("std", lambda m, t: m.std(t, 0, keepdim=True)),
    ("prod", lambda m, t: m.prod(t, 1)),
    ("cumsum", lambda m, t: m.cumsum(t, -2)),
    ("max", lambda m, t: m.max(t, 1).values),
    ("min_all", lambda m, t: m.min(t)),
    ("amax", lambda m, t: m.amax(t, (0, 2))),
    ("norm", lambda m, t: m.norm(t, 3, dim=1)),
    ("norm_fro", lambda m, t: m.norm(t)),
    ("norm_inf", lambda m, t: m.norm(t, float("inf"), dim=-1)),
    ("logsumexp", lambda m, t: m.logsumexp(t, (1, 2))),
    ("softmax", lambda m, t: m.softmax(t, 1)),
    ("log_softmax", lambda m, t: m.log_softmax(t, 0)),
    ("sort", lambda m, t: m.sort(t, 1, descending=True).values),
    ("topk", lambda m, t: m.topk(t, 2, dim=-1, largest=False).values),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,fn", CASES, ids=[c[0] for c in CASES])
def test_matches_torch(rng, name, fn, dtype):
    torch = pytest.importorskip("torch")
    x = (rng.standard_normal((3, 4, 5)) + 0.5).astype(dtype)
    t = leaf(x)
    tt = torch.tensor(x, requires_grad=True)
    out, want = fn(fastnn, t), fn(torch, tt)
    assert out.shape == tuple(want.shape) and out.dtype == dtype
    g = rng.standard_normal(out.shape).astype(dtype)
    out.backward(g)
    want.backward(torch.tensor(g))
    tol = 2e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(out.data, want.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(t.grad.data, tt.grad.numpy(), rtol=tol * 10, atol=tol * 10)
    assert t.grad.dtype == dtype


def test_non_differentiable_ops_match_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.integers(0, 4, (4, 6)).astype(np.float64)  # many ties
    tx = torch.tensor(x)
    for d in (0, 1):
        for desc in (False, True):
            got = fastnn.sort(x, d, descending=desc, stable=True)
            want = torch.sort(tx, dim=d, descending=desc, stable=True)
            assert got.indices.tolist() == want.indices.tolist() and got.values.tolist() == want.values.tolist()
        assert fastnn.argmax(x, d).tolist() == torch.argmax(tx, d).tolist()
        assert fastnn.argmin(x, d, keepdim=True).tolist() == torch.argmin(tx, d, keepdim=True).tolist()
        assert fastnn.max(x, d).indices.tolist() == torch.max(tx, d).indices.tolist()
    assert fastnn.nonzero(x).tolist() == torch.nonzero(tx).tolist()
    got = fastnn.unique(x, return_inverse=True, return_counts=True)
    want = torch.unique(tx, return_inverse=True, return_counts=True)
    assert all(a.tolist() == b.tolist() for a, b in zip(got, want))
    nan = np.array([1.0, np.nan, 3.0])
    assert fastnn.argmax(nan).item() == torch.argmax(torch.tensor(nan)).item()
    assert fastnn.sort(nan).indices.tolist() == torch.sort(torch.tensor(nan)).indices.tolist()
