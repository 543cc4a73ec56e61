"""The lean batch-1 inference paths: Sequential passing fused activations as
arguments, Linear's one-call serial kernel, serial pooling kernels, Flatten, and
Module.__setattr__'s fast path. Each must give bitwise the results of the general
path it short-cuts and keep every validation error; no forward (eval or training)
sets module attributes, and without grad nothing is recorded."""
import numpy as np
import pytest

import fastnn
from fastnn import nn
from fastnn.kernels import activations as act_k
from fastnn.kernels import pool as pool_k
from fastnn.kernels.matmul import linear_serial, matmul
from fastnn.nn.module import Module

ACTIVATIONS = [nn.ReLU, nn.Tanh, nn.Sigmoid, lambda: nn.LeakyReLU(0.1)]
# (rows, in, out): batch 1-3 (the unpacked GEMV path), the packed path, K = 1
SHAPES = [(1, 784, 256), (1, 128, 10), (3, 33, 17), (5, 20, 30), (16, 64, 40), (2, 1, 7)]


def bits(a):
    return a.view(np.uint8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("M,K,N", SHAPES)
def test_linear_serial_is_bitwise_matmul_then_epilogue(M, K, N, bias, dtype, rng):
    x = rng.standard_normal((M, K)).astype(dtype)
    w = rng.standard_normal((N, K)).astype(dtype)
    b = rng.standard_normal(N).astype(dtype)
    for kind, slope in [(act_k.IDENTITY, 0.0), (act_k.RELU, 0.0), (act_k.LEAKY_RELU, 0.1),
                        (act_k.SIGMOID, 0.0), (act_k.TANH, 0.0)]:
        expected = np.empty((M, N), dtype)
        matmul(expected, x, w, trans_b=True)
        if bias or kind != act_k.IDENTITY:
            act_k.bias_activation_forward(expected, b, kind, slope, bias)
        out = np.empty((M, N), dtype)
        linear_serial(out, x, w, b, kind, slope, bias)
        np.testing.assert_array_equal(bits(out), bits(expected))


def state(module):
    """Every module's attributes, to check that a call stored nothing on them."""
    return {id(m): dict(vars(m)) for m in module.modules()}


def same_state(before, module):
    after = state(module)
    return before.keys() == after.keys() and all(
        before[k].keys() == after[k].keys() and all(before[k][a] is after[k][a] for a in before[k]) for k in before)


@pytest.mark.parametrize("make_act", ACTIVATIONS)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_sequential_fused_equals_unfused_bitwise(make_act, mode, rng):
    x = rng.standard_normal((1, 50)).astype(np.float32)
    g = rng.standard_normal((1, 8)).astype(np.float32)
    results = []
    for fuse in (True, False):
        model = nn.Sequential(nn.Linear(50, 30, generator=np.random.default_rng(0)), make_act(),
                              nn.Linear(30, 8, generator=np.random.default_rng(1)))
        model.fuse = fuse
        getattr(model, mode)()
        model(x)  # warm: Sequential builds its steps once
        before = state(model)
        xt = fastnn.tensor(x, requires_grad=True)
        out = model(xt)
        out.backward(g)  # gradients flow in eval mode too
        results.append([out.data, xt.grad.data, model[0].weight.grad.data])
        assert same_state(before, model)  # nothing per call on the modules
    for a, b in zip(*results):
        np.testing.assert_array_equal(bits(a), bits(b))


def test_sequential_fused_layer_with_replaced_forward_is_still_called(rng):
    """A forward replaced on the instance (as DistributedDataParallel.global_batches
    does) must run, and the activation after it still apply."""
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU()).eval()
    layer = model[0]
    seen = []

    def forward(x):
        seen.append(1)
        return type(layer).forward(layer, x)

    x = rng.standard_normal((2, 4)).astype(np.float32)
    expected = np.asarray(model(x))
    layer.__dict__["forward"] = forward
    np.testing.assert_array_equal(model(x), expected)
    assert seen == [1]
    del layer.__dict__["forward"]
    np.testing.assert_array_equal(model(x), expected)
    assert len(seen) == 1


