"""RNNCell, LSTMCell, GRUCell: float64 gradient checks (with and without hx,
unbatched, several steps), PyTorch cross-checks of outputs and every gradient,
agreement with the sequence layers, bad input, save/load."""
import numpy as np
import pytest

import fastnn
from fastnn import nn

CELLS = {"rnn_tanh": (nn.RNNCell, {}), "rnn_relu": (nn.RNNCell, {"nonlinearity": "relu"}),
         "lstm": (nn.LSTMCell, {}), "gru": (nn.GRUCell, {})}
LAYERS = {"rnn_tanh": (nn.RNN, {}), "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}),
          "lstm": (nn.LSTM, {}), "gru": (nn.GRU, {})}


def make(mode, *args, **kwargs):
    cls, extra = CELLS[mode]
    return cls(*args, **extra, **kwargs)


def leaf(array):
    return fastnn.tensor(np.asarray(array), requires_grad=True)


class Steps(nn.Module):
    """Runs ``cell`` over x[0], x[1], ... from (h, c); returns the last state."""

    def __init__(self, cell):
        super().__init__()
        self.cell = cell

    def forward(self, x, h=None, c=None):
        state = None if h is None else ((h, c) if c is not None else h)
        for t in range(x.shape[0]):
            state = self.cell(x[t], state)
        return state


def state_leaves(mode, shape, rng):
    h = leaf(rng.standard_normal(shape))
    return (h, leaf(rng.standard_normal(shape))) if mode == "lstm" else (h,)


@pytest.mark.parametrize("mode", list(CELLS))
def test_gradcheck(mode, rng):
    cell = make(mode, 3, 4).double()
    one = Steps(cell)
    x = leaf(rng.standard_normal((1, 2, 3)))
    assert fastnn.gradcheck(one, (x,))  # no hx
    assert fastnn.gradcheck(one, (x,) + state_leaves(mode, (2, 4), rng))
    assert fastnn.gradcheck(one, (leaf(rng.standard_normal((1, 3))),) + state_leaves(mode, (4,), rng))  # unbatched
    # three steps, a batch of one full panel (the packed product) and no bias
    steps = Steps(make(mode, 2, 3, bias=False).double())
    assert fastnn.gradcheck(steps, (leaf(rng.standard_normal((3, 9, 2))),) + state_leaves(mode, (9, 3), rng),
                            max_checks=40)


@pytest.mark.parametrize("mode", list(CELLS))
@pytest.mark.parametrize("dtype,N,given,bias", [(np.float64, 3, True, True), (np.float32, 9, False, True),
                                                (np.float64, 0, True, False)])
