"""RNN, LSTM, GRU: bidirectional layers, dropout between layers and LSTM's proj_size.
Float64 gradient checks, PyTorch cross-checks of outputs and every gradient (PyTorch's
state_dict loaded), dropout masks against a manual composition, bad input, save/load."""
import numpy as np
import pytest

import fastnn
from fastnn import nn

MODES = {"rnn_tanh": (nn.RNN, {}), "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}),
         "lstm": (nn.LSTM, {}), "gru": (nn.GRU, {})}
TORCH_CLASSES = {"rnn_tanh": "RNN", "rnn_relu": "RNN", "lstm": "LSTM", "gru": "GRU"}


def make(mode, *args, **kwargs):
    cls, extra = MODES[mode]
    return cls(*args, **extra, **kwargs)


def leaf(array):
    return fastnn.tensor(np.asarray(array), requires_grad=True)


class WithState(nn.Module):
    """``layer(x, hx)`` with h_0 (and c_0) as separate tensor arguments; reseeds fastnn's
    generator first, so every call draws the same dropout masks."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x, h0=None, c0=None):
        fastnn.manual_seed(5)
        if h0 is None:
            return self.layer(x)
        return self.layer(x, (h0, c0) if c0 is not None else h0)


def states(mode, shape_h, shape_c, rng):
    h0 = leaf(rng.standard_normal(shape_h))
    return (h0, leaf(rng.standard_normal(shape_c))) if mode == "lstm" else (h0,)


@pytest.mark.parametrize("mode", list(MODES))
def test_gradcheck_bidirectional_two_layers(mode, rng):
    layer = make(mode, 2, 3, num_layers=2, bidirectional=True, batch_first=True).double()
    x = leaf(rng.standard_normal((2, 4, 2)))
    assert fastnn.gradcheck(WithState(layer), (x,) + states(mode, (4, 2, 3), (4, 2, 3), rng), max_checks=30)
    assert fastnn.gradcheck(layer, leaf(rng.standard_normal((3, 2))), max_checks=20)  # unbatched


@pytest.mark.parametrize("mode", ["gru", "lstm"])
def test_gradcheck_dropout_between_layers(mode, rng):
    # the masks are drawn from fastnn's generator: WithState reseeds it per call
    layer = make(mode, 2, 3, num_layers=3, dropout=0.4, bidirectional=mode == "gru").double()
    x = leaf(rng.standard_normal((4, 2, 2)))
    assert fastnn.gradcheck(WithState(layer), (x,), max_checks=30)


def test_gradcheck_proj_size(rng):
    layer = nn.LSTM(2, 4, num_layers=2, proj_size=2, bidirectional=True, batch_first=True).double()
    x = leaf(rng.standard_normal((3, 4, 2)))
    assert fastnn.gradcheck(WithState(layer), (x,) + states("lstm", (4, 3, 2), (4, 3, 4), rng), max_checks=30)
    one = nn.LSTM(2, 3, proj_size=1).double()
    assert fastnn.gradcheck(WithState(one), (leaf(rng.standard_normal((3, 2))),)
                            + states("lstm", (1, 1), (1, 3), rng), max_checks=30)


def _single(layer, k, d, input_size, **kwargs):
    """A one-layer, one-direction module holding ``layer``'s layer k, direction d."""
    sfx = f"_l{k}" + ("_reverse" if d else "")
    one = type(layer)(input_size, layer.hidden_size, bias=layer.bias, dtype=np.float64, **kwargs)
    one.load_state_dict({n: getattr(layer, n.replace("_l0", sfx)).data for n in one.state_dict()})
    return one


