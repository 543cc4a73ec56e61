"""Matrix products: ``matmul`` (1-D, 2-D and batched with broadcasting, as
``torch.matmul``), ``mm``, ``bmm``, ``addmm``, ``outer``, ``dot``.

Every 2-D float product, forward and both backward products, runs in the in-house
GEMM (``kernels.matmul``); a transposed view costs nothing (it is passed as the
untransposed array with a transpose flag). A leaf's gradient is written straight
into its ``.grad`` (``direct_grad``), as ``linear`` does. Batched products use
``np.matmul``. Operands of different dtypes are promoted (PyTorch refuses); the
gradients are cast back.
"""
import numpy as np

from ..kernels.matmul import matmul as gemm
from ._util import _wrap, as_tensor, attach, direct_grad, recording
from .broadcasting import reduce_grad

__all__ = ["matmul", "mm", "bmm", "addmm", "outer", "dot"]

_GEMM_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _common(tensors):
    """The dtype to compute in: a float operand's dtype wins over integers."""
    dts = [t.data.dtype for t in tensors]
    if all(d == dts[0] for d in dts):
        return dts[0]
    floats = [d for d in dts if d.kind == "f"]
    return np.result_type(*(floats or dts))


def _flagged(x):
    """(C-contiguous array, transposed?) with op(array) == x, copying only if needed."""
    if x.flags.c_contiguous:
        return x, False
    if x.flags.f_contiguous:
        return x.T, True
    return np.ascontiguousarray(x), False


def _check(a2, b2, ad, bd, op):
    """RuntimeError naming ``op`` and the shapes unless a2 @ b2 is defined."""
    if a2.shape[-1] != b2.shape[-2]:
        raise RuntimeError(f"{op}: shapes {ad.shape} and {bd.shape} cannot be multiplied "
                           f"({a2.shape[-2]}x{a2.shape[-1]} and {b2.shape[-2]}x{b2.shape[-1]})")
    try:
        return np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    except ValueError:
        raise RuntimeError(f"{op}: batch dimensions of shapes {ad.shape} and {bd.shape} cannot be "
                           "broadcast together") from None


def _product(a, b, a2, b2, out_shape, name):
    """out = a2 @ b2 (checked views of a, b in the compute dtype: 2-D, or N-D
    batched), reshaped to ``out_shape``; gradients go back to a's and b's shapes."""
    plain = a2.ndim == 2 and b2.ndim == 2 and a2.dtype in _GEMM_DTYPES
    if plain:
        am, ta = _flagged(a2)
        bm, tb = _flagged(b2)
        out2 = np.empty((a2.shape[0], b2.shape[1]), a2.dtype)
        gemm(out2, am, bm, ta, tb)
    else:
        out2 = np.matmul(a2, b2)
    res = _wrap(out2.reshape(out_shape) if out2.shape != out_shape else out2)
    if not recording(a, b):
        return res
    need_a, need_b = a.requires_grad, b.requires_grad
    keep_a = ((am, ta) if plain else a2) if need_b else None  # dB needs a, dA needs b
    keep_b = ((bm, tb) if plain else b2) if need_a else None

    def backward(g):
        g2 = g.reshape(out2.shape)
        if plain:
            if g2.dtype != out2.dtype or not g2.flags.c_contiguous:
                g2 = np.ascontiguousarray(g2, dtype=out2.dtype)
            da = gemm_grad(a, a2.shape, g2, *keep_b, False) if need_a else None  # dA = g @ B^T
            db = gemm_grad(b, b2.shape, g2, *keep_a, True) if need_b else None  # dB = A^T @ g
            return da, db
        da = db = None
        if need_a:  # dA = g @ B^T, summed over broadcast batch dims
            da = reduce_grad(np.matmul(g2, np.swapaxes(keep_b, -1, -2)), a2.shape, a.data.dtype)
            da = da.reshape(a.data.shape)
        if need_b:  # dB = A^T @ g
            db = reduce_grad(np.matmul(np.swapaxes(keep_a, -1, -2), g2), b2.shape, b.data.dtype)
            db = db.reshape(b.data.shape)
        return da, db

    attach(res, backward, (a, b), name, saved=(a, b))
    return res


