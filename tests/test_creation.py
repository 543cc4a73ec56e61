"""Tensor creation (ops/creation.py): dtype inference, copying and sharing, sizes,
ranges, random draws from fastnn's generator, *_like, and differentiable tril/triu."""
import numpy as np
import pytest

import fastnn as fn


@pytest.fixture
def default_float64():
    previous = fn.get_default_dtype()
    fn.set_default_dtype(fn.float64)
    yield
    fn.set_default_dtype(previous)


def test_tensor_infers_dtypes_and_copies():
    assert fn.tensor([1.0, 2.0]).dtype == np.float32 and fn.tensor(2.5).dtype == np.float32
    assert fn.tensor([1, 2]).dtype == np.int64 and fn.tensor([True, False]).dtype == np.bool_
    assert fn.tensor([]).dtype == np.float32 and fn.tensor([[1, 2.5]]).dtype == np.float32
    assert fn.tensor(np.ones(2)).dtype == np.float64  # arrays keep their dtype
    assert fn.tensor([1, 2], dtype=fn.float64).dtype == np.float64
    source = np.zeros(3)
    t = fn.tensor(source)
    source[0] = 5
    assert t.data[0] == 0 and t.is_leaf and not t.requires_grad
    u = fn.tensor(t, dtype=fn.float32)
    assert u.dtype == np.float32 and not np.shares_memory(u.data, t.data)
    assert fn.tensor(np.ones((3, 2)).T).is_contiguous()
    r = fn.tensor([[1.0, 2.0]], requires_grad=True)
    assert r.requires_grad and r.is_leaf and r.grad_fn is None


def test_tensor_default_dtype(default_float64):
    assert fn.tensor([1.0]).dtype == np.float64 and fn.zeros(2).dtype == np.float64
    assert fn.arange(0, 1, 0.5).dtype == np.float64 and fn.full((2,), 1.5).dtype == np.float64


def test_tensor_errors():
    with pytest.raises(RuntimeError, match="requires_grad"):
        fn.tensor([1, 2], requires_grad=True)
    with pytest.raises(ValueError, match="tensor"):
        fn.tensor([[1, 2], [3]])
    with pytest.raises(TypeError, match="tensor"):
        fn.tensor(["a", "b"])
    with pytest.raises(TypeError, match="dtype"):
        fn.zeros(2, dtype="no such dtype")
    with pytest.raises(ValueError, match="zeros.*negative"):
        fn.zeros(2, -1)
    with pytest.raises(RuntimeError, match="CPU"):
        fn.ones(2, device="cuda")
    assert fn.ones(2, device="cpu").shape == (2,)


def test_from_numpy_and_as_tensor_share_memory():
    a = np.arange(6.0).reshape(2, 3)
    t = fn.from_numpy(a)
    a[0, 0] = 7
    assert t.data[0, 0] == 7 and t.dtype == np.float64
    with pytest.raises(TypeError, match="from_numpy"):
        fn.from_numpy([1.0, 2.0])
    s = fn.as_tensor(a)
    assert np.shares_memory(s.data, a)
    assert fn.as_tensor(a, dtype=fn.float32).dtype == np.float32
    assert fn.as_tensor(t) is t and fn.as_tensor([1.5]).dtype == np.float32
    x = fn.ones(2, requires_grad=True)
    y = fn.as_tensor(x, dtype=fn.float64)  # a conversion stays in the graph
    y.backward(np.ones(2))
    assert x.grad.dtype == np.float32 and np.all(x.grad.data == 1)
    assert fn.is_tensor(t) and not fn.is_tensor(a)


def test_filled():
    assert fn.zeros(2, 3).shape == (2, 3) and fn.zeros((2, 3)).shape == (2, 3) and fn.ones([4]).shape == (4,)
    assert fn.zeros(()).shape == () and fn.empty(0, 3).shape == (0, 3)
    assert np.all(fn.ones(2, dtype=fn.int64).data == 1) and fn.ones(2, dtype=fn.int64).dtype == np.int64
    assert fn.zeros(2, requires_grad=True).requires_grad
    assert fn.full((2, 2), 3).dtype == np.int64 and fn.full((2,), True).dtype == np.bool_
    assert fn.full((2,), 0.5).dtype == np.float32 and np.all(fn.full([2, 3], 7.0, dtype=fn.float64).data == 7)
    np.testing.assert_array_equal(fn.eye(3).data, np.eye(3))
    np.testing.assert_array_equal(fn.eye(2, 4).data, np.eye(2, 4))


