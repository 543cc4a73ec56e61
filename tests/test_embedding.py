"""Embedding: lookup and scatter-add gradient against the references, padding_idx,
repeated indices across threads, bad indices, and PyTorch."""
import numpy as np
import pytest

import fastnn
from fastnn import nn

import reference as ref


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (3, 5), (2, 3, 4), ()])
def test_forward_and_backward_match_reference(dtype, shape, rng):
    layer = nn.Embedding(7, 5, dtype=dtype)
    idx = rng.integers(0, 7, size=shape)
    out = layer(idx)
    assert out.shape == shape + (5,) and out.dtype == dtype
    np.testing.assert_array_equal(out, ref.embedding(idx, layer.weight.data))
    g = rng.standard_normal(out.shape).astype(dtype)
    assert layer.backward(g) is None
    np.testing.assert_allclose(layer.weight.grad, ref.embedding_grad(idx, g, 7), rtol=1e-6, atol=1e-6)


def test_init_padding_and_accumulation(rng):
    layer = nn.Embedding(1000, 16, padding_idx=-1)
    assert layer.padding_idx == 999 and np.all(layer.weight.data[999] == 0)
    assert abs(layer.weight.data.std() - 1) < 0.05 and abs(layer.weight.data.mean()) < 0.05
    idx = np.array([[999, 3, 3], [0, 999, 3]])
    g = rng.standard_normal((2, 3, 16)).astype(np.float32)
    layer(idx)
    layer.backward(g)
    want = ref.embedding_grad(idx, g, 1000, padding_idx=999)
    np.testing.assert_allclose(layer.weight.grad, want, rtol=1e-6)
    assert np.all(layer.weight.grad[999] == 0)
    layer(idx)
    layer.backward(g)
    np.testing.assert_allclose(layer.weight.grad, 2 * want, rtol=1e-6)


def test_repeated_indices_agree_across_threads(rng, threads):
    # many indices hit the same few rows: the scatter-add must not race
    layer = nn.Embedding(50, 64)
    idx = rng.integers(0, 5, size=(400, 8))
    g = rng.standard_normal((400, 8, 64)).astype(np.float32)

    def run():
        layer.zero_grad()
        out = layer(idx)
        layer.backward(g)
        return out.copy(), layer.weight.grad.copy()

    (out1, grad1), (outn, gradn) = threads(run)
    np.testing.assert_array_equal(out1, outn)
    np.testing.assert_array_equal(grad1, gradn)
    np.testing.assert_allclose(grad1, ref.embedding_grad(idx, g, 50), rtol=1e-4, atol=1e-4)


def test_bad_indices():
    layer = nn.Embedding(10, 3)
    with pytest.raises(ValueError, match=r"Embedding: indices must be in \[0, 10\).*\[0, 10\].*shape \(2,\)"):
        layer(np.array([0, 10]))
    with pytest.raises(ValueError, match=r"Embedding: indices must be in \[0, 10\).*\[-1, 2\]"):
        layer(np.array([[2, -1]]))
    with pytest.raises(TypeError, match="Embedding: indices must be an integer array, got dtype float64"):
        layer(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="Embedding: padding_idx must be an int"):
        nn.Embedding(10, 3, padding_idx=10)
    layer(np.array([1, 2]))
    with pytest.raises(ValueError, match=r"Embedding.backward: expected grad_output of shape \(2, 3\)"):
        layer.backward(np.zeros((3, 3)))


def test_from_pretrained_and_sequence_model(rng, tmp_path):
    table = rng.standard_normal((6, 4))
    frozen = nn.Embedding.from_pretrained(table)
    np.testing.assert_array_equal(frozen(np.array([5, 0])), table[[5, 0]])
    frozen.backward(np.ones((2, 4)))
    assert frozen.weight.grad is None
    model = nn.Sequential(nn.Embedding(20, 4), nn.GRU(4, 6, batch_first=True), nn.LastStep(batch_first=True),
                          nn.Linear(6, 3))
    idx = rng.integers(0, 20, size=(5, 7))
    out = model(idx)
    assert out.shape == (5, 3)
    model.backward(np.ones_like(out))
    assert model[0].weight.grad.shape == (20, 4)
    fastnn.save(model, tmp_path / "m.fnn")
    np.testing.assert_array_equal(fastnn.load(tmp_path / "m.fnn")(idx), out)


def test_embedding_then_lstm_matches_pytorch(rng):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    t_emb, t_lstm = torch.nn.Embedding(30, 8, padding_idx=0), torch.nn.LSTM(8, 5, batch_first=True)
    emb, lstm = nn.Embedding(30, 8, padding_idx=0), nn.LSTM(8, 5, batch_first=True)
    emb.load_state_dict({k: v.detach().numpy() for k, v in t_emb.state_dict().items()})
    lstm.load_state_dict({k: v.detach().numpy() for k, v in t_lstm.state_dict().items()})
    idx = rng.integers(0, 30, size=(4, 9))
    idx[:, -2:] = 0
    t_out, _ = t_lstm(t_emb(torch.tensor(idx)))
    out, _ = lstm(emb(idx))
    np.testing.assert_allclose(out, t_out.detach().numpy(), rtol=1e-4, atol=1e-5)
    g = rng.standard_normal(out.shape).astype(np.float32)
    t_out.backward(torch.tensor(g))
    emb.backward(lstm.backward(g))
    np.testing.assert_allclose(emb.weight.grad, t_emb.weight.grad.numpy(), rtol=1e-4, atol=1e-5)
