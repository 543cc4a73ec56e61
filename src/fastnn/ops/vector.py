"""Operations on vectors along one dim, by ``torch.nn.functional``'s names:
``normalize``, ``cosine_similarity`` and ``bilinear`` (x1^T A x2 + b, the op of
``nn.Bilinear``). NumPy passes and BLAS products, each with its backward written out."""
import numpy as np

from ._util import _wrap, as_tensor, attach, check_dim, float_tensor, recording, unbroadcast

__all__ = ["normalize", "cosine_similarity", "bilinear"]


def _norm(xd, p, axis):
    """||x||_p along ``axis`` (kept as a size-1 dim)."""
    a = np.abs(xd)
    if p == 2:
        return np.sqrt(np.sum(xd * xd, axis=axis, keepdims=True))
    if p == 1:
        return np.sum(a, axis=axis, keepdims=True)
    if np.isinf(p):
        return np.max(a, axis=axis, keepdims=True)
    return np.sum(a ** p, axis=axis, keepdims=True) ** (1 / p)


def _norm_grad(xd, n, p, axis):
    """d ||x||_p / dx (0 where the norm is 0, as PyTorch's)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if p == 1:
            return np.sign(xd)
        if np.isinf(p):
            top = np.abs(xd) == n
            return np.sign(xd) * top / np.sum(top, axis=axis, keepdims=True)
        scaled = xd if p == 2 else np.sign(xd) * np.abs(xd) ** (p - 1)
        return np.where(n == 0, 0, scaled / (n if p == 2 else n ** (p - 1)))


def _unit(xd, p, axis, eps):
    """(x / max(||x||, eps), the norm, the clamped norm)."""
    n = _norm(xd, p, axis)
    den = np.maximum(n, eps).astype(xd.dtype, copy=False)
    return xd / den, n, den


def _unit_grad(g, xd, n, den, p, axis, through_clamp):
    """The gradient of x / den, den = max(||x||, eps), for upstream ``g``. With
    ``through_clamp`` the norm's gradient flows even where eps was taken (as PyTorch's
    cosine_similarity, which clamps without grad); otherwise only where ||x|| >= eps."""
    dden = -np.sum(g * xd, axis=axis, keepdims=True) / (den * den)
    if not through_clamp:
        dden = np.where(n >= den, dden, 0)
    return (g / den + dden * _norm_grad(xd, n, p, axis)).astype(xd.dtype, copy=False)


def normalize(input, p=2.0, dim=1, eps=1e-12, out=None):  # noqa: A002 (PyTorch's names)
    """x / max(||x||_p, eps) along ``dim``.

    Example:
        >>> F.normalize(fastnn.randn(4, 3), dim=1)   # unit rows
    """
    if out is not None:
        raise NotImplementedError("normalize: out= is not supported")
    x = float_tensor(input, "normalize")
    xd = x.data
    p = float(p)
    if not p > 0:
        raise ValueError(f"normalize: p must be > 0, got {p}")
    axis = check_dim(dim, xd.ndim, "normalize")
    y, n, den = _unit(xd, p, axis, eps)
    res = _wrap(y)
    if recording(x):
        def backward(g):
            return (_unit_grad(g, xd, n, den, p, axis, False),)

        attach(res, backward, (x,), "DivBackward0", saved=(x,))
    return res


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """sum(x1 / max(||x1||, eps) * x2 / max(||x2||, eps)) along ``dim``, after
    broadcasting x1 and x2 (PyTorch's formula, within [-1, 1]).

    Shape: x1, x2 broadcastable -> the broadcast shape without ``dim``.
    """
    op = "cosine_similarity"
    a, b = float_tensor(x1, op), float_tensor(x2, op)
    try:
        ad, bd = np.broadcast_arrays(a.data, b.data)
    except ValueError:
        raise ValueError(f"{op}: x1 of shape {a.shape} and x2 of shape {b.shape} do not broadcast") from None
    dt = np.result_type(ad.dtype, bd.dtype)
    ad, bd = ad.astype(dt, copy=False), bd.astype(dt, copy=False)
    axis = check_dim(dim, ad.ndim, op)
    ua, na, dena = _unit(ad, 2.0, axis, eps)
    ub, nb, denb = _unit(bd, 2.0, axis, eps)
    res = _wrap(np.sum(ua * ub, axis=axis))
    if recording(a, b):
        def backward(g):
            gk = np.expand_dims(g, axis)
            da = db = None
            if a.requires_grad:
                da = unbroadcast(_unit_grad(gk * ub, ad, na, dena, 2.0, axis, True), a.shape).astype(a.data.dtype)
            if b.requires_grad:
                db = unbroadcast(_unit_grad(gk * ua, bd, nb, denb, 2.0, axis, True), b.shape).astype(b.data.dtype)
            return da, db

        attach(res, backward, (a, b), "SumBackward1", saved=(a, b))
    return res


def bilinear(input1, input2, weight, bias=None):
    """y[n, o] = sum_ij x1[n, i] weight[o, i, j] x2[n, j] + bias[o].

    Shape: input1 (*, in1), input2 (*, in2) with the same leading dims, weight
    (out, in1, in2), bias (out,) -> (*, out).
    """
    op = "bilinear"
    a, b = float_tensor(input1, op), float_tensor(input2, op)
    w = as_tensor(weight)
    bt = None if bias is None else as_tensor(bias)
    ad, bd, wd = a.data, b.data, w.data
    if wd.ndim != 3 or ad.ndim < 1 or bd.ndim < 1 or ad.shape[:-1] != bd.shape[:-1] \
            or wd.shape[1:] != (ad.shape[-1], bd.shape[-1]) or (bt is not None and bt.shape != wd.shape[:1]):
        raise ValueError(f"{op}: expected input1 (*, in1), input2 (*, in2) with the same leading dims, weight "
                         f"(out, in1, in2) and bias (out,); got input1 {ad.shape}, input2 {bd.shape}, weight "
                         f"{wd.shape}, bias {None if bt is None else bt.shape}")
    dt = wd.dtype
    out_f, in1, in2 = wd.shape
    lead = ad.shape[:-1]
    A, B = ad.reshape(-1, in1).astype(dt, copy=False), bd.reshape(-1, in2).astype(dt, copy=False)
    wr = np.ascontiguousarray(wd.transpose(1, 0, 2)).reshape(in1, out_f * in2)
    T = (A @ wr).reshape(-1, out_f, in2)  # T[n, o, j] = sum_i x1[n, i] W[o, i, j]
    y = np.matmul(T, B[:, :, None])[:, :, 0]
    if bt is not None:
        y = y + bt.data
    res = _wrap(y.reshape(lead + (out_f,)))
    if recording(a, b, w, bt):
        def backward(g):
            G = np.asarray(g, dt).reshape(-1, out_f)
            dT = (G[:, :, None] * B[:, None, :]).reshape(-1, out_f * in2)
            da = (dT @ wr.T).reshape(ad.shape).astype(ad.dtype, copy=False) if a.requires_grad else None
            db = np.matmul(G[:, None, :], T)[:, 0, :].reshape(bd.shape).astype(bd.dtype, copy=False) \
                if b.requires_grad else None
            dw = (A.T @ dT).reshape(in1, out_f, in2).transpose(1, 0, 2).copy() if w.requires_grad else None
            dbias = G.sum(axis=0) if bt is not None and bt.requires_grad else None
            return da, db, dw, dbias

        attach(res, backward, (a, b, w, bt), "TrilinearBackward0")
    return res
