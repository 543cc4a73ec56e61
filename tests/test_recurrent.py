"""RNN, LSTM, GRU and LastStep: forward against the NumPy reference, float64
gradient checks, threads, bad input, Sequential, save/load and gradient clipping."""
import numpy as np
import pytest

import fastnn
from fastnn import nn

import reference as ref

MODES = {"rnn_tanh": (nn.RNN, {}), "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}),
         "lstm": (nn.LSTM, {}), "gru": (nn.GRU, {})}
TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


def make(mode, *args, **kwargs):
    cls, extra = MODES[mode]
    return cls(*args, **extra, **kwargs)


def layer_params(layer):
    return [(getattr(layer, f"weight_ih_l{k}").data, getattr(layer, f"weight_hh_l{k}").data,
             getattr(layer, f"bias_ih_l{k}").data if layer.bias else None,
             getattr(layer, f"bias_hh_l{k}").data if layer.bias else None)
            for k in range(layer.num_layers)]


def initial_state(mode, L, N, H, rng, dtype=np.float64):
    h0 = rng.standard_normal((L, N, H)).astype(dtype)
    if mode == "lstm":
        return (h0, rng.standard_normal((L, N, H)).astype(dtype))
    return h0


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layers,batch_first,given,bias", [
    (1, False, False, True), (2, True, True, True), (2, False, True, False), (1, True, False, False)])
def test_forward_matches_reference(mode, dtype, layers, batch_first, given, bias, rng):
    T, N, F, H = 5, 3, 4, 6
    layer = make(mode, F, H, num_layers=layers, bias=bias, batch_first=batch_first, dtype=dtype)
    x = rng.standard_normal((N, T, F) if batch_first else (T, N, F)).astype(dtype)
    hx = initial_state(mode, layers, N, H, rng, dtype) if given else None
    out, state = layer(x, hx)
    h0, c0 = (hx if mode == "lstm" else (hx, None)) if given else (None, None)
    x_tm = x.transpose(1, 0, 2) if batch_first else x
    want_out, want_h, want_c = ref.recurrent(mode, x_tm, layer_params(layer), h0, c0)
    if batch_first:
        want_out = want_out.transpose(1, 0, 2)
    h_n, c_n = state if mode == "lstm" else (state, None)
    assert out.dtype == dtype and out.shape == want_out.shape and h_n.shape == (layers, N, H)
    np.testing.assert_allclose(out, want_out, **TOL[dtype])
    np.testing.assert_allclose(h_n, want_h, **TOL[dtype])
    if mode == "lstm":
        np.testing.assert_allclose(c_n, want_c, **TOL[dtype])


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("given", [False, True])
def test_gradcheck(mode, layers, batch_first, given, rng):
    T, N, F, H = 3, 2, 3, 4
    layer = make(mode, F, H, num_layers=layers, batch_first=batch_first).double()
    x = rng.standard_normal((N, T, F) if batch_first else (T, N, F))
    hx = initial_state(mode, layers, N, H, rng) if given else None
    assert fastnn.gradcheck(layer, x, hx, max_checks=40)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_gradcheck_three_layers(mode, rng):
    layer = make(mode, 2, 3, num_layers=3, batch_first=True).double()
    assert fastnn.gradcheck(layer, rng.standard_normal((2, 4, 2)), max_checks=20)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_gradcheck_unbatched_and_no_bias(mode, rng):
    layer = make(mode, 2, 3, bias=False).double()
    assert fastnn.gradcheck(layer, rng.standard_normal((4, 2)))


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T,N,F,H", [(1, 1, 1, 1), (3, 1, 5, 33), (2, 9, 3, 7), (4, 19, 6, 17), (2, 16, 4, 40)])
def test_forward_odd_sizes_and_batch_panels(mode, dtype, T, N, F, H, rng):
    # batches under 8 rows take the dot-product path, larger ones the packed
    # micro-kernel with padded rows and columns
    layer = make(mode, F, H, num_layers=2, dtype=dtype)
    x = rng.standard_normal((T, N, F)).astype(dtype)
    out, _ = layer(x)
    want, _, _ = ref.recurrent(mode, x, layer_params(layer))
    np.testing.assert_allclose(out, want, **TOL[dtype])


@pytest.mark.parametrize("mode", list(MODES))
def test_gradcheck_full_panels(mode, rng):
    # N >= 8: the backward's recurrent product runs on the packed micro-kernel
    layer = make(mode, 3, 5, num_layers=2, batch_first=True).double()
    x = rng.standard_normal((10, 3, 3))
    hx = initial_state(mode, 2, 10, 5, rng)
    assert fastnn.gradcheck(layer, x, hx, max_checks=30)


