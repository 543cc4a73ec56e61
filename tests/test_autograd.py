"""Graph semantics of autograd: reuse, shared modules, tied weights, retain_graph,
grad mode, detach, frozen parameters, eval-mode backward, custom Functions,
autograd.grad, in-place checks; and models written with only ``forward`` against
PyTorch's gradients."""
import threading

import numpy as np
import pytest

import fastnn
import fastnn.nn.functional as F
from fastnn import nn


def t64(a, requires_grad=True):
    return fastnn.tensor(np.asarray(a, np.float64), requires_grad=requires_grad)


def test_reused_value_gradients_add_up(rng):
    x = t64(rng.standard_normal(5))
    y = (x * x + x * 3.0 + x).sum()
    y.backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 4.0, rtol=1e-12)
    assert x.is_leaf and not y.is_leaf and y.grad_fn is not None


def test_leaf_gradients_are_never_aliased(rng):
    a, b = t64(rng.standard_normal(4)), t64(rng.standard_normal(4))
    (a + b).backward(np.ones(4))
    assert not np.shares_memory(a.grad.data, b.grad.data)
    (a + b).backward(np.ones(4))
    np.testing.assert_array_equal(a.grad, np.full(4, 2.0))
    np.testing.assert_array_equal(b.grad, np.full(4, 2.0))
    c = t64(rng.standard_normal(4))
    g = np.ones(4)
    c.backward(g)  # a leaf as the root: its gradient is a copy of what was passed
    g[:] = 5
    np.testing.assert_array_equal(c.grad, np.ones(4))


def test_module_called_twice_in_one_forward(rng):
    layer = nn.Linear(3, 3).double()
    x = t64(rng.standard_normal((4, 3)))
    out = layer(layer(x)).sum()
    out.backward()
    w, b = layer.weight.data, layer.bias.data
    h = x.data @ w.T + b
    g_h = np.ones((4, 3)) @ w
    np.testing.assert_allclose(layer.weight.grad, np.ones((4, 3)).T @ h + g_h.T @ x.data, rtol=1e-12)
    np.testing.assert_allclose(layer.bias.grad, np.full(3, 4.0) + g_h.sum(0), rtol=1e-12)
    np.testing.assert_allclose(x.grad, g_h @ w, rtol=1e-12)


def test_tied_weights_share_one_parameter(rng):
    class AutoEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Linear(6, 3, bias=False)
            self.decoder = nn.Linear(3, 6, bias=False)
            self.decoder.weight = self.encoder.weight  # tied, as language models do

        def forward(self, x):
            return self.decoder.forward(x @ self.encoder.weight.T) if False else self._tied(x)

        def _tied(self, x):
            h = F.linear(x, self.encoder.weight)
            return F.linear(h, self.decoder.weight.T)

    model = AutoEncoder().double()
    assert list(model.state_dict()) == ["encoder.weight", "decoder.weight"]
    assert len(list(model.parameters())) == 1
    x = rng.standard_normal((5, 6))
    model(x).sum().backward()
    w = model.encoder.weight.data
    expected = (np.ones((5, 6)) @ w.T).T @ x + (x @ w.T).T @ np.ones((5, 6))
    np.testing.assert_allclose(model.encoder.weight.grad, expected.T if expected.shape != w.shape else expected,
                               rtol=1e-12)
    assert fastnn.gradcheck(model, x)


