"""The further activations (issue 13): float64 gradient checks, PyTorch cross-checks
of values and input/parameter gradients, options, errors, save/load."""
import numpy as np
import pytest

import fastnn
from fastnn import nn
from fastnn.nn import functional as F

# (layer name, constructor kwargs); the same names and kwargs exist in torch.nn
CASES = [("ReLU6", {}), ("ELU", {"alpha": 0.7}), ("SELU", {}), ("GELU", {"approximate": "tanh"}), ("SiLU", {}),
         ("Mish", {}), ("Softplus", {}), ("Softplus", {"beta": 2.0, "threshold": 3.0}),
         ("Hardtanh", {"min_val": -0.5, "max_val": 1.5}), ("Hardtanh", {"min_val": 0.0, "max_val": 2.0}),
         ("Hardsigmoid", {}), ("Hardswish", {}), ("LogSigmoid", {}), ("Softsign", {}), ("Tanhshrink", {})]
IDS = [f"{name}-{'-'.join(map(str, kw.values()))}" for name, kw in CASES]


def _x(rng, shape=(3, 5, 7)):
    return rng.standard_normal(shape) * 3


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_gradcheck_float64(name, kwargs, rng):
    layer = getattr(nn, name)(**kwargs)
    x = fastnn.tensor(_x(rng).transpose(2, 0, 1), requires_grad=True)  # non-contiguous, odd sizes
    assert fastnn.gradcheck(layer, (x,))


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_matches_pytorch(name, kwargs, rng):
    torch = pytest.importorskip("torch")
    x = _x(rng)
    x[0, 0, :3] = [-40.0, 40.0, 0.0]  # saturated ends and the origin
    up = rng.standard_normal(x.shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = getattr(torch.nn, name)(**kwargs)(xt)
    yt.backward(torch.tensor(up))
    xf = fastnn.tensor(x, requires_grad=True)
    yf = getattr(nn, name)(**kwargs)(xf)
    yf.backward(up)
    np.testing.assert_allclose(yf.detach().numpy(), yt.detach().numpy(), rtol=1e-12, atol=1e-15)
    # PyTorch's Hardsigmoid gradient multiplies by float32's 1/6 even in float64; fastnn's by 1/6
    rtol = 1e-7 if name == "Hardsigmoid" else 1e-12
    np.testing.assert_allclose(xf.grad.numpy(), xt.grad.numpy(), rtol=rtol, atol=1e-15)


@pytest.mark.parametrize("name", ["SiLU", "Hardswish", "ELU"])
def test_large_float32_input_runs_the_parallel_path(name, rng):
    torch = pytest.importorskip("torch")
    x = (rng.standard_normal((301, 503)) * 4).astype(np.float32)  # above SERIAL_BELOW elements
    xt = torch.tensor(x, requires_grad=True)
    getattr(torch.nn, name)()(xt).sum().backward()
    xf = fastnn.tensor(x, requires_grad=True)
    yf = getattr(nn, name)()(xf)
    yf.sum().backward()
    assert yf.dtype == np.float32 and xf.grad.dtype == np.float32
    ref = getattr(torch.nn, name)()(torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(yf.detach().numpy(), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xf.grad.numpy(), xt.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_functional_forms_and_inplace_flag(rng):
    x = _x(rng, (4, 6))
    for fn, layer in [(F.relu6, nn.ReLU6(inplace=True)), (lambda t: F.elu(t, 0.5), nn.ELU(0.5, inplace=True)),
                      (F.selu, nn.SELU()), (F.silu, nn.SiLU(True)), (F.mish, nn.Mish()),
                      (F.hardsigmoid, nn.Hardsigmoid()),
                      (F.hardswish, nn.Hardswish()), (F.logsigmoid, nn.LogSigmoid()), (F.softsign, nn.Softsign()),
                      (F.tanhshrink, nn.Tanhshrink()), (lambda t: F.softplus(t, 0.5, 4.0), nn.Softplus(0.5, 4.0)),
                      (lambda t: F.hardtanh(t, -2.0, 2.0), nn.Hardtanh(-2.0, 2.0, inplace=True)),
                      (lambda t: F.gelu(t, approximate="tanh"), nn.GELU("tanh"))]:
        np.testing.assert_array_equal(fn(x).detach().numpy(), layer(x).detach().numpy())
    ints = F.relu6(np.array([-3, 2, 9]))
    np.testing.assert_array_equal(ints.detach().numpy(), [0.0, 2.0, 6.0])
    assert F.gelu(fastnn.tensor(x, requires_grad=True), approximate="tanh").grad_fn.name() == "GeluBackward0"


def test_gelu_options_and_errors():
    assert nn.GELU()._config() == {} and nn.GELU("tanh")._config() == {"approximate": "tanh"}
    assert "approximate='tanh'" in repr(nn.GELU("tanh"))
    with pytest.raises(ValueError, match="GELU.*approximate"):
        nn.GELU("sigmoid")
    with pytest.raises(ValueError, match="gelu.*approximate"):
        F.gelu(np.ones(3), approximate="erf")
    with pytest.raises(ValueError, match="Hardtanh.*min_val"):
        nn.Hardtanh(1.0, -1.0)
    with pytest.raises(ValueError, match="hardtanh"):
        F.hardtanh(np.ones(3), 2.0, 1.0)
    with pytest.raises(TypeError, match="relu6"):
        F.relu6(np.array([1j]))


@pytest.mark.parametrize("num_parameters,shape", [(1, (3, 4, 5)), (4, (3, 4, 5)), (3, (2, 3, 3, 5)), (1, (7,))])
def test_prelu_matches_pytorch_and_gradchecks(num_parameters, shape, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(shape)
    up = rng.standard_normal(shape)
    t = torch.nn.PReLU(num_parameters, init=0.3).double()
    with torch.no_grad():
        t.weight.copy_(torch.tensor(rng.uniform(-0.5, 0.5, num_parameters)))
    f = nn.PReLU(num_parameters, init=0.3).double()
    f.load_state_dict({"weight": t.weight.detach().numpy()})
    xt, xf = torch.tensor(x, requires_grad=True), fastnn.tensor(x, requires_grad=True)
    t(xt).backward(torch.tensor(up))
    yf = f(xf)
    yf.backward(up)
    np.testing.assert_allclose(yf.detach().numpy(), t(torch.tensor(x)).detach().numpy(), rtol=1e-13)
    np.testing.assert_allclose(xf.grad.numpy(), xt.grad.numpy(), rtol=1e-13)
    np.testing.assert_allclose(f.weight.grad.numpy(), t.weight.grad.numpy(), rtol=1e-11)
    f.zero_grad()
    assert fastnn.gradcheck(f, (fastnn.tensor(x, requires_grad=True),))


def test_prelu_defaults_and_errors():
    p = nn.PReLU()
    assert p.weight.shape == (1,) and float(p.weight.data[0]) == pytest.approx(0.25)
    assert nn.PReLU(3, init=0.1)._config() == {"num_parameters": 3, "init": 0.1}
    with pytest.raises(ValueError, match="PReLU.*num_parameters"):
        nn.PReLU(0)
    with pytest.raises(ValueError, match=r"prelu.*4 parameters.*3 channels.*\(2, 3, 5\)"):
        nn.PReLU(4)(np.ones((2, 3, 5)))


def test_save_and_load_round_trip(tmp_path, rng):
    model = nn.Sequential(nn.Linear(5, 6), nn.ELU(0.3), nn.PReLU(6, 0.2), nn.Softplus(2.0, 5.0),
                          nn.Hardtanh(-0.5, 0.5), nn.GELU("tanh"), nn.ReLU6(inplace=True), nn.SiLU(), nn.Mish(),
                          nn.SELU(), nn.Hardswish(), nn.Hardsigmoid(), nn.LogSigmoid(), nn.Softsign(),
                          nn.Tanhshrink())
    model[2].weight.data[:] = rng.uniform(0, 1, 6)
    fastnn.save(model, tmp_path / "act.fnn")
    loaded = fastnn.load(tmp_path / "act.fnn")
    x = rng.standard_normal((3, 5)).astype(model.dtype)
    with fastnn.no_grad():
        np.testing.assert_array_equal(model(x).detach().numpy(), loaded(x).detach().numpy())
    assert repr(loaded) == repr(model)
