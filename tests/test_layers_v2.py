"""Small layers of issue 13: pad and the padding layers, interpolate/Upsample,
pixel (un)shuffle, normalize, cosine_similarity, Bilinear, Unflatten, EmbeddingBag.
Float64 gradient checks, PyTorch cross-checks, errors, save/load."""
import numpy as np
import pytest

import fastnn
from fastnn import nn
from fastnn.nn import functional as F


def _vs_torch(fn_f, fn_t, arrays, rng, rtol=1e-12, atol=1e-14, grads=True):
    """Run fastnn's and torch's function on the same float64 arrays (all requiring
    grad) with one random upstream gradient; compare outputs and input gradients."""
    torch = pytest.importorskip("torch")
    ts = [torch.tensor(a, requires_grad=grads) for a in arrays]
    fs = [fastnn.tensor(a, requires_grad=grads) for a in arrays]
    yt, yf = fn_t(*ts), fn_f(*fs)
    assert yf.shape == tuple(yt.shape)
    np.testing.assert_allclose(yf.detach().numpy(), yt.detach().numpy(), rtol=rtol, atol=atol)
    if grads:
        up = rng.standard_normal(tuple(yt.shape))
        yt.backward(torch.tensor(up))
        yf.backward(up)
        for f_, t_ in zip(fs, ts):
            np.testing.assert_allclose(f_.grad.numpy(), t_.grad.numpy(), rtol=rtol, atol=atol)


# ------------------------------------------------------------------ pad
PADS = [((1, 2), "constant"), ((2, 0, 1, 3), "constant"), ((-1, 2, 0, -2), "constant"),
        ((1, 1, 1, 1, 1, 0), "constant"),
        ((2, 1), "reflect"), ((3, 1, 2, 2), "reflect"), ((1, 0, 0, 2), "replicate"), ((2, 3, 1, 1, 0, 1), "replicate"),
        ((1, 3, 2, 0), "circular"), ((4, 1), "circular")]


@pytest.mark.parametrize("pad,mode", PADS)
def test_pad_matches_pytorch_and_gradchecks(pad, mode, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 4, 5))
    value = 0.5 if mode == "constant" else None
    xt = x.reshape(6, 4, 5) if mode != "constant" and len(pad) == 2 else x  # PyTorch's limit; fastnn pads any
    _vs_torch(lambda t: F.pad(t, pad, mode, value), lambda t: torch.nn.functional.pad(t, pad, mode, value), [xt], rng)
    xs = fastnn.tensor(x[:, :, ::-1].transpose(0, 1, 3, 2), requires_grad=True)  # non-contiguous
    assert fastnn.gradcheck(lambda t: F.pad(t, pad, mode, value), (xs,))


def test_pad_layers_match_pytorch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 5, 4))
    for name, args in [("ZeroPad2d", ((1, 2, 0, 3),)), ("ConstantPad2d", (2, -1.5)),
                       ("ReflectionPad2d", ((3, 1, 2, 0),)),
                       ("ReplicationPad2d", (2,)), ("ZeroPad1d", (3,)), ("ReflectionPad1d", ((1, 2),)),
                       ("CircularPad2d", (1,)), ("ReplicationPad3d", ((1, 0, 1, 0, 0, 1),))]:
        mf, mt = getattr(nn, name)(*args), getattr(torch.nn, name)(*args)
        _vs_torch(mf, mt, [x if not name.endswith("1d") else x[0]], rng)
        assert fastnn.gradcheck(mf, (fastnn.tensor(x[:1, :2], requires_grad=True) if not name.endswith("1d")
                                     else fastnn.tensor(x[0, :2], requires_grad=True),))


