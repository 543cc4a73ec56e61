"""Losses: values and gradients against the references and PyTorch, float64 gradient
checks for every option, thread-count independence, and input validation."""
import itertools

import numpy as np
import pytest

import fastnn
import fastnn.nn.functional as F
from fastnn import nn

import reference as ref

REDUCTIONS = ["mean", "sum", "none"]


def leaf(a):
    return fastnn.tensor(np.asarray(a), requires_grad=True)


def value_and_grad(fn, x, *args, upstream=None, **kwargs):
    """fn(x, ...) and d(sum(upstream * out))/dx, x a leaf made from the array ``x``."""
    xt = leaf(x)
    out = fn(xt, *args, **kwargs)
    out.backward(None if upstream is None else fastnn.tensor(np.asarray(upstream, out.data.dtype)))
    return out.data, xt.grad.data


# ------------------------------------------------------------------ ported: references
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (3, 2, 7), (5000, 3)])
def test_mse(dtype, shape, rng):
    pred = rng.standard_normal(shape).astype(dtype)
    target = rng.standard_normal(shape).astype(dtype)
    value, grad = value_and_grad(nn.MSELoss(), pred, target)
    assert value.shape == () and value.dtype == dtype
    assert float(value) == pytest.approx(ref.mse(pred, target), rel=1e-5 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(grad, 2 * (pred - target) / pred.size, rtol=1e-5)
    assert grad.dtype == dtype and grad.shape == shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,c", [(1, 1), (1, 10), (7, 3), (64, 10)])
def test_cross_entropy(dtype, n, c, rng):
    logits = (rng.standard_normal((n, c)) * 5).astype(dtype)
    target = rng.integers(0, c, n)
    value, grad = value_and_grad(nn.CrossEntropyLoss(), logits, target)
    assert value.shape == () and value.dtype == dtype
    assert float(value) == pytest.approx(ref.cross_entropy(logits, target),
                                         rel=1e-5 if dtype == np.float32 else 1e-12, abs=1e-6)
    expected = ref.softmax(logits)
    expected[np.arange(n), target] -= 1
    np.testing.assert_allclose(grad, expected / n, rtol=1e-4, atol=1e-7)
    assert grad.dtype == dtype


def test_cross_entropy_is_stable_for_huge_logits():
    value, grad = value_and_grad(nn.CrossEntropyLoss(), np.array([[1000.0, -1000.0, 0.0]]), np.array([0]))
    assert float(value) == pytest.approx(0.0, abs=1e-12)
    assert np.all(np.isfinite(grad))
    smooth, grad = value_and_grad(nn.CrossEntropyLoss(label_smoothing=0.1, weight=np.ones(3)),
                                  np.array([[1000.0, -1000.0, 0.0]]), np.array([0]))
    assert np.isfinite(float(smooth)) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("shape", [(4,), (6, 3)])
def test_bce_with_logits(shape, rng):
    x = rng.standard_normal(shape) * 4
    t = rng.random(shape)
    assert float(nn.BCEWithLogitsLoss()(x, t)) == pytest.approx(ref.bce_with_logits(x, t), rel=1e-10)
    huge, labels = np.array([800.0, -800.0]), np.array([1.0, 0.0])
    assert float(nn.BCEWithLogitsLoss()(huge, labels)) == pytest.approx(0.0, abs=1e-12)
    value, grad = value_and_grad(nn.BCEWithLogitsLoss(reduction="none", pos_weight=np.array(2.0)), huge, labels,
                                 upstream=np.ones(2))
    np.testing.assert_allclose(value, 0.0, atol=1e-12)
    np.testing.assert_allclose(grad, 0.0, atol=1e-12)


def test_loss_gradchecks(rng):
    assert fastnn.gradcheck(nn.MSELoss(), (rng.standard_normal((4, 3)), rng.standard_normal((4, 3))))
    assert fastnn.gradcheck(nn.CrossEntropyLoss(), (rng.standard_normal((5, 4)), rng.integers(0, 4, 5)))
    assert fastnn.gradcheck(nn.BCEWithLogitsLoss(), (rng.standard_normal((5, 2)), rng.random((5, 2))))
    assert fastnn.gradcheck(nn.NLLLoss(), (rng.standard_normal((5, 4)), rng.integers(0, 4, 5)))


def test_loss_backward_scales_by_upstream_gradient(rng):
    x, t = rng.standard_normal(3), rng.standard_normal(3)
    _, once = value_and_grad(nn.MSELoss(), x, t)
    _, twice = value_and_grad(nn.MSELoss(), x, t, upstream=2.0)
    np.testing.assert_allclose(twice, 2 * once)


def test_losses_return_tensors_with_grad_fn(rng):
    x = leaf(rng.standard_normal((4, 3)))
    for out in (F.mse_loss(x, np.zeros((4, 3))), F.cross_entropy(x, [0, 1, 2, 0]),
                F.nll_loss(x, [0, 1, 2, 0]), F.binary_cross_entropy_with_logits(x, np.zeros((4, 3)))):
        assert isinstance(out, fastnn.Tensor) and out.shape == () and out.requires_grad
    with fastnn.no_grad():
        out = F.cross_entropy(x, [0, 1, 2, 0])
    assert out.grad_fn is None and not out.requires_grad
    assert F.cross_entropy(x.detach(), [0, 1, 2, 0]).grad_fn is None


# ------------------------------------------------------------------ PyTorch cross-checks
def _targets(kind, shape, C, ignore, rng):
    if kind == "prob":
        p = rng.random(shape) + 0.1
        return p / p.sum(axis=0 if len(shape) == 1 else 1, keepdims=True)
    tshape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    t = rng.integers(0, C, tshape)
    if ignore != -100 and t.size > 1:  # some targets ignored, some not (all: see test_all_ignored_...)
        flat = t.reshape(-1)
        flat[::2] = ignore
        flat[1] = (ignore + 1) % C
    return t


def _torch_check(torch, fn, tfn, x, target, rng, target_grad=False, rtol=1e-10, atol=1e-12, **kwargs):
    """fastnn's value and input (and target) gradients against PyTorch's, float64."""
    xt = leaf(x)
    tt = leaf(target) if target_grad else target
    out = fn(xt, tt, **kwargs)
    upstream = rng.standard_normal(out.shape)
    out.backward(fastnn.tensor(upstream))
    tx = torch.tensor(x, requires_grad=True)
    ttarget = torch.tensor(target, requires_grad=target_grad)
    tkwargs = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    tout = tfn(tx, ttarget, **tkwargs)
    tout.backward(torch.tensor(upstream))
    assert out.shape == tuple(tout.shape)
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(xt.grad.data, tx.grad.numpy(), rtol=rtol, atol=atol)
    if target_grad:
        np.testing.assert_allclose(tt.grad.data, ttarget.grad.numpy(), rtol=rtol, atol=atol)


CE_GRID = [(shape, kind, w, ignore, smoothing, reduction)
           for shape, kind, w, ignore, smoothing, reduction in itertools.product(
               [(6, 5), (5,), (3, 4, 2, 3)], ["index", "prob"], [False, True], [-100, 1], [0.0, 0.2], REDUCTIONS)
           if not (kind == "prob" and ignore != -100)]


@pytest.mark.parametrize("shape,kind,use_weight,ignore,smoothing,reduction", CE_GRID)
def test_cross_entropy_matches_torch(shape, kind, use_weight, ignore, smoothing, reduction, rng):
    torch = pytest.importorskip("torch")
    C = shape[0] if len(shape) == 1 else shape[1]
    x = rng.standard_normal(shape) * 3
    target = _targets(kind, shape, C, ignore, rng)
    kwargs = dict(reduction=reduction, label_smoothing=smoothing, ignore_index=ignore)
    if use_weight:
        kwargs["weight"] = rng.random(C) + 0.5
    _torch_check(torch, F.cross_entropy, torch.nn.functional.cross_entropy, x, target, rng,
                 target_grad=kind == "prob", **kwargs)


@pytest.mark.parametrize("shape,use_weight,ignore,reduction",
                         list(itertools.product([(6, 5), (5,), (3, 4, 2, 3)], [False, True], [-100, 2], REDUCTIONS)))
def test_nll_loss_matches_torch(shape, use_weight, ignore, reduction, rng):
    torch = pytest.importorskip("torch")
    C = shape[0] if len(shape) == 1 else shape[1]
    x = rng.standard_normal(shape)
    kwargs = dict(reduction=reduction, ignore_index=ignore)
    if use_weight:
        kwargs["weight"] = rng.random(C) + 0.5
    _torch_check(torch, F.nll_loss, torch.nn.functional.nll_loss, x, _targets("index", shape, C, ignore, rng), rng,
                 **kwargs)


@pytest.mark.parametrize("shape,weight_shape,pos_weight,reduction",
                         list(itertools.product([(6, 3), (2, 3, 4)], [None, "last", "rows"], [False, True],
                                                REDUCTIONS)))
def test_bce_with_logits_matches_torch(shape, weight_shape, pos_weight, reduction, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(shape) * 4
    kwargs = dict(reduction=reduction)
    if weight_shape is not None:
        kwargs["weight"] = rng.random(shape[-1:] if weight_shape == "last" else shape[:-1] + (1,)) + 0.5
    if pos_weight:
        kwargs["pos_weight"] = rng.random(shape[-1]) * 3
    _torch_check(torch, F.binary_cross_entropy_with_logits, torch.nn.functional.binary_cross_entropy_with_logits,
                 x, rng.random(shape), rng, target_grad=True, **kwargs)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(7,), (4, 3, 2)])
