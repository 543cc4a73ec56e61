"""MaxPool2d, AvgPool2d, AdaptiveAvgPool2d: forward against the NumPy references,
float64 gradient checks, threads, bad input, PyTorch."""
import numpy as np
import pytest
import reference as ref

import fastnn
from fastnn import nn

# (N, C, H, W, kernel, stride, padding, ceil_mode)
CONFIGS = [
    (1, 1, 4, 4, 2, None, 0, False),           # batch of 1, the common 2x2
    (2, 3, 9, 7, 3, 2, 1, False),              # stride 2, padding
    (2, 2, 11, 10, 5, 3, 2, False),            # 5x5, stride 3
    (1, 3, 8, 9, (3, 2), (1, 2), (1, 0), False),  # rectangular
    (2, 2, 7, 7, 2, 2, 0, True),               # ceil_mode: a clipped last window
    (1, 2, 10, 8, 3, 3, 1, True),              # ceil_mode with padding
    (3, 1, 5, 5, 5, 1, 0, False),              # window covers the input
]
IDS = [f"cfg{i}" for i in range(len(CONFIGS))]


def pair(v):
    return v if isinstance(v, tuple) else (v, v)


def data(cfg, dtype=np.float64, seed=0):
    N, C, H, W = cfg[:4]
    return np.random.default_rng(seed).standard_normal((N, C, H, W)).astype(dtype)


def maxpool(cfg, dilation=1):
    k, s, p, ceil = cfg[4:]
    return nn.MaxPool2d(k, s, p, dilation=dilation, ceil_mode=ceil)


def avgpool(cfg, include_pad=True):
    k, s, p, ceil = cfg[4:]
    return nn.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=include_pad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_max_pool_forward_matches_reference(cfg, dtype):
    x = data(cfg, dtype)
    pool = maxpool(cfg)
    k, s, p, ceil = cfg[4:]
    expected = ref.max_pool2d(x, pair(k), pair(s or k), pair(p), ceil_mode=ceil)
    out = pool(x)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, expected.astype(dtype))


def test_max_pool_dilation_matches_reference():
    x = data((2, 2, 11, 9))
    out = nn.MaxPool2d(3, 2, 1, dilation=2)(x)
    np.testing.assert_array_equal(out, ref.max_pool2d(x, (3, 3), (2, 2), (1, 1), (2, 2)))
    assert fastnn.gradcheck(nn.MaxPool2d((2, 3), 1, 1, dilation=(2, 1)), x)