def test_pad_errors_name_the_op_and_shapes():
    x = np.ones((1, 2, 3, 3))
    with pytest.raises(ValueError, match=r"pad.*reflect.*\(3, 0\) of dim 3.*\(1, 2, 3, 3\).*less than"):
        F.pad(x, (3, 0), "reflect")
    with pytest.raises(ValueError, match=r"pad.*circular.*at most"):
        F.pad(x, (0, 4), "circular")
    with pytest.raises(ValueError, match=r"pad.*even length.*\(1, 2, 3, 3\)"):
        F.pad(x, (1, 2, 3))
    with pytest.raises(ValueError, match=r"pad.*at most 2 \* ndim = 8"):
        F.pad(x, (1,) * 10)
    with pytest.raises(ValueError, match=r"pad.*negative size"):
        F.pad(x, (-2, -2))
    with pytest.raises(ValueError, match=r"pad.*negative padding is only supported in constant mode"):
        F.pad(x, (-1, 1), "replicate")
    with pytest.raises(ValueError, match="pad: mode"):
        F.pad(x, (1, 1), "mirror")
    with pytest.raises(ValueError, match="doesn't take a value"):
        F.pad(x, (1, 1), "reflect", 2.0)
    with pytest.raises(ValueError, match=r"ReflectionPad2d: expected a 3-D or 4-D input, got shape \(3, 3\)"):
        nn.ReflectionPad2d(1)(np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"ZeroPad2d: padding must be an int or 4 ints"):
        nn.ZeroPad2d((1, 2))
    with pytest.raises(ValueError, match=r"ReplicationPad2d: padding must be >= 0"):
        nn.ReplicationPad2d(-1)


# ------------------------------------------------------------------ interpolate
INTERP = [({"size": (7, 5)}, "nearest", None), ({"scale_factor": 2}, "nearest", None),
          ({"scale_factor": 1.7}, "nearest", None), ({"size": (3, 2)}, "nearest-exact", None),
          ({"size": (9, 4)}, "bilinear", False), ({"size": (9, 4)}, "bilinear", True),
          ({"scale_factor": (1.5, 0.6)}, "bilinear", False), ({"scale_factor": 2}, "bilinear", True),
          ({"size": 2}, "bilinear", False)]


@pytest.mark.parametrize("kw,mode,align", INTERP)
def test_interpolate_4d_matches_pytorch_and_gradchecks(kw, mode, align, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 5, 6))
    _vs_torch(lambda t: F.interpolate(t, mode=mode, align_corners=align, **kw),
              lambda t: torch.nn.functional.interpolate(t, mode=mode, align_corners=align, **kw), [x], rng)
    xs = fastnn.tensor(x[:1, :2], requires_grad=True)
    assert fastnn.gradcheck(lambda t: F.interpolate(t, mode=mode, align_corners=align, **kw), (xs,))


@pytest.mark.parametrize("kw,mode,align", [({"size": 11}, "linear", False), ({"scale_factor": 0.5}, "linear", True),
                                           ({"scale_factor": 3}, "nearest", None),
                                           ({"size": (3, 4, 2)}, "trilinear", False)])
def test_interpolate_3d_and_5d_match_pytorch(kw, mode, align, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 7) if mode != "trilinear" else (1, 2, 3, 5, 4))
    _vs_torch(lambda t: F.interpolate(t, mode=mode, align_corners=align, **kw),
              lambda t: torch.nn.functional.interpolate(t, mode=mode, align_corners=align, **kw), [x], rng)


def test_upsample_layers_match_pytorch_and_float32_works(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((1, 2, 4, 3))
    for make in (lambda lib: lib.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                 lambda lib: lib.Upsample(size=(5, 7)), lambda lib: lib.UpsamplingBilinear2d(scale_factor=2),
                 lambda lib: lib.UpsamplingNearest2d(size=6)):
        _vs_torch(make(nn), make(torch.nn), [x], rng)
    x32 = x.astype(np.float32)
    got = nn.Upsample(scale_factor=1.5, mode="bilinear")(x32)
    ref = torch.nn.Upsample(scale_factor=1.5, mode="bilinear")(torch.tensor(x32))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got.detach().numpy(), ref.detach().numpy(), rtol=1e-6, atol=1e-6)