def _gemm_into(dest, g2, other, other_t, left, accumulate):
    if left:  # dB (+)= A^T @ g, A = op(other)
        gemm(dest, other, g2, not other_t, False, accumulate)
    else:  # dA (+)= g @ B^T, B = op(other)
        gemm(dest, g2, other, False, not other_t, accumulate)


def gemm_grad(t, shape2, g2, other, other_t, left):
    """The gradient of ``t`` (seen as the 2-D ``shape2``) in one GEMM: A^T @ g2 when
    ``left`` (t is the right factor B, A = op(other)), else g2 @ B^T (t is A). Written
    into t's ``.grad`` when ``direct_grad`` allows (returns None), else returned."""
    target = direct_grad(t) if t.data.dtype == g2.dtype else None
    if target is not None and target[0].flags.c_contiguous:
        _gemm_into(target[0].reshape(shape2), g2, other, other_t, left, target[1])
        return None
    d = np.empty(shape2, g2.dtype)
    _gemm_into(d, g2, other, other_t, left, False)
    d = d.reshape(t.data.shape)
    if target is not None:  # a non-contiguous .grad
        if target[1]:
            target[0][...] += d
        else:
            target[0][...] = d
        return None
    return d if d.dtype == t.data.dtype else d.astype(t.data.dtype)


def _pair(input, other):  # noqa: A002
    a, b = as_tensor(input), as_tensor(other)
    dt = _common((a, b))
    ad = a.data if a.data.dtype == dt else a.data.astype(dt)
    bd = b.data if b.data.dtype == dt else b.data.astype(dt)
    return a, b, ad, bd


def matmul(input, other):  # noqa: A002 (PyTorch's names)
    """Matrix product as ``torch.matmul``: 1-D @ 1-D is a dot product (0-d), a 1-D
    operand gets a dim prepended (left) or appended (right) and removed afterwards,
    N-D operands are stacks of matrices whose batch dims broadcast.

    Example:
        >>> fastnn.matmul(fastnn.ones(5, 2, 3), fastnn.ones(3, 4)).shape
        (5, 2, 4)
    """
    a, b, ad, bd = _pair(input, other)
    if ad.ndim == 0 or bd.ndim == 0:
        raise RuntimeError(f"matmul: both arguments need at least 1 dimension, got shapes {ad.shape} and {bd.shape}")
    a2 = ad.reshape(1, -1) if ad.ndim == 1 else ad
    b2 = bd.reshape(-1, 1) if bd.ndim == 1 else bd
    batch = _check(a2, b2, ad, bd, "matmul")
    out_shape = batch + a2.shape[-2:-1] * (ad.ndim > 1) + b2.shape[-1:] * (bd.ndim > 1)
    if ad.ndim == bd.ndim == 1:
        name = "DotBackward0"
    else:
        name = "MmBackward0" if a2.ndim == b2.ndim == 2 else "BmmBackward0"
    return _product(a, b, a2, b2, out_shape, name)


def mm(input, mat2):  # noqa: A002
    """input (n, m) @ mat2 (m, p) -> (n, p)."""
    a, b, ad, bd = _pair(input, mat2)
    if ad.ndim != 2 or bd.ndim != 2:
        raise RuntimeError(f"mm: expected 2-D tensors, got shapes {ad.shape} and {bd.shape}")
    _check(ad, bd, ad, bd, "mm")
    return _product(a, b, ad, bd, (ad.shape[0], bd.shape[1]), "MmBackward0")