def test_non_contiguous_and_integer_input(rng):
    layer = nn.GRU(3, 4, batch_first=True).double()
    big = rng.standard_normal((5, 12, 6))
    x = big[:, ::2, ::2]
    out, _ = layer(x)
    np.testing.assert_allclose(out, layer(np.ascontiguousarray(x))[0])
    out_int, _ = layer(np.arange(2 * 3 * 3).reshape(2, 3, 3) % 3)
    assert out_int.dtype == np.float64 and out_int.shape == (2, 3, 4)


@pytest.mark.parametrize("mode", list(MODES))
def test_relu_and_saturation_edge_values(mode, rng):
    # large inputs saturate the gates: the float32 tanh approximation must stay in [-1, 1]
    layer = make(mode, 3, 5)
    x = (100 * rng.standard_normal((4, 2, 3))).astype(np.float32)
    out, _ = layer(x)
    assert np.all(np.isfinite(out))
    if mode != "rnn_relu":
        assert np.all(np.abs(out) <= 1)
    want, _, _ = ref.recurrent(mode, x, layer_params(layer))
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", list(MODES))
def test_threads_agree(mode, rng, threads):
    T, N, F, H = 4, 40, 16, 64  # big enough for the parallel paths
    layer = make(mode, F, H, num_layers=2, batch_first=True)
    x = rng.standard_normal((N, T, F)).astype(np.float32)
    g = rng.standard_normal((N, T, H)).astype(np.float32)

    def run():
        layer.zero_grad()
        out, _ = layer(x)
        dx = layer.backward(g)
        return [out.copy(), dx.copy()] + [p.grad.copy() for p in layer.parameters()]

    one, many = threads(run)
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)


def test_gradients_accumulate_and_backward_consumes_cache(rng):
    layer = nn.LSTM(3, 4).double()
    x = rng.standard_normal((5, 2, 3))
    g = rng.standard_normal((5, 2, 4))
    layer(x)
    layer.backward(g)
    first = {k: p.grad.copy() for k, p in layer.named_parameters()}
    layer(x)
    layer.backward(g)
    for k, p in layer.named_parameters():
        np.testing.assert_allclose(p.grad, 2 * first[k], rtol=1e-12)
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(g)
    layer.eval()
    layer(x)
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(g)


def test_outputs_survive_later_calls_and_shape_changes(rng):
    layer = nn.LSTM(3, 4, num_layers=2)
    x1 = rng.standard_normal((5, 2, 3)).astype(np.float32)
    out1, (h1, c1) = layer(x1)
    saved = [out1.copy(), h1.copy(), c1.copy()]
    layer(rng.standard_normal((5, 2, 3)).astype(np.float32))
    layer(rng.standard_normal((7, 1, 3)).astype(np.float32))
    for a, b in zip(saved, [out1, h1, c1]):
        np.testing.assert_array_equal(a, b)
    again, _ = layer(x1)
    np.testing.assert_array_equal(again, out1)


def test_parameters_shapes_names_and_init():
    layer = nn.LSTM(10, 20, num_layers=2)
    shapes = {k: v.shape for k, v in layer.state_dict().items()}
    assert list(shapes) == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                            "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1"]
    assert shapes["weight_ih_l0"] == (80, 10) and shapes["weight_ih_l1"] == (80, 20)
    assert shapes["weight_hh_l1"] == (80, 20) and shapes["bias_hh_l1"] == (80,)
    bound = 1 / np.sqrt(20)
    for p in layer.parameters():
        assert p.dtype == np.float32 and np.all(np.abs(p.data) <= bound)
        assert p.data.std() > bound / 3
    assert [k for k in nn.GRU(3, 4, bias=False).state_dict()] == ["weight_ih_l0", "weight_hh_l0"]
    assert nn.GRU(3, 4).weight_hh_l0.shape == (12, 4) and nn.RNN(3, 4).weight_ih_l0.shape == (4, 3)
    assert repr(nn.RNN(3, 4, 2, nonlinearity="relu", batch_first=True)) == \
        "RNN(3, 4, num_layers=2, batch_first=True, nonlinearity='relu')"


