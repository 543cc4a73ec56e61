"""``scaled_dot_product_attention``: softmax(q k^T * scale + mask) v over the last two
dims, with any leading dims.

The common case runs the fused kernels of ``kernels.attention`` (a tiled online
softmax, forward and backward): memory grows linearly with the sequence length,
no L x S matrix per head is formed. Two cases are computed unfused, materialising
the (..., L, S) weights with the generic operations: ``dropout_p > 0`` (the dropout
mask has that size anyway) and a float ``attn_mask`` that requires grad.
``attention_with_weights`` is that unfused path; ``MultiheadAttention`` uses it when
it must return the weights.
"""
import math

import numpy as np

from ..kernels import attention as attn_k
from ..kernels import attention_backward as attn_bk
from ..kernels._threading import get_threads
from ..kernels.microkernel import MR
from . import dropout as _dropout
from ._util import _wrap, as_tensor, attach, float_tensor, recording
from .arith import add, masked_fill, mul
from .products import matmul
from .shape import transpose
from .softmax_ops import softmax

__all__ = ["scaled_dot_product_attention"]

_OP = "scaled_dot_product_attention"


def additive_mask(mask, dtype, op, true_means_keep=True):
    """A boolean or float mask as an additive float array of ``dtype``: a boolean
    one becomes 0 where attention is allowed and -inf elsewhere (``True`` allows in
    ``scaled_dot_product_attention``, masks in ``MultiheadAttention``)."""
    m = mask.data if hasattr(mask, "grad_fn") else np.asarray(mask)
    if m.dtype == np.bool_:
        blocked = ~m if true_means_keep else m
        return np.where(blocked, -np.inf, 0).astype(dtype)
    if m.dtype.kind != "f":
        raise TypeError(f"{op}: expected a bool or float mask, got dtype {m.dtype} (shape {m.shape})")
    return m.astype(dtype, copy=False)


def _check_inputs(query, key, value):
    q, k, v = (float_tensor(t, _OP) for t in (query, key, value))
    qs, ks, vs = q.data.shape, k.data.shape, v.data.shape
    if (len(qs) < 2 or len(ks) != len(qs) or len(vs) != len(qs) or ks[:-2] != qs[:-2] or vs[:-2] != qs[:-2]
            or ks[-1] != qs[-1] or vs[-2] != ks[-2]):
        raise RuntimeError(f"{_OP}: expected query (..., L, E), key (..., S, E) and value (..., S, Ev) with the "
                           f"same leading dims, got shapes {qs}, {ks} and {vs}")
    if not q.data.dtype == k.data.dtype == v.data.dtype:
        raise RuntimeError(f"{_OP}: expected query, key and value to have the same dtype, got "
                           f"{q.data.dtype}, {k.data.dtype} and {v.data.dtype}")
    return q, k, v


def _check_mask_shape(shape, target, op):
    if len(shape) > len(target) or any(m not in (1, t) for m, t in zip(shape[::-1], target[::-1])):
        raise RuntimeError(f"{op}: attn_mask of shape {shape} cannot be broadcast to (..., L, S) = {target}")


def attention_with_weights(q, k, v, mask=None, dropout_p=0.0, is_causal=False, scale=None, safe=False):
    """(softmax(q k^T * scale + mask) [dropped out] v, those weights), materialised
    with the generic operations (any gradients, mask included). ``mask``: an
    additive float Tensor or array broadcastable to (..., L, S), or None. ``safe``:
    rows with every key masked get zero weights (as the fused kernel gives), not NaN
    (as ``MultiheadAttention``'s weights are in PyTorch)."""
    L, S = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    scores = mul(matmul(q, transpose(k, -2, -1)), scale)
    if is_causal:
        scores = add(scores, np.where(np.tril(np.ones((L, S), bool)), 0, -np.inf).astype(scores.data.dtype))
    if mask is not None:
        scores = add(scores, mask)
    dead = np.isneginf(scores.data).all(-1, keepdims=True) if safe else None
    if dead is not None and dead.any():
        weights = masked_fill(softmax(masked_fill(scores, dead, 0.0), -1), dead, 0.0)
    else:
        weights = softmax(scores, -1)
    if dropout_p > 0:
        weights = _dropout.dropout(weights, dropout_p, True)
    return matmul(weights, v), weights


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,  # noqa: A002
                                 scale=None):
    """softmax(query @ key^T * scale + attn_mask) @ value, like
    ``torch.nn.functional.scaled_dot_product_attention``.

    Args:
        query, key, value: float tensors (..., L, E), (..., S, E), (..., S, Ev).
        attn_mask: bool (True: the query may attend to the key) or float (added to
            the scores), broadcastable to (..., L, S).
        dropout_p: dropout on the attention weights (always applied when > 0, as in
            PyTorch; pass 0 in eval). Computed unfused (materialising the weights).
        is_causal: query i attends to keys j <= i (no ``attn_mask`` then).
        scale: default 1 / sqrt(E).

    Shape: -> (..., L, Ev). A query whose keys are all masked gets zeros.

    Example:
        >>> q = fastnn.randn(2, 4, 128, 16)
        >>> F.scaled_dot_product_attention(q, q, q, is_causal=True).shape
        (2, 4, 128, 16)
    """
    q, k, v = _check_inputs(query, key, value)
    if attn_mask is not None and is_causal:
        raise RuntimeError(f"{_OP}: explicit attn_mask should not be set when is_causal=True")
    dropout_p = float(dropout_p)
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"{_OP}: dropout_p has to be between 0 and 1, but got {dropout_p}")
    dt = q.data.dtype
    lead, (L, D), S, Dv = q.data.shape[:-2], q.data.shape[-2:], k.data.shape[-2], v.data.shape[-1]
    mask = None
    if attn_mask is not None:
        m = as_tensor(attn_mask)
        _check_mask_shape(m.data.shape, lead + (L, S), _OP)
        mask = m if m.data.dtype.kind == "f" and recording(m) else additive_mask(m, dt, _OP)
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    if dropout_p > 0 or not isinstance(mask, (np.ndarray, type(None))) or 0 in (L, S, D, Dv) or 0 in lead:
        return attention_with_weights(q, k, v, mask, dropout_p, is_causal, scale, safe=True)[0]
    return _fused(q, k, v, mask, is_causal, scale)


