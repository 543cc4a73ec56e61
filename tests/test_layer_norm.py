"""LayerNorm, GroupNorm, InstanceNorm1d/2d and their functional forms: the fused row
kernels against NumPy references, float64 gradient checks, running statistics, threads,
bad input, save/load, and PyTorch cross-checks."""
import numpy as np
import pytest
import reference as ref

import fastnn
from fastnn import nn
from fastnn.nn import functional as F


def data(shape, dtype=np.float64, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * 1.5 + offset).astype(dtype)


def leaf(x):
    return fastnn.tensor(x, requires_grad=True)


def randomize(layer, seed=3):
    """Non-trivial affine parameters (the defaults are ones and zeros)."""
    rng = np.random.default_rng(seed)
    for p in layer.parameters():
        p.data[...] = rng.uniform(0.5, 1.5, p.shape) if p is layer.weight else rng.standard_normal(p.shape)
    return layer


def forward_backward(layer, x, g):
    xt = leaf(x)
    out = layer(xt)
    out.backward(g)
    return out, xt.grad


# ------------------------------------------------------------- kernels vs NumPy
LAYER_CASES = [((6, 5), (5,)), ((2, 3, 4), (3, 4)), ((2, 3, 2, 3), (3, 2, 3)), ((4, 1), (1,))]