def test_matches_pytorch(mode, dtype, N, given, bias, rng):
    torch = pytest.importorskip("torch")
    F, H, T = 5, 6, 3
    torch.manual_seed(0)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    tcell = getattr(torch.nn, CELLS[mode][0].__name__)(F, H, bias=bias, **CELLS[mode][1]).to(tdtype)
    cell = make(mode, F, H, bias=bias, dtype=dtype)
    cell.load_state_dict({k: v.detach().numpy() for k, v in tcell.state_dict().items()})
    assert list(cell.state_dict()) == list(tcell.state_dict())
    lead = () if N == 0 else (N,)
    arrays = [rng.standard_normal((T,) + lead + (F,)).astype(dtype)]
    arrays += [rng.standard_normal(lead + (H,)).astype(dtype) for _ in range(2 if mode == "lstm" else 1)] if given else []
    txs = [torch.tensor(a, requires_grad=True) for a in arrays]
    fxs = [leaf(a) for a in arrays]
    t_state = (tuple(txs[1:]) if mode == "lstm" else txs[1]) if given else None
    state = (tuple(fxs[1:]) if mode == "lstm" else fxs[1]) if given else None
    t_outs, outs = [], []
    for t in range(T):  # a loss on every step's state
        t_state, state = tcell(txs[0][t], t_state), cell(fxs[0][t], state)
        t_outs += list(t_state) if mode == "lstm" else [t_state]
        outs += list(state) if mode == "lstm" else [state]
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    for a, b in zip(outs, t_outs):
        assert a.shape == tuple(b.shape)
        np.testing.assert_allclose(a.data, b.detach().numpy(), **tol)
    grads = [rng.standard_normal(o.shape).astype(dtype) for o in outs]
    torch.autograd.backward(t_outs, [torch.tensor(g) for g in grads])
    fastnn.autograd.backward(outs, grads)
    for f, t in zip(fxs, txs):
        np.testing.assert_allclose(f.grad.data, t.grad.numpy(), **tol)
    for name, p in tcell.named_parameters():
        np.testing.assert_allclose(getattr(cell, name).grad.data, p.grad.numpy(), err_msg=name, **tol)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_cell_loop_equals_layer(mode, rng):
    cell = make(mode, 3, 4)
    cls, extra = LAYERS[mode]
    layer = cls(3, 4, **extra)
    layer.load_state_dict({f"{k}_l0": v.data for k, v in cell.state_dict().items()})
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    out, state = layer(x)
    last = Steps(cell)(fastnn.tensor(x))
    if mode == "lstm":
        np.testing.assert_allclose(last[0].data, state[0].data[0], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(last[1].data, state[1].data[0], rtol=1e-6, atol=1e-7)
    else:
        np.testing.assert_allclose(last.data, state.data[0], rtol=1e-6, atol=1e-7)


def test_no_grad_and_repeated_calls(rng):
    cell = nn.LSTMCell(3, 4)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    with fastnn.no_grad():
        h, c = cell(x)
    assert h.grad_fn is None and h.shape == (2, 4) and c.shape == (2, 4)
    h2, c2 = cell(x)
    np.testing.assert_array_equal(h.data, h2.data)  # outputs are not overwritten by later calls
    assert h2.grad_fn is not None and h2.grad_fn.name() == "LstmCellBackward0"
    c2.sum().backward()  # a loss on c alone
    assert cell.weight_hh.grad is not None


def test_bad_input_and_arguments():
    with pytest.raises(ValueError, match="RNNCell: nonlinearity must be 'tanh' or 'relu'"):
        nn.RNNCell(3, 4, nonlinearity="gelu")
    with pytest.raises(ValueError, match="GRUCell: hidden_size must be a positive int"):
        nn.GRUCell(3, 0)
    with pytest.raises(ValueError, match=r"GRUCell: expected input of shape \(N, 3\) or \(3,\), got \(2, 4\)"):
        nn.GRUCell(3, 4)(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"RNNCell: expected input of shape .*got \(2, 2, 3\)"):
        nn.RNNCell(3, 4)(np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match=r"RNNCell: expected hx of shape \(2, 4\), got \(3, 4\)"):
        nn.RNNCell(3, 4)(np.zeros((2, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"LSTMCell: expected cx of shape \(4,\), got \(2, 4\)"):
        nn.LSTMCell(3, 4)(np.zeros(3), (np.zeros(4), np.zeros((2, 4))))
    with pytest.raises(TypeError, match=r"LSTMCell: hx must be a tuple \(h, c\)"):
        nn.LSTMCell(3, 4)(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(TypeError, match="GRUCell: hx must be an array"):
        nn.GRUCell(3, 4)(np.zeros((2, 3)), (np.zeros((2, 4)),))
    with pytest.raises(TypeError, match="GRUCell: input dtype float64 does not match"):
        nn.GRUCell(3, 4)(leaf(np.zeros((2, 3))))


def test_parameters_repr_and_save_load(tmp_path, rng):
    cell = nn.LSTMCell(3, 5)
    assert {k: v.shape for k, v in cell.state_dict().items()} == {
        "weight_ih": (20, 3), "weight_hh": (20, 5), "bias_ih": (20,), "bias_hh": (20,)}
    assert list(nn.GRUCell(3, 4, bias=False).state_dict()) == ["weight_ih", "weight_hh"]
    assert repr(nn.RNNCell(3, 4, bias=False, nonlinearity="relu")) == "RNNCell(3, 4, bias=False, nonlinearity='relu')"
    bound = 1 / np.sqrt(5)
    assert all(np.all(np.abs(p.data) <= bound) for p in cell.parameters())
    for m in (cell, nn.RNNCell(3, 4, nonlinearity="relu"), nn.GRUCell(3, 4, bias=False)):
        path = tmp_path / "cell.fnn"
        fastnn.save(m, path)
        loaded = fastnn.load(path)
        assert repr(loaded) == repr(m)
        x = rng.standard_normal((2, 3)).astype(np.float32)
        a, b = loaded(x), m(x)
        a, b = (a[0], b[0]) if isinstance(a, tuple) else (a, b)
        np.testing.assert_array_equal(a.data, b.data)