def pack_size(layout, R, D, NR, rows_pad):
    """Elements per head of R rows of D packed in ``layout`` (see ``kernels.attention``)."""
    if layout == attn_k.A_ROWS:
        return -(-R // MR) * MR * D
    if layout == attn_k.B_COLS:
        return rows_pad * D
    return -(-D // NR) * NR * rows_pad


def _pack(x3, layout, NR, rows_pad):
    """x3 (BH, R, D) packed per head in ``layout`` (see ``kernels.attention``)."""
    BH, R, D = x3.shape
    dst = np.empty((BH, pack_size(layout, R, D, NR, rows_pad)), x3.dtype)
    x4 = x3[None]
    attn_k.pack_heads(dst, x4, layout, NR, rows_pad, attn_k.pack_handle(dst, x4, layout, NR, rows_pad))
    return dst


def _kernel_mask(mask, lead, L, S, dt):
    """(masks (Mb, Lm, S), head -> mask index (BH,), Lm, present?) for the kernels,
    keeping a mask broadcast over heads or queries at its own size."""
    BH = math.prod(lead)
    if mask is None:
        return np.zeros((1, 1, 1), dt), np.zeros(BH, np.int64), 1, False
    full = (1,) * (len(lead) + 2 - mask.ndim) + mask.shape
    batch, rows = full[:-2], full[-2]
    # writable copies where broadcast_to gave read-only views: a read-only array is
    # another Numba type, which would compile the kernels once more
    masks = np.require(np.broadcast_to(mask.reshape(full), batch + (rows, S)), dt, ("C", "W"))
    index = np.broadcast_to(np.arange(math.prod(batch)).reshape(batch), lead)
    return masks.reshape(-1, rows, S), np.require(index, np.int64, ("C", "W")).reshape(BH), rows, True


def _fused(q, k, v, mask, causal, scale):
    dt = q.data.dtype
    lead, (L, D), S, Dv = q.data.shape[:-2], q.data.shape[-2:], k.data.shape[-2], v.data.shape[-1]
    BH = math.prod(lead)
    q3 = np.ascontiguousarray(q.data).reshape(BH, L, D)
    k3 = np.ascontiguousarray(k.data).reshape(BH, S, D)
    v3 = np.ascontiguousarray(v.data).reshape(BH, S, Dv)
    NR = 32 if dt == np.float32 else 16
    Lp, Sp = -(-L // attn_k.BQ) * attn_k.BQ, -(-S // attn_k.BK) * attn_k.BK
    masks, index, rows, has_mask = _kernel_mask(mask, lead, L, S, dt)
    scale = dt.type(scale)
    out3 = np.empty((BH, L, Dv), dt)
    grad = recording(q, k, v)
    lse = np.empty((BH, L if grad else 0), dt)  # the row logsumexp, for the backward only
    args = (out3[None], lse, _pack(k3, attn_k.A_ROWS, NR, S), _pack(q3, attn_k.B_COLS, NR, Lp),
            _pack(v3, attn_k.B_ROWS, NR, Sp), np.ascontiguousarray(masks.transpose(0, 2, 1)),
            index, rows, has_mask, scale, bool(causal), S, D, NR, Sp)
    attn_k.attention_forward(*args, attn_k.forward_handle(*args))
    out = _wrap(out3.reshape(lead + (L, Dv)))
    if grad:
        need = (q.requires_grad, k.requires_grad, v.requires_grad)

        def backward(g):  # flash-attention 2: P recomputed block by block from lse
            do3 = np.ascontiguousarray(g, dtype=dt).reshape(BH, L, Dv)
            delta = np.ascontiguousarray(np.einsum("bld,bld->bl", do3, out3), dtype=dt)
            # the gradients in their own arrays, shaped as the inputs (the engine installs
            # an array it owns as .grad without copying it), written through 3-D views
            grads = tuple(np.empty(t.data.shape, dt) for t in (q, k, v))
            dq, dk, dv = (g.reshape(x.shape) for g, x in zip(grads, (q3, k3, v3)))
            threads = get_threads()
            args = (dq, dk, dv, _pack(q3, attn_k.A_ROWS, NR, L), _pack(do3, attn_k.A_ROWS, NR, L),
                    _pack(k3, attn_k.B_COLS, NR, Sp), _pack(v3, attn_k.B_COLS, NR, Sp),
                    _pack(k3, attn_k.B_ROWS, NR, Sp), _pack(q3, attn_k.B_ROWS, NR, Lp),
                    _pack(do3, attn_k.B_ROWS, NR, Lp), lse, delta, masks, index, rows, has_mask, scale, bool(causal),
                    NR, Lp, Sp)
            attn_bk.attention_backward(*args, threads > 1 and BH < 2 * threads, attn_bk.backward_handle(*args))
            return tuple(grad if wanted else None for grad, wanted in zip(grads, need))

        attach(out, backward, (q, k, v), "ScaledDotProductFlashAttentionForCpuBackward0", saved=(q, k, v))
    return out
