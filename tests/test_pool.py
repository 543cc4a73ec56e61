"""MaxPool2d, AvgPool2d, AdaptiveAvgPool2d and their functional forms: forward against
the NumPy references, float64 gradient checks, autograd, threads, bad input, PyTorch."""
import numpy as np
import pytest
import reference as ref

import fastnn
from fastnn import nn
from fastnn.nn import functional as F

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


def leaf(x):
    return fastnn.tensor(x, requires_grad=True)


def maxpool(cfg, dilation=1):
    k, s, p, ceil = cfg[4:]
    return nn.MaxPool2d(k, s, p, dilation=dilation, ceil_mode=ceil)


def avgpool(cfg, include_pad=True):
    k, s, p, ceil = cfg[4:]
    return nn.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=include_pad)


def forward_backward(layer, x, g):
    xt = leaf(x)
    out = layer(xt)
    out.backward(g)
    return out, xt.grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_max_pool_forward_matches_reference(cfg, dtype):
    x = data(cfg, dtype)
    pool = maxpool(cfg)
    k, s, p, ceil = cfg[4:]
    expected = ref.max_pool2d(x, pair(k), pair(s or k), pair(p), ceil_mode=ceil)
    out = pool(x)
    assert isinstance(out, fastnn.Tensor) and out.dtype == dtype
    np.testing.assert_array_equal(out, expected.astype(dtype))
    np.testing.assert_array_equal(F.max_pool2d(x, k, s, p, ceil_mode=ceil), out)


def test_max_pool_dilation_matches_reference():
    x = data((2, 2, 11, 9))
    out = nn.MaxPool2d(3, 2, 1, dilation=2)(x)
    np.testing.assert_array_equal(out, ref.max_pool2d(x, (3, 3), (2, 2), (1, 1), (2, 2)))
    assert fastnn.gradcheck(nn.MaxPool2d((2, 3), 1, 1, dilation=(2, 1)), leaf(x))