@pytest.mark.parametrize("shape,normalized", LAYER_CASES)
def test_layer_norm_matches_reference(shape, normalized):
    ln = randomize(nn.LayerNorm(normalized, dtype=np.float64))
    x, g = data(shape), data(shape, seed=1)
    out, dx = forward_backward(ln, x, g)
    np.testing.assert_allclose(out, ref.layer_norm(x, normalized, ln.weight.data, ln.bias.data), rtol=1e-12,
                               atol=1e-12)
    rows = x.size // int(np.prod(normalized))
    columns = np.broadcast_to(np.arange(int(np.prod(normalized))).reshape(normalized), shape)
    edx, edw, edb = ref.norm_backward(x, g, rows, columns, ln.weight.data)
    np.testing.assert_allclose(dx, edx, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ln.weight.grad.data.reshape(-1), edw, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ln.bias.grad.data.reshape(-1), edb, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("groups,shape", [(1, (3, 4, 5)), (2, (2, 4, 3, 2)), (4, (2, 4, 3)), (3, (5, 6))])
def test_group_norm_matches_reference(groups, shape):
    gn = randomize(nn.GroupNorm(groups, shape[1], dtype=np.float64))
    x, g = data(shape), data(shape, seed=1)
    out, dx = forward_backward(gn, x, g)
    np.testing.assert_allclose(out, ref.group_norm(x, groups, gn.weight.data, gn.bias.data), rtol=1e-12,
                               atol=1e-12)
    channels = np.broadcast_to(np.arange(shape[1]).reshape((1, -1) + (1,) * (len(shape) - 2)), shape)
    edx, edw, edb = ref.norm_backward(x, g, shape[0] * groups, channels, gn.weight.data)
    np.testing.assert_allclose(dx, edx, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gn.weight.grad.data, edw, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gn.bias.grad.data, edb, rtol=1e-10, atol=1e-12)


def test_instance_norm_is_group_norm_with_one_channel_per_group():
    x = data((3, 4, 5, 2))
    expected = ref.group_norm(x, 4)
    np.testing.assert_allclose(nn.InstanceNorm2d(4)(x), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(F.instance_norm(x.reshape(3, 4, 10)), expected.reshape(3, 4, 10), rtol=1e-12,
                               atol=1e-12)


def test_float32_with_a_large_mean_keeps_its_precision():
    x = data((8, 300), np.float32, offset=1e4)
    out = F.layer_norm(x, (300,))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref.layer_norm(x.astype(np.float64), (300,)), atol=2e-3)
    g = data((8, 300), np.float32, seed=1)
    xt = leaf(x)
    F.layer_norm(xt, 300).backward(g)
    np.testing.assert_allclose(xt.grad, ref.row_norm_grad(x, g, 8), rtol=1e-2, atol=2e-4)


# ------------------------------------------------------------- gradient checks
@pytest.mark.parametrize("shape,normalized", [((3, 4), 4), ((2, 3, 4), (3, 4)), ((2, 2, 3, 2), (2, 3, 2))])
def test_layer_norm_gradcheck(shape, normalized):
    assert fastnn.gradcheck(randomize(nn.LayerNorm(normalized, dtype=np.float64)), leaf(data(shape)),
                            max_checks=60)


def test_layer_norm_without_affine_or_bias_gradcheck():
    x = leaf(data((3, 2, 5)))
    assert fastnn.gradcheck(nn.LayerNorm((2, 5), elementwise_affine=False, dtype=np.float64), x)
    biasless = randomize(nn.LayerNorm(5, bias=False, dtype=np.float64))
    assert biasless.bias is None
    assert fastnn.gradcheck(biasless, x)


def test_functional_gradchecks_non_contiguous_and_weight_only():
    wide = leaf(data((3, 4, 10)))
    w, b = leaf(data(5, seed=2)), leaf(data(5, seed=3))
    assert fastnn.gradcheck(lambda t, w, b: F.layer_norm(t[..., ::2], [5], w, b), (wide, w, b))
    assert fastnn.gradcheck(lambda t, w: F.layer_norm(t[..., 1::2], (5,), weight=w), (wide, w))
    cw, cb = leaf(data(4, seed=4)), leaf(data(4, seed=5))
    assert fastnn.gradcheck(lambda t, b: F.group_norm(t.transpose(1, 2), 2, bias=b), (wide, leaf(data(10, seed=6))))
    assert fastnn.gradcheck(lambda t, w, b: F.instance_norm(t[:, :, ::3], weight=w, bias=b), (wide, cw, cb))


@pytest.mark.parametrize("groups", [1, 2, 6])
def test_group_norm_gradcheck(groups):
    assert fastnn.gradcheck(randomize(nn.GroupNorm(groups, 6, dtype=np.float64)), leaf(data((2, 6, 3))),
                            max_checks=60)
    assert fastnn.gradcheck(nn.GroupNorm(groups, 6, affine=False, dtype=np.float64), leaf(data((2, 6, 2, 2))),
                            max_checks=60)


@pytest.mark.parametrize("track", [False, True])
def test_instance_norm_gradcheck(track):
    inorm = randomize(nn.InstanceNorm2d(3, affine=True, track_running_stats=track, dtype=np.float64))
    assert fastnn.gradcheck(inorm, leaf(data((2, 3, 3, 2))), max_checks=60)
    assert fastnn.gradcheck(nn.InstanceNorm1d(3, track_running_stats=track, dtype=np.float64),
                            leaf(data((2, 3, 5))), max_checks=60)
    if track:  # eval: the running statistics, as constants
        inorm.eval()
        assert fastnn.gradcheck(inorm, leaf(data((2, 3, 3, 2))), max_checks=60)


# ------------------------------------------------------------- running statistics, state
def test_instance_norm_running_statistics():
    inorm = nn.InstanceNorm1d(3, momentum=0.3, track_running_stats=True, dtype=np.float64)
    x = data((4, 3, 6), offset=2.0)
    inorm(x)
    np.testing.assert_allclose(inorm.running_mean, 0.3 * x.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(inorm.running_var, 0.7 + 0.3 * x.var(axis=2, ddof=1).mean(axis=0), rtol=1e-12)
    assert int(inorm.num_batches_tracked) == 0  # as in PyTorch: InstanceNorm does not count
    inorm.eval()
    expected = (x - inorm.running_mean.data[:, None]) / np.sqrt(inorm.running_var.data[:, None] + 1e-5)
    np.testing.assert_allclose(inorm(x), expected, rtol=1e-12)
    np.testing.assert_allclose(inorm(x[0]), expected[0], rtol=1e-12)  # unbatched
    rm, rv = np.zeros(3), np.ones(3)
    F.instance_norm(x, rm, rv, momentum=0.3)
    np.testing.assert_allclose(rm, inorm.running_mean.data, rtol=1e-12)
    np.testing.assert_allclose(rv, inorm.running_var.data, rtol=1e-12)


def test_state_dict_keys_defaults_and_repr():
    assert list(nn.LayerNorm((2, 3)).state_dict()) == ["weight", "bias"]
    assert nn.LayerNorm((2, 3)).weight.shape == (2, 3)
    assert list(nn.LayerNorm(3, bias=False).state_dict()) == ["weight"]
    assert list(nn.LayerNorm(3, elementwise_affine=False).state_dict()) == []
    assert list(nn.GroupNorm(2, 4).state_dict()) == ["weight", "bias"]
    assert list(nn.InstanceNorm2d(4).state_dict()) == []
    assert list(nn.InstanceNorm2d(4, affine=True, track_running_stats=True).state_dict()) == [
        "weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert repr(nn.LayerNorm(4)) == "LayerNorm((4,), eps=1e-05, elementwise_affine=True, bias=True)"
    assert repr(nn.GroupNorm(2, 4)) == "GroupNorm(2, 4, eps=1e-05, affine=True, bias=True)"
    assert repr(nn.InstanceNorm1d(3)) == ("InstanceNorm1d(3, eps=1e-05, momentum=0.1, affine=False, bias=False, "
                                          "track_running_stats=False)")
    assert nn.LayerNorm(4).weight.dtype == fastnn.get_default_dtype()


def test_save_and_load_round_trip(tmp_path):
    model = nn.Sequential(nn.InstanceNorm2d(4, affine=True, track_running_stats=True, momentum=None),
                          nn.GroupNorm(2, 4, eps=1e-3), nn.LayerNorm((3, 3), bias=False),
                          nn.Flatten(), nn.InstanceNorm1d(5))
    randomize(model[1])
    x = data((5, 4, 3, 3), np.float32)
    model(x)
    model.eval()
    fastnn.save(model, tmp_path / "m.fnn")
    again = fastnn.load(tmp_path / "m.fnn").eval()
    assert repr(again) == repr(model)
    np.testing.assert_array_equal(again(x), model(x))


def test_used_twice_adds_gradients():
    ln = randomize(nn.LayerNorm(4, dtype=np.float64))
    x = data((3, 4))
    (ln(x) * ln(x * 2)).sum().backward()
    once = ln.weight.grad.data.copy()
    ln.zero_grad()
    ln(x * 2).backward(ln(x).detach())
    ln(x).backward(ln(x * 2).detach())
    np.testing.assert_allclose(ln.weight.grad, once, rtol=1e-12)



def test_leaf_input_gradient_accumulates_like_a_computed_one():
    # a leaf input's gradient is written straight into .grad: it must add up as the engine's does
    ln = randomize(nn.LayerNorm(4, dtype=np.float64))
    x, y = leaf(data((3, 4))), leaf(data((3, 4)))
    for _ in range(2):
        (ln(x) * ln(x * 2) + x).sum().backward()
        (ln(y * 1) * ln(y * 2) + y).sum().backward()
    np.testing.assert_allclose(x.grad.data, y.grad.data, rtol=1e-12, atol=1e-12)
    assert np.abs(x.grad.data).max() > 0


def test_one_and_many_threads_agree_bitwise(threads):
    x, g = data((300, 512), np.float32), data((300, 512), np.float32, seed=1)  # past the serial size
    images, gi = data((4, 8, 64, 64), np.float32), data((4, 8, 64, 64), np.float32, seed=2)

    def run():
        ln, gn = randomize(nn.LayerNorm(512)), randomize(nn.GroupNorm(4, 8))
        out, dx = forward_backward(ln, x, g)
        out2, dx2 = forward_backward(gn, images, gi)
        return [out.data, dx.data, ln.weight.grad.data, ln.bias.grad.data, out2.data, dx2.data,
                gn.weight.grad.data, gn.bias.grad.data]

    first, *others = threads(run)
    for other in others:
        for a, b in zip(first, other):
            np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------- fused residual add + LayerNorm
@pytest.mark.parametrize("shape,dtype", [((3, 5, 8), np.float64), ((2, 1, 1), np.float64), ((700, 256), np.float32)])
@pytest.mark.parametrize("affine", ["both", "weight", "none"])
def test_add_layer_norm_is_add_then_layer_norm(shape, dtype, affine, threads):
    # (700, 256) is past the serial size: the parallel row blocks, at 1 and all threads
    from fastnn.ops.layer_norm import add_layer_norm
    x, y = fastnn.tensor(data(shape, dtype, 1, offset=3.0)), fastnn.tensor(data(shape, dtype, 2))
    w = fastnn.tensor(data(shape[-1:], dtype, 3)) if affine != "none" else None
    b = fastnn.tensor(data(shape[-1:], dtype, 4)) if affine == "both" else None
    tol = 1e-6 if dtype == np.float32 else 1e-13  # the same arithmetic, up to reassociation
    for yb in (None, fastnn.tensor(data(shape[-1:], dtype, 5))):  # y_bias: y + yb first
        with fastnn.no_grad():
            y_total = y if yb is None else y + yb
            want = F.layer_norm(x + y_total, shape[-1:], w, b, 1e-3)
            first, *others = threads(lambda: add_layer_norm(x, y, w, b, 1e-3, True, yb))
            out, total = add_layer_norm(x, y, w, b, 1e-3, y_bias=yb)
        assert total is None and np.array_equal(out.data, first[0].data)
        np.testing.assert_allclose(out.data, want.data, rtol=tol, atol=tol)
        np.testing.assert_allclose(first[1].data, x.data + y_total.data, rtol=tol, atol=tol)  # reassociated
        for other in others:  # thread counts agree bitwise
            np.testing.assert_array_equal(other[0].data, out.data)
            np.testing.assert_array_equal(other[1].data, first[1].data)
    s = x.data.astype(np.float64) + y.data + yb.data
    xhat = (s - s.mean(-1, keepdims=True)) / np.sqrt(s.var(-1, keepdims=True) + 1e-3)
    ref_out = xhat * (1 if w is None else w.data) + (0 if b is None else b.data)
    np.testing.assert_allclose(out.data, ref_out, rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-4)


def test_add_layer_norm_records_as_add_then_layer_norm():
    from fastnn.ops.layer_norm import add_layer_norm
    w, b = leaf(data((4,), seed=3)), leaf(data((4,), seed=4))
    yb = leaf(data((4,), seed=5))
    assert fastnn.gradcheck(lambda x, y: add_layer_norm(x, y, w, b, 1e-5, True)[0] * 2 +
                            add_layer_norm(x, y, w, b, 1e-5, True, yb)[1], (leaf(data((3, 4), seed=1)),
                                                                            leaf(data((3, 4), seed=2))))
    add_layer_norm(leaf(data((3, 4))), leaf(data((3, 4))), w, b, 1e-5, True, yb)[1].sum().backward()
    np.testing.assert_array_equal(yb.grad.data, np.full(4, 3.0))  # recorded: the sum's gradient
    with fastnn.no_grad():
        empty = add_layer_norm(fastnn.zeros(0, 4), fastnn.zeros(0, 4), None, None)[0]
        assert empty.shape == (0, 4)
        with pytest.raises(ValueError, match=r"add_layer_norm: expected two float tensors.*\(2, 4\).*\(2, 3\)"):
            add_layer_norm(fastnn.zeros(2, 4), fastnn.zeros(2, 3), None, None)
        with pytest.raises(ValueError, match=r"add_layer_norm: expected weight of shape \(4,\)"):
            add_layer_norm(fastnn.zeros(2, 4), fastnn.zeros(2, 4), fastnn.ones(3), None)
        with pytest.raises(ValueError, match=r"add_layer_norm: expected y_bias of shape \(4,\) and dtype float32"):
            add_layer_norm(fastnn.zeros(2, 4), fastnn.zeros(2, 4), None, None, y_bias=fastnn.tensor(np.zeros(4)))


# ------------------------------------------------------------- bad input
def test_bad_input():
    with pytest.raises(ValueError, match=r"LayerNorm.*\(3, 4\).*\(\*, 3, 4\).*\(2, 4, 3\)"):
        nn.LayerNorm((3, 4))(np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match=r"layer_norm: given normalized_shape=\(5,\).*\(\*, 5\).*\(2, 3\)"):
        F.layer_norm(np.zeros((2, 3)), [5])
    with pytest.raises(ValueError, match=r"layer_norm: expected weight of shape \(3,\), got \(4,\)"):
        F.layer_norm(np.zeros((2, 3)), 3, np.ones(4))
    with pytest.raises(ValueError, match=r"GroupNorm: num_channels \(6\) must be divisible by num_groups \(4\)"):
        nn.GroupNorm(4, 6)
    with pytest.raises(ValueError, match=r"group_norm.*divisible by num_groups=4.*\(2, 6, 3\)"):
        F.group_norm(np.zeros((2, 6, 3)), 4)
    with pytest.raises(ValueError, match=r"GroupNorm: expected input of shape \(N, 4, \*\), got \(2, 6, 3\)"):
        nn.GroupNorm(2, 4)(np.zeros((2, 6, 3)))
    with pytest.raises(ValueError, match=r"InstanceNorm2d.*3-D \(unbatched\) or 4-D.*\(2, 3\)"):
        nn.InstanceNorm2d(3)(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"InstanceNorm1d.*num_features \(3\).*\(2, 4, 5\)"):
        nn.InstanceNorm1d(3, affine=True)(np.zeros((2, 4, 5)))
    with pytest.warns(UserWarning, match="InstanceNorm1d"):
        nn.InstanceNorm1d(3)(np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match=r"instance_norm.*more than 1 spatial element.*\(2, 3, 1\)"):
        F.instance_norm(np.zeros((2, 3, 1)))
    with pytest.raises(ValueError, match="instance_norm: running_mean and running_var must be given"):
        F.instance_norm(np.zeros((2, 3, 4)), use_input_stats=False)
    with pytest.raises(TypeError, match=r"layer_norm.*float64.*float32"):
        nn.LayerNorm(3)(leaf(np.zeros((2, 3))))  # needs a gradient: no silent cast
    with pytest.raises(TypeError, match="layer_norm: normalized_shape"):
        F.layer_norm(np.zeros((2, 3)), 3.0)
    with pytest.raises(ValueError, match="LayerNorm: normalized_shape"):
        nn.LayerNorm((3, 0))
    with pytest.raises(TypeError, match="group_norm"):
        F.group_norm(np.zeros((2, 4), np.complex64), 2)


def test_empty_batches():
    assert F.layer_norm(np.zeros((0, 4)), 4).shape == (0, 4)
    gn = nn.GroupNorm(2, 4, dtype=np.float64)
    x = leaf(np.zeros((0, 4, 3)))
    gn(x).sum().backward()
    assert x.grad.shape == (0, 4, 3) and np.all(gn.weight.grad.data == 0)


# ------------------------------------------------------------- PyTorch
def check_against_torch(layer, tlayer, x, g, torch, tol=2e-5):
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tout = tlayer(tx)
    tout.backward(torch.from_numpy(g))
    out, dx = forward_backward(layer, x, g)
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=tol, atol=tol)
    for name, p in tlayer.named_parameters():
        np.testing.assert_allclose(getattr(layer, name).grad, p.grad.numpy(), rtol=10 * tol, atol=10 * tol)
    for name, b in tlayer.named_buffers():
        np.testing.assert_allclose(getattr(layer, name), b.numpy(), rtol=tol, atol=tol)


def to_torch(layer, tlayer, torch):
    tlayer.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in layer.state_dict().items()})
    return tlayer