def test_interpolate_errors():
    x = np.ones((1, 1, 4, 4))
    with pytest.raises(ValueError, match="exactly one of size or scale_factor"):
        F.interpolate(x)
    with pytest.raises(ValueError, match="exactly one of size or scale_factor"):
        F.interpolate(x, size=3, scale_factor=2)
    with pytest.raises(ValueError, match=r"interpolate: mode 'linear' expects a 3-D input, got shape \(1, 1, 4, 4\)"):
        F.interpolate(x, size=3, mode="linear")
    with pytest.raises(ValueError, match="align_corners can only be set"):
        F.interpolate(x, size=3, align_corners=True)
    with pytest.raises(ValueError, match="size must have 2 entries"):
        F.interpolate(x, size=(1, 2, 3))
    with pytest.raises(ValueError, match=r"output sizes should be greater than 0.*\(0, 0\)"):
        F.interpolate(x, scale_factor=0.1)
    with pytest.raises(NotImplementedError, match="bicubic"):
        F.interpolate(x, size=3, mode="bicubic")
    with pytest.raises(ValueError, match="Upsample: exactly one"):
        nn.Upsample()
    with pytest.raises(ValueError, match="Upsample: mode"):
        nn.Upsample(size=3, mode="area")


# ------------------------------------------------------------------ pixel shuffle
def test_pixel_shuffle_and_unshuffle_match_pytorch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 18, 3, 5))
    _vs_torch(nn.PixelShuffle(3), torch.nn.PixelShuffle(3), [x], rng)
    _vs_torch(nn.PixelUnshuffle(2), torch.nn.PixelUnshuffle(2), [rng.standard_normal((2, 3, 4, 6))], rng)
    _vs_torch(lambda t: F.pixel_shuffle(t, 2), lambda t: torch.nn.functional.pixel_shuffle(t, 2),
              [rng.standard_normal((2, 1, 8, 3, 3))], rng)  # extra leading dims
    y = F.pixel_unshuffle(F.pixel_shuffle(x, 3), 3)
    np.testing.assert_array_equal(y.detach().numpy(), x)
    assert fastnn.gradcheck(lambda t: F.pixel_shuffle(t, 2), (fastnn.tensor(x[:1, :8], requires_grad=True),))
    with pytest.raises(ValueError, match=r"pixel_shuffle.*channel dim \(size 18\).*divisible by upscale_factor\^2 = 4"):
        F.pixel_shuffle(x, 2)
    with pytest.raises(ValueError, match=r"pixel_unshuffle.*height 3 and width 5.*downscale_factor 2"):
        F.pixel_unshuffle(x, 2)
    with pytest.raises(ValueError, match="PixelShuffle: upscale_factor"):
        nn.PixelShuffle(0)


