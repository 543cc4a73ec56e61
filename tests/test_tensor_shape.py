"""Shape, view and indexing operations (fastnn.ops.shape / ops.indexing): float64
gradient checks, views sharing memory, error cases, and PyTorch cross-checks."""
import numpy as np
import pytest

import fastnn
from fastnn.ops import shape as S
from fastnn.tensor import Tensor, _wrap


def leaf(shape, seed=0, contiguous=True, requires_grad=True, dtype=np.float64):
    """A float64 leaf; ``contiguous=False`` gives a transposed (non-contiguous) view."""
    rng = np.random.default_rng(seed)
    if contiguous:
        data = rng.standard_normal(shape).astype(dtype)
    else:
        data = rng.standard_normal(tuple(reversed(shape))).astype(dtype).T
    t = _wrap(data)
    return t.requires_grad_() if requires_grad else t


def check(fn, *inputs):
    assert fastnn.gradcheck(fn, inputs, max_checks=40)


IDX = np.array([[0, 2, 0], [1, 1, 1]])
CASES = {
    "reshape": ((3, 4, 2), lambda x: x.reshape(6, -1)),
    "reshape_tuple": ((3, 4, 2), lambda x: S.reshape(x, (2, 12))),
    "view": ((3, 4, 2), lambda x: x.view(-1)),
    "view_as": ((3, 4, 2), lambda x: x.view_as(np.zeros((4, 6)))),
    "reshape_as": ((3, 4, 2), lambda x: x.reshape_as(np.zeros((24,)))),
    "flatten": ((3, 4, 2), lambda x: x.flatten(1)),
    "flatten_neg": ((3, 4, 2), lambda x: S.flatten(x, -3, -2)),
    "unflatten": ((3, 4, 2), lambda x: S.unflatten(x, -2, (2, -1))),
    "unsqueeze": ((3, 4, 2), lambda x: x.unsqueeze(-1)),
    "unsqueeze0": ((3, 4, 2), lambda x: x.unsqueeze(0)),
    "squeeze": ((3, 1, 2), lambda x: x.squeeze()),
    "squeeze_dims": ((3, 1, 2), lambda x: x.squeeze((1, -1))),
    "permute": ((3, 4, 2), lambda x: x.permute(2, 0, 1)),
    "permute_neg": ((3, 4, 2), lambda x: x.permute((-1, -3, -2))),
    "transpose": ((3, 4, 2), lambda x: x.transpose(0, -1)),
    "swapaxes": ((3, 4, 2), lambda x: S.swapaxes(x, 1, 2)),
    "movedim": ((3, 4, 2), lambda x: S.movedim(x, (0, 1), (2, 0))),
    "t": ((3, 4), lambda x: x.t()),
    "T": ((3, 4, 2), lambda x: x.T),
    "expand": ((3, 1, 2), lambda x: x.expand(2, -1, 4, -1)),
    "expand_as": ((1, 2), lambda x: x.expand_as(np.zeros((3, 2)))),
    "repeat": ((3, 4, 2), lambda x: x.repeat(2, 1, 3, 1)),
    "contiguous": ((3, 4, 2), lambda x: x.contiguous()),
    "flip": ((3, 4, 2), lambda x: x.flip((0, -1))),
    "roll": ((3, 4, 2), lambda x: x.roll((1, -2), (0, 2))),
    "roll_flat": ((3, 4, 2), lambda x: x.roll(5)),
    "narrow": ((3, 4, 2), lambda x: x.narrow(1, 1, 2)),
    "narrow_neg": ((3, 4, 2), lambda x: x.narrow(-2, -3, 2)),
    "diagonal": ((3, 4, 2), lambda x: x.diagonal(1, 0, 1)),
    "diagonal_neg": ((3, 4, 2), lambda x: x.diagonal(-1, -1, 1)),
    "split": ((3, 5, 2), lambda x: x.split(2, dim=1)),
    "split_sizes": ((3, 5, 2), lambda x: x.split([1, 4], -2)),
    "chunk": ((3, 5, 2), lambda x: x.chunk(2, 1)),
    "unbind": ((3, 4, 2), lambda x: x.unbind(-1)),
    "gather": ((3, 4, 2), lambda x: x.gather(1, np.stack([IDX.T] * 2, -1))),
    "gather_small": ((3, 4, 2), lambda x: x.gather(-1, np.zeros((2, 3, 1), np.int64))),
    "index_select": ((3, 4, 2), lambda x: x.index_select(-2, [3, 0, 3])),
    "index_select_tensor": ((3, 4, 2), lambda x: x.index_select(0, _wrap(np.array([2, 2])))),
    "cat": ((3, 4, 2), lambda x: S.cat([x, x * 2.0, x[:1]], 0)),
    "cat_neg": ((3, 4, 2), lambda x: S.concat((x, x[:, :1]), -2)),
    "stack": ((3, 4, 2), lambda x: S.stack([x, x * 3.0], -1)),
    "chain": ((3, 4, 2), lambda x: x.transpose(0, 1)[1:, ::2].reshape(-1).unsqueeze(0).expand(3, -1).flip(1)),
}
INDEXES = {
    "int": 1, "neg_int": -1, "element": (1, 2, 0), "slice_mid": np.s_[:, -1, :], "steps": np.s_[::2, 1::2],
    "ellipsis": np.s_[..., 1:], "none": np.s_[None, :, None, 0], "neg_step": np.s_[::-1],
    "int_list": [0, 2, 0], "int_array_2d": IDX, "int_tensor": _wrap(np.array([2, 2, 1])),
    "adjacent_arrays": np.s_[:, [1, 1, 3], [0, 0, 1]], "separated_arrays": np.s_[[0, 1, 1], :, [1, 1, 0]],
    "mask_rows": np.array([True, False, True]), "mask_tensor": _wrap(np.array([False, True, True])),
    "mask_mid": np.s_[:, np.array([True, False, True, True])], "int_and_array": np.s_[2, [3, 3], 1:],
}