def test_mse_matches_torch(shape, reduction, rng):
    torch = pytest.importorskip("torch")
    _torch_check(torch, F.mse_loss, torch.nn.functional.mse_loss, rng.standard_normal(shape),
                 rng.standard_normal(shape), rng, target_grad=True, reduction=reduction)


def test_float32_cross_entropy_with_options_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((9, 4, 3)).astype(np.float32)
    t = rng.integers(0, 4, (9, 3))
    t[0] = 2
    w = (rng.random(4) + 0.5).astype(np.float32)
    _torch_check(torch, F.cross_entropy, torch.nn.functional.cross_entropy, x, t, rng, rtol=1e-5, atol=1e-6,
                 weight=w, ignore_index=2, label_smoothing=0.1)


@pytest.mark.filterwarnings("ignore:size_average and reduce args")
def test_modules_match_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((8, 5))
    t = rng.integers(0, 5, 8)
    w = rng.random(5) + 0.5
    pairs = [(nn.CrossEntropyLoss(weight=w, ignore_index=3, label_smoothing=0.2, reduction="sum"),
              torch.nn.CrossEntropyLoss(weight=torch.tensor(w), ignore_index=3, label_smoothing=0.2, reduction="sum")),
             (nn.NLLLoss(weight=w, ignore_index=1), torch.nn.NLLLoss(weight=torch.tensor(w), ignore_index=1)),
             (nn.CrossEntropyLoss(size_average=False), torch.nn.CrossEntropyLoss(size_average=False))]
    for ours, theirs in pairs:
        out, grad = value_and_grad(ours, x, t)
        tx = torch.tensor(x, requires_grad=True)
        tout = theirs(tx, torch.tensor(t))
        tout.backward()
        np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(grad, tx.grad.numpy(), rtol=1e-10, atol=1e-14)
    y = rng.random((8, 5))
    out, grad = value_and_grad(nn.BCEWithLogitsLoss(weight=w, pos_weight=w * 2), x, y)
    tx = torch.tensor(x, requires_grad=True)
    tout = torch.nn.BCEWithLogitsLoss(weight=torch.tensor(w), pos_weight=torch.tensor(w * 2))(tx, torch.tensor(y))
    tout.backward()
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(grad, tx.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_nll_of_log_softmax_is_cross_entropy(rng):
    x, t = rng.standard_normal((6, 5, 2)), rng.integers(0, 5, (6, 2))
    w = rng.random(5) + 0.5
    a, da = value_and_grad(lambda v: F.nll_loss(F.log_softmax(v, dim=1), t, weight=w), x)
    b, db = value_and_grad(lambda v: F.cross_entropy(v, t, weight=w), x)
    np.testing.assert_allclose(a, b, rtol=1e-12)
    np.testing.assert_allclose(da, db, rtol=1e-10, atol=1e-14)


# ------------------------------------------------------------------ float64 gradient checks
GRADCHECK_GRID = [(shape, kind, w, ignore, smoothing, reduction)
                  for shape, kind, w, ignore, smoothing, reduction in CE_GRID
                  if reduction != "sum" and (not w or smoothing)]


@pytest.mark.parametrize("shape,kind,use_weight,ignore,smoothing,reduction", GRADCHECK_GRID)
def test_cross_entropy_gradcheck(shape, kind, use_weight, ignore, smoothing, reduction, rng):
    C = shape[0] if len(shape) == 1 else shape[1]
    target = _targets(kind, shape, C, ignore, rng)
    weight = rng.random(C) + 0.5 if use_weight else None
    inputs = (rng.standard_normal(shape), target if kind == "index" else target.copy())

    def fn(x, t):
        return F.cross_entropy(x, t, weight=weight, ignore_index=ignore, reduction=reduction,
                               label_smoothing=smoothing)

    assert fastnn.gradcheck(fn, inputs)  # probability targets: the target's gradient too


@pytest.mark.parametrize("shape,use_weight,ignore,reduction",
                         list(itertools.product([(6, 5), (5,), (3, 4, 2, 3)], [False, True], [-100, 2],
                                                ["mean", "none"])))
def test_nll_loss_gradcheck(shape, use_weight, ignore, reduction, rng):
    C = shape[0] if len(shape) == 1 else shape[1]
    target = _targets("index", shape, C, ignore, rng)
    weight = rng.random(C) + 0.5 if use_weight else None
    assert fastnn.gradcheck(lambda x: F.nll_loss(x, target, weight=weight, ignore_index=ignore, reduction=reduction),
                            rng.standard_normal(shape))


@pytest.mark.parametrize("use_weight,pos_weight,reduction", list(itertools.product([False, True], [False, True],
                                                                                   REDUCTIONS)))
def test_bce_with_logits_gradcheck(use_weight, pos_weight, reduction, rng):
    weight = rng.random((3, 1)) + 0.5 if use_weight else None
    pw = rng.random(4) * 3 if pos_weight else None
    assert fastnn.gradcheck(
        lambda x, t: F.binary_cross_entropy_with_logits(x, t, weight, reduction=reduction, pos_weight=pw),
        (rng.standard_normal((3, 4)) * 3, rng.random((3, 4))))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_non_contiguous(reduction, rng):
    x = fastnn.from_numpy(rng.standard_normal((4, 6))[:, ::2]).requires_grad_()
    t = fastnn.from_numpy(rng.standard_normal((3, 4)).T).requires_grad_()
    assert not x.data.flags.c_contiguous and not t.data.flags.c_contiguous
    assert fastnn.gradcheck(lambda a, b: F.mse_loss(a, b, reduction=reduction), (x, t))
    assert fastnn.gradcheck(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction), (x, t))
    assert fastnn.gradcheck(lambda a: F.cross_entropy(a, [0, 2, 1, 2], reduction=reduction), (x,))
    assert fastnn.gradcheck(lambda a: F.nll_loss(a, [0, 2, 1, 2], reduction=reduction), (x,))
    q = fastnn.from_numpy(rng.random((3, 4)).T).requires_grad_()
    assert fastnn.gradcheck(lambda a, b: F.cross_entropy(a, b, reduction=reduction, label_smoothing=0.1), (x, q))


