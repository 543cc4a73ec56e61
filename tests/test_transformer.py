"""MultiheadAttention and the Transformer layers: PyTorch cross-checks (PyTorch's
weights loaded, outputs and every gradient compared), a float64 gradient check,
save/load, and bad input."""
import numpy as np
import pytest

import fastnn
from fastnn import nn


def data(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def leaf(x):
    return fastnn.tensor(x, requires_grad=True)


def from_torch(mine, theirs):
    mine.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    return mine


def compare_grads(mine, theirs, rtol=1e-7, atol=1e-9):
    got = dict(mine.named_parameters())
    for name, p in theirs.named_parameters():
        assert name in got, name
        np.testing.assert_allclose(got[name].grad.data, p.grad.numpy(), rtol=rtol, atol=atol, err_msg=name)


def run_both(torch, mine, theirs, inputs, kwargs=None, tkwargs=None, pick=lambda out: out):
    """Forward both on ``inputs`` (float64 arrays), backward a random upstream; compare."""
    kwargs = kwargs or {}
    ours = [leaf(x) for x in inputs]
    out = pick(mine(*ours, **kwargs))
    ts = [torch.tensor(x, requires_grad=True) for x in inputs]
    tout = pick(theirs(*ts, **(tkwargs if tkwargs is not None else
                              {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()})))
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-7, atol=1e-9)
    g = data(out.shape, seed=9)
    out.backward(g)
    tout.backward(torch.tensor(g))
    for a, b in zip(ours, ts):
        np.testing.assert_allclose(a.grad.data, b.grad.numpy(), rtol=1e-7, atol=1e-9)
    compare_grads(mine, theirs)


# ------------------------------------------------------------- MultiheadAttention
MHA_CASES = {
    "self batch_first": (dict(batch_first=True), True),
    "kdim vdim": (dict(kdim=5, vdim=7), False),
    "bias_kv zero_attn": (dict(add_bias_kv=True, add_zero_attn=True), False),
    "no bias": (dict(bias=False, batch_first=True), True),
}


def mha_masks(N, L, S):
    kpm = np.zeros((N, S), bool)
    kpm[1, -3:] = True
    attn = np.random.default_rng(4).random((L, S)) > 0.8  # True: not allowed
    attn[:, 0] = False
    return dict(key_padding_mask=kpm, attn_mask=attn)


def torch_kwargs(torch, kwargs):
    return {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}


@pytest.mark.parametrize("case", list(MHA_CASES))
@pytest.mark.parametrize("need_weights", [False, True])
def test_mha_matches_torch(case, need_weights):
    torch = pytest.importorskip("torch")
    kw, self_attn = MHA_CASES[case]
    torch.manual_seed(0)
    theirs = torch.nn.MultiheadAttention(12, 3, dtype=torch.float64, **kw)
    mine = from_torch(nn.MultiheadAttention(12, 3, dtype=np.float64, **kw), theirs)
    N, L, S = 2, 6, 6 if self_attn else 9
    bf = kw.get("batch_first", False)
    shape = (lambda n, width: (N, n, width) if bf else (n, N, width))
    opts = dict(mha_masks(N, L, S), need_weights=need_weights)
    if self_attn:
        inputs = [data(shape(L, 12), 1)]
        mine_fn = lambda x: mine(x, x, x, **opts)  # noqa: E731
        theirs_fn = lambda x: theirs(x, x, x, **torch_kwargs(torch, opts))  # noqa: E731
    else:
        inputs = [data(shape(L, 12), 1), data(shape(S, kw.get("kdim", 12)), 2), data(shape(S, kw.get("vdim", 12)), 3)]
        mine_fn = lambda a, b, c: mine(a, b, c, **opts)  # noqa: E731
        theirs_fn = lambda a, b, c: theirs(a, b, c, **torch_kwargs(torch, opts))  # noqa: E731
    ours = [leaf(x) for x in inputs]
    out, w = mine_fn(*ours)
    ts = [torch.tensor(x, requires_grad=True) for x in inputs]
    tout, tw = theirs_fn(*ts)
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-7, atol=1e-9)
    assert (w is None) == (tw is None)
    if w is not None:
        np.testing.assert_allclose(w.data, tw.detach().numpy(), rtol=1e-7, atol=1e-9)
    g = data(out.shape, 9)
    out.backward(g)
    tout.backward(torch.tensor(g))
    for a, b in zip(ours, ts):
        np.testing.assert_allclose(a.grad.data, b.grad.numpy(), rtol=1e-7, atol=1e-9)
    compare_grads(mine, theirs)


def test_mha_unbatched_and_per_head_weights():
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    theirs = torch.nn.MultiheadAttention(8, 2, dtype=torch.float64)
    mine = from_torch(nn.MultiheadAttention(8, 2, dtype=np.float64), theirs)
    x = data((5, 8), 1)
    out, w = mine(x, x, x, average_attn_weights=False)
    tout, tw = theirs(*(torch.tensor(x),) * 3, average_attn_weights=False)
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(w.data, tw.detach().numpy(), rtol=1e-7, atol=1e-9)