@pytest.mark.parametrize("contiguous", [True, False], ids=["contig", "strided"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_gradcheck_ops(name, contiguous):
    shape, fn = CASES[name]
    check(fn, leaf(shape, contiguous=contiguous))


@pytest.mark.parametrize("name", sorted(INDEXES))
def test_gradcheck_getitem(name):
    index = INDEXES[name]
    check(lambda x: x[index], leaf((3, 4, 2), contiguous=name != "int"))


def test_gradcheck_full_mask_and_functional_forms():
    x = leaf((3, 4))
    mask = x.data > 0
    check(lambda a: a[mask], x)
    check(lambda a: S.getitem(a, (slice(1, None), [0, 0])), x)
    check(lambda a: S.index_select(a, 1, np.array(2)), x)


def test_views_share_memory():
    x = leaf((3, 4, 2), requires_grad=False)
    views = [x.reshape(12, 2), x.view(-1), x.flatten(), x.unsqueeze(1), x.permute(2, 0, 1), x.transpose(0, 1),
             x.T, x.expand(5, 3, 4, 2), x[1], x[:, 1:3], x[None, ..., 0], x.narrow(1, 1, 2), x.diagonal(),
             *x.split(1), *x.unbind(1), *x.chunk(2, 2), x.squeeze(), x[0].t(), S.movedim(x, 0, 2)]
    for v in views:
        assert np.shares_memory(v.data, x.data)
    assert x.contiguous() is x
    assert not np.shares_memory(x.flip(0).data, x.data)  # a copy, as in PyTorch
    assert not np.shares_memory(x[[0, 1]].data, x.data)
    assert x[1, 2, 0].shape == () and np.shares_memory(x[1, 2, 0].data, x.data)


def test_small_ranks():
    v, s = leaf((4,)), leaf(())
    for out in [*v.unbind(), v[2], v[np.array(1)], s.flatten(), s.unsqueeze(0), s.reshape(1, 1).squeeze(), v.t(),
                s.t(), s.T, v.index_select(0, [1]), S.stack([v[0], v[3]]), s.gather(0, np.array(0))]:
        assert isinstance(out.data, np.ndarray)
    assert s.flatten().shape == (1,) and v[2].shape == () and S.stack([v[0], v[1]]).shape == (2,)
    check(lambda a: S.stack(a.unbind()[::-1]), v)
    check(lambda a: S.cat([a, a[1:]]), v)
    check(lambda a: S.stack([a, a.reshape(1).squeeze(0)]), s)
    check(lambda a: S.index_select(a, 0, [0]), s)


def test_no_graph_without_grad():
    x = leaf((3, 4))
    with fastnn.no_grad():
        outs = [x.reshape(-1), x[0], x[[0, 0]], S.cat([x, x]), *x.unbind(), x.expand(2, 3, 4)]
    assert all(o.grad_fn is None and not o.requires_grad for o in outs)
    y = leaf((3, 4), requires_grad=False)
    assert y[0].grad_fn is None and S.stack([y, y]).grad_fn is None


def test_grad_shape_dtype_and_upstream_untouched():
    x = leaf((3, 1, 2), dtype=np.float32)
    ops = [lambda a: a.expand(4, 3, 5, 2), lambda a: a[[0, 0, 2]], lambda a: a[1:, :, ::-1],
           lambda a: a.repeat(2, 2, 2), lambda a: S.stack(a.unbind(0)), lambda a: S.cat(a.split(1)),
           lambda a: a.permute(1, 2, 0).reshape(-1), lambda a: S.stack(a.reshape(-1).unbind())]
    for op in ops:
        y = op(x)
        g = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
        before = g.copy()
        (dx,) = fastnn.autograd.grad(y, x, g)
        assert dx.shape == x.shape and dx.dtype == np.float32
        np.testing.assert_array_equal(g, before)


def test_repeated_indices_add_up():
    x = leaf((3, 2))
    ones = np.ones((4, 2))
    x[[0, 0, 2, 0]].backward(ones)
    np.testing.assert_array_equal(x.grad.data, [[3, 3], [0, 0], [1, 1]])
    x.grad = None
    x.index_select(0, [1, 1]).backward(ones[:2])
    np.testing.assert_array_equal(x.grad.data, [[0, 0], [2, 2], [0, 0]])
    x.grad = None
    x.gather(0, np.array([[2, 2], [2, 0]])).backward(ones[:2])
    np.testing.assert_array_equal(x.grad.data, [[0, 1], [0, 0], [2, 1]])


def test_multi_output_used_partially():
    x = leaf((3, 4))
    a, b, c = x.unbind(0)
    fastnn.autograd.backward([a, c], [np.full(4, 2.0), np.ones(4)])
    np.testing.assert_array_equal(x.grad.data, [[2] * 4, [0] * 4, [1] * 4])
    x.grad = None
    pieces = x.split([1, 3], dim=1)
    assert pieces[0].grad_fn is pieces[1].grad_fn and pieces[1].grad_fn.name() == "SplitBackward0"
    pieces[1].backward(np.ones((3, 3)))
    np.testing.assert_array_equal(x.grad.data, np.tile([0, 1, 1, 1], (3, 1)))


def test_cat_with_constants():
    x, y = leaf((2, 3)), leaf((2, 3), seed=1, requires_grad=False)
    check(lambda a: S.cat([y, a, np.ones((2, 1))], 1), x)
    check(lambda a: S.stack([y.data, a], 1), x)
    out = S.cat([x, y])
    out.backward(np.ones(out.shape))
    assert y.grad is None and x.grad.shape == x.shape
    assert S.cat([_wrap(np.zeros(0)), x]).shape == (2, 3)  # legacy empty 1-d tensors are skipped
    assert S.concatenate([y, y], -1).shape == (2, 6)


def test_one_hot():
    out = S.one_hot(_wrap(np.array([[0, 2], [1, 1]])))
    assert out.dtype == np.int64 and out.shape == (2, 2, 3) and not out.requires_grad
    np.testing.assert_array_equal(out.data.argmax(-1), [[0, 2], [1, 1]])
    assert S.one_hot(np.array([1]), 4).shape == (1, 4)
    assert fastnn.nn.functional.one_hot(np.array(0), 2).shape == (2,)


@pytest.mark.parametrize("call, exc, words", [
    (lambda x: x.reshape(5, -1), RuntimeError, ["[5, -1]", "(3, 4)"]),
    (lambda x: x.view(-1, -1), RuntimeError, ["view"]),
    (lambda x: x.reshape(24), RuntimeError, ["24", "(3, 4)"]),
    (lambda x: S.unflatten(x, 1, (3, 2)), RuntimeError, ["unflatten"]),
    (lambda x: x.flatten(1, 0), RuntimeError, ["flatten"]),
    (lambda x: x.transpose(0, 2), IndexError, ["transpose"]),
    (lambda x: x.unsqueeze(3), IndexError, ["unsqueeze"]),
    (lambda x: x.squeeze(-3), IndexError, ["squeeze"]),
    (lambda x: x.permute(0, 0), RuntimeError, ["permute", "(3, 4)"]),
    (lambda x: x.permute(1, 0, 2), IndexError, ["permute"]),
    (lambda x: x.unsqueeze(0).t(), RuntimeError, ["t:"]),
    (lambda x: x.expand(3, 5), RuntimeError, ["expand", "(3, 4)"]),
    (lambda x: x.expand(-1, 3, 4), RuntimeError, ["expand"]),
    (lambda x: x.repeat(2), RuntimeError, ["repeat"]),
    (lambda x: x.narrow(1, 3, 2), IndexError, ["narrow", "(3, 4)"]),
    (lambda x: x.split([1, 1]), RuntimeError, ["split", "(3, 4)"]),
    (lambda x: x.chunk(0), RuntimeError, ["chunk"]),
    (lambda x: S.cat([x, x[:, :2]]), RuntimeError, ["(3, 4)", "(3, 2)"]),
    (lambda x: S.cat([x, x.data.astype(np.float32)]), TypeError, ["float32", "float64"]),
    (lambda x: S.cat(x), TypeError, ["cat"]),
    (lambda x: S.cat([]), ValueError, ["cat"]),
    (lambda x: S.cat([x], 2), IndexError, ["cat"]),
    (lambda x: S.stack([x, x[:2]]), RuntimeError, ["(3, 4)", "(2, 4)"]),
    (lambda x: x.gather(1, np.array([[4]])), IndexError, ["gather", "(3, 4)"]),
    (lambda x: x.gather(1, np.array([0])), RuntimeError, ["gather"]),
    (lambda x: x.gather(1, np.array([[0.5]])), TypeError, ["gather"]),
    (lambda x: x.index_select(0, [-1]), IndexError, ["index_select"]),
    (lambda x: x.index_select(0, [[0]]), IndexError, ["index_select"]),
    (lambda x: x[3], IndexError, ["getitem", "(3, 4)"]),
    (lambda x: x[:, [0, 4]], IndexError, ["getitem", "(3, 4)"]),
    (lambda x: x[0, 0, 0], IndexError, ["getitem"]),
    (lambda x: x[np.array([True, False])], IndexError, ["getitem"]),
    (lambda x: x[0.5], IndexError, ["getitem"]),
    (lambda x: S.one_hot(np.array([0, -1])), RuntimeError, ["non-negative"]),
    (lambda x: S.one_hot(np.array([0, 3]), 3), RuntimeError, ["num_classes"]),
    (lambda x: S.one_hot(np.array([0.0])), TypeError, ["one_hot"]),
])
def test_errors(call, exc, words):
    with pytest.raises(exc) as info:
        call(leaf((3, 4)))
    for w in words:
        assert w in str(info.value)


# ------------------------------------------------------------------ PyTorch
TORCH_CASES = [
    (lambda x: x.reshape(6, -1), None), (lambda x: x.flatten(1), None), (lambda x: x.unsqueeze(-2), None),
    (lambda x: x.permute(2, 0, 1), None), (lambda x: x.transpose(-1, 0), None), (lambda x: x[0].T, None),
    (lambda x: x.movedim((0, 1), (2, 0)) if hasattr(x, "movedim") else S.movedim(x, (0, 1), (2, 0)), None),
    (lambda x: x[:, 1:].expand(2, -1, -1, -1), None),
    (lambda x: x.repeat(2, 1, 3, 1), None), (lambda x: x.flip((0, 2)), None), (lambda x: x.roll(5), None),
    (lambda x: x.roll((1, -2), (0, 1)), None), (lambda x: x.narrow(1, -3, 2), None),
    (lambda x: x.diagonal(1, 0, 1), None), (lambda x: x.split([1, 3], 1), None), (lambda x: x.chunk(3, 1), None),
    (lambda x: x.unbind(2)[1], None), (lambda x: x.squeeze((1,)), None),
    (lambda x: x[1, ..., None, -1], None), (lambda x: x[:, [1, 1, 3], [0, 0, 1]], None),
    (lambda x: x[[0, 2, 0], :, [1, 1, 0]], None),
    (lambda x, m: x[m], "mask"), (lambda x, i: x[:, i], "index"), (lambda x, i: x.index_select(1, i[:3]), "index"),
    (lambda x, i: x.gather(1, i.reshape(1, 4, 1).expand(3, 4, 2)), "index"),
]


@pytest.mark.parametrize("case", range(len(TORCH_CASES)))
def test_matches_torch(case):
    torch = pytest.importorskip("torch")
    fn, extra = TORCH_CASES[case]
    x = leaf((3, 4, 2), seed=case)
    tx = torch.from_numpy(x.data.copy()).requires_grad_()
    args, targs = (), ()
    if extra == "mask":
        args, targs = (np.array([True, False, True]),), (torch.tensor([True, False, True]),)
    elif extra == "index":
        args, targs = (_wrap(np.array([1, 3, 1, 0])),), (torch.tensor([1, 3, 1, 0]),)
    out, tout = fn(x, *args), fn(tx, *targs)
    outs = out if isinstance(out, tuple) else (out,)
    touts = tout if isinstance(tout, tuple) else (tout,)
    ws = [np.random.default_rng(k).standard_normal(o.shape) for k, o in enumerate(outs)]
    for o, to in zip(outs, touts):
        np.testing.assert_allclose(o.data, to.detach().numpy())
    fastnn.autograd.backward(list(outs), ws)
    torch.autograd.backward(list(touts), [torch.from_numpy(w) for w in ws])
    np.testing.assert_allclose(x.grad.data, tx.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_cat_stack_one_hot_match_torch():
    torch = pytest.importorskip("torch")
    a, b = leaf((2, 3)), leaf((2, 1), seed=1)
    ta, tb = (torch.from_numpy(t.data.copy()).requires_grad_() for t in (a, b))
    out, tout = S.stack([S.cat([a, b], -1), S.cat([b, a], 1)], 1), torch.stack([torch.cat([ta, tb], -1),
                                                                                 torch.cat([tb, ta], 1)], 1)
    w = np.random.default_rng(0).standard_normal(out.shape)
    out.backward(w)
    tout.backward(torch.from_numpy(w))
    np.testing.assert_allclose(out.data, tout.detach().numpy())
    np.testing.assert_allclose(a.grad.data, ta.grad.numpy())
    np.testing.assert_allclose(b.grad.data, tb.grad.numpy())
    idx = np.array([[3, 0], [1, 1]])
    np.testing.assert_array_equal(S.one_hot(idx, 5).data, torch.nn.functional.one_hot(torch.from_numpy(idx), 5))
    assert isinstance(out, Tensor)
