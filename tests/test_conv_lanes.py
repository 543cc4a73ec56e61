"""The convolution with the batch in the vector lanes (``kernels.conv_lanes``), which
inference plans run for many small images with few channels (``applies``): against a
float64 NumPy reference over strides, paddings, dilations, odd and short rows,
partial image blocks, every last-tile height and two K blocks; fused bias and
activations; the thread split; where it applies; and on a plan against the eager
forward."""
import numpy as np
import pytest

import fastnn
from fastnn import nn
from fastnn.kernels import activations as act_k
from fastnn.kernels import conv_lanes

from _conv_reference import activation_reference
from _conv_reference import conv2d_reference as reference

def _run(x, w, b, geom, kind=act_k.IDENTITY, slope=0.0, threads=2):
    out_shape = reference(x[:1], w, None, geom).shape[1:]
    out = np.full((x.shape[0], *out_shape), np.nan, x.dtype)
    conv_lanes.forward_runner(out, x, w, b, geom, kind, slope, threads)(x)
    return out


CASES = [  # N, C, OC, H, W, K, stride (rows), padding, dilation
    (16, 1, 6, 12, 12, 5, 1, 2, 1),    # LeNet's first layer in small: a last tile of 6 rows
    (16, 6, 16, 14, 14, 5, 1, 0, 1),   # LeNet's second: two whole tiles
    (17, 3, 3, 7, 9, 3, 1, 1, 1),      # a second block of 1 image; 3 rows (a 4-row tile); odd output width
    (33, 4, 9, 6, 5, 3, 2, 1, 1),      # stride 2 down; 9 channels: a whole tile and one of 1 row
    (16, 2, 5, 9, 11, 3, 1, 2, 2),     # dilation 2, rows of 11 (one block of 8 pixels and a tail)
    (20, 16, 12, 6, 7, 5, 1, 2, 1),    # 400 taps: two K blocks; 12 channels: 8 + a 4-row tile
    (16, 2, 7, 1, 3, 1, 1, 0, 1),      # 1 x 1: a single row of 3 pixels
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_matches_the_direct_convolution(case, dtype):
    N, C, OC, H, W, K, S, P, D = case
    rng = np.random.default_rng(sum(case))
    geom = (K, K, S, 1, P, P, D, D, 1)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((OC, C, K, K)).astype(dtype)
    b = rng.standard_normal(OC).astype(dtype)
    want = reference(x, w, b, geom)
    got = _run(x, w, b, geom)
    tol = 1e-12 if dtype == np.float64 else 2e-6  # of the largest output: rounding only
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * np.abs(want).max())
    assert not np.isnan(got).any()  # every output element written
    again = _run(x, w, None, geom)  # no bias; and the runner's buffers reused below
    np.testing.assert_allclose(again, want - b.astype(np.float64)[None, :, None, None], rtol=0,
                               atol=tol * np.abs(want).max())


def _pool2(v):
    """max_pool2d(v, 2) in NumPy: 2 x 2 windows, rounding down, a NaN in a window wins."""
    N, C, H, W = v.shape
    v = v[:, :, :H // 2 * 2, :W // 2 * 2].reshape(N, C, H // 2, 2, W // 2, 2)
    return v.max(axis=(3, 5))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", [(16, 1, 6, 28, 28, 5, 2), (17, 3, 5, 9, 10, 3, 1), (20, 4, 12, 7, 9, 3, 0),
                                  (16, 2, 3, 6, 21, 3, 1), (16, 2, 5, 8, 8, 1, 0)], ids=lambda c: "x".join(map(str, c)))
