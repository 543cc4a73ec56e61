"""BatchNorm1d/2d: train/eval forward and running statistics against PyTorch's
documented formulas, float64 gradient checks, threads, bad input, PyTorch."""
import numpy as np
import pytest
import reference as ref

import fastnn
from fastnn import nn

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
        assert out.dtype == dtype and out.shape == shape
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
    assert fastnn.gradcheck(plain, x, max_checks=60)
    untracked = make("2d", track_running_stats=False)
    assert list(untracked.state_dict()) == ["weight", "bias"]
    untracked.eval()  # no running statistics: batch statistics in eval too
    expected = ref.batch_norm(x, untracked.weight.data, untracked.bias.data, 0, 1, True)[0]
    np.testing.assert_allclose(untracked(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind,shape", SHAPES)
def test_gradcheck(kind, shape):
    assert fastnn.gradcheck(make(kind), data(shape), max_checks=60)


def test_state_dict_keys_and_defaults():
    bn = nn.BatchNorm2d(3)
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    np.testing.assert_array_equal(bn.weight.data, 1)
    np.testing.assert_array_equal(bn.bias.data, 0)
    np.testing.assert_array_equal(bn.running_var, 1)
    assert bn.state_dict()["num_batches_tracked"].dtype == np.int64
    assert "eps=1e-05" in repr(bn)


def test_one_and_many_threads_agree_bitwise(threads):
    x = data((16, 32, 12, 12), np.float32)
    g = data((16, 32, 12, 12), np.float32, seed=1)

    def run():
        bn = nn.BatchNorm2d(32)
        out = bn(x)
        dx = bn.backward(g)
        bn.eval()
        return out, dx, bn.weight.grad, bn.bias.grad, bn.running_mean, bn.running_var, bn(x)

    first, *others = threads(run)
    for other in others:
        for a, b in zip(first, other):
            np.testing.assert_array_equal(a, b)


def test_bad_input():
    with pytest.raises(ValueError, match=r"BatchNorm2d.*4-D.*\(2, 4, 5\)"):
        nn.BatchNorm2d(4)(np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match=r"BatchNorm1d.*4 channels.*\(2, 3\)"):
        nn.BatchNorm1d(4)(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"BatchNorm2d.*more than 1 value per channel.*\(1, 4, 1, 1\)"):
        nn.BatchNorm2d(4)(np.zeros((1, 4, 1, 1)))
    assert nn.BatchNorm2d(4).eval()(np.zeros((1, 4, 1, 1))).shape == (1, 4, 1, 1)
    with pytest.raises(ValueError, match="num_features"):
        nn.BatchNorm1d(0)
    with pytest.raises(ValueError, match="momentum"):
        nn.BatchNorm1d(3, momentum=2)
    with pytest.raises(RuntimeError, match="forward"):
        nn.BatchNorm1d(3).backward(np.zeros((2, 3)))


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
@pytest.mark.parametrize("kind,shape", SHAPES)
def test_matches_pytorch(kind, shape):
    torch = pytest.importorskip("torch")
    bn = make(kind, np.float32)
    tbn = (torch.nn.BatchNorm1d if kind == "1d" else torch.nn.BatchNorm2d)(4)
    tbn.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in bn.state_dict().items()})
    for step in range(2):
        x = data(shape, np.float32, seed=step)
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        tout = tbn(tx)
        out = bn(x)
        np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-5, atol=1e-5)
        g = data(shape, np.float32, seed=10 + step)
        tout.backward(torch.from_numpy(g))
        bn.zero_grad()
        np.testing.assert_allclose(bn.backward(g), tx.grad.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(bn.weight.grad, tbn.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(bn.bias.grad, tbn.bias.grad.numpy(), rtol=1e-4, atol=1e-4)
        tbn.weight.grad = tbn.bias.grad = None
    for key, value in tbn.state_dict().items():
        np.testing.assert_allclose(bn.state_dict()[key], value.numpy(), rtol=1e-5, atol=1e-6)
    bn.eval()
    tbn.eval()
    x = data(shape, np.float32, seed=5)
    np.testing.assert_allclose(bn(x), tbn(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)
