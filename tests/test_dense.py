"""Linear, activations, Dropout, Residual: forward against the references,
float64 gradient checks, threads, and non-contiguous input."""
import numpy as np
import pytest

import fastnn
from fastnn import nn
from fastnn.kernels.activations import GELU, IDENTITY, LEAKY_RELU, RELU, SIGMOID, TANH, activation_forward

import reference as ref
from fastnn.tensor import _wrap


def forward_backward(model, x, g):
    """(output, d/dx) of ``model`` at ``x`` for the upstream gradient ``g``."""
    xt = _wrap(np.array(x)).requires_grad_()
    y = model(xt)
    y.backward(g)
    return y.detach().numpy(), xt.grad.numpy()

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,fin,fout", [(1, 1, 1), (1, 784, 256), (3, 5, 7), (17, 63, 65), (130, 33, 9)])
def test_linear_forward_matches_reference(dtype, n, fin, fout, rng):
    layer = nn.Linear(fin, fout, dtype=dtype)
    x = rng.standard_normal((n, fin)).astype(dtype)
    got = layer(x)
    assert got.dtype == dtype and got.shape == (n, fout)
    np.testing.assert_allclose(got, ref.linear(x, layer.weight.data, layer.bias.data), **TOL[dtype])


def test_linear_accepts_leading_dims_and_no_bias(rng):
    layer = nn.Linear(4, 3, bias=False).double()
    x = rng.standard_normal((2, 5, 4))
    out = layer(x)
    assert out.shape == (2, 5, 3)
    np.testing.assert_allclose(out.reshape(-1, 3), ref.linear(x.reshape(-1, 4), layer.weight.data), rtol=1e-12)
    assert fastnn.gradcheck(layer, x)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("n,fin,fout", [(1, 3, 2), (7, 5, 4)])
def test_linear_gradcheck(bias, n, fin, fout, rng):
    assert fastnn.gradcheck(nn.Linear(fin, fout, bias=bias).double(), rng.standard_normal((n, fin)))


def test_linear_gradients_accumulate_until_zero_grad(rng):
    layer = nn.Linear(3, 2).double()
    x = rng.standard_normal((4, 3))
    g = rng.standard_normal((4, 2))
    layer(x).backward(g)
    first = layer.weight.grad.numpy().copy()
    layer(x).backward(g)
    np.testing.assert_allclose(layer.weight.grad, 2 * first)
    layer.zero_grad()
    assert layer.weight.grad is None
    layer(x).backward(g)
    np.testing.assert_allclose(layer.weight.grad, first)