def test_ranges_against_torch():
    torch = pytest.importorskip("torch")
    for args in [(5,), (2, 9), (2, 9, 3), (10, 0, -3), (0, 1, 0.1), (0.5, 3), (-1, 1, 0.25)]:
        ours, theirs = fn.arange(*args), torch.arange(*args)
        assert str(ours.dtype) == str(theirs.dtype).replace("torch.", "")
        np.testing.assert_allclose(ours.data, theirs.numpy(), rtol=1e-6)
    for args in [(0, 1, 5), (-2, 3, 1), (1.5, -1, 7), (0, 1, 0)]:
        ours, theirs = fn.linspace(*args), torch.linspace(*args)
        assert ours.dtype == np.float32 and ours.shape == tuple(theirs.shape)
        np.testing.assert_allclose(ours.data, theirs.numpy(), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="arange"):
        fn.arange(0, 5, 0)
    with pytest.raises(ValueError, match="arange"):
        fn.arange(5, 0, 1)
    with pytest.raises(ValueError, match="linspace"):
        fn.linspace(0, 1, -1)


def test_random_draws_from_the_default_generator():
    fn.manual_seed(0)
    first = (fn.rand(3, 2), fn.randn(4), fn.randint(10, (5,)), fn.randint(3, 6, size=(2, 2)))
    fn.manual_seed(0)
    again = (fn.rand(3, 2), fn.randn(4), fn.randint(10, (5,)), fn.randint(3, 6, size=(2, 2)))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.data, b.data)
    u, z, r, s = first
    assert u.dtype == np.float32 and u.shape == (3, 2) and np.all((u.data >= 0) & (u.data < 1))
    assert z.dtype == np.float32 and r.dtype == np.int64 and np.all((r.data >= 0) & (r.data < 10))
    assert np.all((s.data >= 3) & (s.data < 6)) and s.shape == (2, 2)
    assert fn.randint(low=2, high=4, size=(3,)).shape == (3,)
    assert fn.randn(2, dtype=fn.float64, requires_grad=True).requires_grad
    g = np.random.default_rng(5)
    np.testing.assert_array_equal(fn.rand(3, generator=g).data, fn.rand(3, generator=np.random.default_rng(5)).data)
    np.testing.assert_array_equal(fn.randn(2, generator=7).data, fn.randn(2, generator=7).data)
    with pytest.raises(TypeError, match="rand"):
        fn.rand(2, dtype=fn.int64)
    with pytest.raises(ValueError, match="randint"):
        fn.randint(5, 5, (2,))
    with pytest.raises(TypeError, match="randint"):
        fn.randint(5)


def test_like():
    x = fn.ones(2, 3, dtype=fn.float64)
    for f in (fn.zeros_like, fn.ones_like, fn.empty_like, fn.rand_like, fn.randn_like):
        out = f(x)
        assert out.shape == (2, 3) and out.dtype == np.float64 and not out.requires_grad
    assert fn.zeros_like(x, dtype=fn.int64).dtype == np.int64 and fn.ones_like(np.ones(2, np.int32)).dtype == np.int32
    assert np.all(fn.full_like(x, 4).data == 4) and fn.full_like(x, 4).dtype == np.float64
    assert fn.zeros_like(x, requires_grad=True).requires_grad
    with pytest.raises(TypeError, match="rand_like"):
        fn.rand_like(fn.tensor([1, 2]))


@pytest.mark.parametrize("diagonal", [-1, 0, 2])
def test_tril_triu_values_and_gradients(diagonal):
    rng = np.random.default_rng(diagonal + 3)
    for shape in [(4, 5), (2, 3, 3)]:
        x = fn.from_numpy(rng.standard_normal(shape)).requires_grad_()
        for f, ref in ((fn.tril, np.tril), (fn.triu, np.triu)):
            np.testing.assert_array_equal(f(x, diagonal).data, ref(x.data, diagonal))
            assert fn.gradcheck(lambda t: f(t, diagonal=diagonal), (x,))
    xt = fn.from_numpy(rng.standard_normal((5, 4)).T).requires_grad_()  # a transposed view
    assert fn.gradcheck(lambda t: t.tril(diagonal), (xt,))
    with pytest.raises(ValueError, match="tril.*2 dimensions"):
        fn.tril(fn.ones(3))


def test_tril_triu_against_torch():
    torch = pytest.importorskip("torch")
    a = np.random.default_rng(0).standard_normal((3, 4))
    for name in ("tril", "triu"):
        for k in (-2, 0, 1):
            x, tx = fn.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
            out, tout = getattr(fn, name)(x, k), getattr(torch, name)(tx, k)
            np.testing.assert_array_equal(out.data, tout.detach().numpy())
            up = np.arange(12.0).reshape(3, 4)
            out.backward(up)
            tout.backward(torch.from_numpy(up))
            np.testing.assert_array_equal(x.grad.data, tx.grad.numpy())
