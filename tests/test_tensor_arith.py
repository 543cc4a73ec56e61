"""Elementwise arithmetic, selection, products and comparisons of the Tensor API
(ops/arith.py, ops/products.py, ops/compare.py): float64 gradient checks with
broadcasting, scalars, 0-d and non-contiguous inputs; PyTorch cross-checks of
values, dtypes and gradients; error messages; the per-op overhead."""
import sys

import numpy as np
import pytest

import fastnn as fn
from fastnn.ops import products


def leaf(shape, seed=0, low=None, transposed=False):
    """A float64 leaf that requires grad; ``low``: values in [low, low + 1.5);
    ``transposed``: a non-contiguous (transposed) view."""
    rng = np.random.default_rng(seed)
    array = rng.standard_normal(shape[::-1] if transposed else shape)
    if low is not None:
        array = np.asarray(low + rng.random(array.shape) * 1.5)
    if transposed:
        array = array.T
    return fn.from_numpy(array).requires_grad_()


def check(f, *inputs):
    assert fn.gradcheck(f, inputs, atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------ gradients
UNARY = [("neg", None), ("abs", None), ("square", None), ("exp", None), ("log", 0.2), ("log1p", -0.5),
         ("log2", 0.2), ("log10", 0.2), ("sqrt", 0.2), ("rsqrt", 0.2), ("reciprocal", 0.2), ("sin", None),
         ("cos", None)]


@pytest.mark.parametrize("name,low", UNARY)
@pytest.mark.parametrize("shape,transposed", [((3, 4), False), ((3, 4), True), ((), False)])
def test_unary_gradients(name, low, shape, transposed):
    x = leaf(shape, 1, low, transposed)
    check(getattr(fn, name), x)
    check(lambda t: getattr(t, name)(), x)  # the Tensor method


BINARY = [("add", None), ("sub", None), ("mul", None), ("div", 0.5), ("pow", 0.5), ("maximum", None),
          ("minimum", None)]
SHAPES = [((3, 4), (3, 4)), ((3, 1), (1, 4)), ((4,), (3, 4)), ((3, 4), ()), ((), (2, 3)), ((), ()),
          ((2, 1, 4), (3, 1))]


@pytest.mark.parametrize("name,low", BINARY)
@pytest.mark.parametrize("sa,sb", SHAPES)
def test_binary_gradients_broadcasting(name, low, sa, sb):
    a, b = leaf(sa, 2, low), leaf(sb, 3, low)
    check(getattr(fn, name), a, b)


@pytest.mark.parametrize("name,low", BINARY)
def test_binary_gradients_scalars_and_views(name, low):
    a = leaf((3, 4), 4, low, transposed=True)
    b = leaf((3, 4), 5, low, transposed=True)
    check(getattr(fn, name), a, b)
    check(lambda t: getattr(fn, name)(t, 1.7), a)
    check(lambda t: getattr(fn, name)(1.3, t), b)
    check(lambda t: getattr(fn, name)(t, np.full((1, 4), 1.1)), a)  # an array constant


def test_operators_and_alpha():
    a, b = leaf((3, 4), 6, 0.5), leaf((4,), 7, 0.5)
    check(lambda x, y: (2 - x) * y / 3 + x ** 2 - 1 / y + 2 ** y - (-x) + abs(x), a, b)
    check(lambda x, y: fn.add(x, y, alpha=0.5) + fn.sub(x, y, alpha=2), a, b)


def test_pow_edge_gradients():
    x = fn.tensor([0.0, 1.0, 2.0], dtype=fn.float64, requires_grad=True)
    e = fn.tensor([0.0, 2.0, 0.0], dtype=fn.float64, requires_grad=True)
    y = fn.pow(x, e)
    y.backward(np.ones(3))
    np.testing.assert_allclose(x.grad.data, [0.0, 2.0, 0.0])  # b == 0: no gradient, not NaN
    np.testing.assert_allclose(e.grad.data, [0.0, 0.0, np.log(2.0)])  # a == 0, b >= 0: 0


@pytest.mark.parametrize("lo,hi", [(-0.5, 0.5), (-0.3, None), (None, 0.2)])
def test_clamp_gradients_number_bounds(lo, hi):
    x = leaf((5, 4), 8, transposed=True)
    check(lambda t: fn.clamp(t, lo, hi), x)
    check(lambda t: t.clip(min=lo, max=hi), x)


def test_clamp_gradients_tensor_bounds():
    x = leaf((3, 4), 9)
    lo, hi = leaf((4,), 10) * 0.3 - 0.8, leaf((3, 1), 11) * 0.3 + 0.8
    check(lambda t, a, b: fn.clamp(t, a, b), x, lo.detach().requires_grad_(), hi.detach().requires_grad_())
    check(lambda t, a: fn.clamp(t, min=a), x, lo.detach().requires_grad_())
    check(lambda t, b: fn.clamp(t, max=b), x, hi.detach().requires_grad_())


def test_where_and_masked_fill_gradients():
    x, y = leaf((3, 4), 12), leaf((4,), 13)
    cond = np.random.default_rng(0).random((3, 4)) > 0.5
    check(lambda a, b: fn.where(cond, a, b), x, y)
    check(lambda a: fn.where(cond[:1], a, 0.5), x)
    check(lambda b: fn.where(cond, 2.0, b), y)
    value = fn.tensor(1.5, dtype=fn.float64, requires_grad=True)
    check(lambda a, v: fn.masked_fill(a, cond[0], v), x, value)
    check(lambda a: a.masked_fill(fn.tensor(cond), -1.0), x)


MATMUL_SHAPES = [((3, 4), (4, 5)), ((4,), (4,)), ((4,), (4, 5)), ((3, 4), (4,)), ((2, 3, 4), (4, 5)),
                 ((3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((4,), (2, 4, 5)), ((2, 3, 4), (4,)),
                 ((5, 4), (4, 1)), ((1, 4), (4, 6))]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
def test_matmul_gradients(sa, sb):
    a, b = leaf(sa, 14), leaf(sb, 15)
    check(fn.matmul, a, b)
    check(lambda x, y: x @ y, a, b)


def test_product_gradients_views_and_family():
    a, b = leaf((3, 4), 16, transposed=True), leaf((4, 5), 17, transposed=True)
    check(fn.matmul, a, b)
    check(fn.mm, a, b)
    check(lambda x: x @ np.ones((4, 2)), a)  # a constant right factor
    check(fn.bmm, leaf((2, 3, 4), 18), leaf((2, 4, 5), 19))
    check(fn.outer, leaf((3,), 20), leaf((4,), 21))
    check(fn.dot, leaf((4,), 22), leaf((4,), 23))
    for shape, beta, alpha in [((3, 5), 1, 1), ((5,), 0.5, 2.0), ((1, 5), 2, 1), ((), 1, -1.5), ((3, 1), 0, 1)]:
        check(lambda c, x, y: fn.addmm(c, x, y, beta=beta, alpha=alpha), leaf(shape, 24), leaf((3, 4), 25),
              leaf((4, 5), 26, transposed=True))


def test_conversion_and_clone_gradients():
    x = leaf((3, 4), 27, transposed=True)
    check(fn.clone, x)
    check(lambda t: fn.to_dtype(t, fn.float64, copy=True) * 2, x)
    y = fn.tensor([1.0, 2.0], requires_grad=True)  # float32
    z = y.double() * fn.tensor([3.0, 4.0], dtype=fn.float64)
    assert z.dtype == np.float64
    z.backward(np.ones(2))
    assert y.grad.dtype == np.float32
    np.testing.assert_allclose(y.grad.data, [3.0, 4.0])
    assert y.to(fn.float32) is y
    assert not y.long().requires_grad and y.long().dtype == np.int64


def test_mixed_dtype_gradients_keep_input_dtype():
    x32 = fn.tensor([[1.0, 2.0]], requires_grad=True)
    w64 = fn.tensor(3.0, dtype=fn.float64, requires_grad=True)
    out = x32 * w64  # a 0-d float64 does not raise the dtype (PyTorch's rule)
    assert out.dtype == np.float32
    out.backward(np.ones((1, 2), np.float32))
    assert x32.grad.dtype == np.float32 and w64.grad.dtype == np.float64
    np.testing.assert_allclose(w64.grad.data, 3.0)


# ------------------------------------------------------------------ GEMM path
def test_matmul_uses_gemm_and_writes_leaf_grad(monkeypatch):
    calls = []
    real = products.gemm

    def spy(out, a, b, trans_a=False, trans_b=False, accumulate=False):
        calls.append((a.flags.c_contiguous, b.flags.c_contiguous, trans_a, trans_b, accumulate))
        real(out, a, b, trans_a, trans_b, accumulate)

    monkeypatch.setattr(products, "gemm", spy)
    rng = np.random.default_rng(3)
    x = fn.tensor(rng.standard_normal((6, 5)), dtype=fn.float64, requires_grad=True)
    w = fn.from_numpy(rng.standard_normal((4, 5))).requires_grad_()
    fn.matmul(x, fn.from_numpy(w.data.T))  # a transposed view (no grad needed)
    assert calls == [(True, True, False, True, False)]  # w.T passed as w with a transpose flag
    calls.clear()
    wt = fn.from_numpy(np.ascontiguousarray(w.data.T)).requires_grad_()
    for step in range(2):
        y = fn.matmul(x, wt)
        y.backward(np.ones((6, 4)))
    assert len(calls) == 6 and all(c[0] and c[1] for c in calls)
    assert calls[-1][4]  # the second pass accumulates into .grad inside the GEMM
    np.testing.assert_allclose(wt.grad.data, 2 * x.data.T @ np.ones((6, 4)))
    np.testing.assert_allclose(x.grad.data, 2 * np.ones((6, 4)) @ wt.data.T)
    assert y.grad_fn.name() == "MmBackward0"


def test_inference_path_records_nothing():
    x, y = fn.randn(3, 4), fn.randn(3, 4, requires_grad=True)
    assert fn.add(x, x).grad_fn is None and not fn.mul(x, 2).requires_grad
    with fn.no_grad():
        for out in (x + y, x * y, fn.exp(y), fn.matmul(y, y.T), fn.clamp(y, 0), fn.where(x > 0, y, x)):
            assert out.grad_fn is None and not out.requires_grad
    assert (x + y).grad_fn is not None


def _python_calls(f, *args):
    """Python-level function calls (name, file) made while running f(*args)."""
    seen = []

    def prof(frame, event, arg):
        if event == "call":
            seen.append((frame.f_code.co_name, frame.f_code.co_filename))

    sys.setprofile(prof)
    try:
        f(*args)
    finally:
        sys.setprofile(None)
    return seen


@pytest.mark.parametrize("op", [fn.add, fn.mul, fn.sub, fn.div])
def test_small_elementwise_ops_stay_cheap(op):
    a, b = fn.ones(4, 3), fn.ones(3)
    op(a, b)  # warm
    for args in ((a, b), (a, 2.0)):
        calls = _python_calls(op, *args)
        assert len(calls) <= 10, calls  # a few helpers, no kernel dispatch, no copies
        assert not any("numba" in f or "kernels" in f for _, f in calls), calls
    g = fn.ones(4, 3, requires_grad=True)
    calls = _python_calls(op, g, b)  # recording: the op's few helpers plus the engine's attach
    assert len(calls) <= 30 and len([c for c in calls if "/ops/" in c[1]]) <= 12, calls


# ------------------------------------------------------------------ values and dtypes
def test_dtype_rules():
    f32 = fn.ones(3)
    i64 = fn.tensor([1, 2, 3])
    assert (f32 * 2.5).dtype == np.float32 and (f32 * np.float64(2.5)).dtype == np.float32
    assert (i64 / 2).dtype == np.float32 and (i64 / i64).dtype == np.float32 and (i64 * 0.5).dtype == np.float32
    assert (i64 + 1).dtype == np.int64 and (i64 // 2).dtype == np.int64
    assert (f32 + i64).dtype == np.float32 and (f32 + fn.ones(3, dtype=fn.float64)).dtype == np.float64
    assert fn.sqrt(i64).dtype == np.float32 and fn.abs(i64).dtype == np.int64
    assert fn.floor(i64).dtype == np.int64 and (f32 > 0).dtype == np.bool_
    assert fn.exp(fn.tensor(1.0)).shape == () and isinstance(fn.exp(fn.tensor(1.0)).data, np.ndarray)


def test_comparisons_logic_rounding():
    x = fn.tensor([[-1.5, 0.5, 2.5], [np.nan, np.inf, -3.0]], requires_grad=True)
    for out in (fn.sign(x), fn.floor(x), fn.ceil(x), fn.round(x), x == 0.5, x < 1, fn.isnan(x)):
        assert not out.requires_grad and out.grad_fn is None
    np.testing.assert_array_equal(fn.round(fn.tensor([0.5, 1.5, 2.5, -0.5])).data, [0, 2, 2, -0])
    np.testing.assert_array_equal(fn.isfinite(x).data, [[1, 1, 1], [0, 0, 1]])
    np.testing.assert_array_equal(fn.isinf(x).data, [[0, 0, 0], [0, 1, 0]])
    a, b = fn.tensor([True, False, True]), fn.tensor([True, True, False])
    np.testing.assert_array_equal(fn.logical_xor(a, b).data, [False, True, True])
    np.testing.assert_array_equal(fn.logical_not(a).data, [False, True, False])
    np.testing.assert_array_equal(fn.bitwise_and(fn.tensor([6, 3]), 5).data, [4, 1])
    assert fn.allclose(fn.ones(3), np.ones(3) + 1e-9) and not fn.allclose(fn.ones(3), 2.0)
    assert fn.equal(fn.ones(2, 2), fn.ones(2, 2)) and not fn.equal(fn.ones(2), fn.ones(3))
    assert (x == None) is False  # noqa: E711


def test_integer_division_and_remainder():
    a, b = fn.tensor([7, -7, 7, -7]), fn.tensor([2, 2, -2, -2])
    np.testing.assert_array_equal(fn.floor_divide(a, b).data, [3, -4, -4, 3])
    np.testing.assert_array_equal(fn.div(a, b, rounding_mode="trunc").data, [3, -3, -3, 3])
    np.testing.assert_array_equal(fn.div(a, b, rounding_mode="floor").data, [3, -4, -4, 3])
    np.testing.assert_array_equal(fn.remainder(a, b).data, [1, 1, -1, -1])
    np.testing.assert_array_equal((a % 3).data, [1, 2, 1, 2])
    np.testing.assert_allclose(fn.div(fn.tensor([7.5, -7.5]), 2, rounding_mode="trunc").data, [3.0, -3.0])


# ------------------------------------------------------------------ errors
def test_errors_name_op_and_shapes():
    a, b = fn.ones(2, 3), fn.ones(4)
    for f in (fn.add, fn.mul, fn.maximum, fn.pow):
        with pytest.raises(ValueError, match=rf"{f.__name__}.*\(2, 3\).*\(4,\)"):
            f(a, b)
    with pytest.raises(ValueError, match=r"where"):
        fn.where(np.ones((2, 3), bool), a, b)
    with pytest.raises(RuntimeError, match=r"matmul.*\(2, 3\).*\(4,\)"):
        fn.matmul(a, b)
    with pytest.raises(RuntimeError, match=r"matmul.*batch.*\(2, 2, 3\).*\(3, 3, 4\)"):
        fn.matmul(fn.ones(2, 2, 3), fn.ones(3, 3, 4))
    with pytest.raises(RuntimeError, match=r"matmul.*at least 1"):
        fn.matmul(fn.tensor(2.0), a)
    with pytest.raises(RuntimeError, match=r"mm.*2-D"):
        fn.mm(fn.ones(2, 2, 3), a)
    with pytest.raises(RuntimeError, match=r"bmm"):
        fn.bmm(fn.ones(2, 2, 3), fn.ones(3, 3, 2))
    with pytest.raises(RuntimeError, match=r"dot"):
        fn.dot(fn.ones(3), fn.ones(4))
    with pytest.raises(RuntimeError, match=r"addmm.*\(3,\)"):
        fn.addmm(fn.ones(3), a, fn.ones(3, 5))
    with pytest.raises(ValueError, match="clamp"):
        fn.clamp(a)
    with pytest.raises(TypeError, match="masked_fill"):
        fn.masked_fill(a, np.ones((2, 3)), 0.0)
    with pytest.raises(TypeError, match="to"):
        fn.to_dtype(a, "no such dtype")
    with pytest.raises(RuntimeError, match="pow"):
        fn.pow(fn.tensor([2, 3]), -1)
    with pytest.raises(RuntimeError, match="floor_divide.*zero"):
        fn.floor_divide(fn.tensor([1, 2]), 0)
    with pytest.raises(TypeError, match="bitwise_and"):
        fn.bitwise_and(a, 1)


# ------------------------------------------------------------------ PyTorch
TORCH_BINARY = ["add", "sub", "mul", "div", "pow", "maximum", "minimum"]


def _run_both(torch, ours_fn, torch_fn, arrays, grads):
    ours = [fn.tensor(a, requires_grad=r) for a, r in zip(arrays, grads)]
    theirs = [torch.tensor(a, requires_grad=r) for a, r in zip(arrays, grads)]
    out, tout = ours_fn(*ours), torch_fn(*theirs)
    assert out.shape == tuple(tout.shape) and str(out.dtype) == str(tout.dtype).replace("torch.", "")
    tol = 1e-4 if out.dtype == np.float32 else 1e-6  # float32 sums of hundreds of products
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=tol, atol=tol)
    up = np.random.default_rng(0).standard_normal(out.shape).astype(out.dtype)
    out.backward(up)
    tout.backward(torch.from_numpy(up))
    for t, tt in zip(ours, theirs):
        if tt.requires_grad:
            assert t.grad.dtype == t.dtype
            np.testing.assert_allclose(t.grad.data, tt.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", TORCH_BINARY)
def test_binary_against_torch(name):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    a = (rng.random((3, 1, 4)) + 0.5).astype(np.float32)
    b = (rng.random((2, 4)) + 0.5).astype(np.float32)
    b[0, :2] = a[0, 0, :2]  # ties for maximum/minimum: half the gradient each
    _run_both(torch, getattr(fn, name), getattr(torch, name), [a, b], [True, True])
    if name not in ("maximum", "minimum"):  # torch's take tensors only
        _run_both(torch, lambda x: getattr(fn, name)(x, 1.5), lambda x: getattr(torch, name)(x, 1.5), [a], [True])


@pytest.mark.parametrize("name,low", UNARY)
def test_unary_against_torch(name, low):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    a = rng.standard_normal((3, 4)) if low is None else low + rng.random((3, 4))
    a[0, 0] = 0.0 if low is None else a[0, 0]  # abs'(0) = 0
    _run_both(torch, getattr(fn, name), getattr(torch, name), [a], [True])


def test_selection_against_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4))
    x[0, 0], x[1, 1] = 0.5, -0.5  # on the bounds: the gradient passes (inclusive)
    lo, hi = rng.standard_normal(4) - 0.5, rng.standard_normal((3, 1)) + 0.5
    lo[2] = 3.0  # min > max somewhere
    _run_both(torch, lambda t: fn.clamp(t, -0.5, 0.5), lambda t: torch.clamp(t, -0.5, 0.5), [x], [True])
    _run_both(torch, fn.clamp, torch.clamp, [x, lo, hi], [True, True, True])
    _run_both(torch, lambda t, m: fn.clamp(t, max=m), lambda t, m: torch.clamp(t, max=m), [x, hi], [True, True])
    cond = x > 0
    _run_both(torch, lambda a, b: fn.where(cond, a, b), lambda a, b: torch.where(torch.from_numpy(cond), a, b),
              [x, lo], [True, True])
    _run_both(torch, lambda a, v: fn.masked_fill(a, cond, v),
              lambda a, v: a.masked_fill(torch.from_numpy(cond), v), [x, np.array(2.0)], [True, True])


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES + [((4, 3), (3, 300)), ((70, 40), (40, 90)), ((80, 64), (64, 96)),
                                    ((2, 512), (512, 300))])
def test_matmul_against_torch(sa, sb):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    for dtype in (np.float32, np.float64):
        a, b = rng.standard_normal(sa).astype(dtype), rng.standard_normal(sb).astype(dtype)
        _run_both(torch, fn.matmul, torch.matmul, [a, b], [True, True])


def test_product_family_against_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    c, m1, m2 = rng.standard_normal(5), rng.standard_normal((3, 4)), rng.standard_normal((4, 5))
    _run_both(torch, lambda *t: fn.addmm(*t, beta=0.5, alpha=2), lambda *t: torch.addmm(*t, beta=0.5, alpha=2),
              [c, m1, m2], [True, True, True])
    _run_both(torch, fn.bmm, torch.bmm, [rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 4, 5))],
              [True, True])
    _run_both(torch, fn.outer, torch.outer, [rng.standard_normal(3), rng.standard_normal(4)], [True, True])
    _run_both(torch, fn.dot, torch.dot, [rng.standard_normal(3), rng.standard_normal(3)], [True, False])


