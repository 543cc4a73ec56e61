"""Conv2d and F.conv2d: forward against the NumPy reference, float64 gradient checks
over odd configurations, batch chunking, fused epilogue, autograd (reuse, no_grad,
autograd.grad), threads, bad input, PyTorch."""
import numba
import numpy as np
import pytest
import reference as ref

import fastnn
from fastnn import nn
from fastnn.kernels import conv as conv_k
from fastnn.kernels import conv_plan
from fastnn.nn import functional as F

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
    (2, 16, 16, 16, 24, 3, 1, 1, 1, 1),                  # 3x3, stride 1, 40 channels: Winograd (and dx)
    (2, 3, 10, 12, 7, 3, 1, 1, 1, 1),                    # 7 channels: a last tile of 7 rows, read in place
]
IDS = [f"cfg{i}" for i in range(len(CONFIGS))]
FUSABLE = [("relu", 0.0), ("leaky_relu", 0.1), ("sigmoid", 0.0), ("tanh", 0.0)]


def make(cfg, dtype=np.float64, bias=True, seed=0):
    N, C, H, W, OC, k, s, p, d, g = cfg
    conv = nn.Conv2d(C, OC, k, stride=s, padding=p, dilation=d, groups=g, bias=bias,
                     dtype=dtype, generator=np.random.default_rng(seed))
    x = np.random.default_rng(seed + 1).standard_normal((N, C, H, W)).astype(dtype)
    return conv, x


def leaf(x):
    return fastnn.tensor(x, requires_grad=True)


def reference(conv, x):
    b = None if conv.bias is None else conv.bias.data
    return ref.conv2d(x, conv.weight.data, b, conv.stride, conv.padding, conv.dilation, conv.groups)


def forward_backward(layer, x, g):
    """(output, input gradient) of one forward and ``out.backward(g)``."""
    xt = leaf(x)
    out = layer(xt)
    out.backward(g)
    return out, xt.grad


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_forward_matches_reference(cfg, dtype, bias):
    conv, x = make(cfg, dtype, bias)
    out = conv(x)
    assert isinstance(out, fastnn.Tensor) and out.dtype == dtype
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(out, reference(conv, x), rtol=tol, atol=tol)


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_gradcheck(cfg):
    conv, x = make(cfg)
    assert fastnn.gradcheck(conv, leaf(x), max_checks=60)


def test_gradcheck_without_bias():
    conv, x = make(CONFIGS[2], bias=False)
    assert fastnn.gradcheck(conv, leaf(x), max_checks=60)


@pytest.mark.parametrize("kwargs", [
    dict(stride=2, padding=1), dict(stride=(1, 2), padding=(2, 0), dilation=(1, 2)), dict(padding="same"),
    dict(padding="valid", dilation=2), dict(groups=3), dict(bias=False, stride=2)], ids=str)
