"""Conv1d / F.conv1d, and the padding modes and uneven 'same' padding of Conv1d and
Conv2d: float64 gradient checks over odd configurations, fused epilogue, save/load,
bad input, and PyTorch cross-checks of forward, input and parameter gradients."""
import numpy as np
import pytest

import fastnn
from fastnn import nn
from fastnn.nn import functional as F

# (N, C, L, OC, kernel, stride, padding, dilation, groups, padding_mode)
CONFIGS = [
    (2, 3, 11, 4, 3, 1, 1, 1, 1, "zeros"),       # stride 1: the implicit GEMM
    (3, 4, 13, 6, 5, 2, 2, 1, 2, "zeros"),       # stride 2, groups 2
    (2, 4, 12, 8, 3, 1, 2, 2, 4, "zeros"),       # depthwise, multiplier 2, dilation 2
    (1, 2, 9, 3, 1, 1, 0, 1, 1, "zeros"),        # pointwise
    (2, 3, 10, 2, 4, 3, 0, 1, 1, "zeros"),       # stride 3, no padding
    (2, 2, 9, 3, 3, 2, 2, 1, 1, "reflect"),
    (2, 2, 8, 3, 3, 1, 3, 1, 1, "replicate"),    # padding wider than the kernel
    (2, 2, 7, 4, 3, 1, 2, 2, 2, "circular"),
    (2, 2, 9, 3, 4, 1, "same", 1, 1, "zeros"),   # uneven 'same': extra element at the end
    (2, 2, 9, 3, 4, 1, "same", 1, 1, "reflect"),
]
IDS = [f"cfg{i}" for i in range(len(CONFIGS))]


def make(cfg, dtype=np.float64, bias=True, seed=0):
    N, C, L, OC, k, s, p, d, g, mode = cfg
    conv = nn.Conv1d(C, OC, k, stride=s, padding=p, dilation=d, groups=g, bias=bias, padding_mode=mode,
                     dtype=dtype, generator=np.random.default_rng(seed))
    x = np.random.default_rng(seed + 1).standard_normal((N, C, L)).astype(dtype)
    return conv, x


def leaf(x):
    return fastnn.tensor(x, requires_grad=True)


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_gradcheck(cfg):
    conv, x = make(cfg)
    assert conv(x).shape == conv.output_shape(x.shape)
    assert fastnn.gradcheck(conv, leaf(x), max_checks=40)


@pytest.mark.parametrize("kwargs", [dict(stride=2, padding=1), dict(padding="same", dilation=2),
                                    dict(padding="valid", groups=3), dict(stride=(3,), dilation=(2,))], ids=str)
def test_functional_gradcheck(kwargs, rng):
    groups = kwargs.get("groups", 1)
    x = leaf(rng.standard_normal((2, 6, 11)))
    w = leaf(rng.standard_normal((6, 6 // groups, 3)))
    b = leaf(rng.standard_normal(6))
    assert fastnn.gradcheck(lambda x, w, b: F.conv1d(x, w, b, **kwargs), (x, w, b), max_checks=40)


def test_unbatched_non_contiguous_and_fused_gradcheck(rng):
    w = leaf(rng.standard_normal((4, 2, 3)))
    x = leaf(rng.standard_normal((2, 9)))  # unbatched (C, L)
    assert F.conv1d(x, w, padding=1).shape == (4, 9)
    assert fastnn.gradcheck(lambda x, w: F.conv1d(x, w, None, 1, 1), (x, w), max_checks=40)
    wide = leaf(rng.standard_normal((2, 2, 20)))
    assert fastnn.gradcheck(lambda t, w: F.conv1d(t[..., ::2], w, stride=2), (wide, w), max_checks=40)
    assert fastnn.gradcheck(lambda t, w: F.conv1d(t, w, activation="tanh"), (wide, w), max_checks=40)


def test_sequential_fuses_conv1d_and_relu(rng):
    model = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv1d(4, 3, 3, padding_mode="circular",
                                                                           padding=1), nn.ReLU()).double()
    assert nn.Conv1d.accepts_epilogue
    x = rng.standard_normal((3, 2, 10))
    expected = F.relu(model[2](F.relu(model[0](x))))
    np.testing.assert_allclose(model(x), expected, rtol=1e-12, atol=1e-12)
    assert fastnn.gradcheck(model, leaf(x), max_checks=40)


def test_parameters_state_dict_and_save_load(tmp_path, rng):
    conv = nn.Conv1d(4, 6, 3, groups=2, padding_mode="reflect", padding=1)
    assert conv.weight.shape == (6, 2, 3) and conv.bias.shape == (6,)
    assert list(conv.state_dict()) == ["weight", "bias"]
    bound = 1 / np.sqrt(2 * 3)
    assert np.abs(conv.weight.data).max() <= bound and np.abs(conv.bias.data).max() <= bound
    assert "padding_mode=reflect" in repr(conv) and "groups=2" in repr(conv)
    model = nn.Sequential(conv, nn.ReLU(), nn.Conv1d(6, 2, 4, padding="same", bias=False))
    x = rng.standard_normal((2, 4, 9)).astype(np.float32)
    fastnn.save(model, tmp_path / "m.fnn")
    again = fastnn.load(tmp_path / "m.fnn")
    np.testing.assert_array_equal(again(x), model(x))
    conv2 = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, padding_mode="replicate"), nn.Conv2d(3, 2, 2, padding="same"))
    fastnn.save(conv2, tmp_path / "c.fnn")
    y = rng.standard_normal((1, 2, 5, 6)).astype(np.float32)
    np.testing.assert_array_equal(fastnn.load(tmp_path / "c.fnn")(y), conv2(y))