ACTIVATIONS = [
    (nn.ReLU(), ref.relu),
    (nn.LeakyReLU(0.2), lambda x: ref.leaky_relu(x, 0.2)),
    (nn.Sigmoid(), ref.sigmoid),
    (nn.Tanh(), ref.tanh),
    (nn.GELU(), ref.gelu),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer,reference", ACTIVATIONS, ids=lambda v: type(v).__name__)
@pytest.mark.parametrize("shape", [(1,), (3, 5), (2, 3, 4, 5), (40000,)])
def test_activation_forward(dtype, layer, reference, shape, rng):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    x.reshape(-1)[:3] = [-100, 100, 0][: x.size]  # saturation and the kink
    got = layer(x)
    assert got.dtype == dtype and got.shape == x.shape
    np.testing.assert_allclose(got, reference(x), rtol=2e-6 if dtype == np.float32 else 1e-12, atol=1e-7)


@pytest.mark.parametrize("layer,reference", ACTIVATIONS, ids=lambda v: type(v).__name__)
def test_activation_gradcheck(layer, reference, rng):
    x = rng.standard_normal((4, 7))
    x[np.abs(x) < 1e-3] = 0.5  # keep clear of ReLU's kink
    assert fastnn.gradcheck(layer, x)


@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_softmax(dim, rng):
    x = rng.standard_normal((3, 4, 5))
    np.testing.assert_allclose(nn.Softmax(dim)(x), ref.softmax(x, dim), rtol=1e-12)
    assert fastnn.gradcheck(nn.Softmax(dim), x)


def test_activation_kernel_large_input_parallel_path_matches_serial(threads, rng):
    x = rng.standard_normal(100_000).astype(np.float32)

    def run():
        outs = []
        for kind in (IDENTITY, RELU, LEAKY_RELU, SIGMOID, TANH, GELU):
            out = np.empty_like(x)
            activation_forward(out, x, kind, 0.1)
            outs.append(out)
        return outs

    one, many = threads(run)
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n", [1, 17, 4099, 300_001])  # serial and parallel, with tails
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_in_place_add_and_activation_equal_out_of_place(n, dtype, rng):
    """out is the input (a residual add, then ReLU, in place in a plan's buffer): its own
    loops, vectorised; the same bits as writing to another array, -0 and NaN included."""
    from fastnn.kernels.elementwise import add
    a = rng.standard_normal(n).astype(dtype)
    a[::7] = -0.0
    a[::11] = np.nan
    b = rng.standard_normal(n).astype(dtype)
    want = np.empty_like(a)
    add(want, a, b)
    np.testing.assert_array_equal(want, a + b)
    got = a.copy()
    add(got, got, b)
    np.testing.assert_array_equal(got, want)
    got = b.copy()
    add(got, a, got)
    np.testing.assert_array_equal(got, want)
    for kind, slope in ((RELU, 0.0), (LEAKY_RELU, 0.1), (TANH, 0.0)):
        want_act = np.empty_like(a)
        activation_forward(want_act, a, kind, slope)
        got = a.copy()
        activation_forward(got, got, kind, slope)
        assert np.array_equal(got.view(np.uint8), want_act.view(np.uint8))  # bits, signed zeros too
    ref_relu = np.where(a > 0, a, a * dtype(0))
    out = a.copy()
    activation_forward(out, out, RELU, 0.0)
    assert np.array_equal(out.view(np.uint8), ref_relu.view(np.uint8))


def test_linear_one_and_two_threads_agree_bitwise(threads, rng):
    layer = nn.Linear(300, 200)
    x = rng.standard_normal((150, 300)).astype(np.float32)
    g = rng.standard_normal((150, 200)).astype(np.float32)

    def run():
        layer.zero_grad()
        y, dx = forward_backward(layer, x, g)
        return y, dx, layer.weight.grad.numpy().copy(), layer.bias.grad.numpy().copy()

    one, many = threads(run)
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)


def test_non_contiguous_input_gives_same_answer(rng):
    layer = nn.Linear(6, 4)
    base = rng.standard_normal((6, 10)).astype(np.float32)
    x_nc = base.T  # (10, 6), Fortran-ordered view
    assert not x_nc.flags.c_contiguous
    np.testing.assert_array_equal(layer(x_nc), layer(np.ascontiguousarray(x_nc)))
    strided = rng.standard_normal((20, 6)).astype(np.float32)[::2]
    np.testing.assert_array_equal(nn.ReLU()(strided), nn.ReLU()(strided.copy()))


def test_integer_and_float64_input_converted_to_layer_dtype():
    layer = nn.Linear(2, 2)
    assert layer(np.array([[1, 2]])).dtype == np.float32
    assert layer(np.array([[1.0, 2.0]])).dtype == np.float32


def test_dropout_train_and_eval(rng):
    layer = nn.Dropout(0.3, generator=0)
    x = np.ones((200, 100), np.float32)
    y = layer(x).numpy()
    kept = y != 0
    assert 0.65 < kept.mean() < 0.75
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    g = rng.standard_normal(x.shape).astype(np.float32)
    xt = fastnn.tensor(x, requires_grad=True)
    y = layer(xt)
    y.backward(g)
    kept = y.detach().numpy() != 0
    np.testing.assert_allclose(xt.grad.numpy(), np.where(kept, g / 0.7, 0), rtol=1e-6)
    layer.eval()
    np.testing.assert_array_equal(layer(x), x)
    with pytest.raises(ValueError, match="Dropout"):
        nn.Dropout(1.0)