def test_functional_gradcheck(kwargs, rng):
    groups = kwargs.get("groups", 1)
    x = leaf(rng.standard_normal((2, 6, 7, 8)))
    w = leaf(rng.standard_normal((6, 6 // groups, 3, 3)))
    b = None if kwargs.pop("bias", True) is False else leaf(rng.standard_normal(6))
    assert fastnn.gradcheck(lambda x, w, b: F.conv2d(x, w, b, **kwargs), (x, w, b), max_checks=60)


def test_functional_depthwise_unbatched_and_non_contiguous_gradcheck(rng):
    w = leaf(rng.standard_normal((8, 1, 3, 3)))
    x = leaf(rng.standard_normal((4, 9, 10)))  # unbatched (C, H, W)
    assert fastnn.gradcheck(lambda x, w: F.conv2d(x, w, None, 1, 1, 1, 4), (x, w), max_checks=60)
    wide = leaf(rng.standard_normal((2, 4, 9, 20)))
    assert fastnn.gradcheck(lambda t, w: F.conv2d(t[..., ::2], w, groups=4, stride=2), (wide, w), max_checks=60)


@pytest.mark.parametrize("activation,slope", FUSABLE + [("gelu", 0.0), ("leaky_relu", -0.5)])
def test_functional_fused_activation_gradcheck(activation, slope, rng):
    x = leaf(rng.standard_normal((2, 3, 6, 5)))
    w = leaf(rng.standard_normal((4, 3, 3, 3)))
    b = leaf(rng.standard_normal(4))
    assert fastnn.gradcheck(lambda x, w, b: F.conv2d(x, w, b, padding=1, activation=activation,
                                                     negative_slope=slope), (x, w, b), max_checks=60)


@pytest.mark.parametrize("slots", [1, 3, 64])
def test_any_split_into_slots_gives_the_same_result(monkeypatch, slots, rng):
    conv, x = make((7, 3, 9, 9, 5, 3, 1, 1, 1, 1))
    g = rng.standard_normal(conv(x).shape)
    _, dx_default = forward_backward(conv, x, g)
    grads_default = conv.weight.grad.data.copy(), conv.bias.grad.data.copy()
    monkeypatch.setattr(conv_plan, "SLOTS", slots)  # read by conv_k.plan
    conv.zero_grad()
    out, dx = forward_backward(conv, x, g)
    np.testing.assert_allclose(out, reference(conv, x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, dx_default, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv.weight.grad, grads_default[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv.bias.grad, grads_default[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cfg", [(11, 3, 6, 5, 4, 3, 1, 1, 1, 1), (10, 4, 5, 5, 6, 1, 1, 0, 1, 2),
                                 (9, 4, 7, 6, 4, 3, 2, 0, 1, 4)], ids=["padded", "pointwise", "depthwise"])
def test_samples_grouped_into_one_product(cfg):
    conv, x = make(cfg)
    P = conv.output_shape(x.shape)[2] * conv.output_shape(x.shape)[3]
    assert conv_k.plan(x.shape[0], conv.weight.data[0].size, P)[1] == 2
    np.testing.assert_allclose(conv(x), reference(conv, x), rtol=1e-12, atol=1e-12)
    assert fastnn.gradcheck(conv, leaf(x), max_checks=40)


def test_gradients_accumulate_until_zero_grad(rng):
    conv, x = make(CONFIGS[1])
    g = rng.standard_normal(conv(x).shape)
    forward_backward(conv, x, g)
    first = conv.weight.grad.data.copy(), conv.bias.grad.data.copy()
    forward_backward(conv, x, g)
    np.testing.assert_allclose(conv.weight.grad, 2 * first[0], rtol=1e-12)
    np.testing.assert_allclose(conv.bias.grad, 2 * first[1], rtol=1e-12)
    conv.zero_grad()
    assert conv.weight.grad is None and conv.bias.grad is None
    forward_backward(conv, x, g)
    np.testing.assert_allclose(conv.weight.grad, first[0], rtol=1e-12)


def test_conv_called_twice_in_one_forward_adds_gradients(rng):
    conv, x = make(CONFIGS[1])
    x2 = rng.standard_normal(x.shape)
    g = rng.standard_normal(conv(x).shape)
    _, dx1 = forward_backward(conv, x, g)
    alone = conv.weight.grad.data.copy()
    _, dx2 = forward_backward(conv, x2, g)
    separate = conv.weight.grad.data.copy(), conv.bias.grad.data.copy()
    conv.zero_grad()
    a, b = leaf(x), leaf(x2)
    (conv(a) + conv(b)).backward(g)
    np.testing.assert_allclose(conv.weight.grad, separate[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv.bias.grad, separate[1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.grad, dx1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(b.grad, dx2, rtol=1e-12, atol=1e-12)
    conv.zero_grad()
    a = leaf(x)
    (conv(a) + conv(a)).backward(g)  # one input used twice
    np.testing.assert_allclose(a.grad, 2 * dx1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv.weight.grad, 2 * alone, rtol=1e-12, atol=1e-12)


def test_stacked_convs_share_a_weight(rng):
    conv = nn.Conv2d(3, 3, 3, padding=1).double()
    x = leaf(rng.standard_normal((2, 3, 5, 5)))
    assert fastnn.gradcheck(lambda t: conv(F.relu(conv(t))), (x,), max_checks=40)


@pytest.mark.parametrize("activation,slope", FUSABLE)
def test_fused_activation_matches_separate_layers(activation, slope, rng):
    conv, x = make(CONFIGS[1])
    g = rng.standard_normal(conv(x).shape)
    act = {"relu": F.relu, "sigmoid": F.sigmoid, "tanh": F.tanh,
           "leaky_relu": lambda t: F.leaky_relu(t, slope)}[activation]
    xs = leaf(x)
    expected = act(conv(xs))
    expected.backward(g)
    separate = conv.weight.grad.data.copy(), conv.bias.grad.data.copy()
    conv.zero_grad()
    xf = leaf(x)
    fused = conv.forward_fused(xf, activation, slope)
    fused.backward(g)
    np.testing.assert_allclose(fused, expected, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(xf.grad, xs.grad, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(conv.weight.grad, separate[0], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(conv.bias.grad, separate[1], rtol=1e-13, atol=1e-13)


def test_sequential_fuses_conv_and_activation(rng):
    x = rng.standard_normal((2, 3, 7, 7)).astype(np.float32)
    results = []
    for fuse in (True, False):
        model = nn.Sequential(nn.Conv2d(3, 4, 3, generator=np.random.default_rng(0)), nn.ReLU())
        model.fuse = fuse
        out, dx = forward_backward(model, x, np.ones((2, 4, 5, 5), np.float32))
        results.append((out.data, dx.data, model[0].weight.grad.data))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_unbatched_input(rng):
    conv, x = make(CONFIGS[1])
    batched = conv(x)
    out, dx = forward_backward(conv, x[0], np.ones(batched.shape[1:]))
    assert out.shape == batched.shape[1:]
    np.testing.assert_allclose(out, batched[0].data, rtol=1e-13)
    assert dx.shape == x[0].shape


def test_non_contiguous_and_integer_input(rng):
    conv, x = make(CONFIGS[1])
    wide = np.zeros(x.shape[:-1] + (2 * x.shape[-1],))
    wide[..., ::2] = x
    np.testing.assert_allclose(conv(wide[..., ::2]), conv(x), rtol=1e-13)
    assert conv(np.ones(x.shape, np.int32)).dtype == np.float64
    assert conv(np.ones(x.shape, np.float32)).dtype == np.float64  # constants take the weight's dtype


def test_no_grad_and_inputs_without_grad_record_nothing(rng):
    conv, x = make(CONFIGS[1])
    with fastnn.no_grad():
        out = conv(leaf(x))
    assert out.grad_fn is None and not out.requires_grad
    conv.requires_grad_(False)
    out = conv(x)
    assert out.grad_fn is None and not out.requires_grad
    xt = leaf(x)  # only the input needs a gradient
    conv(xt).backward(np.ones(out.shape))
    assert xt.grad is not None and conv.weight.grad is None and conv.bias.grad is None
    conv.requires_grad_(True)
    out = conv(x)  # only the parameters
    out.backward(np.ones(out.shape))
    assert conv.weight.grad is not None and conv.bias.grad is not None
    with pytest.raises(RuntimeError, match="second time"):
        out.backward(np.ones(out.shape))


def test_autograd_grad_leaves_dot_grad_alone(rng):
    conv, x = make(CONFIGS[2])
    g = rng.standard_normal(conv(x).shape)
    _, dx = forward_backward(conv, x, g)
    expected = conv.weight.grad.data.copy(), conv.bias.grad.data.copy()
    conv.zero_grad()
    xt = leaf(x)
    got = fastnn.autograd.grad(conv(xt), [xt, conv.weight, conv.bias], g)
    assert conv.weight.grad is None and conv.bias.grad is None and xt.grad is None
    for a, b in zip(got, (dx.data,) + expected):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("batch", [1, 6])
def test_one_and_many_threads_agree_bitwise(threads, batch, rng):
    # batch 1 runs sample by sample on the parallel matmul when threads > 1
    conv, x = make((batch, 8, 15, 13, 16, 3, 1, 1, 1, 1), np.float32)
    g = rng.standard_normal(conv(x).shape).astype(np.float32)

    def step():
        conv.zero_grad()
        out, dx = forward_backward(conv, x, g)
        return out.data, dx.data, conv.weight.grad.data.copy(), conv.bias.grad.data.copy()

    first, *others = threads(step)
    for other in others:
        for a, b in zip(first, other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("groups", [1, 2])
def test_large_single_image_gives_the_bits_of_a_batch(threads, groups):
    # one large image is too few to split the batch over threads: its stride-1
    # product's columns are split instead (conv_gemm_parallel). Same sums, so the
    # same bits as the image inside a batch, and as on one thread
    conv, x = make((3, 16, 26, 22, 32, 3, 1, 1, 1, groups), np.float32)
    assert 32 * (16 // groups * 9) * 26 * 22 >= conv_plan.SERIAL_BELOW_MACS  # not the serial path
    with fastnn.no_grad():
        batch = conv(x).data
        ones = threads(lambda: conv(x[1:2]).data)
    for one in ones:
        np.testing.assert_array_equal(one, batch[1:2])
    np.testing.assert_allclose(batch, reference(conv, x.astype(np.float64)), rtol=1e-4, atol=1e-4)


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
    np.testing.assert_array_equal(F.conv2d(x, same.weight, same.bias, padding="same", dilation=(1, 2)), same(x))
    assert nn.Conv2d(3, 4, 3, padding="valid")(x).shape == (2, 4, 5, 4)
    assert nn.Conv2d(3, 4, 4, padding="same")(x.astype(np.float32)).shape == (2, 4, 7, 6)  # uneven: as PyTorch
    with pytest.raises(ValueError, match="stride"):
        nn.Conv2d(3, 4, 3, padding="same", stride=2)
    with pytest.raises(ValueError, match="conv2d: padding='same' needs stride 1"):
        F.conv2d(x, same.weight, padding="same", stride=2)


# (N, C, H, W, OC, KH, KW, SH, SW, PH, PW, DH, DW, bias, kind): the pixel-rows product
ROWS_CASES = [(1, 6, 14, 14, 16, 5, 5, 1, 1, 0, 0, 1, 1, True, 1),  # lenet's second layer
              (1, 8, 9, 11, 16, 3, 3, 2, 1, 1, 2, 1, 2, False, 0),  # strides, dilation, no bias
              (1, 32, 8, 8, 40, 3, 3, 1, 1, 1, 1, 1, 1, True, 4),  # tanh, channels in three panels
              (1, 20, 6, 6, 16, 5, 5, 1, 1, 2, 2, 1, 1, False, 1),
              (1, 36, 6, 6, 16, 3, 3, 1, 1, 0, 0, 1, 1, True, 2)]  # two K blocks (Kg 324), leaky


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ROWS_CASES, ids=str)
def test_pixel_rows_forward_gives_the_wide_bits(case, dtype, rng):
    # An inference plan's runner for a single small image with deep products takes the
    # pixel-rows product (pixels as the rows, channels in 16-float32 panels): the same
    # sums, K blocks and epilogue as the wide product, so the same bits.
    N, C, H, W, OC, KH, KW, SH, SW, PH, PW, DH, DW, has_bias, kind = case
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((OC, C, KH, KW)).astype(dtype)
    b = rng.standard_normal(OC).astype(dtype) if has_bias else None
    geom = (KH, KW, SH, SW, PH, PW, DH, DW, 1)
    OH = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1
    OW = (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1
    wide, rows = np.full((N, OC, OH, OW), np.nan, dtype), np.full((N, OC, OH, OW), np.nan, dtype)
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("a single image takes the serial paths only when there are more threads than images")
    with fastnn.set_num_threads(2):  # (another test may have left fewer)
        conv_k.forward_runner(wide, x, w, b, geom, kind, 0.1)(x)
        runner = conv_k.forward_runner(rows, x, w, b, geom, kind, 0.1, conv_plan.workspace(), reuse=True)
    assert runner.__qualname__.startswith("_rows_runner")  # the path under test
    for _ in range(2):  # a runner is called again and again
        runner(x)
        np.testing.assert_array_equal(rows, wide)
    want = ref.conv2d(x.astype(np.float64), w.astype(np.float64), None, (SH, SW), (PH, PW), (DH, DW), 1)
    if kind == 0:
        np.testing.assert_allclose(rows, want + (0 if b is None else b.reshape(-1, 1, 1)), rtol=1e-4, atol=1e-3)


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
    ({"in_channels": 3, "out_channels": 4, "kernel_size": 3, "padding_mode": "mirror"}, "padding_mode"),
    ({"in_channels": 3, "out_channels": 4, "kernel_size": 3, "padding": "full"}, "padding"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nn.Conv2d(**kwargs)


@pytest.mark.parametrize("shape,match", [
    ((3, 8, 8, 1, 1), r"conv2d.*4-D.*\(3, 8, 8, 1, 1\)"),
    ((3, 8), r"conv2d.*4-D.*\(3, 8\)"),
    ((2, 4, 8, 8), r"conv2d.*3 channels.*\(2, 4, 8, 8\)"),
    ((2, 3, 2, 8), r"conv2d.*\(2, 3, 2, 8\).*smaller than the dilated kernel \(5, 3\)"),
    ((0, 3, 8, 8), r"conv2d.*empty"),
])
def test_bad_input_shapes(shape, match):
    conv = nn.Conv2d(3, 2, 3, dilation=(2, 1))
    with pytest.raises(ValueError, match=match):
        conv(np.zeros(shape, np.float32))


def test_bad_input_types_and_gradients(rng):
    conv = nn.Conv2d(3, 2, 3)
    with pytest.raises(TypeError, match="conv2d"):
        conv(np.zeros((1, 3, 4, 4), np.complex64))
    with pytest.raises(TypeError, match=r"conv2d.*float64.*float32"):
        conv(leaf(np.zeros((1, 3, 4, 4))))  # a float64 input that needs a gradient: no silent cast
    out = conv(np.zeros((1, 3, 4, 4), np.float32))
    with pytest.raises(RuntimeError, match=r"\(1, 2, 3, 3\).*\(1, 2, 2, 2\)"):
        out.backward(np.zeros((1, 2, 3, 3), np.float32))


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(weight=np.zeros((2, 3, 3))), ValueError, r"conv2d.*4-D weight.*\(2, 3, 3\)"),
    (dict(bias=np.zeros(2)), ValueError, r"conv2d.*bias of shape \(3,\).*\(2,\)"),
    (dict(groups=2), ValueError, r"conv2d.*groups=2"),
    (dict(groups=0), ValueError, "conv2d: groups"),
    (dict(stride=(1, 2, 3)), ValueError, "conv2d: stride"),
    (dict(dilation=0), ValueError, "conv2d: dilation"),
    (dict(padding="full"), ValueError, "conv2d: padding"),
    (dict(activation="softmax"), ValueError, "conv2d: unknown activation 'softmax'"),
])
def test_functional_bad_arguments(kwargs, error, match):
    args = dict(input=np.zeros((1, 3, 5, 5)), weight=np.zeros((3, 3, 3, 3)), bias=None)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        F.conv2d(**args)


# ------------------------------------------------------------------ PyTorch
def torch_conv(conv, torch):
    N, C = conv.in_channels, conv.out_channels
    tconv = torch.nn.Conv2d(N, C, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                            dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None)
    tconv.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in conv.state_dict().items()})
    return tconv


@pytest.mark.parametrize("cfg", CONFIGS + [(4, 16, 14, 14, 32, 3, 1, 1, 1, 1)], ids=IDS + ["big"])
def test_matches_pytorch_forward_and_backward(cfg, rng):
    torch = pytest.importorskip("torch")
    conv, x = make(cfg, np.float32)
    tconv = torch_conv(conv, torch)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tout = tconv(tx)
    gout = rng.standard_normal(tuple(tout.shape)).astype(np.float32)
    tout.backward(torch.from_numpy(gout))
    out, dx = forward_backward(conv, x, gout)
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(conv.weight.grad, tconv.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(conv.bias.grad, tconv.bias.grad.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("activation,slope", FUSABLE)
def test_fused_and_reused_match_pytorch(activation, slope, rng):
    torch = pytest.importorskip("torch")
    conv, x = make((2, 4, 8, 8, 4, 3, 1, 1, 1, 2), np.float32)
    tconv = torch_conv(conv, torch)
    tact = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
            "leaky_relu": lambda t: torch.nn.functional.leaky_relu(t, slope)}[activation]
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tout = tconv(tact(tconv(tx)))  # the layer twice in one forward, fused the first time
    g = rng.standard_normal(tuple(tout.shape)).astype(np.float32)
    tout.backward(torch.from_numpy(g))
    xt = leaf(x)
    out = conv(conv.forward_fused(xt, activation, slope))
    out.backward(g)
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(xt.grad, tx.grad.numpy(), rtol=1e-4, atol=1e-4)
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
    # conv + bias + ReLU in one pass
    np.testing.assert_allclose(fused.forward_fused(x, "relu"), np.maximum(bn(conv(x)).data, 0), rtol=1e-12,
                               atol=1e-12)
    with pytest.raises(ValueError, match="running statistics"):
        nn.conv.fuse_conv_bn_eval(conv, nn.BatchNorm2d(3))