@pytest.mark.filterwarnings("ignore:divide by zero")
def test_dtype_promotion_against_torch():
    torch = pytest.importorskip("torch")
    cases = [
        (np.ones(3, np.float32), 2.5), (np.arange(3), 2.5), (np.arange(3), np.arange(1, 4)),
        (np.ones(3, np.float32), np.array(2.0)), (np.arange(3), np.array(2.0, np.float32)),
        (np.ones(3, np.float32), np.arange(3)), (np.array([True, False]), 3), (np.array(2.0), np.arange(3)),
        (np.arange(3, dtype=np.int32), np.array(5)),
    ]
    for a, b in cases:
        for name in ("add", "mul", "div", "maximum", "lt", "floor_divide", "remainder"):
            if name in ("floor_divide", "remainder") and (a.dtype == bool or isinstance(b, float)):
                continue
            tb = b if isinstance(b, (int, float)) else torch.from_numpy(np.asarray(b))
            ta = torch.from_numpy(a)
            if name == "maximum" and isinstance(b, (int, float)):
                continue  # torch.maximum takes tensors only
            ours = getattr(fn, name)(fn.from_numpy(a), fn.from_numpy(np.asarray(b)) if not isinstance(b, (int, float))
                                     else b)
            theirs = getattr(torch, name)(ta, tb)
            assert str(ours.dtype) == str(theirs.dtype).replace("torch.", ""), (name, a.dtype, b)
            np.testing.assert_allclose(ours.data, theirs.numpy(), rtol=1e-6)


def test_rounding_and_division_against_torch():
    torch = pytest.importorskip("torch")
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 1.26, -3.7])
    for name in ("sign", "floor", "ceil", "round", "trunc"):
        np.testing.assert_array_equal(getattr(fn, name)(fn.tensor(x)).data, getattr(torch, name)(torch.tensor(x)))
    np.testing.assert_allclose(fn.round(fn.tensor(x), decimals=1).data, torch.round(torch.tensor(x), decimals=1))
    a, b = np.array([7, -7, 7, -7, 0]), np.array([2, 2, -2, -2, 3])
    for mode in ("trunc", "floor"):
        np.testing.assert_array_equal(fn.div(fn.tensor(a), fn.tensor(b), rounding_mode=mode).data,
                                      torch.div(torch.tensor(a), torch.tensor(b), rounding_mode=mode))
    np.testing.assert_array_equal(fn.remainder(fn.tensor(a * 1.5), 2).data, torch.remainder(torch.tensor(a * 1.5), 2))