@pytest.mark.parametrize("bad,match", [
    (np.zeros((5, 2, 4)), r"LSTM: expected input of shape \(T, N, 3\).*got \(5, 2, 4\)"),
    (np.zeros((2, 5, 2, 3)), r"LSTM: expected 2-D or 3-D input.*got shape \(2, 5, 2, 3\)"),
    (np.zeros(3), r"LSTM: expected 2-D or 3-D input"),
    (np.zeros((0, 2, 3)), r"LSTM: expected a non-empty input"),
])
def test_bad_input_shapes(bad, match):
    with pytest.raises(ValueError, match=match):
        nn.LSTM(3, 4)(bad)


def test_bad_input_types_and_states():
    x = np.zeros((5, 2, 3))
    with pytest.raises(TypeError, match="LSTM"):
        nn.LSTM(3, 4)(np.array([["a"]]))
    with pytest.raises(ValueError, match=r"LSTM: expected h_0 of shape \(1, 2, 4\), got \(1, 3, 4\)"):
        nn.LSTM(3, 4)(x, (np.zeros((1, 3, 4)), np.zeros((1, 2, 4))))
    with pytest.raises(ValueError, match=r"LSTM: expected c_0 of shape \(2, 2, 4\)"):
        nn.LSTM(3, 4, num_layers=2)(x, (np.zeros((2, 2, 4)), np.zeros((1, 2, 4))))
    with pytest.raises(TypeError, match=r"LSTM: hx must be a tuple \(h_0, c_0\)"):
        nn.LSTM(3, 4)(x, np.zeros((1, 2, 4)))
    with pytest.raises(ValueError, match=r"GRU: expected h_0 of shape \(1, 2, 4\), got \(2, 4\)"):
        nn.GRU(3, 4)(x, np.zeros((2, 4)))
    with pytest.raises(TypeError, match="GRU: hx must be an array"):
        nn.GRU(3, 4)(x, (np.zeros((1, 2, 4)),))
    with pytest.raises(ValueError, match=r"RNN.backward: expected grad_output of shape \(5, 2, 4\)"):
        layer = nn.RNN(3, 4)
        layer(x)
        layer.backward(np.zeros((2, 5, 4)))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="RNN: nonlinearity must be 'tanh' or 'relu'"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="LSTM: hidden_size must be a positive int"):
        nn.LSTM(3, 0)
    with pytest.raises(NotImplementedError, match="bidirectional"):
        nn.GRU(3, 4, bidirectional=True)
    with pytest.raises(NotImplementedError, match="dropout"):
        nn.LSTM(3, 4, num_layers=2, dropout=0.5)


def test_unbatched_input_matches_batch_of_one(rng):
    layer = nn.GRU(3, 4, num_layers=2, batch_first=True)
    x = rng.standard_normal((6, 3)).astype(np.float32)
    h0 = rng.standard_normal((2, 4)).astype(np.float32)
    out, h_n = layer(x, h0)
    out_b, h_b = layer(x[None], h0[:, None])
    assert out.shape == (6, 4) and h_n.shape == (2, 4)
    np.testing.assert_allclose(out, out_b[0], rtol=1e-6)
    np.testing.assert_allclose(h_n, h_b[:, 0], rtol=1e-6)


def test_last_step_and_sequential(rng):
    model = nn.Sequential(nn.LSTM(3, 5, batch_first=True), nn.LastStep(batch_first=True), nn.Linear(5, 2))
    model.double()
    x = rng.standard_normal((4, 6, 3))
    out = model(x)
    seq, _ = model[0](x)
    np.testing.assert_allclose(out, model[2](seq[:, -1]))
    assert fastnn.gradcheck(model, x)
    time_major = nn.Sequential(nn.GRU(3, 5), nn.LastStep(), nn.Linear(5, 2)).double()
    assert fastnn.gradcheck(time_major, rng.standard_normal((6, 4, 3)))
    with pytest.raises(ValueError, match=r"LastStep: expected a 3-D input \(T, N, F\)"):
        nn.LastStep()(np.zeros((2, 3)))


def test_save_load_roundtrip(tmp_path, rng):
    model = nn.Sequential(nn.GRU(3, 5, num_layers=2, batch_first=True), nn.LastStep(batch_first=True),
                          nn.Linear(5, 2))
    x = rng.standard_normal((4, 6, 3)).astype(np.float32)
    path = tmp_path / "gru.fnn"
    fastnn.save(model, path)
    loaded = fastnn.load(path)
    assert repr(loaded) == repr(model)
    np.testing.assert_array_equal(loaded(x), model(x))


