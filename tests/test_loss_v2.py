"""The further losses (issue 13): values and gradients (input and target) against
PyTorch, float64 gradient checks, every reduction, options, errors, save/load."""
import numpy as np
import pytest

import fastnn
from fastnn import nn
from fastnn.nn import functional as F

REDUCTIONS = ["mean", "sum", "none"]


def _operands(name, rng, shape=(5, 7)):
    if name == "binary_cross_entropy":
        return rng.uniform(0.02, 0.98, shape), rng.uniform(0, 1, shape)
    if name == "kl_div":
        return np.log(rng.dirichlet(np.ones(shape[-1]), shape[0])), rng.dirichlet(np.ones(shape[-1]), shape[0])
    return rng.standard_normal(shape) * 2, rng.standard_normal(shape)


# (functional name, extra kwargs)
ELEMENTWISE = [("l1_loss", {}), ("smooth_l1_loss", {"beta": 0.6}), ("smooth_l1_loss", {"beta": 0.0}),
               ("huber_loss", {"delta": 0.7}), ("binary_cross_entropy", {}), ("kl_div", {}),
               ("kl_div", {"log_target": True})]
IDS = [f"{n}-{'-'.join(map(str, kw.values()))}" for n, kw in ELEMENTWISE]


def _both(name, kwargs, x, t, reduction, torch, up=None):
    """(fastnn loss, torch loss, grads of each) for operands x, t that both require grad."""
    if kwargs.get("log_target"):
        t = np.log(t)
    xt, tt = torch.tensor(x, requires_grad=True), torch.tensor(t, requires_grad=True)
    xf, tf = fastnn.tensor(x, requires_grad=True), fastnn.tensor(t, requires_grad=True)
    lt = getattr(torch.nn.functional, name)(xt, tt, reduction=reduction, **kwargs)
    lf = getattr(F, name)(xf, tf, reduction=reduction, **kwargs)
    up = np.ones(lt.shape) if up is None else up
    lt.backward(torch.tensor(up))
    lf.backward(up)
    return lf, lt, (xf.grad.numpy(), tf.grad.numpy()), (xt.grad.numpy(), tt.grad.numpy())


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")  # PyTorch's note on kl_div
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,kwargs", ELEMENTWISE, ids=IDS)
def test_elementwise_losses_match_pytorch(name, kwargs, reduction, rng):
    torch = pytest.importorskip("torch")
    x, t = _operands(name, rng)
    if name != "kl_div" and name != "binary_cross_entropy":
        t[0, :2] = x[0, :2]  # zero differences: the kinks' gradients
    up = rng.standard_normal(x.shape) if reduction == "none" else None
    lf, lt, gf, gt = _both(name, kwargs, x, t, reduction, torch, up)
    assert lf.shape == tuple(lt.shape)
    np.testing.assert_allclose(lf.detach().numpy(), lt.detach().numpy(), rtol=1e-12, atol=1e-15)
    for a, b in zip(gf, gt):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-15)


@pytest.mark.parametrize("name,kwargs", ELEMENTWISE, ids=IDS)
def test_elementwise_losses_gradcheck(name, kwargs, rng):
    x, t = _operands(name, rng, (3, 5))
    if kwargs.get("log_target"):
        t = np.log(t)
    xs, ts = fastnn.tensor(x.T, requires_grad=True), fastnn.tensor(t.T, requires_grad=True)  # non-contiguous
    for reduction in REDUCTIONS:
        assert fastnn.gradcheck(lambda a, b: getattr(F, name)(a, b, reduction=reduction, **kwargs), (xs, ts))


