"""BatchNorm1d/2d and F.batch_norm: train/eval forward and running statistics against
PyTorch's documented formulas, float64 gradient checks in training and in eval (frozen
statistics), autograd, threads, bad input, PyTorch."""
import numpy as np
import pytest
import reference as ref

import fastnn
from fastnn import nn
from fastnn.nn import functional as F

SHAPES = [("1d", (5, 4)), ("1d", (3, 4, 7)), ("2d", (2, 4, 5, 3)), ("2d", (1, 4, 3, 3)), ("2d", (7, 4, 1, 1))]


def make(kind, dtype=np.float64, **kwargs):
    layer = (nn.BatchNorm1d if kind == "1d" else nn.BatchNorm2d)(4, dtype=dtype, **kwargs)
    if layer.affine:
        rng = np.random.default_rng(7)
        layer.weight.data[...] = rng.uniform(0.5, 1.5, 4)
        layer.bias.data[...] = rng.standard_normal(4)
    return layer


def data(shape, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    bcast = [1] * len(shape)
    bcast[1] = shape[1]
    return (rng.standard_normal(shape) * 2 + rng.standard_normal(bcast) * 3).astype(dtype)


def leaf(x):
    return fastnn.tensor(x, requires_grad=True)


def with_statistics(layer, shape):
    """``layer`` in eval mode after a few training batches (non-trivial running statistics)."""
    with fastnn.no_grad():
        for seed in range(3):
            layer(data(shape, layer.running_mean.dtype, seed=20 + seed))
    return layer.eval()


def forward_backward(layer, x, g):
    xt = leaf(x)
    out = layer(xt)
    out.backward(g)
    return out, xt.grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind,shape", SHAPES)
def test_train_then_eval_follow_the_documented_formulas(kind, shape, dtype):
    bn = make(kind, dtype)
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == np.float64 else {"rtol": 2e-5, "atol": 2e-5}
    rm, rv = np.zeros(4), np.ones(4)
    for step in range(3):
        x = data(shape, dtype, seed=step)
        out = bn(x)
        expected, rm, rv = ref.batch_norm(x, bn.weight.data, bn.bias.data, rm, rv, training=True)
        assert isinstance(out, fastnn.Tensor) and out.dtype == dtype and out.shape == shape
        np.testing.assert_allclose(out, expected, **tol)
        np.testing.assert_allclose(bn.running_mean, rm, **tol)
        np.testing.assert_allclose(bn.running_var, rv, **tol)
    assert int(bn.num_batches_tracked) == 3
    bn.eval()
    x = data(shape, dtype, seed=9)
    expected, _, _ = ref.batch_norm(x, bn.weight.data, bn.bias.data, rm, rv, training=False)
    np.testing.assert_allclose(bn(x), expected, **tol)
    assert int(bn.num_batches_tracked) == 3  # eval leaves the statistics alone


def test_momentum_none_is_a_cumulative_average():
    bn = make("2d", momentum=None)
    xs = [data((3, 4, 2, 2), seed=s) for s in range(4)]
    for x in xs:
        bn(x)
    means = [x.mean(axis=(0, 2, 3)) for x in xs]
    variances = [x.var(axis=(0, 2, 3)) * 12 / 11 for x in xs]
    np.testing.assert_allclose(bn.running_mean, np.mean(means, axis=0), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, np.mean(variances, axis=0), rtol=1e-12)


def test_without_affine_or_running_stats():
    x = data((6, 4, 3, 2))
    plain = make("2d", affine=False)
    assert list(plain.state_dict()) == ["running_mean", "running_var", "num_batches_tracked"]
    np.testing.assert_allclose(plain(x), ref.batch_norm(x, None, None, 0, 1, True)[0], rtol=1e-12, atol=1e-12)
    assert fastnn.gradcheck(plain, leaf(x), max_checks=60)
    assert fastnn.gradcheck(with_statistics(plain, x.shape), leaf(x), max_checks=60)
    untracked = make("2d", track_running_stats=False)
    assert list(untracked.state_dict()) == ["weight", "bias"]
    untracked.eval()  # no running statistics: batch statistics in eval too
    expected = ref.batch_norm(x, untracked.weight.data, untracked.bias.data, 0, 1, True)[0]
    np.testing.assert_allclose(untracked(x), expected, rtol=1e-12, atol=1e-12)
    assert fastnn.gradcheck(untracked, leaf(x), max_checks=60)


@pytest.mark.parametrize("kind,shape", SHAPES)
def test_gradcheck(kind, shape):
    assert fastnn.gradcheck(make(kind), leaf(data(shape)), max_checks=60)


@pytest.mark.parametrize("kind,shape", SHAPES)
def test_gradcheck_in_eval_mode(kind, shape):
    """Fine-tuning with frozen statistics: gradients flow through the running ones."""
    bn = with_statistics(make(kind), shape)
    before = bn.running_mean.data.copy(), bn.running_var.data.copy(), int(bn.num_batches_tracked)
    assert fastnn.gradcheck(bn, leaf(data(shape)), max_checks=60)
    np.testing.assert_array_equal(bn.running_mean, before[0])
    np.testing.assert_array_equal(bn.running_var, before[1])
    assert int(bn.num_batches_tracked) == before[2]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("params", ["both", "weight", "bias", "none"])
def test_functional_gradcheck(training, params, rng):
    x = leaf(data((3, 4, 5)))
    weight = leaf(rng.uniform(0.5, 1.5, 4)) if params in ("both", "weight") else None
    bias = leaf(rng.standard_normal(4)) if params in ("both", "bias") else None
    mean, var = rng.standard_normal(4), rng.uniform(0.5, 2, 4)
    inputs = (x, weight, bias)
    assert fastnn.gradcheck(lambda x, w, b: F.batch_norm(x, mean, var, w, b, training, 0.0), inputs, max_checks=60)


def test_functional_non_contiguous_and_updates_running_statistics(rng):
    wide = leaf(data((4, 3, 6, 10)))
    w, b = leaf(rng.uniform(0.5, 1.5, 3)), leaf(rng.standard_normal(3))
    assert fastnn.gradcheck(lambda t, w, b: F.batch_norm(t[..., ::2], None, None, w, b, True), (wide, w, b),
                            max_checks=60)
    x = data((4, 3, 6, 5))
    mean, var = fastnn.zeros(3, dtype=fastnn.float64), fastnn.ones(3, dtype=fastnn.float64)
    F.batch_norm(x, mean, var, training=True, momentum=0.25)
    _, rm, rv = ref.batch_norm(x, None, None, np.zeros(3), np.ones(3), True, momentum=0.25)
    np.testing.assert_allclose(mean, rm, rtol=1e-12)
    np.testing.assert_allclose(var, rv, rtol=1e-12)


def test_eval_backward_uses_the_statistics_of_its_forward(rng):
    bn = with_statistics(make("2d"), (3, 4, 2, 2))
    x = data((3, 4, 2, 2))
    g = rng.standard_normal(x.shape)
    xt = leaf(x)
    out = bn(xt)
    bn.running_var.data *= 4  # a change after the forward must not reach its backward
    out.backward(g)
    bn.running_var.data /= 4
    _, dx = forward_backward(bn, x, g)
    np.testing.assert_allclose(xt.grad, dx, rtol=1e-12)
    scale = bn.weight.data / np.sqrt(bn.running_var.data + bn.eps)
    np.testing.assert_allclose(dx, g * scale.reshape(1, 4, 1, 1), rtol=1e-12)


def test_batch_norm_used_twice_adds_gradients(rng):
    bn = make("1d")
    x1, x2 = data((5, 4), seed=1), data((5, 4), seed=2)
    g = rng.standard_normal((5, 4))
    forward_backward(bn, x1, g)
    forward_backward(bn, x2, g)
    separate = bn.weight.grad.data.copy(), bn.bias.grad.data.copy()
    bn.zero_grad()
    (bn(x1) + bn(x2)).backward(g)
    np.testing.assert_allclose(bn.weight.grad, separate[0], rtol=1e-12)
    np.testing.assert_allclose(bn.bias.grad, separate[1], rtol=1e-12)
    assert int(bn.num_batches_tracked) == 4


def test_state_dict_keys_and_defaults():
    bn = nn.BatchNorm2d(3)
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    np.testing.assert_array_equal(bn.weight.data, 1)
    np.testing.assert_array_equal(bn.bias.data, 0)
    np.testing.assert_array_equal(bn.running_var, 1)
    assert bn.state_dict()["num_batches_tracked"].dtype == np.int64
    assert "eps=1e-05" in repr(bn)
    bn(data((2, 3, 2, 2), np.float32))
    bn.reset_running_stats()
    assert int(bn.num_batches_tracked) == 0 and np.all(bn.running_mean.data == 0)


def test_one_and_many_threads_agree_bitwise(threads):
    x = data((16, 32, 12, 12), np.float32)
    g = data((16, 32, 12, 12), np.float32, seed=1)

    def run():
        bn = nn.BatchNorm2d(32)
        out, dx = forward_backward(bn, x, g)
        results = [out.data, dx.data, bn.weight.grad.data, bn.bias.grad.data, bn.running_mean.data.copy(),
                   bn.running_var.data.copy()]
        bn.eval()
        bn.zero_grad()
        out, dx = forward_backward(bn, x, g)
        return results + [out.data, dx.data, bn.weight.grad.data, bn.bias.grad.data]

    first, *others = threads(run)
    for other in others:
        for a, b in zip(first, other):
            np.testing.assert_array_equal(a, b)


def test_bad_input():
    with pytest.raises(ValueError, match=r"BatchNorm2d.*4-D.*\(2, 4, 5\)"):
        nn.BatchNorm2d(4)(np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match=r"BatchNorm1d.*4 channels.*\(2, 3\)"):
        nn.BatchNorm1d(4)(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"batch_norm.*more than 1 value per channel.*\(1, 4, 1, 1\)"):
        nn.BatchNorm2d(4)(np.zeros((1, 4, 1, 1)))
    assert nn.BatchNorm2d(4).eval()(np.zeros((1, 4, 1, 1))).shape == (1, 4, 1, 1)
    with pytest.raises(ValueError, match="num_features"):
        nn.BatchNorm1d(0)
    with pytest.raises(ValueError, match="momentum"):
        nn.BatchNorm1d(3, momentum=2)
    with pytest.raises(TypeError, match=r"batch_norm.*float64.*float32"):
        nn.BatchNorm1d(3)(leaf(np.zeros((2, 3))))  # needs a gradient: no silent cast
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="batch_norm: running_mean and running_var must be given"):
        F.batch_norm(x, None, None)
    with pytest.raises(ValueError, match=r"batch_norm: expected weight of shape \(3,\), got \(4,\)"):
        F.batch_norm(x, None, None, np.ones(4), training=True)
    with pytest.raises(ValueError, match=r"batch_norm: expected a float running_var of shape \(3,\)"):
        F.batch_norm(x, np.zeros(3), np.ones(2))
    with pytest.raises(ValueError, match=r"batch_norm.*\(3,\)"):
        F.batch_norm(np.zeros(3), None, None, training=True)
    with pytest.raises(ValueError, match=r"batch_norm.*empty|batch_norm.*\(0, 3\)"):
        F.batch_norm(np.zeros((0, 3)), None, None, training=True)
    with pytest.raises(TypeError, match="batch_norm"):
        F.batch_norm(x.astype(np.complex64), None, None, training=True)


