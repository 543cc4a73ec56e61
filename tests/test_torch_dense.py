"""Cross-checks against PyTorch's CPU build (skipped when torch is absent):
PyTorch weights load through state_dict and give the same outputs, gradients
and optimizer trajectory."""
import numpy as np
import pytest

import fastnn
from fastnn import nn, optim

torch = pytest.importorskip("torch")


def pair():
    torch.manual_seed(0)
    t = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.GELU(), torch.nn.Linear(16, 8), torch.nn.Tanh(),
                            torch.nn.Linear(8, 8), torch.nn.LeakyReLU(0.1), torch.nn.Linear(8, 5)).double()
    f = nn.Sequential(nn.Linear(12, 16), nn.GELU(), nn.Linear(16, 8), nn.Tanh(),
                      nn.Linear(8, 8), nn.LeakyReLU(0.1), nn.Linear(8, 5)).double()
    f.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    return t, f


def test_forward_backward_match_pytorch(rng):
    t, f = pair()
    x = rng.standard_normal((9, 12))
    y = rng.integers(0, 5, 9)
    xt = torch.tensor(x, requires_grad=True)
    loss_t = torch.nn.functional.cross_entropy(t(xt), torch.tensor(y))
    loss_t.backward()
    loss_fn = nn.CrossEntropyLoss()
    xf = fastnn.tensor(x, requires_grad=True)
    loss_f = loss_fn(f(xf), y)
    loss_f.backward()
    assert loss_f.shape == () and loss_f.item() == pytest.approx(loss_t.item(), rel=1e-12)
    np.testing.assert_allclose(xf.grad, xt.grad.numpy(), rtol=1e-10, atol=1e-14)
    grads_t = {k: p.grad.numpy() for k, p in t.named_parameters()}
    for k, p in f.named_parameters():
        np.testing.assert_allclose(p.grad, grads_t[k], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("make", [
    lambda p, lib: lib.Adam(p, lr=1e-2),
    lambda p, lib: lib.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda p, lib: lib.RMSprop(p, lr=1e-2, momentum=0.5),
    lambda p, lib: lib.AdamW(p, lr=1e-2),
])
def test_training_trajectory_matches_pytorch(make, rng):
    t, f = pair()
    opt_t, opt_f = make(t.parameters(), torch.optim), make(f.parameters(), optim)
    loss_fn = nn.MSELoss()
    for _ in range(5):
        x = rng.standard_normal((16, 12))
        target = rng.standard_normal((16, 5))
        opt_t.zero_grad()
        torch.nn.functional.mse_loss(t(torch.tensor(x)), torch.tensor(target)).backward()
        opt_t.step()
        opt_f.zero_grad()
        loss_fn(f(x), target).backward()
        opt_f.step()
    expected = t.state_dict()
    for k, v in f.state_dict().items():
        np.testing.assert_allclose(v, expected[k].numpy(), rtol=1e-9, atol=1e-12)


def test_bce_and_softmax_match_pytorch(rng):
    x = rng.standard_normal((6, 4)) * 3
    target = rng.random((6, 4))
    loss = nn.BCEWithLogitsLoss()
    xt = torch.tensor(x, requires_grad=True)
    ref = torch.nn.functional.binary_cross_entropy_with_logits(xt, torch.tensor(target))
    ref.backward()
    xf = fastnn.tensor(x, requires_grad=True)
    value = loss(xf, target)
    value.backward()
    assert value.item() == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(xf.grad, xt.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(nn.Softmax(dim=0)(x), torch.softmax(torch.tensor(x), 0).numpy(), rtol=1e-12)


@pytest.mark.parametrize("name,args", [("ReLU", ()), ("LeakyReLU", (0.2,)), ("Sigmoid", ()), ("Tanh", ()),
                                       ("GELU", ()), ("Softmax", (1,)), ("LogSoftmax", (0,)), ("Flatten", ()),
                                       ("Identity", ())])
def test_activation_layers_forward_and_input_gradient_match_pytorch(name, args, rng):
    x = rng.standard_normal((4, 3, 5)) * 2
    upstream = rng.standard_normal(getattr(torch.nn, name)(*args)(torch.tensor(x)).shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = getattr(torch.nn, name)(*args)(xt)
    yt.backward(torch.tensor(upstream))
    xf = fastnn.tensor(x, requires_grad=True)
    yf = getattr(nn, name)(*args)(xf)
    yf.backward(upstream)
    np.testing.assert_allclose(yf.detach().numpy(), yt.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(xf.grad, xt.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_linear_without_bias_and_leading_dims_matches_pytorch(rng):
    torch.manual_seed(1)
    t = torch.nn.Linear(5, 3, bias=False).double()
    f = nn.Linear(5, 3, bias=False).double()
    f.load_state_dict({k: v.numpy() for k, v in t.state_dict().items()})
    x = rng.standard_normal((2, 4, 5))
    xt, xf = torch.tensor(x, requires_grad=True), fastnn.tensor(x, requires_grad=True)
    t(xt).pow(2).sum().backward()
    f(xf).pow(2).sum().backward()
    np.testing.assert_allclose(xf.grad, xt.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(f.weight.grad, t.weight.grad.numpy(), rtol=1e-12)