def test_sequential_rebuilds_steps_when_children_change(rng):
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU()).eval()
    x = rng.standard_normal((2, 4)).astype(np.float32)
    assert (np.asarray(model(x)) >= 0).all()
    model._modules["1"] = nn.Identity()  # a direct table edit, as PyTorch code does
    out = np.asarray(model(x))
    np.testing.assert_array_equal(out, model[0](x))
    assert (out < 0).any()


@pytest.mark.parametrize("x", [
    np.ones((2, 5), np.float64),              # converted to the weight dtype
    np.ones((2, 5), np.int32),
    np.ones((5, 2), np.float32).T,            # not contiguous
    [[1.0] * 5],                              # a list
    np.ones(5, np.float32),                   # 1-D
    np.ones((3, 2, 5), np.float32),           # extra leading dims
])
def test_linear_general_inputs_match_fast_path(x):
    layer = nn.Linear(5, 3).eval()
    arr = np.asarray(x)
    out = layer(x)
    expected = layer(np.ascontiguousarray(arr.reshape(-1, 5), dtype=np.float32))
    assert out.shape == arr.shape[:-1] + (3,) and out.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(out).reshape(-1, 3), expected)


@pytest.mark.parametrize("x,error,match", [
    (np.ones((2, 4), np.float32), ValueError, r"Linear: expected input of shape \(\*, 5\)"),
    (np.ones((2, 5), np.complex64), TypeError, "Linear"),
    (np.ones((2, 5), bool), TypeError, "Linear"),
    (np.float32(1.0), ValueError, "Linear"),
])
def test_linear_still_rejects_bad_input(x, error, match):
    with pytest.raises(error, match=match):
        nn.Linear(5, 3).eval()(x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,geom", [
    ((1, 6, 28, 28), (2, 2, 2, 2, 0, 0, 1, 1)),
    ((2, 3, 9, 7), (3, 3, 2, 2, 1, 1, 1, 1)),
    ((1, 2, 10, 8), (3, 2, 1, 2, 1, 0, 2, 1)),
])
def test_serial_pool_kernels_match_parallel_bitwise(shape, geom, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    x.reshape(-1)[::7] = 0.5  # ties: the first maximum's index wins
    x.reshape(-1)[::23] = np.nan
    N, C, H, W = shape
    KH, KW, SH, SW, PH, PW, DH, DW = geom
    OH = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1
    OW = (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1
    out_p, out_s = np.empty((N * C, OH, OW), dtype), np.empty((N, C, OH, OW), dtype)
    arg_p, arg_s = np.empty((N * C, OH, OW), np.int32), np.empty((N, C, OH, OW), np.int32)
    pool_k.max_pool_forward(out_p, arg_p, x.reshape(N * C, H, W), geom, True)
    pool_k.max_pool_forward_serial(out_s, arg_s, x, geom, True)
    np.testing.assert_array_equal(bits(out_s.reshape(out_p.shape)), bits(out_p))
    np.testing.assert_array_equal(arg_s.reshape(arg_p.shape), arg_p)
    pool_k.max_pool_forward_serial(out_s, np.zeros((1, 1, 1, 1), np.int32), x, geom, False)
    np.testing.assert_array_equal(bits(out_s.reshape(out_p.shape)), bits(out_p))
    for adaptive, include_pad in [(False, True), (False, False), (True, False)]:
        ag = (1, 1, 1, 1, 0, 0, 1, 1) if adaptive else geom
        oh, ow = (3, 2) if adaptive else (OH, OW)
        avg_p, avg_s = np.empty((N * C, oh, ow), dtype), np.empty((N, C, oh, ow), dtype)
        pool_k.avg_pool_forward(avg_p, x.reshape(N * C, H, W), ag, adaptive, include_pad)
        pool_k.avg_pool_forward_serial(avg_s, x, ag, adaptive, include_pad)
        np.testing.assert_array_equal(bits(avg_s.reshape(avg_p.shape)), bits(avg_p))


def test_pool_plan_follows_geometry_changes(rng):
    pool = nn.MaxPool2d(2).eval()
    x = rng.standard_normal((1, 2, 8, 8)).astype(np.float32)
    assert pool(x).shape == (1, 2, 4, 4)
    pool.stride = (1, 1)
    assert pool(x).shape == (1, 2, 7, 7)
    assert pool(x[:, :, :5, :5].copy()).shape == (1, 2, 4, 4)
    with pytest.raises(ValueError, match="max_pool2d"):
        pool(x[:, :, :1, :1].copy())


def test_flatten_returns_a_view_of_contiguous_input(rng):
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    out = nn.Flatten()(x)
    assert out.shape == (2, 12) and np.shares_memory(out.data, x)
    assert nn.Flatten()(x.astype(np.int64)).dtype == np.int64  # a shape operation keeps the dtype (PyTorch)
    assert nn.Flatten(0, 1)(x.tolist()).shape == (6, 4)
    t = nn.Flatten()(np.asfortranarray(x))
    assert t.data.flags.c_contiguous and np.array_equal(t, out)


HOT_MODEL = [lambda: nn.Conv2d(1, 2, 3), nn.ReLU, lambda: nn.MaxPool2d(2), lambda: nn.BatchNorm2d(2),
             lambda: nn.AvgPool2d(1), nn.Flatten, lambda: nn.Linear(18, 8), nn.ReLU, lambda: nn.Linear(8, 3)]


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_forward_sets_no_attributes_once_warm(monkeypatch, mode, rng):
    """Forwards of the hot layers (eval, and training with backward) leave their modules
    untouched: what backward needs lives on the graph."""
    model = nn.Sequential(*[make() for make in HOT_MODEL])
    x = rng.standard_normal((1, 1, 8, 8)).astype(np.float32)
    model(x)
    model.eval()
    model(x)
    getattr(model, mode)()
    expected = np.asarray(model(x)) if mode == "eval" else None
    assigned = []
    original = Module.__setattr__

    def counting(self, name, value):
        assigned.append((type(self).__name__, name))
        original(self, name, value)

    monkeypatch.setattr(Module, "__setattr__", counting)
    before = state(model)
    out = model(fastnn.tensor(x, requires_grad=True))
    out.backward(np.ones(out.shape, np.float32))
    if expected is not None:
        np.testing.assert_array_equal(out.data, expected)
        with fastnn.no_grad():
            np.testing.assert_array_equal(model(x), expected)
    assert assigned == [] and same_state(before, model)


def test_inference_records_nothing_and_a_graph_runs_backward_once(rng):
    x = rng.standard_normal((1, 1, 4, 4)).astype(np.float32)
    for layer in (nn.MaxPool2d(2), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Conv2d(1, 1, 3),
                  nn.BatchNorm2d(1), nn.Linear(4, 2)):
        xt = fastnn.tensor(x, requires_grad=True)
        out = layer(xt)
        out.backward(np.ones(out.shape, np.float32))
        with pytest.raises(RuntimeError, match="second time"):
            out.backward(np.ones(out.shape, np.float32))
        layer.eval()
        with fastnn.no_grad():
            out = layer(xt)
        assert out.grad_fn is None and not out.requires_grad


def test_setattr_fast_path_keeps_registration_semantics():
    layer = nn.Linear(3, 2)
    for value in (np.zeros(2), (1, 2), None, 3, 2.5, np.float32(1.0), "s", [1], {"a": 1}):
        layer.state = value
        assert layer.state is value and "state" not in layer._parameters
    layer.weight = np.zeros((2, 3))  # a plain value under a parameter's name unregisters it
    assert "weight" not in layer._parameters and list(layer.state_dict()) == ["bias"]
    layer.register_parameter("extra", None)
    assert layer.extra is None and "extra" in layer._parameters
    p = nn.Parameter(np.ones(2, np.float32))
    layer.extra = p
    assert layer._parameters["extra"] is p and layer.extra is p
    bn = nn.BatchNorm1d(2)
    bn.running_mean = np.full(2, 5.0)  # as in PyTorch: an array assigned to a buffer replaces it
    assert "running_mean" in bn._buffers and isinstance(bn.running_mean, fastnn.Tensor)
    assert bn.running_mean.data[0] == 5.0 and bn.state_dict()["running_mean"][0] == 5.0

    class Early(Module):
        def __init__(self):
            self.x = np.zeros(1)

    with pytest.raises(RuntimeError, match="super"):
        Early()