def test_residual_identity_and_projection_gradcheck(rng):
    block = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4))
    res = nn.Residual(block).double()
    x = rng.standard_normal((3, 4))
    np.testing.assert_allclose(res(x), block(x) + x, rtol=1e-12)
    assert fastnn.gradcheck(res, x)
    proj = nn.Residual(nn.Sequential(nn.Linear(4, 5), nn.Sigmoid()), nn.Linear(4, 5)).double()
    assert fastnn.gradcheck(proj, x)


def test_deep_sequential_gradcheck(rng):
    model = nn.Sequential(nn.Linear(5, 8), nn.GELU(), nn.Linear(8, 8), nn.LeakyReLU(0.05),
                          nn.Residual(nn.Sequential(nn.Linear(8, 8), nn.Tanh())), nn.Linear(8, 3)).double()
    assert fastnn.gradcheck(model, rng.standard_normal((6, 5)))


def test_gradcheck_detects_a_wrong_gradient(rng):
    class Doubled(fastnn.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1.0

        @staticmethod
        def backward(ctx, grad_output):
            return 2 * grad_output  # wrong on purpose

    class Broken(nn.Linear):
        def forward(self, input):
            return Doubled.apply(super().forward(input))

    with pytest.raises(AssertionError, match="gradcheck"):
        fastnn.gradcheck(Broken(3, 2).double(), rng.standard_normal((4, 3)))


@pytest.mark.parametrize("build,shape", [
    (lambda: nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Residual(nn.Linear(4, 4)), nn.Linear(4, 3)), (6, 5)),
    (lambda: nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(48, 3)), (2, 2, 4, 4)),
    (lambda: nn.Sequential(nn.LSTM(4, 5, num_layers=2, batch_first=True), nn.LastStep(batch_first=True),
                           nn.Linear(5, 3)), (2, 6, 4)),
], ids=["dense", "conv", "lstm"])
def test_input_without_grad_gets_none_and_parameter_gradients_are_unchanged(build, shape, rng):
    """Data that does not require grad gets no gradient (the first layer skips d/d input,
    as fit needs), and every parameter gradient equals the one computed with it."""
    model = build().double()
    x = rng.standard_normal(shape)
    g = rng.standard_normal((shape[0], 3))
    _, dx = forward_backward(model, x, g)
    assert dx.shape == x.shape
    full = {k: p.grad.numpy().copy() for k, p in model.named_parameters()}
    model.zero_grad()
    xt = fastnn.tensor(x)
    model(xt).backward(g)
    assert xt.grad is None
    for k, p in model.named_parameters():
        np.testing.assert_array_equal(p.grad, full[k])


@pytest.mark.parametrize("act", [nn.ReLU, nn.Sigmoid, nn.Tanh, lambda: nn.LeakyReLU(0.2), lambda: nn.LeakyReLU(-0.5),
                                 nn.GELU], ids=["relu", "sigmoid", "tanh", "leaky", "leaky-negative", "gelu"])
@pytest.mark.parametrize("first", ["linear", "conv"])
def test_fused_activation_matches_separate_layers(act, first, rng):
    """Sequential fuses Linear/Conv2d + activation into one layer; results equal the
    layers run apart (fuse=False), forward, input gradient and parameter gradients."""
    if first == "linear":
        layers, x = [nn.Linear(6, 5), act(), nn.Linear(5, 4)], rng.standard_normal((7, 6))
    else:
        layers, x = [nn.Conv2d(2, 3, 3, padding=1), act(), nn.Flatten(), nn.Linear(48, 4)], rng.standard_normal((2, 2, 4, 4))
    fused = nn.Sequential(*layers).double()
    g = rng.standard_normal((x.shape[0], 4))
    results = []
    for fuse in (True, False):
        fused.fuse = fuse
        fused.zero_grad()
        y, dx = forward_backward(fused, x, g)
        results.append((y, dx, {k: p.grad.numpy().copy() for k, p in fused.named_parameters()}))
    (y1, dx1, g1), (y2, dx2, g2) = results
    np.testing.assert_allclose(y1, y2, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(dx1, dx2, rtol=1e-12, atol=1e-14)
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-12, atol=1e-14)
    fused.fuse = True
    assert fastnn.gradcheck(fused, x)