def bmm(input, mat2):  # noqa: A002
    """input (b, n, m) @ mat2 (b, m, p) -> (b, n, p), no broadcasting."""
    a, b, ad, bd = _pair(input, mat2)
    if ad.ndim != 3 or bd.ndim != 3 or ad.shape[0] != bd.shape[0]:
        raise RuntimeError(f"bmm: expected 3-D tensors with the same batch size, got shapes {ad.shape} and {bd.shape}")
    _check(ad, bd, ad, bd, "bmm")
    return _product(a, b, ad, bd, (ad.shape[0], ad.shape[1], bd.shape[2]), "BmmBackward0")


def outer(input, vec2):  # noqa: A002
    """input (n,) outer vec2 (m,) -> (n, m)."""
    a, b, ad, bd = _pair(input, vec2)
    if ad.ndim != 1 or bd.ndim != 1:
        raise RuntimeError(f"outer: expected 1-D tensors, got shapes {ad.shape} and {bd.shape}")
    return _product(a, b, ad.reshape(-1, 1), bd.reshape(1, -1), (ad.shape[0], bd.shape[0]), "OuterBackward0")


def dot(input, other):  # noqa: A002
    """Dot product of two 1-D tensors of the same length -> 0-d."""
    a, b, ad, bd = _pair(input, other)
    if ad.ndim != 1 or bd.ndim != 1 or ad.shape != bd.shape:
        raise RuntimeError(f"dot: expected 1-D tensors of the same length, got shapes {ad.shape} and {bd.shape}")
    return _product(a, b, ad.reshape(1, -1), bd.reshape(-1, 1), (), "DotBackward0")


def addmm(input, mat1, mat2, beta=1, alpha=1):  # noqa: A002
    """beta * input + alpha * (mat1 @ mat2), input broadcasting to (n, p); with
    beta = 0 input is ignored (NaN in it does not propagate), as in PyTorch."""
    c, m1, m2 = as_tensor(input), as_tensor(mat1), as_tensor(mat2)
    if m1.data.ndim != 2 or m2.data.ndim != 2:
        raise RuntimeError(f"addmm: expected 2-D matrices, got shapes {m1.data.shape} and {m2.data.shape}")
    dt = _common((c, m1, m2))
    cd, ad, bd = (t.data if t.data.dtype == dt else t.data.astype(dt) for t in (c, m1, m2))
    _check(ad, bd, ad, bd, "addmm")
    shape = (ad.shape[0], bd.shape[1])
    if len(cd.shape) > 2 or any(n not in (1, m) for n, m in zip(cd.shape[::-1], shape[::-1])):
        raise RuntimeError(f"addmm: input of shape {cd.shape} does not broadcast to the product's shape {shape}")
    if dt not in _GEMM_DTYPES:  # integers: no gradient
        return _wrap(alpha * np.matmul(ad, bd) + (beta * cd if beta != 0 else 0))
    am, ta = _flagged(ad)
    bm, tb = _flagged(bd)
    out = np.empty(shape, dt)
    if beta != 0 and alpha == 1:  # out = beta * input, then out += a @ b in the GEMM
        np.copyto(out, cd)
        if beta != 1:
            out *= beta
        gemm(out, am, bm, ta, tb, True)
    else:
        gemm(out, am, bm, ta, tb)
        if alpha != 1:
            out *= alpha
        if beta != 0:
            out += cd if beta == 1 else beta * cd
    res = _wrap(out)
    if recording(c, m1, m2):
        need = (c.requires_grad, m1.requires_grad, m2.requires_grad)
        keep_a = (am, ta) if need[2] else None
        keep_b = (bm, tb) if need[1] else None

        def backward(g):
            g2 = np.ascontiguousarray(g, dtype=dt)
            gs = g2 if alpha == 1 else g2 * alpha
            dc = reduce_grad(g2 if beta == 1 else g2 * beta, c.data.shape, c.data.dtype) if need[0] else None
            da = gemm_grad(m1, ad.shape, gs, *keep_b, False) if need[1] else None
            db = gemm_grad(m2, bd.shape, gs, *keep_a, True) if need[2] else None
            return dc, da, db

        attach(res, backward, (c, m1, m2), "AddmmBackward0", saved=(m1, m2))
    return res