def test_save_and_load_round_trip(tmp_path):
    model = nn.Sequential(nn.BatchNorm2d(4, eps=1e-3, momentum=None), nn.Flatten(), nn.BatchNorm1d(36, affine=False))
    x = data((5, 4, 3, 3), np.float32)
    model(x)
    model.eval()
    fastnn.save(model, tmp_path / "m.fnn")
    again = fastnn.load(tmp_path / "m.fnn")
    again.eval()
    np.testing.assert_array_equal(again(x), model(x))


# ------------------------------------------------------------------ PyTorch
def torch_bn(bn, kind, torch):
    tbn = (torch.nn.BatchNorm1d if kind == "1d" else torch.nn.BatchNorm2d)(4)
    tbn.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in bn.state_dict().items()})
    return tbn


def check_against(bn, tbn, x, g, torch, tol=1e-4):
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tout = tbn(tx)
    tout.backward(torch.from_numpy(g))
    bn.zero_grad()
    out, dx = forward_backward(bn, x, g)
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(bn.weight.grad, tbn.weight.grad.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(bn.bias.grad, tbn.bias.grad.numpy(), rtol=tol, atol=tol)
    tbn.weight.grad = tbn.bias.grad = None


@pytest.mark.parametrize("kind,shape", SHAPES)
def test_matches_pytorch(kind, shape):
    torch = pytest.importorskip("torch")
    bn = make(kind, np.float32)
    tbn = torch_bn(bn, kind, torch)
    for step in range(2):
        check_against(bn, tbn, data(shape, np.float32, seed=step), data(shape, np.float32, seed=10 + step), torch)
    for key, value in tbn.state_dict().items():
        np.testing.assert_allclose(bn.state_dict()[key], value.numpy(), rtol=1e-5, atol=1e-6)
    bn.eval()
    tbn.eval()  # frozen statistics: forward and all three gradients still match
    check_against(bn, tbn, data(shape, np.float32, seed=5), data(shape, np.float32, seed=6), torch)
    for key, value in tbn.state_dict().items():
        np.testing.assert_allclose(bn.state_dict()[key], value.numpy(), rtol=1e-5, atol=1e-6)