# ------------------------------------------------------------------ threads, edge cases
@pytest.mark.parametrize("name", ["mse", "bce", "ce", "ce_options", "nll"])
def test_values_do_not_depend_on_thread_count(name, threads, rng):
    x = rng.standard_normal((3000, 40)).astype(np.float32)
    labels = rng.integers(0, 40, 3000)
    calls = {
        "mse": lambda: value_and_grad(F.mse_loss, x, x[::-1].copy()),
        "bce": lambda: value_and_grad(F.binary_cross_entropy_with_logits, x, (x[::-1] > 0).astype(np.float32)),
        "ce": lambda: value_and_grad(F.cross_entropy, x, labels),
        "ce_options": lambda: value_and_grad(F.cross_entropy, x, labels, weight=np.linspace(0.5, 1.5, 40),
                                             ignore_index=3, label_smoothing=0.1),
        "nll": lambda: value_and_grad(F.nll_loss, x, labels, ignore_index=3),
    }
    first, *others = threads(calls[name])
    for other in others:
        assert other[0].tobytes() == first[0].tobytes()
        np.testing.assert_array_equal(other[1], first[1])


def test_cross_entropy_options_give_the_same_bits_on_the_serial_and_parallel_paths(rng):
    """With class weights, ignore_index, smoothing or probability targets, rows run in
    parallel above SERIAL_BELOW elements and serially below: the same per-row code, so
    each row's loss and gradient are the same bits either way."""
    from fastnn.kernels._jit import SERIAL_BELOW

    C = 40
    n = SERIAL_BELOW // C + 64  # parallel as a whole; each half runs serially
    x = rng.standard_normal((n, C)).astype(np.float32)
    labels = rng.integers(0, C, n)
    q = rng.random((n, C)).astype(np.float32)
    q /= q.sum(axis=1, keepdims=True)
    w = np.linspace(0.5, 1.5, C).astype(np.float32)
    up = rng.random(n).astype(np.float32)
    for target, kwargs in ((labels, dict(weight=w, ignore_index=3, label_smoothing=0.1)),
                           (q, dict(weight=w, label_smoothing=0.1))):
        whole = value_and_grad(F.cross_entropy, x, target, reduction="none", upstream=up, **kwargs)
        h = n // 2
        halves = [value_and_grad(F.cross_entropy, x[s], target[s], reduction="none", upstream=up[s], **kwargs)
                  for s in (slice(0, h), slice(h, n))]
        assert x[:h].size < SERIAL_BELOW <= x.size
        np.testing.assert_array_equal(whole[0], np.concatenate([v for v, _ in halves]))
        np.testing.assert_array_equal(whole[1], np.concatenate([g for _, g in halves]))