@pytest.mark.parametrize("kwargs,match", [
    (dict(in_channels=3, out_channels=4, kernel_size=3, groups=2), "Conv1d: in_channels.*divisible by groups"),
    (dict(in_channels=2, out_channels=4, kernel_size=(3, 3)), "Conv1d: kernel_size"),
    (dict(in_channels=2, out_channels=4, kernel_size=3, stride=0), "Conv1d: stride"),
    (dict(in_channels=2, out_channels=4, kernel_size=3, padding=-1), "Conv1d: padding"),
    (dict(in_channels=2, out_channels=4, kernel_size=3, padding="same", stride=2), "Conv1d: padding='same'.*stride"),
    (dict(in_channels=2, out_channels=4, kernel_size=3, padding_mode="mirror"), "Conv1d: padding_mode"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nn.Conv1d(**kwargs)


def test_bad_input(rng):
    conv = nn.Conv1d(3, 2, 3, dilation=2)
    with pytest.raises(ValueError, match=r"conv1d.*3-D.*\(2, 3, 4, 5\)"):
        conv(np.zeros((2, 3, 4, 5), np.float32))
    with pytest.raises(ValueError, match=r"conv1d.*3 channels.*\(2, 4, 9\)"):
        conv(np.zeros((2, 4, 9), np.float32))
    with pytest.raises(ValueError, match=r"conv1d.*\(2, 3, 4\).*smaller than the dilated kernel 5"):
        conv(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"conv1d.*empty"):
        conv(np.zeros((0, 3, 9), np.float32))
    with pytest.raises(ValueError, match=r"Conv1d: reflect padding.*smaller than the input size"):
        nn.Conv1d(3, 2, 3, padding=2, padding_mode="reflect")(np.zeros((1, 3, 2), np.float32))
    with pytest.raises(ValueError, match=r"conv1d.*3-D weight"):
        F.conv1d(np.zeros((1, 3, 9)), np.zeros((2, 3, 3, 3)))
    with pytest.raises(ValueError, match=r"conv1d.*bias of shape \(2,\)"):
        F.conv1d(np.zeros((1, 3, 9)), np.zeros((2, 3, 3)), np.zeros(3))


# ------------------------------------------------------------------ PyTorch
def torch_conv(conv, torch):
    cls = torch.nn.Conv1d if isinstance(conv, nn.Conv1d) else torch.nn.Conv2d
    tconv = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                padding="same" if conv._same else conv.padding, dilation=conv.dilation, groups=conv.groups,
                bias=conv.bias is not None, padding_mode=conv.padding_mode)
    if conv.weight.data.dtype == np.float64:
        tconv.double()
    tconv.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in conv.state_dict().items()})
    return tconv