def test_retain_graph_and_second_backward():
    x = t64([1.0, 2.0, 3.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, 4 * x.data)
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_no_grad_records_and_keeps_nothing(rng):
    layer = nn.Linear(4, 2)
    x = fastnn.tensor(rng.standard_normal((3, 4)).astype(np.float32), requires_grad=True)
    with fastnn.no_grad():
        y = layer(x) * 2
        assert not fastnn.is_grad_enabled()
        with fastnn.enable_grad():
            assert (x * 2).requires_grad
    assert fastnn.is_grad_enabled()
    assert y.grad_fn is None and not y.requires_grad

    @fastnn.no_grad()
    def infer(v):
        return layer(v)

    assert infer(x).grad_fn is None
    fastnn.set_grad_enabled(False)
    try:
        assert layer(x).grad_fn is None
    finally:
        fastnn.set_grad_enabled(True)
    with fastnn.set_grad_enabled(False):
        assert layer(x).grad_fn is None
    assert layer(x).grad_fn is not None


def test_grad_mode_is_per_thread():
    seen = []
    with fastnn.no_grad():
        worker = threading.Thread(target=lambda: seen.append(fastnn.is_grad_enabled()))
        worker.start()
        worker.join()
    assert seen == [True]


def test_detach_and_frozen_parameters(rng):
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    model[0].requires_grad_(False)
    x = rng.standard_normal((3, 4))
    model(x).sum().backward()
    assert model[0].weight.grad is None and model[0].bias.grad is None
    assert model[2].weight.grad is not None
    h = model[1](model[0](x))
    d = h.detach()
    assert d.grad_fn is None and not d.requires_grad and np.shares_memory(d.data, h.data)
    out = model[2](d).sum()
    model.zero_grad()
    out.backward()
    assert model[2].weight.grad is not None


def test_backward_in_eval_mode_through_batchnorm(rng):
    torch = pytest.importorskip("torch")
    bn = nn.BatchNorm2d(5).double()
    bn.running_mean.data[:] = rng.standard_normal(5)
    bn.running_var.data[:] = rng.random(5) + 0.5
    bn.weight.data[:] = rng.standard_normal(5)
    bn.eval()
    x = rng.standard_normal((2, 5, 3, 3))
    xf = t64(x)
    bn(xf).sum().backward()
    tb = torch.nn.BatchNorm2d(5).double()
    tb.load_state_dict({k: torch.tensor(v) for k, v in bn.state_dict().items()})
    tb.eval()
    xt = torch.tensor(x, requires_grad=True)
    tb(xt).sum().backward()
    np.testing.assert_allclose(xf.grad, xt.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(bn.weight.grad, tb.weight.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(bn.bias.grad, tb.bias.grad.numpy(), rtol=1e-10)


def test_custom_function():
    class Cube(fastnn.autograd.Function):
        @staticmethod
        def forward(ctx, x, scale):
            ctx.save_for_backward(x)
            ctx.scale = scale
            return x * x * x * scale

        @staticmethod
        def backward(ctx, grad_output):
            (x,) = ctx.saved_tensors
            return grad_output * 3 * x * x * ctx.scale, None

    x = t64([1.0, -2.0, 0.5])
    y = Cube.apply(x, 2.0)
    assert y.grad_fn.name() == "CubeBackward"
    y.sum().backward()
    np.testing.assert_allclose(x.grad, 6 * x.data ** 2)
    assert fastnn.gradcheck(lambda t: Cube.apply(t, 1.5), (t64([0.3, -0.7]),))
    with fastnn.no_grad():
        assert Cube.apply(x, 1.0).grad_fn is None


def test_autograd_grad_leaves_dot_grad_alone(rng):
    layer = nn.Linear(3, 2).double()
    x = t64(rng.standard_normal((4, 3)))
    h = layer(x)
    out = (h * h).sum()
    dx, dh, dw = fastnn.autograd.grad(out, [x, h, layer.weight])
    assert x.grad is None and layer.weight.grad is None
    np.testing.assert_allclose(dh, 2 * h.data, rtol=1e-12)
    np.testing.assert_allclose(dx, 2 * h.data @ layer.weight.data, rtol=1e-12)
    np.testing.assert_allclose(dw, (2 * h.data).T @ x.data, rtol=1e-12)
    unused = t64([1.0])
    with pytest.raises(RuntimeError, match="not used"):
        fastnn.autograd.grad(layer(x).sum(), [unused])
    assert fastnn.autograd.grad(layer(x).sum(), [unused], allow_unused=True) == (None,)


def test_inplace_checks():
    w = t64([1.0, 2.0])
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        w[0] = 3.0
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        w.add_(1.0)
    with fastnn.no_grad():
        w.add_(1.0)  # what optimizers do
    np.testing.assert_array_equal(w.data, [2.0, 3.0])
    with pytest.raises(RuntimeError, match=r"detach\(\)\.numpy\(\)"):
        w.numpy()
    mask = t64([1.0, 0.0], requires_grad=False)
    y = (w * mask).sum()
    mask[1] = 5.0  # saved for backward, then modified: PyTorch's error
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()


def test_buffers_are_tensors_and_slice_assignment(rng):
    class PositionalEncoding(nn.Module):
        def __init__(self, d, length):
            super().__init__()
            pe = fastnn.zeros(length, d)
            pe[:, 0::2] = np.sin(np.arange(length)[:, None] / 10.0)
            self.register_buffer("pe", pe)

        def forward(self, x):
            return x + self.pe[: x.shape[1]]

    m = PositionalEncoding(4, 10)
    assert isinstance(m.pe, fastnn.Tensor) and "pe" in m.state_dict()
    x = fastnn.zeros(2, 6, 4, requires_grad=True)
    m(x).sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones((2, 6, 4)))
    m.double()
    assert m.pe.dtype == np.float64


def test_long_chain_needs_no_recursion():
    x = t64([0.5])
    y = x
    for _ in range(20000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0001 ** 20000], rtol=1e-9)


def test_ndarray_operand_defers_to_tensor(rng):
    x = t64(rng.standard_normal(3))
    a = rng.standard_normal(3)
    for y in (a + x, a * x, a - x, a / (x * x + 1)):
        assert isinstance(y, fastnn.Tensor) and y.requires_grad
    np.testing.assert_allclose(np.asarray(a - x), a - x.data)


# ---------------------------------------------------------------- PyTorch models
class Block(nn.Module):
    """ReLU(x + BN(Conv(ReLU(BN(Conv(x)))))), written with only forward."""

    def __init__(self, c, lib):
        super().__init__() if lib is nn else lib.Module.__init__(self)
        self.conv1 = lib.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = lib.BatchNorm2d(c)
        self.conv2 = lib.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = lib.BatchNorm2d(c)


def _pair(torch, make_f, make_t):
    torch.manual_seed(0)
    t = make_t().double()
    f = make_f().double()
    f.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    return t, f


def _compare_grads(f, t, rtol=1e-9, atol=1e-12):
    grads_t = {k: p.grad.numpy() for k, p in t.named_parameters() if p.grad is not None}
    grads_f = {k: p.grad.numpy() for k, p in f.named_parameters() if p.grad is not None}
    assert grads_f.keys() == grads_t.keys()
    for k in grads_t:
        np.testing.assert_allclose(grads_f[k], grads_t[k], rtol=rtol, atol=atol, err_msg=k)


def test_residual_block_matches_pytorch(rng):
    torch = pytest.importorskip("torch")

    def build(lib, F_):
        class ResBlock(lib.Module):
            def __init__(self):
                super().__init__()
                self.conv1 = lib.Conv2d(3, 3, 3, padding=1, bias=False)
                self.bn1 = lib.BatchNorm2d(3)
                self.conv2 = lib.Conv2d(3, 3, 3, padding=1, bias=False)
                self.bn2 = lib.BatchNorm2d(3)
                self.head = lib.Linear(3, 4)

            def forward(self, x):
                out = F_.relu(self.bn1(self.conv1(x)))
                out = F_.relu(x + self.bn2(self.conv2(out)))
                return self.head(out.mean((2, 3)))

        return ResBlock

    t, f = _pair(torch, build(nn, F), build(torch.nn, torch.nn.functional))
    x = rng.standard_normal((2, 3, 5, 5))
    y = rng.integers(0, 4, 2)
    xt = torch.tensor(x, requires_grad=True)
    torch.nn.functional.cross_entropy(t(xt), torch.tensor(y)).backward()
    xf = t64(x)
    loss = F.cross_entropy(f(xf), y)
    loss.backward()
    np.testing.assert_allclose(xf.grad, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    _compare_grads(f, t)


def test_two_headed_model_with_summed_loss_matches_pytorch(rng):
    torch = pytest.importorskip("torch")

    def build(lib, F_):
        class TwoHeads(lib.Module):
            def __init__(self):
                super().__init__()
                self.trunk = lib.Linear(6, 8)
                self.cls = lib.Linear(8, 3)
                self.reg = lib.Linear(8, 2)

            def forward(self, x):
                h = F_.relu(self.trunk(x))
                return self.cls(h), self.reg(h)

        return TwoHeads

    t, f = _pair(torch, build(nn, F), build(torch.nn, torch.nn.functional))
    x = rng.standard_normal((5, 6))
    labels, targets = rng.integers(0, 3, 5), rng.standard_normal((5, 2))
    a, b = t(torch.tensor(x))
    (torch.nn.functional.cross_entropy(a, torch.tensor(labels))
     + 0.5 * torch.nn.functional.mse_loss(b, torch.tensor(targets))).backward()
    a, b = f(x)
    (F.cross_entropy(a, labels) + 0.5 * F.mse_loss(b, targets)).backward()
    _compare_grads(f, t)


def test_vae_loss_from_tensor_operations_matches_pytorch(rng):
    torch = pytest.importorskip("torch")

    def build(lib, F_, lib_root):
        class VAE(lib.Module):
            def __init__(self):
                super().__init__()
                self.enc = lib.Linear(8, 6)
                self.mu = lib.Linear(6, 2)
                self.logvar = lib.Linear(6, 2)
                self.dec = lib.Linear(2, 8)

            def forward(self, x, eps):
                h = F_.relu(self.enc(x))
                mu, logvar = self.mu(h), self.logvar(h)
                z = mu + eps * lib_root.exp(0.5 * logvar)
                return self.dec(z), mu, logvar

        return VAE

    t, f = _pair(torch, build(nn, F, fastnn), build(torch.nn, torch.nn.functional, torch))
    x = rng.random((4, 8))
    eps = rng.standard_normal((4, 2))

    def loss_of(lib_root, F_, model, xx, ee):
        recon, mu, logvar = model(xx, ee)
        bce = F_.binary_cross_entropy_with_logits(recon, xx, reduction="sum")
        kld = -0.5 * lib_root.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return bce + kld

    lt = loss_of(torch, torch.nn.functional, t, torch.tensor(x), torch.tensor(eps))
    lt.backward()
    lf = loss_of(fastnn, F, f, x, eps)
    lf.backward()
    assert lf.item() == pytest.approx(lt.item(), rel=1e-10)
    _compare_grads(f, t)
