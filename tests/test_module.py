"""Module plumbing: registration, state_dict keys and round trips, containers,
modes, dtype conversion, settings, and clear errors."""
import numpy as np
import pytest

import fastnn
from fastnn import nn


def mlp():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def test_state_dict_keys_shapes_and_order_match_pytorch():
    sd = mlp().state_dict()
    assert list(sd) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert sd["0.weight"].shape == (8, 4) and sd["2.bias"].shape == (3,)


def test_state_dict_round_trip_and_copy_semantics(rng):
    a, b = mlp(), mlp()
    b.load_state_dict(a.state_dict())
    x = rng.standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_array_equal(a(x), b(x))
    sd = a.state_dict()
    sd["0.weight"][...] = 0  # a copy: the model is untouched
    assert np.any(a[0].weight.data != 0)


def test_load_state_dict_converts_dtype_and_accepts_tensors_like_objects():
    class FakeTensor:
        def __init__(self, a):
            self.a = a

        def detach(self):
            return self

        def numpy(self):
            return self.a

    model = mlp()
    sd = {k: FakeTensor(np.ones_like(v, dtype=np.float64)) for k, v in model.state_dict().items()}
    model.load_state_dict(sd)
    assert model[0].weight.data.dtype == np.float32 and np.all(model[0].weight.data == 1)


def test_load_state_dict_errors():
    model = mlp()
    sd = model.state_dict()
    with pytest.raises(ValueError, match=r"'0.weight' expected shape \(8, 4\), got \(4, 8\)"):
        model.load_state_dict({**sd, "0.weight": np.zeros((4, 8))})
    missing = dict(sd)
    del missing["2.bias"]
    with pytest.raises(KeyError, match="2.bias"):
        model.load_state_dict(missing)
    result = model.load_state_dict({**missing, "extra": np.zeros(1)}, strict=False)
    assert result.missing_keys == ["2.bias"] and result.unexpected_keys == ["extra"]


def test_sequential_indexing_slicing_len_append():
    model = mlp()
    assert len(model) == 3 and isinstance(model[-1], nn.Linear)
    head = model[:2]
    assert isinstance(head, nn.Sequential) and len(head) == 2 and head[0] is model[0]
    model.append(nn.Sigmoid())
    assert len(model) == 4 and list(dict(model.named_children())) == ["0", "1", "2", "3"]
    with pytest.raises(TypeError, match="Sequential"):
        nn.Sequential(nn.ReLU(), "not a module")


def test_parameters_modules_and_modes():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.Residual(nn.Linear(2, 2)))
    assert len(list(model.parameters())) == 4
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias", "2.block.weight", "2.block.bias"]
    assert len(list(model.modules())) == 5
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_to_double_and_default_dtype(rng):
    model = mlp().double()
    assert model[0].weight.data.dtype == np.float64
    assert model(rng.standard_normal((2, 4))).dtype == np.float64
    try:
        fastnn.set_default_dtype(np.float64)
        assert nn.Linear(2, 2).weight.data.dtype == np.float64
    finally:
        fastnn.set_default_dtype(np.float32)
    with pytest.raises(TypeError, match="float32 or float64"):
        fastnn.set_default_dtype(np.int32)


def test_pytorch_default_init_bounds():
    layer = nn.Linear(100, 50)
    bound = 1 / np.sqrt(100)
    assert np.abs(layer.weight.data).max() <= bound and np.abs(layer.bias.data).max() <= bound
    assert np.abs(layer.weight.data).max() > 0.8 * bound


def test_init_functions_are_seeded(rng):
    w1, w2 = np.empty((20, 30)), np.empty((20, 30))
    nn.init.kaiming_normal_(w1, generator=3)
    nn.init.kaiming_normal_(w2, generator=3)
    np.testing.assert_array_equal(w1, w2)
    assert abs(w1.std() - np.sqrt(2 / 30)) < 0.03
    nn.init.xavier_uniform_(w1, generator=1)
    assert np.abs(w1).max() <= np.sqrt(6 / 50)
    fastnn.manual_seed(7)
    a = nn.Linear(3, 3).weight.data
    fastnn.manual_seed(7)
    np.testing.assert_array_equal(a, nn.Linear(3, 3).weight.data)