@pytest.mark.parametrize("include_pad", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_avg_pool_forward_matches_reference(cfg, dtype, include_pad):
    x = data(cfg, dtype)
    k, s, p, ceil = cfg[4:]
    expected = ref.avg_pool2d(x, pair(k), pair(s or k), pair(p), ceil, include_pad)
    tol = 1e-13 if dtype == np.float64 else 1e-6
    out = avgpool(cfg, include_pad)(x)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("size", [1, 2, 3, (2, 5), (4, 3), (None, 2)])
def test_adaptive_avg_pool_matches_reference(size):
    x = data((2, 3, 7, 9))
    pool = nn.AdaptiveAvgPool2d(size)
    out = pool(x)
    pair_size = pair(size)
    out_size = tuple(s if o is None else o for o, s in zip(pair_size, (7, 9)))
    np.testing.assert_allclose(out, ref.adaptive_avg_pool2d(x, out_size), rtol=1e-13, atol=1e-13)
    assert fastnn.gradcheck(pool, leaf(x), max_checks=60)


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_gradchecks(cfg):
    x = data(cfg)
    assert fastnn.gradcheck(maxpool(cfg), leaf(x), max_checks=60)
    assert fastnn.gradcheck(avgpool(cfg), leaf(x), max_checks=60)
    assert fastnn.gradcheck(avgpool(cfg, include_pad=False), leaf(x), max_checks=60)


@pytest.mark.parametrize("fn", [
    lambda t: F.max_pool2d(t, 3, 2, 1, ceil_mode=True),
    lambda t: F.max_pool2d(t, (2, 3), (1, 2), (1, 1), dilation=(2, 1)),
    lambda t: F.max_pool2d(t, 2, return_indices=True)[0],
    lambda t: F.avg_pool2d(t, 3, 2, 1, ceil_mode=True),
    lambda t: F.avg_pool2d(t, 3, 2, 1, ceil_mode=True, count_include_pad=False),
    lambda t: F.avg_pool2d(t, (3, 2), 2, (1, 0), divisor_override=4),
    lambda t: F.adaptive_avg_pool2d(t, (3, None)),
    lambda t: F.max_pool2d(t[..., ::2], 2),              # non-contiguous input
    lambda t: F.avg_pool2d(t[0], 2, 1),                    # unbatched
    lambda t: F.adaptive_avg_pool2d(t[:, :, 1:, ::-1], 2),  # negative strides
], ids=["max-ceil", "max-dilated", "max-indices", "avg-ceil", "avg-no-pad", "avg-divisor", "adaptive-none",
        "non-contiguous", "unbatched", "reversed"])
def test_functional_gradchecks(fn, rng):
    x = leaf(rng.standard_normal((2, 3, 9, 8)))
    assert fastnn.gradcheck(fn, (x,), max_checks=80)


def test_max_pool_routes_ties_to_the_first_and_keeps_nan():
    x = np.zeros((1, 1, 2, 4))
    x[0, 0, 1, 3] = np.nan
    pool = nn.MaxPool2d(2)
    out, dx = forward_backward(pool, x, np.ones((1, 1, 1, 2)))
    assert out.data[0, 0, 0, 0] == 0 and np.isnan(out.data[0, 0, 0, 1])
    np.testing.assert_array_equal(dx.data[0, 0], [[1, 0, 0, 0], [0, 0, 0, 1]])


def test_return_indices_are_flat_int64_plane_indices():
    x = data((2, 3, 7, 6))
    out, idx = nn.MaxPool2d(3, 2, 1, return_indices=True)(x)
    assert idx.dtype == np.int64 and idx.shape == out.shape
    planes = x.reshape(6, -1)
    np.testing.assert_array_equal(np.take_along_axis(planes, idx.data.reshape(6, -1), 1).reshape(out.shape), out)
    out3, idx3 = F.max_pool2d(x[0], 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(idx3, idx.data[0])
    np.testing.assert_array_equal(out3, out.data[0])
    assert "return_indices" in nn.MaxPool2d(2, return_indices=True)._config()


def test_divisor_override_divides_window_sums():
    x = data((2, 2, 7, 6))
    out = nn.AvgPool2d(3, 2, 1, ceil_mode=True, divisor_override=5)(x)
    means = ref.avg_pool2d(x, (3, 3), (2, 2), (1, 1), True, False)  # over the elements inside
    np.testing.assert_allclose(out, means * _inside_counts(7, 6, 3, 2, 1, out.shape[2:]) / 5, rtol=1e-13)


def _inside_counts(H, W, k, s, p, out_hw):
    rows = [min(o * s - p + k, H) - max(o * s - p, 0) for o in range(out_hw[0])]
    cols = [min(o * s - p + k, W) - max(o * s - p, 0) for o in range(out_hw[1])]
    return np.outer(rows, cols)


def test_unbatched_input_and_default_stride():
    x = data((1, 3, 8, 6))[0]
    for pool in (nn.MaxPool2d(2), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1)):
        out = pool(x)
        assert out.ndim == 3 and out.shape[0] == 3
        _, dx = forward_backward(pool, x, np.ones(out.shape))
        assert dx.shape == x.shape
    assert nn.MaxPool2d(3).stride == (3, 3)


def test_pool_used_twice_in_one_forward_adds_gradients(rng):
    x = data((2, 3, 8, 8))
    g = rng.standard_normal((2, 3, 4, 4))
    for pool in (nn.MaxPool2d(2), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(4)):
        _, once = forward_backward(pool, x, g)
        xt = leaf(x)
        (pool(xt) + pool(xt)).backward(g)
        np.testing.assert_allclose(xt.grad, 2 * once.data, rtol=1e-13)


def test_no_grad_records_nothing():
    x = leaf(data((1, 2, 4, 4)))
    with fastnn.no_grad():
        outs = [nn.MaxPool2d(2)(x), nn.AvgPool2d(2)(x), nn.AdaptiveAvgPool2d(1)(x)]
    assert all(o.grad_fn is None and not o.requires_grad for o in outs)
    assert nn.MaxPool2d(2)(data((1, 2, 4, 4))).grad_fn is None  # a constant input


def test_one_and_many_threads_agree_bitwise(threads):
    x = data((8, 16, 32, 32), np.float32)
    g = data((8, 16, 16, 16), np.float32, seed=1)
    layers = [nn.MaxPool2d(2), nn.AvgPool2d(3, 2, 1), nn.AdaptiveAvgPool2d(1), nn.MaxPool2d(3, 2, 1)]

    def run():
        results = []
        for layer in layers:
            out = layer(x)
            out, dx = forward_backward(layer, x, g if out.shape == g.shape else np.ones(out.shape, np.float32))
            results += [out.data, dx.data]
        return results

    first, *others = threads(run)
    for other in others:
        for a, b in zip(first, other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make,shape,match", [
    (lambda: nn.MaxPool2d(2), (2, 3, 4), None),
    (lambda: nn.MaxPool2d(2), (2, 8), r"max_pool2d.*4-D.*\(2, 8\)"),
    (lambda: nn.MaxPool2d(5), (1, 1, 4, 8), r"max_pool2d.*\(1, 1, 4, 8\).*smaller than the pooling window"),
    (lambda: nn.AvgPool2d(3, padding=1), (1, 1, 8, 0), r"avg_pool2d.*\(1, 1, 8, 0\)"),
    (lambda: nn.AvgPool2d(2), (0, 1, 8, 8), r"avg_pool2d.*empty"),
    (lambda: nn.AdaptiveAvgPool2d(2), (1, 2, 3, 0, 1), r"adaptive_avg_pool2d.*4-D"),
    (lambda: nn.AdaptiveAvgPool2d(2), (1, 2, 0, 3), r"adaptive_avg_pool2d.*empty"),
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
    with pytest.raises(ValueError, match="divisor_override"):
        nn.AvgPool2d(2, divisor_override=0)
    x = np.zeros((1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"max_pool2d: padding should be at most half"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match=r"avg_pool2d: stride"):
        F.avg_pool2d(x, 2, stride=(1, 2, 3))
    with pytest.raises(ValueError, match=r"avg_pool2d: divisor_override"):
        F.avg_pool2d(x, 2, divisor_override=0)
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: output_size"):
        F.adaptive_avg_pool2d(x, (1, 2, 3))
    with pytest.raises(TypeError, match="max_pool2d"):
        F.max_pool2d(x.astype(np.complex64), 2)


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
        (nn.AvgPool2d(k, s, p, ceil_mode=ceil, divisor_override=3),
         torch.nn.AvgPool2d(k, s, p, ceil_mode=ceil, divisor_override=3)),
        (nn.AdaptiveAvgPool2d((2, 3)), torch.nn.AdaptiveAvgPool2d((2, 3))),
    ]
    for mine, theirs in pairs:
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        tout = theirs(tx)
        g = data(tuple(tout.shape), np.float32, seed=3)
        tout.backward(torch.from_numpy(g))
        out, dx = forward_backward(mine, x, g)
        np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-6, atol=1e-6)
    out, idx = F.max_pool2d(x, k, s, p, ceil_mode=ceil, return_indices=True)
    tout, tidx = torch.nn.functional.max_pool2d(torch.from_numpy(x), k, s, p, ceil_mode=ceil, return_indices=True)
    np.testing.assert_array_equal(idx, tidx.numpy())
    np.testing.assert_array_equal(out, tout.numpy())