@pytest.mark.parametrize("batch_first", [False, True])
def test_dropout_matches_manual_composition(batch_first, rng):
    # GRU(2 layers, dropout) == layer 0, F.dropout (same generator state), layer 1:
    # outputs and every gradient
    layer = nn.GRU(3, 4, num_layers=2, dropout=0.5, batch_first=batch_first, dtype=np.float64)
    first, second = _single(layer, 0, 0, 3, batch_first=batch_first), _single(layer, 1, 0, 4, batch_first=batch_first)
    x = rng.standard_normal((2, 5, 3) if batch_first else (5, 2, 3))
    g = rng.standard_normal((2, 5, 4) if batch_first else (5, 2, 4))
    fastnn.manual_seed(3)
    xa = leaf(x)
    out, h_n = layer(xa)
    (out * g).sum().backward()
    fastnn.manual_seed(3)
    xb = leaf(x)
    mid, h0 = first(xb)
    out2, h1 = second(nn.functional.dropout(mid, 0.5))
    (out2 * g).sum().backward()
    np.testing.assert_allclose(out.data, out2.data, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h_n.data, np.concatenate([h0.data, h1.data]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(xa.grad.data, xb.grad.data, rtol=1e-12, atol=1e-12)
    for k, part in ((0, first), (1, second)):
        for name, p in part.named_parameters():
            np.testing.assert_allclose(getattr(layer, name.replace("_l0", f"_l{k}")).grad.data, p.grad.data,
                                       rtol=1e-12, atol=1e-12, err_msg=name)
    layer.eval()  # no dropout in eval mode: deterministic
    np.testing.assert_array_equal(layer(x)[0].data, layer(x)[0].data)


def test_bidirectional_is_two_directions(rng):
    # bidirectional LSTM == forward layer beside a layer run on the reversed sequence
    layer = nn.LSTM(3, 4, bidirectional=True, dtype=np.float64)
    fwd, bwd = _single(layer, 0, 0, 3), _single(layer, 0, 1, 3)
    x = rng.standard_normal((5, 2, 3))
    out, (h_n, c_n) = layer(x)
    out_f, (h_f, c_f) = fwd(x)
    out_b, (h_b, c_b) = bwd(x[::-1].copy())
    np.testing.assert_allclose(out.data, np.concatenate([out_f.data, out_b.data[::-1]], axis=2), rtol=1e-13)
    np.testing.assert_allclose(h_n.data, np.concatenate([h_f.data, h_b.data]), rtol=1e-13)
    np.testing.assert_allclose(c_n.data, np.concatenate([c_f.data, c_b.data]), rtol=1e-13)


CASES = [  # mode, layers, bidirectional, proj_size, batch_first, N (0: unbatched), dtype, dropout 1 in training
    ("rnn_tanh", 2, True, 0, False, 3, np.float64, False),
    ("rnn_relu", 2, True, 0, True, 9, np.float32, False),
    ("gru", 2, True, 0, True, 0, np.float64, False),
    ("gru", 3, False, 0, False, 10, np.float32, True),
    ("lstm", 2, True, 0, False, 2, np.float32, False),
    ("lstm", 2, True, 3, True, 9, np.float64, False),
    ("lstm", 2, False, 2, False, 0, np.float64, True),
    ("lstm", 1, True, 4, True, 3, np.float32, False),
]


@pytest.mark.parametrize("mode,L,bidir,proj,batch_first,N,dtype,drop_all", CASES)
def test_matches_pytorch(mode, L, bidir, proj, batch_first, N, dtype, drop_all, rng):
    # outputs and every gradient (input, h_0, c_0, parameters) against PyTorch;
    # dropout=1 in training mode is deterministic in both
    torch = pytest.importorskip("torch")
    T, F, H, D = 5, 3, 6, 2 if bidir else 1
    P = proj or H
    kw = dict(num_layers=L, batch_first=batch_first, bidirectional=bidir, dropout=1.0 if drop_all else 0.0)
    if proj:
        kw["proj_size"] = proj
    torch.manual_seed(0)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    tlayer = getattr(torch.nn, TORCH_CLASSES[mode])(F, H, **MODES[mode][1], **kw).to(tdtype)
    layer = make(mode, F, H, dtype=dtype, **kw)
    layer.load_state_dict({k: v.detach().numpy() for k, v in tlayer.state_dict().items()})
    assert list(layer.state_dict()) == list(tlayer.state_dict())
    x_shape = (T, F) if N == 0 else ((N, T, F) if batch_first else (T, N, F))
    lead = (L * D,) if N == 0 else (L * D, N)
    arrays = [rng.standard_normal(x_shape), rng.standard_normal(lead + (P,))]
    arrays += [rng.standard_normal(lead + (H,))] if mode == "lstm" else []
    arrays = [a.astype(dtype) for a in arrays]
    txs = [torch.tensor(a, requires_grad=True) for a in arrays]
    fxs = [leaf(a) for a in arrays]
    t_out, t_state = tlayer(txs[0], tuple(txs[1:]) if mode == "lstm" else txs[1])
    out, state = layer(fxs[0], tuple(fxs[1:]) if mode == "lstm" else fxs[1])
    t_outs = [t_out] + (list(t_state) if mode == "lstm" else [t_state])
    outs = [out] + (list(state) if mode == "lstm" else [state])
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    for a, b in zip(outs, t_outs):
        assert a.shape == tuple(b.shape)
        np.testing.assert_allclose(a.data, b.detach().numpy(), **tol)
    grads = [rng.standard_normal(o.shape).astype(dtype) for o in outs]
    torch.autograd.backward(t_outs, [torch.tensor(g) for g in grads])
    fastnn.autograd.backward(outs, grads)
    for f, t in zip(fxs, txs):
        np.testing.assert_allclose(f.grad.data, t.grad.numpy(), **tol)
    for name, p in tlayer.named_parameters():
        np.testing.assert_allclose(getattr(layer, name).grad.data, p.grad.numpy(), err_msg=name, **tol)


def test_parameters_repr_and_save_load(tmp_path, rng):
    layer = nn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2, dropout=0.25, batch_first=True)
    keys = list(layer.state_dict())
    assert keys[:10] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_hr_l0",
                         "weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse",
                         "bias_hh_l0_reverse", "weight_hr_l0_reverse"]
    assert layer.weight_ih_l1.shape == (20, 4) and layer.weight_hh_l1_reverse.shape == (20, 2)
    assert layer.weight_hr_l1.shape == (2, 5)
    assert repr(layer) == "LSTM(3, 5, proj_size=2, num_layers=2, batch_first=True, dropout=0.25, bidirectional=True)"
    gru = nn.GRU(3, 4, num_layers=2, bidirectional=True, dropout=0.5, batch_first=True)
    for m in (layer, nn.RNN(3, 4, nonlinearity="relu", bidirectional=True), gru):
        path = tmp_path / "rnn.fnn"
        m.eval()
        fastnn.save(m, path)
        loaded = fastnn.load(path)
        loaded.eval()
        assert repr(loaded) == repr(m)
        x = rng.standard_normal((2, 4, 3)).astype(np.float32)
        np.testing.assert_array_equal(loaded(x)[0].data, m(x)[0].data)