def test_thread_settings():
    before = fastnn.get_num_threads()
    with fastnn.set_num_threads(1):
        assert fastnn.get_num_threads() == 1
    assert fastnn.get_num_threads() == before
    with pytest.raises(ValueError, match="set_num_threads"):
        fastnn.set_num_threads(0)
    with pytest.raises(TypeError, match="set_num_threads"):
        fastnn.set_num_threads(1.5)


@pytest.mark.parametrize("bad,error,match", [
    (np.zeros((2, 5)), ValueError, r"Linear: expected input of shape \(\*, 4\), got \(2, 5\)"),
    (np.zeros((2, 4), np.complex64), TypeError, "Linear: input must be a real"),
    (np.array([["a"] * 4]), TypeError, "Linear"),
    (np.zeros((2, 4), object), TypeError, "Linear"),
])
def test_linear_bad_input(bad, error, match):
    with pytest.raises(error, match=match):
        nn.Linear(4, 3)(bad)


def test_backward_errors():
    layer = nn.Linear(4, 3)
    out = layer(np.zeros((2, 4)))
    with pytest.raises(RuntimeError, match=r"gradient of shape \(3, 2\) does not match the output's shape \(2, 3\)"):
        out.backward(np.zeros((3, 2)))
    with pytest.raises(RuntimeError, match="only for scalar outputs"):
        out.backward()
    with fastnn.no_grad():
        frozen = layer(np.zeros((2, 4)))
    with pytest.raises(RuntimeError, match="does not require grad"):
        frozen.backward(np.zeros((2, 3)))


def test_import_compiles_nothing():
    import subprocess
    import sys
    code = ("import fastnn, numba.core.registry as r; from fastnn.kernels import matmul, activations;"
            "print(sum(len(d.overloads) for d in [matmul.gemm, matmul.gemm_serial, activations._forward]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


def test_registration_survives_reassignment_and_deletion():
    """Parameters/submodules are mirrored in __dict__ for fast reads: reassigning or
    deleting them keeps the tables, state_dict and attribute reads consistent."""
    layer = nn.Linear(3, 2)
    new_w = nn.Parameter(np.ones((2, 3), np.float32))
    layer.weight = new_w
    assert layer.weight is new_w and layer._parameters["weight"] is new_w
    layer.bias = None  # a plain attribute now, no longer a parameter
    assert layer.bias is None and list(layer.state_dict()) == ["weight"]
    seq = nn.Sequential(nn.Linear(2, 2))
    seq.extra = nn.ReLU()
    assert "extra" in dict(seq.named_children()) and seq.extra is seq._modules["extra"]
    del seq.extra
    assert "extra" not in dict(seq.named_children())
    with pytest.raises(AttributeError):
        seq.extra
    bn = nn.BatchNorm1d(2)
    assert bn.running_mean is bn._buffers["running_mean"]


@pytest.mark.parametrize("make, shape", [
    (lambda nn: nn.Linear(6, 4), (3, 6)),
    (lambda nn: nn.Conv2d(2, 3, 3, padding=1), (2, 2, 5, 5)),
    (lambda nn: nn.ReLU(), (3, 6)),
    (lambda nn: nn.Sigmoid(), (3, 6)),
    (lambda nn: nn.BatchNorm1d(6), (3, 6)),
    (lambda nn: nn.MaxPool2d(2), (2, 2, 4, 4)),
])
def test_backward_frees_what_forward_saved(make, shape):
    # one backward per graph, as in PyTorch (retain_graph=False): the second fails clearly
    import fastnn
    layer = make(fastnn.nn)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    xt = fastnn.tensor(x, requires_grad=True)
    out = layer(xt)
    out.backward(np.ones(out.shape, out.dtype))
    first = xt.grad.numpy().copy()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        out.backward(np.ones(out.shape, out.dtype))
    xt.grad = None
    out = layer(xt)  # a new forward records a new graph, with the same result
    out.backward(np.ones(out.shape, out.dtype), retain_graph=True)
    np.testing.assert_array_equal(xt.grad, first)
    out.backward(np.ones(out.shape, out.dtype))  # retained: a second backward adds up
    np.testing.assert_array_equal(xt.grad, 2 * first)
