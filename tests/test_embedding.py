"""Embedding and F.embedding: lookup and scatter-add gradient against the references,
padding_idx, repeated indices across threads, tied use, bad indices, and PyTorch."""
import numpy as np
import pytest

import fastnn
import fastnn.nn.functional as F
from fastnn import nn

import reference as ref


def leaf(array):
    return fastnn.tensor(np.asarray(array), requires_grad=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (3, 5), (2, 3, 4), ()])
def test_forward_and_backward_match_reference(dtype, shape, rng):
    layer = nn.Embedding(7, 5, dtype=dtype)
    idx = rng.integers(0, 7, size=shape)
    out = layer(idx)
    assert isinstance(out, fastnn.Tensor) and out.shape == shape + (5,) and out.dtype == dtype
    np.testing.assert_array_equal(out, ref.embedding(idx, layer.weight.data))
    g = rng.standard_normal(out.shape).astype(dtype)
    out.backward(g)
    np.testing.assert_allclose(layer.weight.grad.data, ref.embedding_grad(idx, g, 7), rtol=1e-6, atol=1e-6)
    assert layer(fastnn.tensor(idx)).shape == shape + (5,)  # an integer Tensor of indices


def test_init_padding_and_accumulation(rng):
    layer = nn.Embedding(1000, 16, padding_idx=-1)
    assert layer.padding_idx == 999 and np.all(layer.weight.data[999] == 0)
    assert abs(layer.weight.data.std() - 1) < 0.05 and abs(layer.weight.data.mean()) < 0.05
    idx = np.array([[999, 3, 3], [0, 999, 3]])
    g = rng.standard_normal((2, 3, 16)).astype(np.float32)
    layer(idx).backward(g)
    want = ref.embedding_grad(idx, g, 1000, padding_idx=999)
    np.testing.assert_allclose(layer.weight.grad.data, want, rtol=1e-6)
    assert np.all(layer.weight.grad.data[999] == 0)
    layer(idx).backward(g)
    np.testing.assert_allclose(layer.weight.grad.data, 2 * want, rtol=1e-6)


def test_used_twice_in_one_forward_and_gradcheck(rng):
    # tied use (two lookups in one graph) adds both scatters; gradcheck with a padding row
    # (3) that no index uses: a used padding row has no gradient but does change the output
    layer = nn.Embedding(6, 3).double()
    a, b = np.array([[1, 2, 2], [5, 1, 0]]), np.array([2, 2, 4])
    ga, gb = rng.standard_normal((2, 3, 3)), rng.standard_normal((3, 3))
    fastnn.autograd.backward([layer(a), layer(b)], [ga, gb])
    want = ref.embedding_grad(a, ga, 6) + ref.embedding_grad(b, gb, 6)
    np.testing.assert_allclose(layer.weight.grad.data, want, rtol=1e-12)
    assert fastnn.gradcheck(lambda w: F.embedding(a, w, padding_idx=-3), (leaf(rng.standard_normal((6, 3))),))
    assert fastnn.gradcheck(layer, (a,))
    with fastnn.no_grad():
        assert layer(a).grad_fn is None


def test_repeated_indices_agree_across_threads(rng, threads):
    # many indices hit the same few rows: the scatter-add must not race
    layer = nn.Embedding(50, 64)
    idx = rng.integers(0, 5, size=(400, 8))
    g = rng.standard_normal((400, 8, 64)).astype(np.float32)

    def run():
        layer.zero_grad()
        out = layer(idx)
        out.backward(g)
        return out.data.copy(), layer.weight.grad.data.copy()

    (out1, grad1), (outn, gradn) = threads(run)
    np.testing.assert_array_equal(out1, outn)
    np.testing.assert_array_equal(grad1, gradn)
    np.testing.assert_allclose(grad1, ref.embedding_grad(idx, g, 50), rtol=1e-4, atol=1e-4)


