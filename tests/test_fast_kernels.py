"""Fast paths equal the general ones bitwise: MaxPool2d on windows that tile the
plane (kernel == stride, no padding), with ties, NaN, infinities and signed zeros;
BatchNorm2d in eval (sets nothing, stays differentiable). Also 1 vs all threads."""
import numpy as np
import pytest

import fastnn
from fastnn import nn
from fastnn.kernels import pool as pool_k
from fastnn.ops.pool import pool_plan


def nasty(shape, dtype, seed=0):
    """Values drawn from a few levels (many ties), with NaN, +-inf and +-0."""
    rng = np.random.default_rng(seed)
    levels = np.array([0.0, -0.0, 1.0, -1.0, 2.0, np.inf, -np.inf, np.nan, 0.5, -3.0])
    x = levels[rng.integers(0, len(levels), shape)]
    mask = rng.random(shape) < 0.5
    x[mask] = rng.standard_normal(shape)[mask]
    return x.astype(dtype)


def bits(a):
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def general(x, k, s, with_index=True):
    """MaxPool2d through the general kernels (values, indices)."""
    N, C, H, W = x.shape
    (KH, KW), (SH, SW) = k, s
    OH, OW = (H - KH) // SH + 1, (W - KW) // SW + 1
    out = np.empty((N, C, OH, OW), x.dtype)
    argmax = np.zeros((N, C, OH, OW), np.int32)
    pool_k.max_pool_forward_serial(out, argmax, x, (KH, KW, SH, SW, 0, 0, 1, 1), with_index)
    out2 = np.empty_like(out)
    argmax2 = np.zeros_like(argmax)
    pool_k.max_pool_forward(out2.reshape(-1, OH, OW), argmax2.reshape(-1, OH, OW), x.reshape(-1, H, W),
                            (KH, KW, SH, SW, 0, 0, 1, 1), with_index)
    np.testing.assert_array_equal(bits(out), bits(out2))
    np.testing.assert_array_equal(argmax, argmax2)
    return out, argmax


TILED = [((2, 2), (1, 3, 8, 8)), ((2, 2), (2, 2, 7, 9)), ((2, 2), (1, 1, 2, 40)), ((3, 3), (2, 2, 9, 10)),
         ((2, 3), (1, 2, 6, 7)), ((3, 2), (2, 1, 7, 6)), ((1, 1), (1, 2, 3, 3)), ((4, 4), (1, 2, 9, 8)),
         ((2, 2), (3, 16, 34, 30))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k,shape", TILED)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tiled_max_pool_equals_general(k, shape, dtype, seed):
    x = nasty(shape, dtype, seed)
    expected, expected_idx = general(x, k, k)
    N, C, H, W = shape
    for kern in (pool_k.max_pool_tiled_forward, pool_k.max_pool_tiled_forward_serial):
        out = np.empty_like(expected)
        argmax = np.zeros_like(expected_idx)
        kern(out, argmax, x, k[0], k[1], True)
        np.testing.assert_array_equal(bits(out), bits(expected))
        np.testing.assert_array_equal(argmax, expected_idx)
        out = np.empty_like(expected)
        kern(out, np.zeros((1, 1, 1, 1), np.int32), x, k[0], k[1], False)
        np.testing.assert_array_equal(bits(out), bits(expected))


@pytest.mark.parametrize("shape", [(1, 6, 28, 28), (64, 16, 10, 10), (4, 8, 33, 31)])
def test_tiled_layer_forward_backward_equal_general(shape):
    x = nasty(shape, np.float32, 3)
    assert pool_plan("max_pool2d", shape, (2, 2), (2, 2), (0, 0), (1, 1), False)[3] is True
    layer = nn.MaxPool2d(2, return_indices=True)
    xt = fastnn.tensor(x, requires_grad=True)
    out, indices = layer(xt)
    expected, expected_idx = general(x, (2, 2), (2, 2))
    np.testing.assert_array_equal(bits(out.data), bits(expected))
    np.testing.assert_array_equal(indices, expected_idx)
    g = np.random.default_rng(1).standard_normal(out.shape).astype(np.float32)
    out.backward(g)
    ref = np.empty_like(x)
    OH, OW = out.shape[2:]
    pool_k.max_pool_backward(ref.reshape(-1, *shape[2:]), g.reshape(-1, OH, OW), expected_idx.reshape(-1, OH, OW))
    np.testing.assert_array_equal(bits(xt.grad.data), bits(ref))
    layer.eval()
    with fastnn.no_grad():  # no index needed: the kernels' value-only sweep
        np.testing.assert_array_equal(bits(nn.MaxPool2d(2)(x).data), bits(expected))


def test_ceil_mode_clipped_windows_take_the_general_path():
    x = nasty((2, 3, 7, 9), np.float64, 4)
    layer = nn.MaxPool2d(2, ceil_mode=True)
    assert pool_plan("max_pool2d", x.shape, 2, None, 0, 1, True)[3] is False
    out = layer(x)
    assert out.shape == (2, 3, 4, 5)
    assert pool_plan("max_pool2d", x.shape, 2, None, 0, 1, False)[3] is True
    np.testing.assert_array_equal(bits(out.data[:, :, :3, :4]), bits(nn.MaxPool2d(2)(x).data))


def test_tiled_max_pool_one_and_many_threads_agree(threads):
    x = nasty((16, 32, 32, 32), np.float32, 5)
    g = np.random.default_rng(2).standard_normal((16, 32, 16, 16)).astype(np.float32)

    def run():
        xt = fastnn.tensor(x, requires_grad=True)
        out, indices = nn.MaxPool2d(2, return_indices=True)(xt)
        out.backward(g)
        return out.data, indices.data, xt.grad.data

    first, *others = threads(run)
    for other in others:
        for a, b in zip(first, other):
            np.testing.assert_array_equal(a.view(np.uint32) if a.dtype == np.float32 else a,
                                          b.view(np.uint32) if b.dtype == np.float32 else b)


def test_batch_norm_eval_sets_nothing_and_stays_differentiable():
    bn = nn.BatchNorm2d(4)
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 3)).astype(np.float32)
    bn(x)
    bn.eval()
    bn(x)
    before = dict(bn.__dict__)
    buffers = {k: (v, v.data) for k, v in bn._buffers.items()}
    xt = fastnn.tensor(x, requires_grad=True)
    out = bn(xt)
    with fastnn.no_grad():
        bn(x)
    assert bn.__dict__.keys() == before.keys() and all(bn.__dict__[k] is v for k, v in before.items())
    assert all(bn._buffers[k] is t and t.data is d for k, (t, d) in buffers.items())
    out.backward(np.ones_like(x))  # frozen statistics: gradients still flow
    scale = bn.weight.data / np.sqrt(bn.running_var.data + bn.eps)
    np.testing.assert_allclose(xt.grad, np.broadcast_to(scale.reshape(1, 4, 1, 1), x.shape), rtol=1e-6)
    assert all(bn._buffers[k] is t and t.data is d for k, (t, d) in buffers.items())
