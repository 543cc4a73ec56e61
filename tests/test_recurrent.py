"""RNN, LSTM, GRU and LastStep: forward against the NumPy reference, float64
gradient checks (input, h_0, c_0, parameters; losses on output and/or final state),
PyTorch cross-checks, threads, several calls per graph, bad input, Sequential,
save/load and gradient clipping."""
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


def leaf(array):
    return fastnn.tensor(np.asarray(array), requires_grad=True)


class WithState(nn.Module):
    """``layer(x, hx)`` with h_0 (and c_0) as separate tensor arguments, for gradcheck."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x, h0=None, c0=None):
        if h0 is None:
            return self.layer(x)
        return self.layer(x, (h0, c0) if c0 is not None else h0)


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


def state_leaves(mode, L, N, H, rng):
    """h_0 (and c_0) as float64 tensors that require grad."""
    state = initial_state(mode, L, N, H, rng)
    return tuple(leaf(s) for s in state) if mode == "lstm" else (leaf(state),)


def split_state(mode, state):
    return state if mode == "lstm" else (state, None)


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
    h_n, c_n = split_state(mode, state)
    assert isinstance(out, fastnn.Tensor) and isinstance(h_n, fastnn.Tensor)
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
    # every output (output, h_n, c_n) gets a random upstream gradient; the input,
    # h_0 and c_0 (when given) and every parameter are checked
    T, N, F, H = 3, 2, 3, 4
    layer = make(mode, F, H, num_layers=layers, batch_first=batch_first).double()
    x = leaf(rng.standard_normal((N, T, F) if batch_first else (T, N, F)))
    state = state_leaves(mode, layers, N, H, rng) if given else ()
    assert fastnn.gradcheck(WithState(layer), (x,) + state, max_checks=40)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_gradcheck_three_layers(mode, rng):
    layer = make(mode, 2, 3, num_layers=3, batch_first=True).double()
    assert fastnn.gradcheck(layer, leaf(rng.standard_normal((2, 4, 2))), max_checks=20)


@pytest.mark.parametrize("mode", list(MODES))
def test_gradcheck_unbatched_with_state_and_no_bias(mode, rng):
    layer = make(mode, 2, 3, num_layers=2, bias=False).double()
    assert fastnn.gradcheck(layer, leaf(rng.standard_normal((4, 2))))
    state = tuple(leaf(rng.standard_normal((2, 3))) for _ in range(2 if mode == "lstm" else 1))
    assert fastnn.gradcheck(WithState(layer), (leaf(rng.standard_normal((4, 2))),) + state)


@pytest.mark.parametrize("mode,which", [(m, w) for m in MODES for w in ("h_n", "last_output")] + [("lstm", "c_n")])
def test_gradcheck_loss_on_one_output(mode, which, rng):
    # a loss reading only h_n (or c_n, or one time step): the other outputs get no gradient
    layer = make(mode, 3, 4, num_layers=2, batch_first=True).double()

    def fn(x, *state):
        out, st = WithState(layer)(x, *state)
        h_n, c_n = split_state(mode, st)
        if which == "last_output":
            return nn.LastStep(batch_first=True)(out)
        return h_n if which == "h_n" else c_n

    for N in (2, 9):
        x = leaf(rng.standard_normal((N, 3, 3)))
        state = state_leaves(mode, 2, N, 4, rng)
        assert fastnn.gradcheck(fn, (x,) + state, max_checks=40)


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
    x = leaf(rng.standard_normal((10, 3, 3)))
    assert fastnn.gradcheck(WithState(layer), (x,) + state_leaves(mode, 2, 10, 5, rng), max_checks=30)


def test_non_contiguous_and_integer_input(rng):
    layer = nn.GRU(3, 4, batch_first=True).double()
    big = rng.standard_normal((5, 12, 6))
    x = big[:, ::2, ::2]
    out, _ = layer(x)
    np.testing.assert_allclose(out, layer(np.ascontiguousarray(x))[0])
    out_int, _ = layer(np.arange(2 * 3 * 3).reshape(2, 3, 3) % 3)
    assert out_int.dtype == np.float64 and out_int.shape == (2, 3, 4)
    time_major = nn.GRU(6, 4).double()  # a non-contiguous time-major input
    np.testing.assert_allclose(time_major(big[:, ::2])[0], time_major(np.ascontiguousarray(big[:, ::2]))[0])


@pytest.mark.parametrize("mode", list(MODES))
def test_relu_and_saturation_edge_values(mode, rng):
    # large inputs saturate the gates: the float32 tanh approximation must stay in [-1, 1]
    layer = make(mode, 3, 5)
    x = (100 * rng.standard_normal((4, 2, 3))).astype(np.float32)
    out, _ = layer(x)
    assert np.all(np.isfinite(out.data))
    if mode != "rnn_relu":
        assert np.all(np.abs(out.data) <= 1)
    want, _, _ = ref.recurrent(mode, x, layer_params(layer))
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", list(MODES))
def test_threads_agree(mode, rng, threads):
    T, N, F, H = 4, 40, 16, 64  # big enough for the parallel paths
    layer = make(mode, F, H, num_layers=2, batch_first=True)
    x = rng.standard_normal((N, T, F)).astype(np.float32)
    g = rng.standard_normal((N, T, H)).astype(np.float32)
    gh = rng.standard_normal((2, N, H)).astype(np.float32)

    def run():
        layer.zero_grad()
        xt, h0 = leaf(x), leaf(np.zeros((2, N, H), np.float32))
        out, state = WithState(layer)(xt, h0, leaf(np.zeros((2, N, H), np.float32)) if mode == "lstm" else None)
        fastnn.autograd.backward([out, split_state(mode, state)[0]], [g, gh])
        return [out.data.copy(), xt.grad.data.copy(), h0.grad.data.copy()] + \
            [p.grad.data.copy() for p in layer.parameters()]

    one, many = threads(run)
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)


def test_gradients_accumulate_and_graph_is_freed(rng):
    layer = nn.LSTM(3, 4).double()
    x = rng.standard_normal((5, 2, 3))
    g = rng.standard_normal((5, 2, 4))
    layer(x)[0].backward(g)
    first = {k: p.grad.data.copy() for k, p in layer.named_parameters()}
    out, _ = layer(x)
    out.backward(g)
    for k, p in layer.named_parameters():
        np.testing.assert_allclose(p.grad.data, 2 * first[k], rtol=1e-12)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        out.backward(g)
    layer.eval()  # eval changes nothing for a recurrent layer: gradients still flow
    layer.zero_grad()
    layer(x)[0].backward(g)
    for k, p in layer.named_parameters():
        np.testing.assert_allclose(p.grad.data, first[k], rtol=1e-12)
    with fastnn.no_grad():
        out, (h_n, c_n) = layer(leaf(x))
    assert not out.requires_grad and out.grad_fn is None and h_n.grad_fn is None and c_n.grad_fn is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        out.backward(g)


def test_retain_graph_and_autograd_grad_agree_with_backward(rng):
    layer = nn.GRU(3, 4, num_layers=2).double()
    x = leaf(rng.standard_normal((5, 2, 3)))
    g = rng.standard_normal((5, 2, 4))
    out, h_n = layer(x)
    params = list(layer.parameters())
    grads = fastnn.autograd.grad([out], [x] + params, [g], retain_graph=True)  # leaves .grad alone
    assert x.grad is None and all(p.grad is None for p in params)
    out.backward(g)
    for t, want in zip([x] + params, grads):
        np.testing.assert_allclose(t.grad.data, want.data, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("mode", list(MODES))
def test_module_called_twice_in_one_forward(mode, rng):
    # each call keeps its own saved arrays: the graph holds both, gradients add up
    layer = make(mode, 4, 4, num_layers=2, batch_first=True).double()
    x1, x2 = rng.standard_normal((3, 5, 4)), rng.standard_normal((3, 6, 4))
    g1, g2 = rng.standard_normal((3, 5, 4)), rng.standard_normal((3, 6, 4))

    def separately():
        total = {}
        for x, g in ((x1, g1), (x2, g2)):
            layer.zero_grad()
            layer(x)[0].backward(g)
            for k, p in layer.named_parameters():
                total[k] = total.get(k, 0) + p.grad.data
        return total

    want = separately()
    layer.zero_grad()
    out1, _ = layer(x1)
    out2, _ = layer(x2)
    fastnn.autograd.backward([out2, out1], [g2, g1])
    for k, p in layer.named_parameters():
        np.testing.assert_allclose(p.grad.data, want[k], rtol=1e-10, atol=1e-12, err_msg=k)
    # the layer applied to its own output (a graph through two calls of one module)
    x = leaf(x1)
    assert fastnn.gradcheck(lambda t: layer(layer(t)[0])[0], (x,), max_checks=30)


def test_outputs_survive_later_calls_and_shape_changes(rng):
    layer = nn.LSTM(3, 4, num_layers=2)
    x1 = rng.standard_normal((5, 2, 3)).astype(np.float32)
    out1, (h1, c1) = layer(x1)
    saved = [out1.data.copy(), h1.data.copy(), c1.data.copy()]
    layer(rng.standard_normal((5, 2, 3)).astype(np.float32))
    with fastnn.no_grad():
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
    layer.flatten_parameters()


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
    with pytest.raises(TypeError, match=r"RNN: input dtype float64 does not match the weights' float32"):
        nn.RNN(3, 4)(leaf(x))
    layer = nn.RNN(3, 4)
    out, _ = layer(leaf(x.astype(np.float32)))
    with pytest.raises(RuntimeError, match=r"gradient of shape \(2, 5, 4\) does not match.*\(5, 2, 4\)"):
        out.backward(np.zeros((2, 5, 4)))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="RNN: nonlinearity must be 'tanh' or 'relu'"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="LSTM: hidden_size must be a positive int"):
        nn.LSTM(3, 0)
    assert nn.GRU(3, 4, bidirectional=True).bidirectional  # tests/test_rnn_v2.py covers it
    with pytest.raises(ValueError, match="LSTM: dropout should be a number in range"):
        nn.LSTM(3, 4, num_layers=2, dropout=1.5)


def test_unbatched_input_matches_batch_of_one(rng):
    layer = nn.GRU(3, 4, num_layers=2, batch_first=True)
    x = rng.standard_normal((6, 3)).astype(np.float32)
    h0 = rng.standard_normal((2, 4)).astype(np.float32)
    out, h_n = layer(x, h0)
    out_b, h_b = layer(x[None], h0[:, None])
    assert out.shape == (6, 4) and h_n.shape == (2, 4)
    np.testing.assert_allclose(out, out_b.data[0], rtol=1e-6)
    np.testing.assert_allclose(h_n, h_b.data[:, 0], rtol=1e-6)


def test_last_step_and_sequential(rng):
    model = nn.Sequential(nn.LSTM(3, 5, batch_first=True), nn.LastStep(batch_first=True), nn.Linear(5, 2))
    model.double()
    x = rng.standard_normal((4, 6, 3))
    out = model(x)
    seq, _ = model[0](x)
    np.testing.assert_allclose(out, model[2](seq.data[:, -1]))
    assert fastnn.gradcheck(model, leaf(x))
    time_major = nn.Sequential(nn.GRU(3, 5), nn.LastStep(), nn.Linear(5, 2)).double()
    assert fastnn.gradcheck(time_major, leaf(rng.standard_normal((6, 4, 3))))
    with pytest.raises(ValueError, match=r"LastStep: expected a 3-D input \(T, N, F\)"):
        nn.LastStep()(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="LastStep: expected a non-empty input"):
        nn.LastStep(batch_first=True)(np.zeros((2, 0, 3)))


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
    out.backward(1e3 * np.ones(out.shape, np.float32))
    grads = [p.grad.data for p in layer.parameters()]
    total = np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads))
    returned = nn.utils.clip_grad_norm_(layer.parameters(), max_norm=1.0)
    assert float(returned) == pytest.approx(total, rel=1e-5)
    clipped = np.sqrt(sum(float(np.sum(p.grad.data.astype(np.float64) ** 2)) for p in layer.parameters()))
    assert clipped == pytest.approx(1.0, rel=1e-4)


def test_frozen_parameters_get_no_gradient(rng):
    # LSTM and RNN compute dW_ih and dW_hh in one product unless one of them is frozen
    for mode in MODES:
        layer = make(mode, 3, 4, num_layers=2).double()
        layer.weight_ih_l0.requires_grad_(False)
        layer.bias_hh_l1.requires_grad_(False)
        assert fastnn.gradcheck(layer, leaf(rng.standard_normal((3, 2, 3))), max_checks=20)
        layer(rng.standard_normal((3, 2, 3)))[0].sum().backward()
        assert layer.weight_ih_l0.grad is None and layer.bias_hh_l1.grad is None
        assert layer.weight_hh_l0.grad is not None


TORCH_CLASSES = {"rnn_tanh": "RNN", "rnn_relu": "RNN", "lstm": "LSTM", "gru": "GRU"}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch_first,given,N", [(False, False, 3), (True, True, 10), (False, True, 0)])
@pytest.mark.parametrize("loss_on", ["all", "state"])
def test_matches_pytorch(mode, dtype, batch_first, given, N, loss_on, rng):
    # outputs and every gradient (input, h_0, c_0, parameters); N == 0: unbatched input
    torch = pytest.importorskip("torch")
    T, F, H, L = 6, 5, 7, 2
    torch.manual_seed(0)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    tlayer = getattr(torch.nn, TORCH_CLASSES[mode])(F, H, num_layers=L, batch_first=batch_first,
                                                    **MODES[mode][1]).to(tdtype)
    layer = make(mode, F, H, num_layers=L, batch_first=batch_first, dtype=dtype)
    layer.load_state_dict({k: v.detach().numpy() for k, v in tlayer.state_dict().items()})
    x_shape = (T, F) if N == 0 else ((N, T, F) if batch_first else (T, N, F))
    x = rng.standard_normal(x_shape).astype(dtype)
    states = [s.astype(dtype) for s in rng.standard_normal((2, L, H) if N == 0 else (2, L, N, H))]
    states = states[:2 if mode == "lstm" else 1] if given else []
    txs = [torch.tensor(a, requires_grad=True) for a in [x] + states]
    fxs = [leaf(a) for a in [x] + states]
    t_out, t_state = tlayer(txs[0], (tuple(txs[1:]) if mode == "lstm" else txs[1]) if given else None)
    out, state = layer(fxs[0], (tuple(fxs[1:]) if mode == "lstm" else fxs[1]) if given else None)
    t_outs = [t_out] + (list(t_state) if mode == "lstm" else [t_state])
    outs = [out] + (list(state) if mode == "lstm" else [state])
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    for a, b in zip(outs, t_outs):
        assert a.shape == tuple(b.shape)
        np.testing.assert_allclose(a, b.detach().numpy(), **tol)
    used = slice(1, None) if loss_on == "state" else slice(None)
    grads = [rng.standard_normal(o.shape).astype(dtype) for o in outs][used]
    torch.autograd.backward(t_outs[used], [torch.tensor(g) for g in grads])
    fastnn.autograd.backward(outs[used], grads)
    for f, t in zip(fxs, txs):
        np.testing.assert_allclose(f.grad.data, t.grad.numpy(), **tol)
    for name, p in tlayer.named_parameters():
        np.testing.assert_allclose(getattr(layer, name).grad.data, p.grad.numpy(), err_msg=name, **tol)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("N", [2, 9])
def test_backward_through_final_state(mode, N, rng):
    # d/dx, d/dh_0, d/dc_0 and d/dparams of sum(out*g) + sum(h_n*gh) (+ sum(c_n*gc))
    # against central differences
    T, F, H, L = 3, 2, 3, 2
    layer = make(mode, F, H, num_layers=L, batch_first=True).double()
    x = rng.standard_normal((N, T, F))
    hx = initial_state(mode, L, N, H, rng)
    g, gh, gc = rng.standard_normal((N, T, H)), rng.standard_normal((L, N, H)), rng.standard_normal((L, N, H))
    state_arrays = list(hx) if mode == "lstm" else [hx]

    def objective():
        with fastnn.no_grad():
            out, state = layer(x, hx)
        h_n, c_n = split_state(mode, state)
        value = np.sum(out.data * g) + np.sum(h_n.data * gh)
        return value + (np.sum(c_n.data * gc) if mode == "lstm" else 0.0)

    layer.zero_grad()
    xt, states = leaf(x), [leaf(s) for s in state_arrays]
    out, state = layer(xt, tuple(states) if mode == "lstm" else states[0])
    h_n, c_n = split_state(mode, state)
    fastnn.autograd.backward([out, h_n] + ([c_n] if mode == "lstm" else []), [g, gh] + ([gc] if mode == "lstm" else []))
    checks = [(x, xt.grad.data)] + [(s, t.grad.data) for s, t in zip(state_arrays, states)]
    checks += [(p.data, p.grad.data) for p in layer.parameters()]
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
    xt = leaf(x)
    out, state = layer(xt)
    split_state(mode, state)[0].backward(gh)  # a loss on h_n alone
    assert xt.grad.shape == x.shape and np.any(xt.grad.data != 0)
    out, state = layer(x)
    with pytest.raises(RuntimeError, match=r"gradient of shape \(2, \d+\) does not match.*\(2, \d+, 3\)"):
        split_state(mode, state)[0].backward(gh[:, 0])


def test_rnn_sequence_checks_parameters(rng):
    from fastnn.ops.recurrent import rnn_sequence

    layer = nn.LSTM(3, 4)
    w_ih, w_hh, b_ih, b_hh = (getattr(layer, n) for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"))
    x = np.zeros((2, 1, 3), np.float32)
    out, h_n, c_n = rnn_sequence(x, None, None, [(w_ih, w_hh, b_ih, b_hh)], "lstm", op="LSTM")
    np.testing.assert_array_equal(out, layer(x)[0])
    with pytest.raises(ValueError, match=r"LSTM: expected weight_hh_l0 of shape \(16, 4\)"):
        rnn_sequence(x, None, None, [(w_ih, w_ih, b_ih, b_hh)], "lstm", op="LSTM")
    with pytest.raises(ValueError, match="one bias"):
        rnn_sequence(x, None, None, [(w_ih, w_hh, b_ih, None)], "lstm")
    with pytest.raises(ValueError, match="mode must be one of"):
        rnn_sequence(x, None, None, [(w_ih, w_hh, b_ih, b_hh)], "elman")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("K,C", [(1, 1), (7, 40), (33, 130), (16, 257)])
def test_recurrent_product_rows_one_by_one_give_the_panel_bits(dtype, K, C, rng):
    # A few rows go through micro_row one by one (ROW_PANELS panels at a time, then
    # single panels), more in padded MR-row panels: the same sums in the same order, so
    # a sequence's result does not depend on the batch around it.
    from fastnn.kernels import recurrent_product as rp
    w = rng.standard_normal((C, K)).astype(dtype)
    bp = np.zeros(rp.panel_shape(K, C, dtype), dtype)
    rp.pack_panels(bp, w, True)
    Cp = bp.shape[0] * bp.shape[2]
    a = rng.standard_normal((rp.MR + 2, K)).astype(dtype)
    ap = np.zeros(rp.MR * K, dtype)
    panel = np.zeros(rp.MR * Cp, dtype)
    rp.pack_rows(ap, a, 1, rp.MR)
    rp.times_packed(panel, ap, bp, rp.MR, False)
    panel = panel.reshape(rp.MR, Cp)[:, :C]
    np.testing.assert_allclose(panel, a[1:rp.MR + 1] @ w.T, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-4 if dtype == np.float32 else 1e-12)
    for rows in range(1, rp.ROWS_ALONE + 2):
        out = np.full(rp.MR * Cp, 7, dtype)  # (room for rows rounded up to a panel)
        rp.times_packed_rows(out, ap, a, 1, rows, bp, False)
        np.testing.assert_array_equal(out.reshape(rp.MR, Cp)[:rows, :C], panel[:rows])
        rp.times_packed_rows(out, ap, a, 1, rows, bp, True)  # accumulate
        np.testing.assert_array_equal(out.reshape(rp.MR, Cp)[:rows, :C], panel[:rows] + panel[:rows])