CASES = [
    ("LayerNorm", ((5,),), {}, (4, 3, 5)),
    ("LayerNorm", ((3, 5),), {"bias": False}, (4, 3, 5)),
    ("LayerNorm", ((5,),), {"elementwise_affine": False}, (6, 5)),
    ("GroupNorm", (2, 6), {}, (3, 6, 4, 2)),
    ("GroupNorm", (6, 6), {"eps": 1e-3}, (3, 6, 5)),
    ("GroupNorm", (1, 6), {"affine": False}, (3, 6, 5)),
    ("InstanceNorm1d", (4,), {"affine": True}, (3, 4, 7)),
    ("InstanceNorm2d", (4,), {"affine": True, "track_running_stats": True, "momentum": 0.2}, (3, 4, 3, 5)),
    ("InstanceNorm2d", (4,), {}, (4, 3, 5)),
]


@pytest.mark.parametrize("name,args,kwargs,shape", CASES)
def test_matches_pytorch(name, args, kwargs, shape):
    torch = pytest.importorskip("torch")
    layer = getattr(nn, name)(*args, **kwargs)
    if layer.weight is not None:
        randomize(layer)
    tlayer = to_torch(layer, getattr(torch.nn, name)(*args, **kwargs), torch)
    for step in range(2):
        check_against_torch(layer, tlayer, data(shape, np.float32, seed=step, offset=3.0),
                            data(shape, np.float32, seed=10 + step), torch)
        layer.zero_grad()
        tlayer.zero_grad()
    layer.eval()
    tlayer.eval()
    check_against_torch(layer, tlayer, data(shape, np.float32, seed=5), data(shape, np.float32, seed=6), torch)


def test_functional_matches_pytorch():
    torch = pytest.importorskip("torch")
    x = data((3, 4, 6), np.float32, offset=-2.0)
    w, b = data(4, np.float32, seed=1), data(4, np.float32, seed=2)
    rm, rv = np.zeros(4, np.float32), np.ones(4, np.float32)
    trm, trv = torch.zeros(4), torch.ones(4)
    tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))
    pairs = [
        (F.layer_norm(x, (4, 6), eps=1e-3), torch.nn.functional.layer_norm(tx, (4, 6), eps=1e-3)),
        (F.group_norm(x, 2, w, b), torch.nn.functional.group_norm(tx, 2, tw, tb)),
        (F.instance_norm(x, rm, rv, w, b, momentum=0.5), torch.nn.functional.instance_norm(tx, trm, trv, tw, tb,
                                                                                          momentum=0.5)),
        (F.instance_norm(x, rm, rv, use_input_stats=False),
         torch.nn.functional.instance_norm(tx, trm, trv, use_input_stats=False)),
    ]
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(rm, trm.numpy(), rtol=1e-6)
    np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-6)