def test_kl_div_batchmean_and_weights_match_pytorch(rng):
    torch = pytest.importorskip("torch")
    x, t = _operands("kl_div", rng, (4, 6))
    lf, lt, gf, gt = _both("kl_div", {}, x, t, "batchmean", torch)
    assert lf.item() == pytest.approx(lt.item(), rel=1e-12)
    np.testing.assert_allclose(gf[0], gt[0], rtol=1e-12)
    t[1, 2] = 0.0  # a zero target: no contribution; fastnn's target gradient there is 0 (PyTorch's NaN)
    lf, lt, gf, gt = _both("kl_div", {}, x, t, "sum", torch)
    assert lf.item() == pytest.approx(lt.item(), rel=1e-12)
    np.testing.assert_allclose(gf[0], gt[0], rtol=1e-12)
    assert gf[1][1, 2] == 0 and np.isnan(gt[1][1, 2])
    gt[1][1, 2] = 0
    np.testing.assert_allclose(gf[1], gt[1], rtol=1e-12)
    p, y = _operands("binary_cross_entropy", rng, (4, 6))
    w = rng.uniform(0.5, 2, 6)
    for reduction in REDUCTIONS:
        pt = torch.tensor(p, requires_grad=True)
        ref = torch.nn.functional.binary_cross_entropy(pt, torch.tensor(y), torch.tensor(w), reduction=reduction)
        ref.sum().backward()
        pf = fastnn.tensor(p, requires_grad=True)
        got = nn.BCELoss(weight=w, reduction=reduction)(pf, y)
        got.sum().backward()
        np.testing.assert_allclose(got.detach().numpy(), ref.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(pf.grad.numpy(), pt.grad.numpy(), rtol=1e-12)
        ww = rng.uniform(0.5, 2, x.shape)  # l1_loss and huber_loss want the input's shape
        for name in ("l1_loss", "huber_loss"):  # 'mean': by the summed weights / by the count
            xt = torch.tensor(x, requires_grad=True)
            ref = getattr(torch.nn.functional, name)(xt, torch.tensor(t), reduction=reduction, weight=torch.tensor(ww))
            ref.sum().backward()
            xf = fastnn.tensor(x, requires_grad=True)
            got = getattr(F, name)(xf, t, reduction=reduction, weight=ww)
            got.sum().backward()
            np.testing.assert_allclose(got.detach().numpy(), ref.detach().numpy(), rtol=1e-12)
            np.testing.assert_allclose(xf.grad.numpy(), xt.grad.numpy(), rtol=1e-12)


def test_bce_clamps_logs_at_minus_100_like_pytorch():
    torch = pytest.importorskip("torch")
    p, y = np.array([0.0, 1.0, 0.0, 1.0, 0.5]), np.array([1.0, 0.0, 0.0, 1.0, 0.3])
    ref = torch.nn.functional.binary_cross_entropy(torch.tensor(p), torch.tensor(y), reduction="none")
    got = F.binary_cross_entropy(p, y, reduction="none")
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-14)