@pytest.mark.parametrize("include_pad", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_avg_pool_forward_matches_reference(cfg, dtype, include_pad):
    x = data(cfg, dtype)
    k, s, p, ceil = cfg[4:]
    expected = ref.avg_pool2d(x, pair(k), pair(s or k), pair(p), ceil, include_pad)
    tol = 1e-13 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(avgpool(cfg, include_pad)(x), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("size", [1, 2, 3, (2, 5), (4, 3), (None, 2)])
def test_adaptive_avg_pool_matches_reference(size):
    x = data((2, 3, 7, 9))
    pool = nn.AdaptiveAvgPool2d(size)
    out = pool(x)
    pair_size = pair(size)
    out_size = tuple(s if o is None else o for o, s in zip(pair_size, (7, 9)))
    np.testing.assert_allclose(out, ref.adaptive_avg_pool2d(x, out_size), rtol=1e-13, atol=1e-13)
    assert fastnn.gradcheck(pool, x, max_checks=60)


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_gradchecks(cfg):
    x = data(cfg)
    assert fastnn.gradcheck(maxpool(cfg), x, max_checks=60)
    assert fastnn.gradcheck(avgpool(cfg), x, max_checks=60)
    assert fastnn.gradcheck(avgpool(cfg, include_pad=False), x, max_checks=60)


def test_max_pool_routes_ties_to_the_first_and_keeps_nan():
    x = np.zeros((1, 1, 2, 4))
    x[0, 0, 1, 3] = np.nan
    pool = nn.MaxPool2d(2)
    out = pool(x)
    assert out[0, 0, 0, 0] == 0 and np.isnan(out[0, 0, 0, 1])
    dx = pool.backward(np.ones_like(out))
    np.testing.assert_array_equal(dx[0, 0], [[1, 0, 0, 0], [0, 0, 0, 1]])


def test_unbatched_input_and_default_stride():
    x = data((1, 3, 8, 6))[0]
    for pool in (nn.MaxPool2d(2), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1)):
        out = pool(x)
        assert out.ndim == 3 and out.shape[0] == 3
        assert pool.backward(np.ones_like(out)).shape == x.shape
    assert nn.MaxPool2d(3).stride == (3, 3)


def test_one_and_many_threads_agree_bitwise(threads):
    x = data((8, 16, 32, 32), np.float32)
    g = data((8, 16, 16, 16), np.float32, seed=1)
    layers = [nn.MaxPool2d(2), nn.AvgPool2d(3, 2, 1), nn.AdaptiveAvgPool2d(1)]

    def run():
        results = []
        for layer in layers:
            out = layer(x)
            results += [out, layer.backward(g if out.shape == g.shape else np.ones_like(out))]
        return results

    first, *others = threads(run)
    for other in others:
        for a, b in zip(first, other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make,shape,match", [
    (lambda: nn.MaxPool2d(2), (2, 3, 4), None),
    (lambda: nn.MaxPool2d(2), (2, 8), r"MaxPool2d.*4-D.*\(2, 8\)"),
    (lambda: nn.MaxPool2d(5), (1, 1, 4, 8), r"MaxPool2d.*\(1, 1, 4, 8\).*smaller than the pooling window"),
    (lambda: nn.AvgPool2d(3, padding=1), (1, 1, 8, 0), r"AvgPool2d.*\(1, 1, 8, 0\)"),
    (lambda: nn.AvgPool2d(2), (0, 1, 8, 8), r"AvgPool2d.*empty"),
    (lambda: nn.AdaptiveAvgPool2d(2), (1, 2, 3, 0, 1), r"AdaptiveAvgPool2d.*4-D"),
    (lambda: nn.AdaptiveAvgPool2d(2), (1, 2, 0, 3), r"AdaptiveAvgPool2d.*empty"),
])
def test_bad_input(make, shape, match):
    pool = make()
    if match is None:
        assert pool(np.zeros(shape)).shape == (2, 1, 2)
        return
    with pytest.raises(ValueError, match=match):
        pool(np.zeros(shape))


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"MaxPool2d: padding should be at most half"):
        nn.MaxPool2d(2, padding=2)
    with pytest.raises(ValueError, match=r"AvgPool2d: padding should be at most half"):
        nn.AvgPool2d(3, padding=(0, 2))
    with pytest.raises(ValueError, match="kernel_size"):
        nn.MaxPool2d(0)
    with pytest.raises(ValueError, match="stride"):
        nn.AvgPool2d(2, stride=0)
    with pytest.raises(ValueError, match="output_size"):
        nn.AdaptiveAvgPool2d(0)
    with pytest.raises(RuntimeError, match="forward"):
        nn.MaxPool2d(2).backward(np.zeros((1, 1, 1, 1)))


def test_save_and_load_round_trip(tmp_path):
    model = nn.Sequential(nn.MaxPool2d((3, 2), 2, 1, ceil_mode=True), nn.AvgPool2d(2, count_include_pad=False),
                          nn.AdaptiveAvgPool2d((1, 2)))
    x = data((2, 3, 13, 14), np.float32)
    fastnn.save(model, tmp_path / "m.fnn")
    np.testing.assert_array_equal(fastnn.load(tmp_path / "m.fnn")(x), model(x))


# ------------------------------------------------------------------ PyTorch
@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_matches_pytorch(cfg):
    torch = pytest.importorskip("torch")
    x = data(cfg, np.float32)
    k, s, p, ceil = cfg[4:]
    pairs = [
        (maxpool(cfg), torch.nn.MaxPool2d(k, s, p, ceil_mode=ceil)),
        (avgpool(cfg), torch.nn.AvgPool2d(k, s, p, ceil_mode=ceil)),
        (avgpool(cfg, False), torch.nn.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=False)),
        (nn.AdaptiveAvgPool2d((2, 3)), torch.nn.AdaptiveAvgPool2d((2, 3))),
    ]
    for mine, theirs in pairs:
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        tout = theirs(tx)
        out = mine(x)
        np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-6, atol=1e-6)
        g = data(out.shape, np.float32, seed=3)
        tout.backward(torch.from_numpy(g))
        np.testing.assert_allclose(mine.backward(g), tx.grad.numpy(), rtol=1e-6, atol=1e-6)