def test_bad_arguments_and_states():
    with pytest.raises(ValueError, match=r"LSTM: dropout should be a number in range \[0, 1\]"):
        nn.LSTM(3, 4, num_layers=2, dropout=1.5)
    with pytest.warns(UserWarning, match="num_layers=1"):
        nn.GRU(3, 4, dropout=0.5)
    with pytest.raises(ValueError, match=r"LSTM: proj_size \(4\) has to be smaller than hidden_size \(4\)"):
        nn.LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="LSTM: proj_size must be a non-negative int"):
        nn.LSTM(3, 4, proj_size=-1)
    x = np.zeros((5, 2, 3), np.float32)
    with pytest.raises(ValueError, match=r"GRU: expected h_0 of shape \(4, 2, 4\), got \(2, 2, 4\)"):
        nn.GRU(3, 4, num_layers=2, bidirectional=True)(x, np.zeros((2, 2, 4)))
    with pytest.raises(ValueError, match=r"LSTM: expected h_0 of shape \(2, 2, 2\), got \(2, 2, 4\)"):
        nn.LSTM(3, 4, proj_size=2, bidirectional=True)(x, (np.zeros((2, 2, 4)), np.zeros((2, 2, 4))))
    with pytest.raises(ValueError, match=r"LSTM: expected c_0 of shape \(2, 2, 4\), got \(2, 2, 2\)"):
        nn.LSTM(3, 4, proj_size=2, bidirectional=True)(x, (np.zeros((2, 2, 2)), np.zeros((2, 2, 2))))
    with pytest.raises(ValueError, match=r"RNN: expected input of shape \(T, N, 5\)"):
        nn.RNN(5, 4, bidirectional=True)(x)
    layer = nn.GRU(3, 4, num_layers=2, bidirectional=True)
    layer.weight_ih_l1_reverse = nn.Parameter(np.zeros((12, 4), np.float32))
    with pytest.raises(ValueError, match=r"GRU: expected weight_ih_l1_reverse of shape \(12, 8\)"):
        layer(x)