# ------------------------------------------------------------------ normalize, cosine_similarity
@pytest.mark.parametrize("p,dim", [(2.0, 1), (1.0, -1), (3.0, 0)])
def test_normalize_matches_pytorch_and_gradchecks(p, dim, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((3, 5, 4))
    x[0, :, 0] = 0.0  # a zero vector along dim 1: eps takes over
    _vs_torch(lambda t: F.normalize(t, p, dim), lambda t: torch.nn.functional.normalize(t, p, dim), [x], rng)
    assert fastnn.gradcheck(lambda t: F.normalize(t, p, dim), (fastnn.tensor(rng.standard_normal((3, 5, 4)),
                                                                              requires_grad=True),))


def test_cosine_similarity_broadcasts_like_pytorch(rng):
    torch = pytest.importorskip("torch")
    a, b = rng.standard_normal((4, 1, 6)), rng.standard_normal((3, 6))
    _vs_torch(lambda s, t: F.cosine_similarity(s, t, dim=-1), lambda s, t: torch.nn.functional.cosine_similarity(
        s, t, dim=-1), [a, b], rng)
    a[1, 0] = 0.0
    _vs_torch(lambda s, t: F.cosine_similarity(s, t, 2), lambda s, t: torch.nn.functional.cosine_similarity(s, t, 2),
              [a, b], rng)
    sa = fastnn.tensor(rng.standard_normal((4, 1, 6)), requires_grad=True)
    sb = fastnn.tensor(rng.standard_normal((3, 6)), requires_grad=True)
    assert fastnn.gradcheck(lambda s, t: F.cosine_similarity(s, t, dim=-1), (sa, sb))
    with pytest.raises(ValueError, match=r"cosine_similarity.*\(4, 1, 6\).*\(3, 5\)"):
        F.cosine_similarity(a, np.ones((3, 5)), dim=-1)


# ------------------------------------------------------------------ Bilinear, Unflatten
def test_bilinear_matches_pytorch_and_gradchecks(rng):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    t = torch.nn.Bilinear(3, 5, 4).double()
    f = nn.Bilinear(3, 5, 4).double()
    f.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    a, b = rng.standard_normal((2, 7, 3)), rng.standard_normal((2, 7, 5))
    _vs_torch(f, t, [a, b], rng)
    tw = {k: p.grad.numpy() for k, p in t.named_parameters()}
    for k, p in f.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tw[k], rtol=1e-12)
    f.zero_grad()
    assert fastnn.gradcheck(f, (fastnn.tensor(a[0], requires_grad=True), fastnn.tensor(b[0], requires_grad=True)))
    g = nn.Bilinear(2, 2, 3, bias=False).double()
    assert g.bias is None and fastnn.gradcheck(g, (rng.standard_normal((4, 2)), rng.standard_normal((4, 2))))
    with pytest.raises(ValueError, match=r"bilinear.*input1 \(7, 3\), input2 \(6, 5\)"):
        f(a[0], b[0, :6])


def test_unflatten(rng):
    x = fastnn.tensor(rng.standard_normal((2, 12, 3)), requires_grad=True)
    y = nn.Unflatten(1, (2, -1, 3))(x)
    assert y.shape == (2, 2, 2, 3, 3)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.ones((2, 12, 3)))
    with pytest.raises(TypeError, match="Unflatten: unflattened_size"):
        nn.Unflatten(1, 4)


# ------------------------------------------------------------------ EmbeddingBag
BAGS = [("sum", None, False, None), ("mean", None, False, 2), ("max", None, False, None), ("sum", "psw", False, None),
        ("mean", [0, 3, 3, 7], False, None), ("max", [0, 2, 2, 6, 9], True, 4), ("sum", [0, 1, 5], False, 1)]


