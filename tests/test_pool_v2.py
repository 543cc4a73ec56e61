"""MaxPool1d, AvgPool1d, AdaptiveAvgPool1d/2d (any output size), AdaptiveMaxPool1d/2d
and their functional forms: float64 gradient checks, indices, save/load, bad input,
and PyTorch cross-checks of forward and input gradients."""
import numpy as np
import pytest

import fastnn
from fastnn import nn
from fastnn.nn import functional as F

# (N, C, L, kernel, stride, padding, dilation, ceil_mode)
CONFIGS_1D = [
    (2, 3, 10, 2, None, 0, 1, False),  # tiled windows
    (2, 2, 11, 3, 2, 1, 1, False),
    (1, 3, 12, 4, 3, 2, 2, True),      # dilation 2, ceil_mode
    (3, 1, 7, 3, 2, 0, 1, True),       # ceil_mode: a clipped last window
]
IDS_1D = [f"cfg{i}" for i in range(len(CONFIGS_1D))]
ADAPTIVE_2D = [(1, 1), (3, 2), (5, 7), (4, None), (9, 10)]  # input 5x7: uneven, same, larger


def leaf(x):
    return fastnn.tensor(x, requires_grad=True)


def data(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def pool1d(cfg, kind):
    k, s, p, d, ceil = cfg[3:]
    if kind == "max":
        return nn.MaxPool1d(k, s, p, dilation=d, ceil_mode=ceil)
    return nn.AvgPool1d(k, s, p, ceil_mode=ceil, count_include_pad=d == 1)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("cfg", CONFIGS_1D, ids=IDS_1D)
def test_pool1d_gradcheck(cfg, kind):
    x = data(cfg[:3])
    assert fastnn.gradcheck(pool1d(cfg, kind), leaf(x), max_checks=40)


@pytest.mark.parametrize("layer", [nn.AdaptiveAvgPool1d(3), nn.AdaptiveMaxPool1d(4), nn.AdaptiveAvgPool2d((3, 2)),
                                   nn.AdaptiveMaxPool2d((2, 3)), nn.AdaptiveMaxPool2d((6, None)),
                                   nn.AdaptiveAvgPool2d((6, 9))], ids=repr)
def test_adaptive_gradcheck(layer):
    shape = (2, 3, 7) if "1d" in type(layer).__name__ else (2, 2, 5, 7)
    assert fastnn.gradcheck(layer, leaf(data(shape)), max_checks=40)


def test_unbatched_non_contiguous_and_functional(rng):
    x = leaf(rng.standard_normal((3, 20)))
    assert F.max_pool1d(x, 2).shape == (3, 10)
    assert F.avg_pool1d(x, 3, 2, 1).shape == (3, 10)
    assert F.adaptive_avg_pool1d(x, 4).shape == (3, 4)
    assert F.adaptive_max_pool1d(x, (5,)).shape == (3, 5)
    assert F.adaptive_max_pool2d(leaf(rng.standard_normal((2, 5, 6))), 2).shape == (2, 2, 2)
    assert fastnn.gradcheck(lambda t: F.max_pool1d(t[:, ::2], 3, 1, 1), (x,), max_checks=40)
    assert fastnn.gradcheck(lambda t: F.adaptive_max_pool2d(t[..., ::2], (2, 3)),
                            (leaf(rng.standard_normal((1, 2, 5, 12))),), max_checks=40)


def test_indices_are_positions():
    x = np.array([[[1.0, 5.0, 2.0, 2.0, 7.0, 0.0]]])
    out, idx = F.max_pool1d(x, 2, return_indices=True)
    np.testing.assert_array_equal(out.data, [[[5.0, 2.0, 7.0]]])
    assert idx.dtype == np.int64 and idx.data.tolist() == [[[1, 2, 4]]]
    out, idx = nn.AdaptiveMaxPool1d(2, return_indices=True)(x)
    assert out.data.tolist() == [[[5.0, 7.0]]] and idx.data.tolist() == [[[1, 4]]]
    img = np.arange(12.0).reshape(1, 1, 3, 4)[..., ::-1].copy()
    out, idx = F.adaptive_max_pool2d(img, (1, 2), return_indices=True)
    assert out.data.tolist() == [[[[11.0, 9.0]]]] and idx.data.tolist() == [[[[8, 10]]]]


def test_adaptive_max_routes_the_gradient_to_the_first_maximum():
    x = leaf(np.ones((1, 1, 2, 3)))
    F.adaptive_max_pool2d(x, 1).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [[[[1, 0, 0], [0, 0, 0]]]])


