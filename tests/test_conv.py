"""Conv2d: forward against the NumPy reference, float64 gradient checks over odd
configurations, batch chunking, fused epilogue, threads, bad input, PyTorch."""
import numpy as np
import pytest
import reference as ref

import fastnn
from fastnn import nn
from fastnn.kernels import activations as act_k
from fastnn.kernels import conv as conv_k
from fastnn.kernels import conv_plan

# (N, C, H, W, OC, kernel, stride, padding, dilation, groups)
CONFIGS = [
    (1, 1, 7, 7, 1, 1, 1, 0, 1, 1),                      # 1x1, batch of 1
    (2, 3, 9, 8, 4, 3, 2, 1, 1, 1),                      # stride 2, padding
    (2, 4, 11, 10, 6, 5, 3, 2, 1, 2),                    # 5x5, stride 3, groups 2
    (1, 3, 9, 7, 3, (3, 2), 1, (1, 0), 2, 1),            # 3x2, dilation 2
    (2, 4, 7, 9, 8, 3, 1, 1, 1, 4),                      # depthwise, channel multiplier 2
    (3, 4, 6, 5, 4, 3, (2, 1), 1, 1, 4),                 # depthwise, mixed stride
    (1, 2, 5, 5, 3, 5, 1, 0, 1, 1),                      # kernel covers the input: 1x1 output
    (2, 3, 8, 7, 5, (1, 3), (1, 2), (0, 1), (1, 2), 1),  # 1x3, rectangular stride and dilation
    (2, 4, 5, 6, 6, 1, 1, 0, 1, 2),                      # pointwise (no im2col), groups 2
    (1, 2, 6, 6, 4, 1, 2, 1, 1, 1),                      # 1x1 with stride and padding
    (3, 5, 8, 9, 4, 3, 1, 0, 1, 1),                      # no padding, batch 3
]
IDS = [f"cfg{i}" for i in range(len(CONFIGS))]


def pair(v):
    return v if isinstance(v, tuple) else (v, v)


def make(cfg, dtype=np.float64, bias=True, seed=0):
    N, C, H, W, OC, k, s, p, d, g = cfg
    conv = nn.Conv2d(C, OC, k, stride=s, padding=p, dilation=d, groups=g, bias=bias,
                     dtype=dtype, generator=np.random.default_rng(seed))
    x = np.random.default_rng(seed + 1).standard_normal((N, C, H, W)).astype(dtype)
    return conv, x


def reference(conv, x):
    b = None if conv.bias is None else conv.bias.data
    return ref.conv2d(x, conv.weight.data, b, conv.stride, conv.padding, conv.dilation, conv.groups)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_forward_matches_reference(cfg, dtype, bias):
    conv, x = make(cfg, dtype, bias)
    out = conv(x)
    assert out.dtype == dtype
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(out, reference(conv, x), rtol=tol, atol=tol)


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_gradcheck(cfg):
    conv, x = make(cfg)
    assert fastnn.gradcheck(conv, x, max_checks=60)


def test_gradcheck_without_bias():
    conv, x = make(CONFIGS[2], bias=False)
    assert fastnn.gradcheck(conv, x, max_checks=60)