def test_mha_is_causal_hint_uses_fused_causal():
    mha = nn.MultiheadAttention(8, 2, batch_first=True, dtype=np.float64)
    x = data((2, 70, 8), 1)
    mask = np.triu(np.full((70, 70), -np.inf), 1)
    a = mha(x, x, x, attn_mask=mask, need_weights=False)[0]
    b = mha(x, x, x, attn_mask=mask, need_weights=False, is_causal=True)[0]
    np.testing.assert_allclose(a.data, b.data, rtol=1e-10, atol=1e-12)
    with pytest.raises(RuntimeError, match="is_causal"):
        mha(x, x, x, is_causal=True)


def test_mha_gradcheck():
    fastnn.manual_seed(0)
    mha = nn.MultiheadAttention(6, 2, add_bias_kv=True, dtype=np.float64)
    assert fastnn.gradcheck(lambda a, b: mha(a, b, b, need_weights=False)[0], (data((4, 2, 6), 1), data((5, 2, 6), 2)),
                            max_checks=40)


def test_mha_errors():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        nn.MultiheadAttention(10, 3)
    mha = nn.MultiheadAttention(8, 2)
    x = np.zeros((4, 2, 8), np.float32)
    with pytest.raises(RuntimeError, match=r"2D attn_mask is \(3, 4\)"):
        mha(x, x, x, attn_mask=np.zeros((3, 4), bool))
    with pytest.raises(RuntimeError, match=r"key_padding_mask of shape \(2, 4\), got \(2, 5\)"):
        mha(x, x, x, key_padding_mask=np.zeros((2, 5), bool))
    with pytest.raises(ValueError, match="embedding dimension 8"):
        mha(np.zeros((4, 2, 6)), x, x)


# ------------------------------------------------------------- Transformer layers
def torch_layer(torch, cls, **kw):
    torch.manual_seed(0)
    return getattr(torch.nn, cls)(16, 4, 24, dropout=0.0, dtype=torch.float64, **kw)


@pytest.mark.parametrize("kw", [dict(), dict(norm_first=True, activation="gelu", batch_first=True)])
def test_encoder_layer_matches_torch(kw):
    torch = pytest.importorskip("torch")
    theirs = torch_layer(torch, "TransformerEncoderLayer", **kw)
    mine = from_torch(nn.TransformerEncoderLayer(16, 4, 24, dropout=0.0, dtype=np.float64, **kw), theirs)
    assert list(mine.state_dict()) == list(theirs.state_dict())
    kpm = np.zeros((2, 7), bool)
    kpm[0, -2:] = True
    run_both(torch, mine, theirs, [data((2, 7, 16) if kw else (7, 2, 16), 1)], dict(src_key_padding_mask=kpm))


def test_encoder_matches_torch_with_causal_mask():
    torch = pytest.importorskip("torch")
    layer = torch_layer(torch, "TransformerEncoderLayer", batch_first=True)
    theirs = torch.nn.TransformerEncoder(layer, 2, norm=torch.nn.LayerNorm(16, dtype=torch.float64),
                                         enable_nested_tensor=False)
    mine_layer = nn.TransformerEncoderLayer(16, 4, 24, dropout=0.0, batch_first=True, dtype=np.float64)
    mine = from_torch(nn.TransformerEncoder(mine_layer, 2, norm=nn.LayerNorm(16, dtype=np.float64)), theirs)
    mask = np.triu(np.full((9, 9), -np.inf), 1)
    run_both(torch, mine, theirs, [data((3, 9, 16), 1)], dict(mask=mask))


@pytest.mark.parametrize("kw", [dict(batch_first=True), dict(norm_first=True, activation="gelu")])
def test_encoder_eval_fast_path_matches_training_path_and_torch(kw, monkeypatch):
    # eval under no_grad without masks takes _fast_forward: it must equal the normal
    # path (training mode, dropout 0) and PyTorch's eval (its own fast path)
    torch = pytest.importorskip("torch")
    layer = torch_layer(torch, "TransformerEncoderLayer", **kw)
    theirs = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    mine_layer = nn.TransformerEncoderLayer(16, 4, 24, dropout=0.0, dtype=np.float64, **kw)
    mine = from_torch(nn.TransformerEncoder(mine_layer, 2), theirs)
    x = data((3, 9, 16), 1)
    reference = mine(fastnn.tensor(x)).data  # training mode: the normal path
    calls = []
    fast = nn.TransformerEncoderLayer._fast_forward
    monkeypatch.setattr(nn.TransformerEncoderLayer, "_fast_forward", lambda self, t: calls.append(1) or fast(self, t))
    mine.eval()
    with fastnn.no_grad():
        out = mine(fastnn.tensor(x)).data
    assert len(calls) == 2
    np.testing.assert_allclose(out, reference, rtol=1e-12, atol=1e-12)
    with torch.inference_mode():
        np.testing.assert_allclose(out, theirs(torch.tensor(x)).numpy(), rtol=1e-7, atol=1e-9)
    mine(fastnn.tensor(x))  # grad enabled: the normal path
    with fastnn.no_grad():
        n = 9 if kw.get("batch_first") else 3
        mine(fastnn.tensor(x), mask=np.triu(np.full((n, n), -np.inf), 1))  # a mask: the normal path
    assert len(calls) == 2