def test_all_ignored_mean_is_nan_with_zero_gradient():
    value, grad = value_and_grad(F.cross_entropy, np.ones((3, 4)), np.full(3, -100))
    assert np.isnan(value) and np.all(grad == 0)
    value, grad = value_and_grad(F.nll_loss, np.ones((3, 4)), np.full(3, 2), ignore_index=2)
    assert np.isnan(value) and np.all(grad == 0)
    assert float(F.cross_entropy(np.ones((3, 4)), np.full(3, -100), reduction="sum")) == 0.0
    value, grad = value_and_grad(F.cross_entropy, np.ones(4), np.array(1), ignore_index=1, reduction="none")
    assert value.shape == () and float(value) == 0.0 and np.all(grad == 0)


def test_ignored_targets_may_be_out_of_range(rng):
    x = rng.standard_normal((4, 3))
    keep = np.array([True, False, True, False])
    t = np.where(keep, [0, 0, 2, 0], -1)
    value, grad = value_and_grad(F.cross_entropy, x, t, ignore_index=-1, reduction="none",
                                 upstream=np.ones(4))
    np.testing.assert_array_equal(value[~keep], 0)
    np.testing.assert_array_equal(grad[~keep], 0)
    expected = ref.cross_entropy(x[keep], t[keep])
    assert float(F.cross_entropy(x, t, ignore_index=-1)) == pytest.approx(expected, rel=1e-12)