def test_clip_grad_norm_on_recurrent_gradients(rng):
    layer = nn.LSTM(3, 8, num_layers=2)
    x = rng.standard_normal((20, 4, 3)).astype(np.float32)
    out, _ = layer(x)
    layer.backward(1e3 * np.ones_like(out))
    grads = [p.grad for p in layer.parameters()]
    total = np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads))
    returned = nn.utils.clip_grad_norm_(layer.parameters(), max_norm=1.0)
    assert returned == pytest.approx(total, rel=1e-5)
    clipped = np.sqrt(sum(float(np.sum(p.grad.astype(np.float64) ** 2)) for p in layer.parameters()))
    assert clipped == pytest.approx(1.0, rel=1e-4)


TORCH_CLASSES = {"rnn_tanh": "RNN", "rnn_relu": "RNN", "lstm": "LSTM", "gru": "GRU"}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch_first,given,N", [(False, False, 3), (True, True, 10)])
def test_matches_pytorch(mode, dtype, batch_first, given, N, rng):
    torch = pytest.importorskip("torch")
    T, F, H, L = 6, 5, 7, 2
    torch.manual_seed(0)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    tlayer = getattr(torch.nn, TORCH_CLASSES[mode])(F, H, num_layers=L, batch_first=batch_first,
                                                    **MODES[mode][1]).to(tdtype)
    layer = make(mode, F, H, num_layers=L, batch_first=batch_first, dtype=dtype)
    layer.load_state_dict({k: v.detach().numpy() for k, v in tlayer.state_dict().items()})
    x = rng.standard_normal((N, T, F) if batch_first else (T, N, F)).astype(dtype)
    hx = initial_state(mode, L, N, H, rng, dtype) if given else None
    thx = None
    if given:
        thx = tuple(torch.tensor(h) for h in hx) if mode == "lstm" else torch.tensor(hx)
    xt = torch.tensor(x, requires_grad=True)
    t_out, t_state = tlayer(xt, thx)
    out, state = layer(x, hx)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out, t_out.detach().numpy(), **tol)
    if mode == "lstm":
        np.testing.assert_allclose(state[0], t_state[0].detach().numpy(), **tol)
        np.testing.assert_allclose(state[1], t_state[1].detach().numpy(), **tol)
    else:
        np.testing.assert_allclose(state, t_state.detach().numpy(), **tol)
    g = rng.standard_normal(out.shape).astype(dtype)
    t_out.backward(torch.tensor(g))
    dx = layer.backward(g)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)
    for name, p in tlayer.named_parameters():
        np.testing.assert_allclose(getattr(layer, name).grad, p.grad.numpy(), err_msg=name, **tol)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("N", [2, 9])
def test_backward_through_final_state(mode, N, rng):
    # d/dx and d/dparams of sum(out*g) + sum(h_n*gh) (+ sum(c_n*gc)) against central differences
    T, F, H, L = 3, 2, 3, 2
    layer = make(mode, F, H, num_layers=L, batch_first=True).double()
    x = rng.standard_normal((N, T, F))
    g, gh, gc = rng.standard_normal((N, T, H)), rng.standard_normal((L, N, H)), rng.standard_normal((L, N, H))

    def objective():
        out, state = layer(x)
        h_n, c_n = state if mode == "lstm" else (state, None)
        value = np.sum(out * g) + np.sum(h_n * gh)
        return value + (np.sum(c_n * gc) if mode == "lstm" else 0.0)

    layer.zero_grad()
    objective()
    dx = layer.backward(g, grad_h_n=gh, grad_c_n=gc if mode == "lstm" else None)
    checks = [(x, dx)] + [(p.data, p.grad) for p in layer.parameters()]
    for array, grad in checks:
        flat, gflat = array.reshape(-1), grad.reshape(-1)
        for i in rng.choice(flat.size, min(flat.size, 12), replace=False):
            orig = flat[i]
            flat[i] = orig + 1e-6
            plus = objective()
            flat[i] = orig - 1e-6
            minus = objective()
            flat[i] = orig
            assert gflat[i] == pytest.approx((plus - minus) / 2e-6, rel=1e-5, abs=1e-7)
    layer(x)
    only_state = layer.backward(None, grad_h_n=gh)
    assert only_state.shape == x.shape
    layer(x)
    with pytest.raises(ValueError, match=r"backward: expected grad_h_n of shape \(2, \d+, 3\), got \(2, 3\)"):
        layer.backward(g, grad_h_n=gh[:, 0])
    if mode != "lstm":
        with pytest.raises(TypeError, match="grad_c_n is only for LSTM"):
            layer.backward(g, grad_c_n=gc)