def test_a_2x2_max_pool_after_it(case, dtype):
    """``pooled``: the convolution, its activation and a 2 x 2 max pool in one pass; odd
    output sizes round down; a NaN in a window comes out as NaN."""
    N, C, OC, H, W, K, P = case
    rng = np.random.default_rng(sum(case))
    geom = (K, K, 1, 1, P, P, 1, 1, 1)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    x[1, 0, 2, 3] = np.nan  # a NaN reaches a few windows of image 1
    x[2, 0, 1, 1] = x[2, 0, 2, 5] = x[2, 0, 5, 4] = x[2, 0, 4, 6] = np.nan  # 1 x 1: each place in a window
    w = rng.standard_normal((OC, C, K, K)).astype(dtype)
    b = rng.standard_normal(OC).astype(dtype)
    conv = reference(x, w, b, geom)
    want = _pool2(np.where(conv > 0, conv, conv * 0.1))
    OH, OW = conv_lanes.conv_size(x.shape, geom)
    out = np.full((N, OC, OH // 2, OW // 2), -7.0, dtype)
    conv_lanes.forward_runner(out, x, w, b, geom, act_k.LEAKY_RELU, 0.1, 2, pooled=True)(x)
    assert np.array_equal(np.isnan(out), np.isnan(want)) and np.isnan(want).any()
    tol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(out, want, rtol=0, atol=tol * np.nanmax(np.abs(want)))
    with pytest.raises(ValueError, match="conv_lanes.forward_runner: output of shape"):
        conv_lanes.forward_runner(out, x, w, b, geom, act_k.RELU, 0.0, 2)  # (an unpooled call's shape differs)


def test_a_runner_reads_each_call_s_input():
    rng = np.random.default_rng(1)
    geom = (3, 3, 1, 1, 1, 1, 1, 1, 1)
    w = rng.standard_normal((6, 2, 3, 3))
    first, second = (rng.standard_normal((16, 2, 5, 10)) for _ in range(2))
    out = np.empty((16, 6, 5, 10))
    run = conv_lanes.forward_runner(out, first, w, None, geom, act_k.IDENTITY, 0.0, 2)
    run(first)
    run(second)
    np.testing.assert_allclose(out, reference(second, w, None, geom), rtol=0, atol=1e-12 * np.abs(out).max())


@pytest.mark.parametrize("kind,slope", [(act_k.RELU, 0.0), (act_k.LEAKY_RELU, 0.1), (act_k.SIGMOID, 0.0),
                                        (act_k.TANH, 0.0)])
def test_fused_activation(kind, slope):
    rng = np.random.default_rng(2)
    geom = (3, 3, 1, 1, 1, 1, 1, 1, 1)
    x = rng.standard_normal((18, 3, 6, 10))
    w = rng.standard_normal((10, 3, 3, 3))
    b = rng.standard_normal(10)
    want = reference(x, w, b, geom)
    want = activation_reference(want, kind, slope)
    np.testing.assert_allclose(_run(x, w, b, geom, kind, slope), want, rtol=1e-12, atol=1e-12)


def test_results_do_not_depend_on_the_thread_split():
    rng = np.random.default_rng(3)
    geom = (5, 5, 1, 1, 2, 2, 1, 1, 1)
    x = rng.standard_normal((40, 4, 9, 12)).astype(np.float32)
    w = rng.standard_normal((14, 4, 5, 5)).astype(np.float32)
    b = rng.standard_normal(14).astype(np.float32)
    one = _run(x, w, b, geom, act_k.RELU, threads=1)
    assert np.array_equal(_run(x, w, b, geom, act_k.RELU, threads=2), one)
    assert np.array_equal(_run(x, w, b, geom, act_k.RELU, threads=3), one)


@pytest.mark.parametrize("x_shape,w_shape,geom,dtype,ok", [
    ((64, 1, 28, 28), (6, 1, 5, 5), (5, 5, 1, 1, 2, 2, 1, 1, 1), np.float32, True),    # LeNet's layers
    ((64, 6, 14, 14), (16, 6, 5, 5), (5, 5, 1, 1, 0, 0, 1, 1, 1), np.float32, True),
    ((15, 6, 14, 14), (16, 6, 5, 5), (5, 5, 1, 1, 0, 0, 1, 1, 1), np.float32, False),  # fewer images than lanes
    ((8, 6, 14, 14), (16, 6, 5, 5), (5, 5, 1, 1, 0, 0, 1, 1, 1), np.float64, True),    # float64: 8 lanes
    ((17, 6, 14, 14), (16, 6, 5, 5), (5, 5, 1, 1, 0, 0, 1, 1, 1), np.float32, False),  # a block nearly empty
    ((32, 3, 32, 32), (32, 3, 3, 3), (3, 3, 1, 1, 1, 1, 1, 1, 1), np.float32, False),  # little padding to save
    ((64, 16, 10, 10), (32, 16, 3, 3), (3, 3, 1, 1, 1, 1, 1, 1, 1), np.float32, True),  # 0.83 of the work
    ((32, 32, 16, 16), (64, 32, 3, 3), (3, 3, 1, 1, 1, 1, 1, 1, 1), np.float32, False),  # 0.89: about level
    ((64, 6, 14, 14), (16, 6, 5, 5), (5, 5, 1, 2, 0, 0, 1, 1, 1), np.float32, False),  # stride across
    ((64, 6, 14, 14), (16, 3, 5, 5), (5, 5, 1, 1, 0, 0, 1, 1, 2), np.float32, False),  # groups
])
def test_applies_where_it_pays(x_shape, w_shape, geom, dtype, ok):
    KH, KW, SH, SW, PH, PW, DH, DW, G = geom
    out_shape = (x_shape[0], w_shape[0], (x_shape[2] + 2 * PH - DH * (KH - 1) - 1) // SH + 1,
                 (x_shape[3] + 2 * PW - DW * (KW - 1) - 1) // SW + 1)
    assert conv_lanes.applies(x_shape, w_shape, out_shape, geom, dtype) is ok


def _lenet(pool):
    fastnn.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.BatchNorm2d(6), nn.ReLU(), pool(),
                          nn.Conv2d(6, 16, 5), nn.ReLU(), pool(), nn.Flatten(), nn.Linear(16 * 5 * 5, 10))
    bn = model[1]
    bn.running_mean.data[:] = np.linspace(-0.5, 0.5, 6)  # statistics the folded BatchNorm has to get right
    bn.running_var.data[:] = np.linspace(0.5, 2.0, 6)
    return model.eval()


@pytest.mark.parametrize("batch", [16, 64])
@pytest.mark.parametrize("pool,pooled", [(lambda: nn.MaxPool2d(2), True),  # in the convolution's epilogue
                                         (lambda: nn.MaxPool2d(2, ceil_mode=True), False),  # a step of its own
                                         (lambda: nn.MaxPool2d(3, 2, padding=1), False)],
                         ids=["2x2", "ceil_mode", "3x3"])
def test_a_plan_runs_it_and_equals_the_eager_forward(batch, pool, pooled, monkeypatch):
    built = []
    runner = conv_lanes.forward_runner

    def counting(*args, **kwargs):
        built.append((args[2].shape, kwargs.get("pooled", False)))
        return runner(*args, **kwargs)

    monkeypatch.setattr(conv_lanes, "forward_runner", counting)
    model = _lenet(pool)
    compiled = fastnn.compile(model)
    rng = np.random.default_rng(4)
    with fastnn.no_grad():
        for _ in range(3):
            x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
            x[0, 0, 9, 9] = np.nan  # (a NaN the pools carry, or not, alike)
            got, want = compiled(x).data, model(x).data
            assert np.array_equal(np.isnan(got), np.isnan(want))
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    if pooled:
        assert built == [((6, 1, 5, 5), True), ((16, 6, 5, 5), True)]  # both layers, once: the plan's
    else:
        assert [shape for shape, _ in built] == [(6, 1, 5, 5), (16, 6, 5, 5)] and not any(p for _, p in built)