def test_integer_valued_float_targets_are_class_indices(rng):
    x = rng.standard_normal((4, 3))
    assert float(F.cross_entropy(x, np.array([0.0, 2.0, 1.0, 1.0]))) == float(F.cross_entropy(x, [0, 2, 1, 1]))


def test_legacy_size_average_and_reduce(rng):
    x, t = rng.standard_normal((4, 3)), rng.integers(0, 3, 4)
    assert nn.CrossEntropyLoss(size_average=False).reduction == "sum"
    assert nn.MSELoss(reduce=False).reduction == "none"
    assert float(F.cross_entropy(x, t, size_average=False)) == pytest.approx(float(F.cross_entropy(x, t)) * 4)
    assert F.nll_loss(x, t, reduce=False).shape == (4,)


def test_empty_batch_mean_is_nan():
    assert np.isnan(float(F.mse_loss(np.zeros((0, 3)), np.zeros((0, 3)))))
    assert np.isnan(float(F.cross_entropy(np.zeros((0, 3)), np.zeros(0, np.int64))))
    assert float(F.cross_entropy(np.zeros((0, 3)), np.zeros(0, np.int64), reduction="sum")) == 0.0


# ------------------------------------------------------------------ modules: buffers, config, repr
def test_weight_buffers_follow_dtype_and_state_dict(rng):
    w = rng.random(4).astype(np.float32)
    loss = nn.CrossEntropyLoss(weight=w)
    assert [name for name, _ in loss.named_buffers()] == ["weight"] and list(loss.state_dict()) == ["weight"]
    assert loss.double().weight.dtype == np.float64
    bce = nn.BCEWithLogitsLoss(pos_weight=np.ones(3, np.float32)).double()
    assert bce.pos_weight.dtype == np.float64 and list(bce.state_dict()) == ["pos_weight"]
    assert list(nn.CrossEntropyLoss().state_dict()) == []