@pytest.mark.parametrize("mode,offsets,last,padding_idx", BAGS)
def test_embedding_bag_matches_pytorch(mode, offsets, last, padding_idx, rng):
    torch = pytest.importorskip("torch")
    V, D = 9, 4
    weight = rng.standard_normal((V, D))
    if offsets is None or offsets == "psw":
        idx = rng.integers(0, V, (4, 5))
        idx[0, :2] = [2, 2]  # repeats (a tie for max) and the padding row
    else:
        idx = rng.integers(0, V, 9)
        idx[:3] = [4, 4, 1]
    off = None if offsets in (None, "psw") else np.array(offsets)
    psw = rng.standard_normal(idx.shape) if offsets == "psw" else None
    wt = torch.tensor(weight, requires_grad=True)
    pt = None if psw is None else torch.tensor(psw, requires_grad=True)
    ref = torch.nn.functional.embedding_bag(torch.tensor(idx), wt, None if off is None else torch.tensor(off),
                                            mode=mode, per_sample_weights=pt, include_last_offset=last,
                                            padding_idx=padding_idx)
    up = rng.standard_normal(tuple(ref.shape))
    ref.backward(torch.tensor(up))
    wf = fastnn.tensor(weight, requires_grad=True)
    pf = None if psw is None else fastnn.tensor(psw, requires_grad=True)
    got = F.embedding_bag(idx, wf, off, mode=mode, per_sample_weights=pf, include_last_offset=last,
                          padding_idx=padding_idx)
    got.backward(up)
    np.testing.assert_allclose(got.detach().numpy(), ref.detach().numpy(), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(wf.grad.numpy(), wt.grad.numpy(), rtol=1e-13, atol=1e-15)
    if psw is not None:
        np.testing.assert_allclose(pf.grad.numpy(), pt.grad.numpy(), rtol=1e-13)


def test_embedding_bag_module_gradcheck_and_errors(rng):
    bag = nn.EmbeddingBag(6, 3, mode="mean", padding_idx=0).double()
    assert np.all(bag.weight.data[0] == 0)
    idx, off = np.array([1, 0, 5, 5, 2, 3]), np.array([0, 2, 2, 5])
    assert fastnn.gradcheck(lambda w: F.embedding_bag(idx, w, off, padding_idx=0),
                            (fastnn.tensor(bag.weight.data.copy(), requires_grad=True),))
    w = fastnn.tensor(rng.standard_normal((6, 3)), requires_grad=True)
    psw = fastnn.tensor(rng.standard_normal(6), requires_grad=True)
    assert fastnn.gradcheck(lambda a, s: F.embedding_bag(idx, a, off, mode="sum", per_sample_weights=s), (w, psw))
    assert fastnn.gradcheck(lambda a: F.embedding_bag(idx.reshape(2, 3), a, mode="max"), (w,))
    out = bag(idx, off)
    assert out.shape == (4, 3) and np.all(out.detach().numpy()[1] == 0)  # an empty bag
    out.sum().backward()
    assert np.all(bag.weight.grad.numpy()[0] == 0)
    with pytest.raises(ValueError, match=r"embedding_bag: offsets must be None for a 2-D input"):
        bag(np.ones((2, 3), int), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"embedding_bag: a 1-D input of shape \(6,\) needs 1-D offsets"):
        bag(idx)
    with pytest.raises(ValueError, match=r"offsets must start at 0"):
        bag(idx, np.array([1, 3]))
    with pytest.raises(IndexError, match=r"indices must be in \[0, 6\).*\[0, 7\]"):
        bag(np.array([0, 7]), np.array([0]))
    with pytest.raises(ValueError, match="per_sample_weights.*mode='sum'"):
        bag(idx, off, per_sample_weights=np.ones(6))
    with pytest.raises(ValueError, match="EmbeddingBag: mode"):
        nn.EmbeddingBag(3, 2, mode="min")
    with pytest.raises(ValueError, match="EmbeddingBag: padding_idx"):
        nn.EmbeddingBag(3, 2, padding_idx=3)


# ------------------------------------------------------------------ save / load
def test_layers_round_trip_through_save_and_load(tmp_path, rng):
    model = nn.Sequential(nn.ReflectionPad2d((1, 2, 0, 1)), nn.ConstantPad2d(1, 0.5), nn.ReplicationPad2d(1),
                          nn.ZeroPad2d((0, 1, 1, 0)), nn.Upsample(scale_factor=(2, 1.5), mode="bilinear",
                                                                  align_corners=True),
                          nn.Upsample(size=(12, 10)), nn.PixelUnshuffle(2), nn.PixelShuffle(2), nn.Flatten(1),
                          nn.Unflatten(1, (2, -1)))
    fastnn.save(model, tmp_path / "layers.fnn")
    loaded = fastnn.load(tmp_path / "layers.fnn")
    x = rng.standard_normal((2, 2, 4, 3)).astype(model.dtype)
    with fastnn.no_grad():
        np.testing.assert_array_equal(model(x).detach().numpy(), loaded(x).detach().numpy())
    both = nn.ModuleList([nn.Bilinear(2, 3, 4), nn.EmbeddingBag(5, 2, mode="max", include_last_offset=True,
                                                                 padding_idx=1), nn.UpsamplingBilinear2d(size=3)])
    fastnn.save(both, tmp_path / "more.fnn")
    again = fastnn.load(tmp_path / "more.fnn")
    assert [m._config() for m in again] == [m._config() for m in both]
    np.testing.assert_array_equal(again[0].weight.detach().numpy(), both[0].weight.detach().numpy())