def test_large_float32_losses_run_the_parallel_path(rng, threads):
    torch = pytest.importorskip("torch")
    x, t = (rng.standard_normal((2, 70001)) * 2).astype(np.float32), rng.standard_normal((2, 70001)).astype(np.float32)
    for name in ("l1_loss", "huber_loss"):
        xt = torch.tensor(x, requires_grad=True)
        ref = getattr(torch.nn.functional, name)(xt, torch.tensor(t), reduction="sum")
        ref.backward()
        xf = fastnn.tensor(x, requires_grad=True)
        got = getattr(F, name)(xf, t, reduction="sum")
        got.backward()
        assert got.dtype == np.float32 and xf.grad.dtype == np.float32
        assert got.item() == pytest.approx(ref.item(), rel=1e-5)
        np.testing.assert_allclose(xf.grad.numpy(), xt.grad.numpy(), rtol=1e-6)
        results = threads(lambda: getattr(F, name)(x, t, reduction="sum").item())
        assert results[0] == results[-1]  # per-chunk partial sums in a fixed order: any thread count


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cosine_embedding_and_margin_ranking_match_pytorch(reduction, rng):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    a, b = rng.standard_normal((7, 5)), rng.standard_normal((7, 5))
    y = np.array([1, -1, 1, -1, -1, 1, 0])
    for margin in (0.0, 0.3):
        at, bt = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
        ref = tf.cosine_embedding_loss(at, bt, torch.tensor(y), margin=margin, reduction=reduction)
        ref.sum().backward()
        af, bf = fastnn.tensor(a, requires_grad=True), fastnn.tensor(b, requires_grad=True)
        got = nn.CosineEmbeddingLoss(margin, reduction=reduction)(af, bf, y)
        got.sum().backward()
        np.testing.assert_allclose(got.detach().numpy(), ref.detach().numpy(), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(af.grad.numpy(), at.grad.numpy(), rtol=1e-11, atol=1e-15)
        np.testing.assert_allclose(bf.grad.numpy(), bt.grad.numpy(), rtol=1e-11, atol=1e-15)
    x1, x2, yy = rng.standard_normal((6, 1)), rng.standard_normal((1, 4)), np.sign(rng.standard_normal((6, 4)))
    ts = [torch.tensor(v, requires_grad=True) for v in (x1, x2, yy)]
    ref = tf.margin_ranking_loss(*ts, margin=0.2, reduction=reduction)
    ref.sum().backward()
    fs = [fastnn.tensor(v, requires_grad=True) for v in (x1, x2, yy)]
    got = nn.MarginRankingLoss(0.2, reduction=reduction)(*fs)
    got.sum().backward()
    np.testing.assert_allclose(got.detach().numpy(), ref.detach().numpy(), rtol=1e-12)
    for f_, t_ in zip(fs, ts):
        np.testing.assert_allclose(f_.grad.numpy(), t_.grad.numpy(), rtol=1e-12)


def test_cosine_embedding_and_margin_ranking_gradcheck(rng):
    a, b = fastnn.tensor(rng.standard_normal((5, 3)), requires_grad=True), fastnn.tensor(rng.standard_normal((5, 3)),
                                                                                        requires_grad=True)
    y = np.array([1, -1, -1, 1, -1])
    for reduction in REDUCTIONS:
        assert fastnn.gradcheck(lambda p, q: F.cosine_embedding_loss(p, q, y, -0.2, reduction=reduction), (a, b))
    v1, v2 = fastnn.tensor(rng.standard_normal(3), requires_grad=True), fastnn.tensor(rng.standard_normal(3),
                                                                                      requires_grad=True)
    assert fastnn.gradcheck(lambda p, q: F.cosine_embedding_loss(p, q, np.array(-1), -0.5), (v1, v2))
    x1, x2 = fastnn.tensor(rng.standard_normal(7), requires_grad=True), fastnn.tensor(rng.standard_normal(7),
                                                                                      requires_grad=True)
    yy = fastnn.tensor(np.sign(rng.standard_normal(7)), requires_grad=True)
    assert fastnn.gradcheck(lambda p, q, r: F.margin_ranking_loss(p, q, r, 0.1, reduction="sum"), (x1, x2, yy))


@pytest.mark.parametrize("make", [lambda r: nn.L1Loss(reduction=r), lambda r: nn.SmoothL1Loss(reduction=r),
                                  lambda r: nn.HuberLoss(reduction=r), lambda r: nn.BCELoss(reduction=r),
                                  lambda r: nn.KLDivLoss(reduction=r), lambda r: nn.CosineEmbeddingLoss(reduction=r),
                                  lambda r: nn.MarginRankingLoss(reduction=r)])
def test_bad_reduction_names_are_refused(make):
    with pytest.raises(ValueError, match="'avg' is not a valid value for reduction"):
        make("avg")


def test_bad_arguments_name_the_loss_and_shapes(rng):
    for fn in (F.l1_loss, F.smooth_l1_loss, F.huber_loss, F.binary_cross_entropy, F.kl_div):
        with pytest.raises(ValueError, match=r"'elementwise_mean' is not a valid"):
            fn(np.ones(3), np.ones(3), reduction="elementwise_mean")
        with pytest.raises(ValueError, match=r"target shape \(4,\) does not match input shape \(3,\)"):
            fn(np.full(3, 0.5), np.full(4, 0.5))
    with pytest.raises(ValueError, match="binary_cross_entropy.*input.*between 0 and 1"):
        F.binary_cross_entropy(np.array([0.2, 1.5]), np.array([0.0, 1.0]))
    with pytest.raises(RuntimeError, match="binary_cross_entropy.*target.*between 0 and 1"):
        nn.BCELoss()(np.array([0.2, 0.5]), np.array([0.0, -1.0]))
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.binary_cross_entropy(np.array([np.nan, 0.5]), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="weight of shape \\(3,\\) does not broadcast"):
        nn.BCELoss(weight=np.ones(3))(np.full((2, 4), 0.5), np.full((2, 4), 0.5))
    with pytest.raises(ValueError, match="SmoothL1Loss: beta"):
        nn.SmoothL1Loss(beta=-1.0)
    with pytest.raises(ValueError, match="HuberLoss: delta"):
        nn.HuberLoss(delta=0.0)
    with pytest.raises(ValueError, match=r"cosine_embedding_loss.*input1 \(4, 3\), input2 \(4, 3\), target \(5,\)"):
        F.cosine_embedding_loss(np.ones((4, 3)), np.ones((4, 3)), np.ones(5))
    with pytest.raises(ValueError, match=r"margin_ranking_loss.*same number of dims.*\(4,\).*\(4, 1\)"):
        F.margin_ranking_loss(np.ones(4), np.ones((4, 1)), np.ones(4))


def test_empty_input_and_zero_division_follow_pytorch():
    assert np.isnan(F.l1_loss(np.zeros((0, 3)), np.zeros((0, 3))).item())
    assert F.huber_loss(np.zeros((0, 3)), np.zeros((0, 3)), reduction="sum").item() == 0.0


def test_modules_round_trip_through_save_and_load(tmp_path, rng):
    losses = nn.ModuleList([nn.L1Loss(reduction="sum"), nn.SmoothL1Loss(beta=0.25), nn.HuberLoss("none", 2.0),
                            nn.BCELoss(weight=[0.5, 2.0, 1.0], reduction="sum"),
                            nn.KLDivLoss(reduction="batchmean", log_target=True),
                            nn.CosineEmbeddingLoss(0.4), nn.MarginRankingLoss(0.1, reduction="none")])
    fastnn.save(losses, tmp_path / "losses.fnn")
    loaded = fastnn.load(tmp_path / "losses.fnn")
    assert [m._config() for m in loaded] == [m._config() for m in losses]
    assert loaded[4].reduction == "batchmean" and loaded[4].log_target
    p, y = rng.uniform(0.1, 0.9, (2, 3)), rng.uniform(0, 1, (2, 3))
    assert loaded[3](p, y).item() == losses[3](p, y).item()