@pytest.mark.parametrize("module", [
    nn.MSELoss(reduction="sum"), nn.CrossEntropyLoss(), nn.NLLLoss(weight=[1.0, 2.0], ignore_index=0),
    nn.CrossEntropyLoss(weight=np.array([0.1, 0.2, 0.3]), ignore_index=1, reduction="none", label_smoothing=0.25),
    nn.BCEWithLogitsLoss(weight=[[1.0], [0.5]], pos_weight=[0.3, 2.0, 1.0], reduction="sum"),
])
def test_config_round_trips(module, tmp_path):
    rebuilt = type(module)(**module._config())
    assert rebuilt._config() == module._config()
    for name, b in module.named_buffers():
        np.testing.assert_array_equal(dict(rebuilt.named_buffers())[name].data, b.data)
    double = module.double()
    assert type(module)(**double._config())._config() == double._config()
    fastnn.save(module, tmp_path / "loss.fnn")
    loaded = fastnn.load(tmp_path / "loss.fnn")
    assert type(loaded) is type(module) and loaded._config().keys() == module._config().keys()
    assert loaded.reduction == module.reduction


def test_repr():
    assert repr(nn.CrossEntropyLoss()) == "CrossEntropyLoss()"
    assert repr(nn.CrossEntropyLoss(ignore_index=0, label_smoothing=0.1, reduction="sum")) == \
        "CrossEntropyLoss(reduction='sum', ignore_index=0, label_smoothing=0.1)"
    assert repr(nn.NLLLoss(reduction="none")) == "NLLLoss(reduction='none')"


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("target,error,match", [
    (np.array([0, 3]), ValueError, r"\[0, 3\).*\[0, 3\]"),
    (np.array([0, 3]), IndexError, r"cross_entropy.*\(2, 3\)"),
    (np.array([-1, 0]), ValueError, r"\[0, 3\)"),
    (np.array([0.5, 1.0]), TypeError, "integer"),
    (np.array([0, 1, 2]), ValueError, r"\(2,\)"),
    (np.array([[0], [1]]), ValueError, "1-D target"),
    (np.zeros((2, 3), np.int64), TypeError, "float"),
])
def test_cross_entropy_bad_targets(target, error, match):
    with pytest.raises(error, match=match):
        nn.CrossEntropyLoss()(np.zeros((2, 3)), target)