def test_bad_indices_and_arguments():
    layer = nn.Embedding(10, 3)
    for error in (ValueError, IndexError):  # IndexError as in PyTorch, ValueError as before
        with pytest.raises(error, match=r"Embedding: indices must be in \[0, 10\).*\[0, 10\].*shape \(2,\)"):
            layer(np.array([0, 10]))
    with pytest.raises(ValueError, match=r"Embedding: indices must be in \[0, 10\).*\[-1, 2\]"):
        layer(np.array([[2, -1]]))
    with pytest.raises(TypeError, match="Embedding: indices must be an integer array, got dtype float64"):
        layer(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="Embedding: padding_idx must be an int"):
        nn.Embedding(10, 3, padding_idx=10)
    with pytest.raises(IndexError, match=r"embedding: indices must be in \[0, 4\)"):
        F.embedding(np.array([4]), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"embedding: expected a 2-D float weight.*\(4,\)"):
        F.embedding(np.array([1]), np.zeros(4))
    for kwargs in ({"max_norm": 1.0}, {"scale_grad_by_freq": True}, {"sparse": True}):
        with pytest.raises(NotImplementedError, match="embedding"):
            F.embedding(np.array([1]), np.zeros((4, 2)), **kwargs)
    with pytest.raises(NotImplementedError, match="Embedding"):
        nn.Embedding(4, 2, max_norm=1.0)
    out = layer(np.array([1, 2]))
    with pytest.raises(RuntimeError, match=r"gradient of shape \(3, 3\) does not match.*\(2, 3\)"):
        out.backward(np.zeros((3, 3)))


def test_from_pretrained_and_sequence_model(rng, tmp_path):
    table = rng.standard_normal((6, 4))
    frozen = nn.Embedding.from_pretrained(table)
    out = frozen(np.array([5, 0]))
    np.testing.assert_array_equal(out, table[[5, 0]])
    assert not out.requires_grad and frozen.weight.grad is None and not frozen.weight.requires_grad
    table[0] = 7  # from_pretrained copies
    assert np.all(frozen.weight.data[0] != 7)
    trainable = nn.Embedding.from_pretrained(fastnn.tensor(table), freeze=False, padding_idx=0)
    assert trainable.weight.requires_grad and np.all(trainable.weight.data[0] == 7)  # not zeroed, as PyTorch
    model = nn.Sequential(nn.Embedding(20, 4), nn.GRU(4, 6, batch_first=True), nn.LastStep(batch_first=True),
                          nn.Linear(6, 3))
    idx = rng.integers(0, 20, size=(5, 7))
    out = model(idx)
    assert out.shape == (5, 3)
    out.backward(np.ones(out.shape, np.float32))
    assert model[0].weight.grad.shape == (20, 4) and np.any(model[0].weight.grad.data != 0)
    fastnn.save(model, tmp_path / "m.fnn")
    np.testing.assert_array_equal(fastnn.load(tmp_path / "m.fnn")(idx), out.data)


def test_embedding_then_lstm_matches_pytorch(rng):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    t_emb, t_lstm = torch.nn.Embedding(30, 8, padding_idx=0), torch.nn.LSTM(8, 5, batch_first=True)
    emb, lstm = nn.Embedding(30, 8, padding_idx=0), nn.LSTM(8, 5, batch_first=True)
    emb.load_state_dict({k: v.detach().numpy() for k, v in t_emb.state_dict().items()})
    lstm.load_state_dict({k: v.detach().numpy() for k, v in t_lstm.state_dict().items()})
    idx = rng.integers(0, 30, size=(4, 9))
    idx[:, -2:] = 0
    t_out, (t_h, _) = t_lstm(t_emb(torch.tensor(idx)))
    out, (h_n, _) = lstm(emb(idx))
    np.testing.assert_allclose(out, t_out.detach().numpy(), rtol=1e-4, atol=1e-5)
    g, gh = rng.standard_normal(out.shape).astype(np.float32), rng.standard_normal(h_n.shape).astype(np.float32)
    torch.autograd.backward([t_out, t_h], [torch.tensor(g), torch.tensor(gh)])
    fastnn.autograd.backward([out, h_n], [g, gh])
    np.testing.assert_allclose(emb.weight.grad.data, t_emb.weight.grad.numpy(), rtol=1e-4, atol=1e-5)
    for name, p in t_lstm.named_parameters():
        np.testing.assert_allclose(getattr(lstm, name).grad.data, p.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_functional_matches_pytorch(rng):
    torch = pytest.importorskip("torch")
    weight = rng.standard_normal((9, 4))
    idx = np.array([[3, 3, -0, 8], [8, 1, 3, 3]])
    g = rng.standard_normal((2, 4, 4))
    tw = torch.tensor(weight, requires_grad=True)
    torch.nn.functional.embedding(torch.tensor(idx), tw, padding_idx=-1).backward(torch.tensor(g))
    w = leaf(weight)
    out = F.embedding(idx, w, padding_idx=-1)
    out.backward(g)
    np.testing.assert_array_equal(out, weight[idx])
    np.testing.assert_allclose(w.grad.data, tw.grad.numpy(), rtol=1e-12)
    assert np.all(w.grad.data[8] == 0)
