"""ConvTranspose1d/2d and F.conv_transpose1d/2d: the adjoint identity, float64
gradient checks over odd configurations (stride, padding, output_padding, dilation,
groups, depthwise), output_size, save/load, bad input, and PyTorch cross-checks of
forward, input and parameter gradients."""
import numpy as np
import pytest

import fastnn
from fastnn import nn
from fastnn.nn import functional as F

# (N, C_in, H, W, C_out, kernel, stride, padding, output_padding, dilation, groups)
CONFIGS = [
    (2, 3, 5, 4, 4, 3, 1, 0, 0, 1, 1),                      # stride 1 (a plain convolution)
    (2, 4, 4, 5, 6, 4, 2, 1, 0, 1, 2),                      # the usual 2x upsampling, groups 2
    (1, 3, 3, 4, 2, 3, 2, 1, 1, 1, 1),                      # output_padding
    (2, 2, 4, 3, 3, (3, 2), (3, 2), (1, 0), (2, 1), 1, 1),  # rectangular, output_padding 2
    (2, 4, 3, 4, 4, 3, 1, 1, 1, 2, 4),                      # depthwise, output_padding >= stride (dilation 2)
    (2, 3, 3, 3, 2, 1, 2, 0, 1, 1, 1),                      # 1x1, stride 2
    (1, 8, 6, 6, 8, 3, 1, 3, 0, 1, 1),                      # padding beyond the kernel extent
    (2, 4, 4, 4, 4, 2, 1, 0, 0, 3, 2),                      # dilation 3, groups 2
]
IDS = [f"cfg{i}" for i in range(len(CONFIGS))]


def make(cfg, dtype=np.float64, bias=True, seed=0):
    N, C, H, W, OC, k, s, p, op, d, g = cfg
    conv = nn.ConvTranspose2d(C, OC, k, stride=s, padding=p, output_padding=op, dilation=d, groups=g,
                              bias=bias, dtype=dtype, generator=np.random.default_rng(seed))
    x = np.random.default_rng(seed + 1).standard_normal((N, C, H, W)).astype(dtype)
    return conv, x


def leaf(x):
    return fastnn.tensor(x, requires_grad=True)


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_gradcheck(cfg):
    conv, x = make(cfg)
    assert fastnn.gradcheck(conv, leaf(x), max_checks=40)


@pytest.mark.parametrize("cfg", CONFIGS[:5], ids=IDS[:5])
def test_is_the_adjoint_of_conv2d(cfg, rng):
    conv, x = make(cfg)
    y = rng.standard_normal(conv(x).shape)
    w = conv.weight.data
    geometry = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups)
    H, W = x.shape[2:]  # an output_padding of a stride or more: the convolution's extra rows meet zeros
    lhs = float((F.conv2d(y, w, **geometry).data[..., :H, :W] * x).sum())
    rhs = float((F.conv_transpose2d(x, w, output_padding=conv.output_padding, **geometry).data * y).sum())
    assert lhs == pytest.approx(rhs, rel=1e-10)


@pytest.mark.parametrize("kwargs", [dict(stride=2, padding=1, output_padding=1), dict(dilation=2, groups=2),
                                    dict(stride=3, output_padding=(2,))], ids=str)