def test_save_and_load_round_trip(tmp_path, rng):
    model = nn.Sequential(nn.MaxPool1d(3, 2, 1, ceil_mode=True), nn.AvgPool1d(2, count_include_pad=False),
                          nn.AdaptiveAvgPool1d(3), nn.AdaptiveMaxPool1d(2))
    x = rng.standard_normal((2, 3, 20)).astype(np.float32)
    fastnn.save(model, tmp_path / "m.fnn")
    np.testing.assert_array_equal(fastnn.load(tmp_path / "m.fnn")(x), model(x))
    model2 = nn.Sequential(nn.AdaptiveMaxPool2d((3, None)), nn.AdaptiveAvgPool2d((2, 5)))
    y = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    fastnn.save(model2, tmp_path / "n.fnn")
    np.testing.assert_array_equal(fastnn.load(tmp_path / "n.fnn")(y), model2(y))


def test_bad_arguments_and_input():
    with pytest.raises(ValueError, match="MaxPool1d: padding should be at most half"):
        nn.MaxPool1d(2, padding=2)
    with pytest.raises(ValueError, match="AvgPool1d: kernel_size"):
        nn.AvgPool1d((2, 2))
    with pytest.raises(ValueError, match="AdaptiveMaxPool2d: output_size"):
        nn.AdaptiveMaxPool2d(0)
    with pytest.raises(ValueError, match="AdaptiveAvgPool1d: output_size"):
        nn.AdaptiveAvgPool1d((2, 2))
    with pytest.raises(ValueError, match=r"max_pool1d.*\(1, 2, 3\).*shorter than the pooling window 5"):
        F.max_pool1d(np.zeros((1, 2, 3)), 5)
    with pytest.raises(ValueError, match=r"avg_pool1d.*3-D.*\(1, 2, 3, 4\)"):
        F.avg_pool1d(np.zeros((1, 2, 3, 4)), 2)
    with pytest.raises(ValueError, match=r"adaptive_max_pool2d.*empty.*\(1, 0, 3, 3\)"):
        F.adaptive_max_pool2d(np.zeros((1, 0, 3, 3)), 2)
    with pytest.raises(ValueError, match=r"adaptive_max_pool2d.*4-D.*\(3, 3\)"):
        F.adaptive_max_pool2d(np.zeros((3, 3)), 2)
    with pytest.raises(TypeError, match="adaptive_avg_pool1d"):
        F.adaptive_avg_pool1d(np.zeros((1, 2, 3), np.complex64), 2)


# ------------------------------------------------------------------ PyTorch
def check_against_torch(fn, tfn, x, rng, torch, tol=1e-5):
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tout = tfn(tx)
    g = rng.standard_normal(tuple(tout.shape)).astype(x.dtype)
    tout.backward(torch.from_numpy(g))
    xt = leaf(x)
    out = fn(xt)
    out.backward(g)
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(xt.grad, tx.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("cfg", CONFIGS_1D, ids=IDS_1D)
def test_pool1d_matches_pytorch(cfg, kind, rng):
    torch = pytest.importorskip("torch")
    k, s, p, d, ceil = cfg[3:]
    if kind == "max":
        tfn = torch.nn.MaxPool1d(k, s, p, dilation=d, ceil_mode=ceil)
    else:
        tfn = torch.nn.AvgPool1d(k, s, p, ceil_mode=ceil, count_include_pad=d == 1)
    check_against_torch(pool1d(cfg, kind), tfn, data(cfg[:3], dtype=np.float32), rng, torch)


@pytest.mark.parametrize("size", ADAPTIVE_2D, ids=str)
def test_adaptive_2d_matches_pytorch(size, rng):
    torch = pytest.importorskip("torch")
    x = data((2, 3, 5, 7), dtype=np.float32)
    check_against_torch(nn.AdaptiveAvgPool2d(size), torch.nn.AdaptiveAvgPool2d(size), x, rng, torch)
    check_against_torch(nn.AdaptiveMaxPool2d(size), torch.nn.AdaptiveMaxPool2d(size), x, rng, torch)
    _, idx = F.adaptive_max_pool2d(x, size, return_indices=True)
    np.testing.assert_array_equal(idx.data, torch.nn.functional.adaptive_max_pool2d(
        torch.from_numpy(x), size, return_indices=True)[1].numpy())


@pytest.mark.parametrize("size", [1, 3, 7, 11])
def test_adaptive_1d_matches_pytorch(size, rng):
    torch = pytest.importorskip("torch")
    x = data((2, 3, 7), dtype=np.float32)
    check_against_torch(nn.AdaptiveAvgPool1d(size), torch.nn.AdaptiveAvgPool1d(size), x, rng, torch)
    check_against_torch(nn.AdaptiveMaxPool1d(size), torch.nn.AdaptiveMaxPool1d(size), x, rng, torch)