@pytest.mark.parametrize("slots", [1, 3, 64])
def test_any_split_into_slots_gives_the_same_result(monkeypatch, slots, rng):
    conv, x = make((7, 3, 9, 9, 5, 3, 1, 1, 1, 1))
    g = rng.standard_normal(conv(x).shape)
    conv.zero_grad()
    conv(x)
    dx_default = conv.backward(g)
    grads_default = conv.weight.grad.copy(), conv.bias.grad.copy()
    monkeypatch.setattr(conv_plan, "SLOTS", slots)  # read by conv_k.plan
    conv.zero_grad()
    np.testing.assert_allclose(conv(x), reference(conv, x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv.backward(g), dx_default, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv.weight.grad, grads_default[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv.bias.grad, grads_default[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cfg", [(11, 3, 6, 5, 4, 3, 1, 1, 1, 1), (10, 4, 5, 5, 6, 1, 1, 0, 1, 2),
                                 (9, 4, 7, 6, 4, 3, 2, 0, 1, 4)], ids=["padded", "pointwise", "depthwise"])
def test_samples_grouped_into_one_product(cfg):
    conv, x = make(cfg)
    P = conv.output_shape(x.shape)[2] * conv.output_shape(x.shape)[3]
    assert conv_k.plan(x.shape[0], conv.weight.data[0].size, P)[1] == 2
    np.testing.assert_allclose(conv(x), reference(conv, x), rtol=1e-12, atol=1e-12)
    assert fastnn.gradcheck(conv, x, max_checks=40)


def test_gradients_accumulate_until_zero_grad(rng):
    conv, x = make(CONFIGS[1])
    g = rng.standard_normal(conv(x).shape)
    conv.zero_grad()
    conv(x)
    conv.backward(g)
    first = conv.weight.grad.copy(), conv.bias.grad.copy()
    conv(x)
    conv.backward(g)
    np.testing.assert_allclose(conv.weight.grad, 2 * first[0], rtol=1e-12)
    np.testing.assert_allclose(conv.bias.grad, 2 * first[1], rtol=1e-12)


@pytest.mark.parametrize("kind,layer", [(act_k.RELU, nn.ReLU()), (act_k.LEAKY_RELU, nn.LeakyReLU(0.1))])
def test_fused_activation_matches_separate_layers(kind, layer, rng):
    conv, x = make(CONFIGS[1])
    fused, _ = make(CONFIGS[1])
    fused._act_kind, fused._act_slope = kind, getattr(layer, "slope", 0.0)
    g = rng.standard_normal(conv(x).shape)
    expected = layer(conv(x))
    dx = conv.backward(layer.backward(g))
    np.testing.assert_allclose(fused(x), expected, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(fused.backward(g), dx, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(fused.weight.grad, conv.weight.grad, rtol=1e-13, atol=1e-13)


def test_unbatched_input(rng):
    conv, x = make(CONFIGS[1])
    batched = conv(x)
    out = conv(x[0])
    assert out.shape == batched.shape[1:]
    np.testing.assert_allclose(out, batched[0], rtol=1e-13)
    assert conv.backward(np.ones_like(out)).shape == x[0].shape


def test_non_contiguous_and_integer_input(rng):
    conv, x = make(CONFIGS[1])
    wide = np.zeros(x.shape[:-1] + (2 * x.shape[-1],))
    wide[..., ::2] = x
    np.testing.assert_allclose(conv(wide[..., ::2]), conv(x), rtol=1e-13)
    assert conv(np.ones(x.shape, np.int32)).dtype == np.float64


@pytest.mark.parametrize("batch", [1, 6])
def test_one_and_many_threads_agree_bitwise(threads, batch, rng):
    # batch 1 runs sample by sample on the parallel matmul when threads > 1
    conv, x = make((batch, 8, 15, 13, 16, 3, 1, 1, 1, 1), np.float32)
    g = rng.standard_normal(conv(x).shape).astype(np.float32)

    def step():
        conv.zero_grad()
        out = conv(x)
        return out, conv.backward(g), conv.weight.grad.copy(), conv.bias.grad.copy()

    first, *others = threads(step)
    for other in others:
        for a, b in zip(first, other):
            np.testing.assert_array_equal(a, b)


def test_parameters_and_state_dict_follow_pytorch():
    conv = nn.Conv2d(4, 6, (3, 2), groups=2)
    assert conv.weight.shape == (6, 2, 3, 2) and conv.bias.shape == (6,)
    assert list(conv.state_dict()) == ["weight", "bias"]
    bound = 1 / np.sqrt(2 * 3 * 2)
    assert np.abs(conv.weight.data).max() <= bound and np.abs(conv.bias.data).max() <= bound
    assert list(nn.Conv2d(1, 2, 3, bias=False).state_dict()) == ["weight"]
    assert "groups=2" in repr(conv)


def test_padding_same_and_valid(rng):
    x = rng.standard_normal((2, 3, 7, 6))
    same = nn.Conv2d(3, 4, 5, padding="same", dilation=(1, 2)).double()
    assert same(x).shape == (2, 4, 7, 6)
    assert nn.Conv2d(3, 4, 3, padding="valid")(x).shape == (2, 4, 5, 4)
    with pytest.raises(ValueError, match="same"):
        nn.Conv2d(3, 4, 4, padding="same")
    with pytest.raises(ValueError, match="stride"):
        nn.Conv2d(3, 4, 3, padding="same", stride=2)


def test_save_and_load_round_trip(tmp_path, rng):
    model = nn.Sequential(nn.Conv2d(2, 4, (3, 2), stride=(2, 1), padding=1, groups=2), nn.ReLU(),
                          nn.Conv2d(4, 3, 3, padding="same", bias=False))
    x = rng.standard_normal((2, 2, 9, 9)).astype(np.float32)
    fastnn.save(model, tmp_path / "m.fnn")
    again = fastnn.load(tmp_path / "m.fnn")
    np.testing.assert_array_equal(again(x), model(x))


@pytest.mark.parametrize("kwargs,match", [
    ({"in_channels": 3, "out_channels": 4, "kernel_size": 3, "groups": 2}, "divisible by groups"),
    ({"in_channels": 4, "out_channels": 3, "kernel_size": 3, "groups": 2}, "divisible by groups"),
    ({"in_channels": 3, "out_channels": 4, "kernel_size": 0}, "kernel_size"),
    ({"in_channels": 3, "out_channels": 4, "kernel_size": 3, "stride": 0}, "stride"),
    ({"in_channels": 3, "out_channels": 4, "kernel_size": 3, "padding": -1}, "padding"),
    ({"in_channels": 3, "out_channels": 4, "kernel_size": (3, 3, 3)}, "kernel_size"),
    ({"in_channels": 0, "out_channels": 4, "kernel_size": 3}, "in_channels"),
    ({"in_channels": 3, "out_channels": 4, "kernel_size": 3, "padding_mode": "reflect"}, "padding_mode"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nn.Conv2d(**kwargs)


@pytest.mark.parametrize("shape,match", [
    ((3, 8, 8, 1, 1), r"Conv2d.*4-D"),
    ((3, 8), r"Conv2d.*4-D"),
    ((2, 4, 8, 8), r"Conv2d.*3 channels.*\(2, 4, 8, 8\)"),
    ((2, 3, 2, 8), r"Conv2d.*\(2, 3, 2, 8\).*smaller than the dilated kernel \(5, 3\)"),
    ((0, 3, 8, 8), r"Conv2d.*empty"),
])
def test_bad_input_shapes(shape, match):
    conv = nn.Conv2d(3, 2, 3, dilation=(2, 1))
    with pytest.raises(ValueError, match=match):
        conv(np.zeros(shape, np.float32))


def test_bad_grad_and_backward_before_forward(rng):
    conv = nn.Conv2d(3, 2, 3)
    with pytest.raises(RuntimeError, match="forward"):
        conv.backward(np.zeros((1, 2, 2, 2), np.float32))
    conv(np.zeros((1, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d.backward.*\(1, 2, 2, 2\)"):
        conv.backward(np.zeros((1, 2, 3, 3), np.float32))
    with pytest.raises(TypeError, match="Conv2d"):
        conv(np.zeros((1, 3, 4, 4), np.complex64))


# ------------------------------------------------------------------ PyTorch
@pytest.mark.parametrize("cfg", CONFIGS + [(4, 16, 14, 14, 32, 3, 1, 1, 1, 1)], ids=IDS + ["big"])
def test_matches_pytorch_forward_and_backward(cfg, rng):
    torch = pytest.importorskip("torch")
    _, C, _, _, OC, k, s, p, d, g = cfg
    conv, x = make(cfg, np.float32)
    tconv = torch.nn.Conv2d(C, OC, k, stride=s, padding=p, dilation=d, groups=g)
    tconv.load_state_dict({k_: torch.from_numpy(v) for k_, v in conv.state_dict().items()})
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tout = tconv(tx)
    out = conv(x)
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-4, atol=1e-5)
    gout = rng.standard_normal(out.shape).astype(np.float32)
    tout.backward(torch.from_numpy(gout))
    conv.zero_grad()
    dx = conv.backward(gout)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(conv.weight.grad, tconv.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(conv.bias.grad, tconv.bias.grad.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bias,affine", [(True, True), (False, True), (False, False)])
def test_fuse_conv_bn_eval_matches_the_pair(bias, affine, rng):
    conv, x = make(CONFIGS[2], bias=bias)
    bn = nn.BatchNorm2d(conv.out_channels, affine=affine).double()
    for _ in range(3):  # non-trivial running statistics and affine parameters
        bn(conv(rng.standard_normal(x.shape) * 2 + 1))
    if affine:
        bn.weight.data[...] = rng.uniform(0.5, 2, bn.num_features)
        bn.bias.data[...] = rng.standard_normal(bn.num_features)
    conv.eval()
    bn.eval()
    fused = nn.conv.fuse_conv_bn_eval(conv, bn)
    np.testing.assert_allclose(fused(x), bn(conv(x)), rtol=1e-12, atol=1e-12)
    fused._act_kind = act_k.RELU  # conv + bias + ReLU in one pass
    np.testing.assert_allclose(fused(x), np.maximum(bn(conv(x)), 0), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="running statistics"):
        nn.conv.fuse_conv_bn_eval(conv, nn.BatchNorm2d(3))