def test_1d_gradcheck(kwargs, rng):
    groups = kwargs.get("groups", 1)
    x = leaf(rng.standard_normal((2, 4, 6)))
    w = leaf(rng.standard_normal((4, 6 // groups, 3)))
    b = leaf(rng.standard_normal(6))
    assert fastnn.gradcheck(lambda x, w, b: F.conv_transpose1d(x, w, b, **kwargs), (x, w, b), max_checks=40)
    layer = nn.ConvTranspose1d(4, 6, 3, bias=False, dtype=np.float64, **kwargs)
    assert fastnn.gradcheck(layer, leaf(rng.standard_normal((4, 5))), max_checks=40)  # unbatched


def test_functional_unbatched_and_non_contiguous(rng):
    w = leaf(rng.standard_normal((3, 2, 3, 3)))
    x = leaf(rng.standard_normal((3, 4, 5)))
    assert F.conv_transpose2d(x, w, stride=2).shape == (2, 9, 11)
    wide = leaf(rng.standard_normal((1, 3, 4, 10)))
    assert fastnn.gradcheck(lambda t, w: F.conv_transpose2d(t[..., ::2], w, stride=2, padding=1), (wide, w),
                            max_checks=40)


def test_output_size_picks_the_output_padding(rng):
    up = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    x = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    assert up(x).shape == (1, 2, 7, 7)
    assert up(x, output_size=(8, 7)).shape == (1, 2, 8, 7)
    assert up(x, output_size=[1, 2, 8, 8]).shape == (1, 2, 8, 8)
    with pytest.raises(ValueError, match=r"ConvTranspose2d: requested output_size \(9, 7\).*\[7, 8\]"):
        up(x, output_size=(9, 7))
    up1 = nn.ConvTranspose1d(3, 2, 3, stride=3)
    assert up1(x[:, :, 0], output_size=[12]).shape == (1, 2, 12)
    assert up1(x[0, :, 0], output_size=[2, 13]).shape == (2, 13)  # unbatched, (C, L) given


def test_parameters_state_dict_and_save_load(tmp_path, rng):
    conv = nn.ConvTranspose2d(4, 6, (3, 2), groups=2, stride=2, output_padding=1)
    assert conv.weight.shape == (4, 3, 3, 2) and conv.bias.shape == (6,)
    assert list(conv.state_dict()) == ["weight", "bias"]
    assert "output_padding=(1, 1)" in repr(conv)
    model = nn.Sequential(conv, nn.ReLU())
    x = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    fastnn.save(model, tmp_path / "m.fnn")
    np.testing.assert_array_equal(fastnn.load(tmp_path / "m.fnn")(x), model(x))
    one = nn.Sequential(nn.ConvTranspose1d(2, 3, 3, bias=False, dilation=2, padding=1, stride=2))
    fastnn.save(one, tmp_path / "o.fnn")
    y = rng.standard_normal((2, 2, 5)).astype(np.float32)
    np.testing.assert_array_equal(fastnn.load(tmp_path / "o.fnn")(y), one(y))


@pytest.mark.parametrize("kwargs,match", [
    (dict(output_padding=2, stride=2), r"ConvTranspose2d: output_padding \(2, 2\).*stride \(2, 2\).*dilation"),
    (dict(output_padding=1), "ConvTranspose2d: output_padding"),
    (dict(groups=2, in_channels=3), "ConvTranspose2d: in_channels.*divisible by groups"),
    (dict(padding_mode="reflect"), "ConvTranspose2d: only padding_mode 'zeros'"),
    (dict(padding="same"), "ConvTranspose2d: padding"),
    (dict(kernel_size=0), "ConvTranspose2d: kernel_size"),
])
def test_bad_arguments(kwargs, match):
    args = dict(in_channels=4, out_channels=2, kernel_size=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        nn.ConvTranspose2d(**args)


def test_bad_input():
    up = nn.ConvTranspose2d(3, 2, 3, padding=2)
    with pytest.raises(ValueError, match=r"conv_transpose2d.*3 channels.*\(1, 4, 3, 3\)"):
        up(np.zeros((1, 4, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"conv_transpose2d: input of shape \(1, 3, 1, 1\) gives an empty output"):
        up(np.zeros((1, 3, 1, 1), np.float32))
    with pytest.raises(ValueError, match=r"conv_transpose2d.*4-D.*\(3, 3\)"):
        up(np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match=r"conv_transpose2d.*empty batch"):
        up(np.zeros((0, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"conv_transpose1d: output_padding \(3,\)"):
        F.conv_transpose1d(np.zeros((1, 2, 4)), np.zeros((2, 2, 3)), stride=2, output_padding=3)
    with pytest.raises(ValueError, match=r"conv_transpose1d.*3-D weight"):
        F.conv_transpose1d(np.zeros((1, 2, 4)), np.zeros((2, 2, 3, 3)))


# ------------------------------------------------------------------ PyTorch
def torch_layer(conv, torch):
    cls = torch.nn.ConvTranspose2d if isinstance(conv, nn.ConvTranspose2d) else torch.nn.ConvTranspose1d
    t = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
            output_padding=conv.output_padding, groups=conv.groups, bias=conv.bias is not None,
            dilation=conv.dilation)
    t.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in conv.state_dict().items()})
    return t


def check_against_torch(conv, x, rng, torch, tol=1e-4):
    tconv = torch_layer(conv, torch)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tout = tconv(tx)
    g = rng.standard_normal(tuple(tout.shape)).astype(x.dtype)
    tout.backward(torch.from_numpy(g))
    xt = leaf(x)
    out = conv(xt)
    out.backward(g)
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(xt.grad, tx.grad.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(conv.weight.grad, tconv.weight.grad.numpy(), rtol=tol, atol=tol)
    if conv.bias is not None:
        np.testing.assert_allclose(conv.bias.grad, tconv.bias.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("cfg", CONFIGS + [(4, 16, 8, 8, 8, 4, 2, 1, 0, 1, 1)], ids=IDS + ["big"])
def test_matches_pytorch(cfg, rng):
    torch = pytest.importorskip("torch")
    conv, x = make(cfg, np.float32)
    check_against_torch(conv, x, rng, torch)


@pytest.mark.parametrize("kwargs", [dict(stride=2, padding=1, output_padding=1), dict(dilation=2, groups=2),
                                    dict(stride=1, padding=2)], ids=str)
def test_1d_matches_pytorch(kwargs, rng):
    torch = pytest.importorskip("torch")
    conv = nn.ConvTranspose1d(4, 6, 3, generator=np.random.default_rng(0), **kwargs)
    check_against_torch(conv, rng.standard_normal((3, 4, 7)).astype(np.float32), rng, torch)


@pytest.mark.parametrize("cls,shape", [("ConvTranspose1d", (2, 2, 7)), ("ConvTranspose2d", (2, 2, 5, 5))])
def test_parameter_gradients_accumulate_over_two_backward_passes(cls, shape):
    layer = getattr(fastnn.nn, cls)(2, 3, 3, stride=2).double()
    x = np.random.default_rng(0).standard_normal(shape)
    layer(x).sum().backward()
    first = {k: p.grad.numpy().copy() for k, p in layer.named_parameters()}
    layer(x).sum().backward()
    for k, p in layer.named_parameters():
        np.testing.assert_allclose(p.grad, 2 * first[k], rtol=1e-12, err_msg=k)