def check_against_torch(conv, x, rng, torch, tol=1e-4):
    tconv = torch_conv(conv, torch)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tout = tconv(tx)
    g = rng.standard_normal(tuple(tout.shape)).astype(x.dtype)
    tout.backward(torch.from_numpy(g))
    xt = leaf(x)
    out = conv(xt)
    out.backward(g)
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(xt.grad, tx.grad.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(conv.weight.grad, tconv.weight.grad.numpy(), rtol=tol, atol=tol)
    if conv.bias is not None:
        np.testing.assert_allclose(conv.bias.grad, tconv.bias.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_matches_pytorch(cfg, rng):
    torch = pytest.importorskip("torch")
    conv, x = make(cfg, np.float32)
    check_against_torch(conv, x, rng, torch)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding", [(1, 2), "same"], ids=["pad12", "same"])
def test_conv2d_padding_modes_match_pytorch(mode, padding, rng):
    torch = pytest.importorskip("torch")
    conv = nn.Conv2d(2, 3, (3, 4), padding=padding, padding_mode=mode, dtype=np.float64,
                     generator=np.random.default_rng(0))
    x = rng.standard_normal((2, 2, 6, 7))
    check_against_torch(conv, x, rng, torch, tol=1e-10)
    assert conv(x).shape == conv.output_shape(x.shape)


def test_conv2d_padding_mode_gradcheck(rng):
    conv = nn.Conv2d(2, 2, 3, stride=2, padding=(2, 1), padding_mode="reflect", dtype=np.float64,
                     generator=np.random.default_rng(0))
    assert fastnn.gradcheck(conv, leaf(rng.standard_normal((1, 2, 6, 5))), max_checks=40)
    same = nn.Conv2d(2, 2, (2, 3), padding="same", padding_mode="circular", dtype=np.float64,
                     generator=np.random.default_rng(1))
    assert fastnn.gradcheck(same, leaf(rng.standard_normal((2, 2, 4, 5))), max_checks=40)
    w = leaf(rng.standard_normal((3, 2, 4, 2)))
    assert fastnn.gradcheck(lambda x, w: F.conv2d(x, w, padding="same"), (leaf(rng.standard_normal((1, 2, 5, 5))), w),
                            max_checks=40)


def test_reference_workload_matches_pytorch(rng):
    torch = pytest.importorskip("torch")
    model = nn.Sequential(nn.Conv1d(1, 32, 5, stride=2, padding=1), nn.ReLU(),
                          nn.Conv1d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv1d(32, 32, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(160, 10))
    tmodel = torch.nn.Sequential(torch.nn.Conv1d(1, 32, 5, stride=2, padding=1), torch.nn.ReLU(),
                                 torch.nn.Conv1d(32, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
                                 torch.nn.Conv1d(32, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
                                 torch.nn.Flatten(), torch.nn.Linear(160, 10))
    tmodel.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    x = rng.standard_normal((100, 1, 40)).astype(np.float32)
    out = model(x)
    out.sum().backward()
    tout = tmodel(torch.from_numpy(x))
    tout.sum().backward()
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-4, atol=1e-5)
    for (name, p), tp in zip(model.named_parameters(), tmodel.parameters()):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("N", [1, 17, 20])
@pytest.mark.parametrize("cfg", [CONFIGS[1], CONFIGS[2], CONFIGS[4], CONFIGS[7], CONFIGS[8]], ids=str)
def test_packed_short_sequences_match_the_plain_path(cfg, N, monkeypatch, rng):
    # short sequences run on the direct 1-D kernels (ops/conv1d_packed.py, kernels/conv1d.py)
    from fastnn.kernels import conv1d as conv1d_k
    from fastnn.ops import conv1d_packed
    conv, _ = make(cfg)
    x = rng.standard_normal((N,) + cfg[1:3])
    assert conv1d_packed.packs(N, conv(x).shape[2])
    g = rng.standard_normal(conv(x).shape)
    results = []
    default = conv1d_k.SLOT_MACS
    for pack, slot_macs in ((True, default), (True, 1), (False, default)):  # 1: the most slots
        monkeypatch.setattr(conv1d_packed, "PACK_BELOW", 64 if pack else 0)
        monkeypatch.setattr(conv1d_k, "SLOT_MACS", slot_macs)
        conv.zero_grad()
        xt = leaf(x)
        out = conv.forward_fused(xt, "tanh")
        out.backward(g)
        results.append((out.data, xt.grad.data, conv.weight.grad.data.copy(), conv.bias.grad.data.copy()))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    monkeypatch.setattr(conv1d_packed, "PACK_BELOW", 64)
    assert fastnn.gradcheck(lambda t: conv.forward_fused(t, "relu"), leaf(x), max_checks=30)


def _reference(x, w, b, gout, S, P, D, G):
    # NumPy conv1d: (out, dx, dw, db) for upstream gradient gout, in float64
    N, C, L = x.shape
    OC, Cg, K = w.shape
    OCg = OC // G
    OL = (L + 2 * P - D * (K - 1) - 1) // S + 1
    xp = np.zeros((N, C, L + 2 * P))
    xp[:, :, P:P + L] = x
    out = np.zeros((N, OC, OL)) + b[None, :, None]
    dxp, dw = np.zeros_like(xp), np.zeros(w.shape)
    for g in range(G):
        cs, os_ = slice(g * Cg, (g + 1) * Cg), slice(g * OCg, (g + 1) * OCg)
        for kw in range(K):
            win = slice(kw * D, kw * D + S * (OL - 1) + 1, S)
            out[:, os_] += np.einsum("oc,ncl->nol", w[os_, :, kw], xp[:, cs, win])
            dw[os_, :, kw] = np.einsum("nol,ncl->oc", gout[:, os_], xp[:, cs, win])
            dxp[:, cs, win] += np.einsum("oc,nol->ncl", w[os_, :, kw], gout[:, os_])
    return out, dxp[:, :, P:P + L], dw, gout.sum(axis=(0, 2))


# (N, C, L, OC, K, stride, padding, dilation, groups): K blocks (C*K > 256, OC > 256), edges
KERNEL_CASES = [(3, 4, 13, 6, 5, 2, 2, 1, 2), (2, 3, 10, 2, 4, 3, 0, 1, 1), (5, 4, 12, 8, 3, 1, 5, 2, 4),
                (4, 100, 7, 9, 3, 2, 1, 1, 1), (3, 5, 6, 260, 2, 1, 1, 3, 1), (1, 1, 40, 32, 5, 2, 1, 1, 1)]


@pytest.mark.parametrize("slot_macs", [None, 1])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", KERNEL_CASES, ids=str)
def test_direct_kernels_match_numpy(case, dtype, slot_macs, monkeypatch, rng):
    from fastnn.kernels import conv1d as conv1d_k
    if slot_macs:
        monkeypatch.setattr(conv1d_k, "SLOT_MACS", slot_macs)  # the parallel path, the most slots
    N, C, L, OC, K, S, P, D, G = case
    x, w = rng.standard_normal((N, C, L)), rng.standard_normal((OC, C // G, K))
    b = rng.standard_normal(OC)
    OL = (L + 2 * P - D * (K - 1) - 1) // S + 1
    gout = rng.standard_normal((N, OC, OL))
    expected = _reference(x, w, b, gout, S, P, D, G)
    x, w, b, gout = (a.astype(dtype) for a in (x, w, b, gout))
    tol = 1e-10 if dtype == np.float64 else 2e-4
    out = np.empty((N, OC, OL), dtype)
    conv1d_k.conv1d_forward(out, x, w, b, (S, P, D, G))
    np.testing.assert_allclose(out, expected[0], rtol=tol, atol=tol)
    conv1d_k.conv1d_forward(out, x, w, None, (S, P, D, G), kind=1)  # ReLU, no bias
    np.testing.assert_allclose(out, np.maximum(expected[0] - b.reshape(-1, 1), 0), rtol=tol, atol=tol)
    dx, dw, db = np.full(x.shape, np.nan, dtype), np.ones(w.shape, dtype), np.ones(OC, dtype)
    conv1d_k.conv1d_backward(dx, dw, db, gout, x, w, (S, P, D, G), accumulate_w=True, accumulate_b=True)
    for got, want in zip((dx, dw - 1, db - 1), expected[1:]):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * 10)
    conv1d_k.conv1d_backward(None, dw, None, gout, x, w, (S, P, D, G))  # overwritten, dx and db skipped
    np.testing.assert_allclose(dw, expected[2], rtol=tol, atol=tol * 10)


@pytest.mark.parametrize("slot_macs", [None, 1])
@pytest.mark.parametrize("kind,slope", [(1, 0.0), (2, 0.2), (3, 0.0), (4, 0.0)],
                         ids=["relu", "leaky", "sigmoid", "tanh"])
def test_backward_applies_the_fused_activations_derivative(kind, slope, slot_macs, monkeypatch, rng):
    # conv1d_backward(act_out=y, kind) on the activation output's gradient gives what the
    # separate activation backward and then the plain conv1d backward give
    from fastnn.kernels import conv1d as conv1d_k
    from fastnn.ops.activation import fused_activation_grad
    if slot_macs:
        monkeypatch.setattr(conv1d_k, "SLOT_MACS", slot_macs)
    x, w = rng.standard_normal((9, 4, 15)).astype(np.float32), rng.standard_normal((6, 4, 3)).astype(np.float32)
    y = np.empty((9, 6, 7), np.float32)
    conv1d_k.conv1d_forward(y, x, w, None, (2, 1, 1, 1), kind=kind, slope=slope)
    g = rng.standard_normal(y.shape).astype(np.float32)
    got = [np.empty_like(x), np.empty_like(w), np.empty(6, np.float32)]
    conv1d_k.conv1d_backward(*got, g, x, w, (2, 1, 1, 1), act_out=y, kind=kind, slope=slope)
    want = [np.empty_like(x), np.empty_like(w), np.empty(6, np.float32)]
    conv1d_k.conv1d_backward(*want, fused_activation_grad(g, y, kind, slope), x, w, (2, 1, 1, 1))
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("slot_macs", [None, 1])
def test_inputs_no_output_reads_do_not_reach_the_gradients(slot_macs, monkeypatch, rng):
    # L 8, K 3, stride 2: the outputs read x[:, :, :7]; x[:, :, 7] only a padding column
    # of the kernels' wide layout reads. inf there must not make the weight gradient NaN
    # through 0 * inf, as in PyTorch, where nothing reads it.
    from fastnn.kernels import conv1d as conv1d_k
    if slot_macs:
        monkeypatch.setattr(conv1d_k, "SLOT_MACS", slot_macs)
    x, w = rng.standard_normal((6, 3, 8)), rng.standard_normal((4, 3, 3))
    gout = rng.standard_normal((6, 4, 3))
    expected = _reference(x, w, np.zeros(4), gout, 2, 0, 1, 1)
    x[:, :, 7] = np.inf
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty(4)
    conv1d_k.conv1d_backward(dx, dw, db, gout, x, w, (2, 0, 1, 1))
    for got, want in zip((dx, dw, db), expected[1:]):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    out = np.empty((6, 4, 3))
    conv1d_k.conv1d_forward(out, x, w, None, (2, 0, 1, 1))
    np.testing.assert_allclose(out, expected[0], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("slot_macs", [None, 1])
def test_direct_kernels_float64_gradcheck(slot_macs, monkeypatch, rng):
    # odd shapes through the op: stride 3, dilation 2, groups, fused LeakyReLU; 1: the most slots
    from fastnn.kernels import conv1d as conv1d_k
    if slot_macs:
        monkeypatch.setattr(conv1d_k, "SLOT_MACS", slot_macs)
    x = leaf(rng.standard_normal((5, 4, 11)))
    w = leaf(rng.standard_normal((6, 2, 3)))
    b = leaf(rng.standard_normal(6))
    assert fastnn.gradcheck(lambda x, w, b: F.conv1d(x, w, b, stride=3, padding=2, dilation=2, groups=2,
                                                     activation="leaky_relu", negative_slope=0.1),
                            (x, w, b), max_checks=40)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [(1, 32, 19, 32, 3, 2, 1, 1, 1), (3, 8, 9, 70, 3, 1, 2, 2, 2),
                                  (2, 300, 3, 40, 1, 1, 0, 1, 1), (5, 12, 7, 6, 4, 3, 1, 1, 3)], ids=str)
def test_position_rows_forward_gives_the_wide_bits(case, dtype, rng):
    # A single-slot forward on few positions runs the product with positions as its rows
    # (_forward_rows): the same sums, K blocks (Kg 300: two) and epilogue as the wide
    # product, so the same bits; channels past one NR panel (70 a group) and groups too.
    from fastnn.kernels import conv1d as conv1d_k
    N, C, L, OC, K, S, P, D, G = case
    x = rng.standard_normal((N, C, L)).astype(dtype)
    w2 = rng.standard_normal((OC, C // G * K)).astype(dtype)
    b = rng.standard_normal(OC).astype(dtype)
    OL = (L + 2 * P - D * (K - 1) - 1) // S + 1
    work = conv1d_k.workspace()
    for kind, flags in ((0, conv1d_k.FORWARD + conv1d_k.HAS_BIAS), (1, conv1d_k.FORWARD), (3, conv1d_k.FORWARD)):
        wide, rows = np.full((N, OC, OL), np.nan, dtype), np.full((N, OC, OL), np.nan, dtype)
        conv1d_k._forward(wide, x, w2, b, 0, N, (S, P, D, G), flags, kind, 0.0)
        conv1d_k._rows_call(rows, x, w2, b, (S, P, D, G), flags, kind, 0.0, work)()
        np.testing.assert_array_equal(rows, wide)
        want = _reference(x.astype(np.float64), w2.reshape(OC, C // G, K).astype(np.float64), b * 0, rows * 0,
                          S, P, D, G)[0]
        if kind == 0:
            np.testing.assert_allclose(rows - b[:, None], want, rtol=1e-4, atol=1e-4)