def test_loss_shape_and_type_errors():
    with pytest.raises(ValueError, match=r"cross_entropy: expected input of shape \(C,\), \(N, C\)"):
        nn.CrossEntropyLoss()(np.zeros(()), np.array(0))
    with pytest.raises(ValueError, match=r"cross_entropy: expected 0-D target of shape \(\) for input of shape \(3,\)"):
        nn.CrossEntropyLoss()(np.zeros(3), np.array([0]))
    with pytest.raises(ValueError, match=r"mse_loss: target shape \(3,\) does not match input shape \(2,\)"):
        nn.MSELoss()(np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits: target shape \(3, 1\) .* \(3, 2\)"):
        nn.BCEWithLogitsLoss()(np.zeros((3, 2)), np.zeros((3, 1)))
    with pytest.raises(TypeError, match="mse_loss"):
        nn.MSELoss()(np.array(["a", "b"]), np.zeros(2))
    with pytest.raises(ValueError, match=r"nll_loss: target values must be in \[0, 4\)"):
        F.nll_loss(np.zeros((2, 4)), [0, 4])
    with pytest.raises(ValueError, match=r"cross_entropy: expected weight of shape \(3,\).*\(4,\)"):
        F.cross_entropy(np.zeros((2, 3)), [0, 1], weight=np.ones(4))
    with pytest.raises(ValueError, match=r"pos_weight of shape \(4,\) does not broadcast to the input shape \(2, 3\)"):
        F.binary_cross_entropy_with_logits(np.zeros((2, 3)), np.zeros((2, 3)), pos_weight=np.ones(4))
    with pytest.raises(ValueError, match="ignore_index=0 is not supported with class-probability targets"):
        F.cross_entropy(np.zeros((2, 3)), np.full((2, 3), 1 / 3), ignore_index=0)
    with pytest.raises(TypeError, match="does not match"):
        F.mse_loss(leaf(np.zeros(2, np.float32)), leaf(np.zeros(2)))


@pytest.mark.parametrize("make", [
    lambda r: nn.MSELoss(reduction=r), lambda r: nn.CrossEntropyLoss(reduction=r), lambda r: nn.NLLLoss(reduction=r),
    lambda r: nn.BCEWithLogitsLoss(reduction=r),
])
def test_bad_reduction_raises_at_construction(make):
    with pytest.raises(ValueError, match="'average' is not a valid value for reduction"):
        make("average")


@pytest.mark.parametrize("call", [
    lambda: F.mse_loss(np.zeros(2), np.zeros(2), reduction="avg"),
    lambda: F.cross_entropy(np.zeros((2, 3)), [0, 1], reduction="avg"),
    lambda: F.nll_loss(np.zeros((2, 3)), [0, 1], reduction="avg"),
    lambda: F.binary_cross_entropy_with_logits(np.zeros(2), np.zeros(2), reduction="avg"),
    lambda: F.cross_entropy(np.zeros((2, 3)), [0, 1], label_smoothing=1.5),
    lambda: nn.CrossEntropyLoss(label_smoothing=-0.1),
])
def test_bad_options_raise_at_call(call):
    with pytest.raises(ValueError, match="reduction|label_smoothing"):
        call()