@pytest.mark.parametrize("batch", [1, 32])
@pytest.mark.parametrize("kw", [dict(batch_first=True), dict(norm_first=True, activation="gelu", batch_first=True),
                                dict(norm_first=True), dict(activation="gelu", bias=False)])
def test_encoder_eval_fast_path_float32(batch, kw):
    # the fused add + LayerNorm and activation epilogues at batch 1 (serial kernels) and
    # 32 (2048 x 64 rows: the parallel ones) equal the normal path and PyTorch's eval,
    # with and without a key padding mask (which takes the normal path)
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    theirs = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, **kw), 2,
                                         enable_nested_tensor=False).eval()
    mine = from_torch(nn.TransformerEncoder(nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, **kw), 2), theirs)
    x = data((batch, 64, 64) if kw.get("batch_first") else (64, batch, 64), 1).astype(np.float32)
    kpm = np.zeros((batch, 64), bool)
    kpm[0, -5:] = True
    for mask in (None, kpm):
        reference = mine(fastnn.tensor(x), src_key_padding_mask=mask).data  # training mode, dropout 0
        mine.eval()
        with fastnn.no_grad():
            out = mine(fastnn.tensor(x), src_key_padding_mask=mask).data
        mine.train()
        np.testing.assert_allclose(out, reference, rtol=1e-5, atol=1e-5)
        with torch.inference_mode():
            tmask = None if mask is None else torch.tensor(mask)
            np.testing.assert_allclose(out, theirs(torch.tensor(x), src_key_padding_mask=tmask).numpy(),
                                       rtol=1e-4, atol=1e-4)


def test_encoder_eval_fast_path_with_other_norms():
    # a norm that is not a LayerNorm over the last dim: the add and the norm run apart
    layer = nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, batch_first=True, dtype=np.float64)
    layer.norm1 = nn.Identity()
    x = fastnn.tensor(data((2, 5, 8), 1))
    reference = layer(x).data
    layer.eval()
    with fastnn.no_grad():
        np.testing.assert_allclose(layer(x).data, reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kw", [dict(), dict(norm_first=True, batch_first=True)])
def test_decoder_matches_torch(kw):
    torch = pytest.importorskip("torch")
    layer = torch_layer(torch, "TransformerDecoderLayer", **kw)
    theirs = torch.nn.TransformerDecoder(layer, 2)
    mine_layer = nn.TransformerDecoderLayer(16, 4, 24, dropout=0.0, dtype=np.float64, **kw)
    mine = from_torch(nn.TransformerDecoder(mine_layer, 2), theirs)
    assert list(mine.state_dict()) == list(theirs.state_dict())
    bf = kw.get("batch_first", False)
    tgt, mem = data((2, 6, 16) if bf else (6, 2, 16), 1), data((2, 8, 16) if bf else (8, 2, 16), 2)
    kpm = np.zeros((2, 8), bool)
    kpm[1, -3:] = True
    mask = np.triu(np.full((6, 6), -np.inf), 1)
    run_both(torch, mine, theirs, [tgt, mem], dict(tgt_mask=mask, memory_key_padding_mask=kpm))


def test_encoder_layer_gradcheck():
    fastnn.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, activation="gelu", dtype=np.float64)
    assert fastnn.gradcheck(layer, (data((5, 2, 8), 1),), max_checks=20)


def test_encoder_copies_are_independent_and_dropout_trains():
    layer = nn.TransformerEncoderLayer(8, 2, 12, batch_first=True)
    enc = nn.TransformerEncoder(layer, 3)
    ids = {id(p) for p in enc.parameters()}
    assert len(ids) == 3 * len(list(layer.parameters()))
    x = fastnn.randn(2, 5, 8)
    fastnn.manual_seed(0)
    assert not np.allclose(enc(x).data, enc(x).data)  # dropout while training
    enc.eval()
    np.testing.assert_array_equal(enc(x).data, enc(x).data)


@pytest.mark.parametrize("build", [
    lambda: nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 12, activation="gelu"), 2, nn.LayerNorm(8)),
    lambda: nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, 12, norm_first=True, batch_first=True), 2),
    lambda: nn.MultiheadAttention(8, 2, kdim=3, vdim=5, add_bias_kv=True),
])
def test_save_load(tmp_path, build):
    model = build()
    model.eval()
    fastnn.save(model, tmp_path / "m.fnn")
    same = fastnn.load(tmp_path / "m.fnn")
    assert type(same) is type(model) and list(same.state_dict()) == list(model.state_dict())
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(same.state_dict()[key], value)


def test_layer_errors():
    with pytest.raises(ValueError, match="divisible"):
        nn.TransformerEncoderLayer(10, 3)
    with pytest.raises(ValueError, match="relu/gelu"):
        nn.TransformerDecoderLayer(8, 2, activation="tanh")
    with pytest.raises(ValueError, match="num_layers"):
        nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2), 0)
