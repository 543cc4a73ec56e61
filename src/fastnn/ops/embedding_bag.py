"""``embedding_bag``: sums, means or maxima of bags of embedding rows, without
materialising the (bags, length, dim) lookup. Bags are contiguous runs of the
indices, so each is reduced with one ``np.*.reduceat``; the weight gradient reuses
the race-free scatter-add kernel of ``embedding``."""
import numpy as np

from ..kernels.embedding import embedding_backward
from ._util import Tensor, _wrap, as_tensor, attach, direct_grad, recording
from .embedding import IndexOutOfRangeError, check_padding_idx

__all__ = ["embedding_bag"]

_MODES = ("sum", "mean", "max")


def _ints(value, op, name):
    a = value.data if isinstance(value, Tensor) else np.asarray(value)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{op}: {name} must be an integer tensor, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def _bags(idx, offsets, include_last_offset, op):
    """(flat indices, bag bounds (B + 1,)) from a 2-D input or a 1-D input with offsets."""
    if idx.ndim == 2:
        if offsets is not None:
            raise ValueError(f"{op}: offsets must be None for a 2-D input (each row is a bag), got input "
                             f"{idx.shape}")
        B, L = idx.shape
        return idx.reshape(-1), np.arange(B + 1, dtype=np.int64) * L
    if idx.ndim != 1:
        raise ValueError(f"{op}: input must be 1-D (with offsets) or 2-D (one bag per row), got shape {idx.shape}")
    if offsets is None:
        raise ValueError(f"{op}: a 1-D input of shape {idx.shape} needs 1-D offsets (the start of each bag)")
    off = _ints(offsets, op, "offsets")
    n = idx.shape[0]
    if off.ndim != 1 or (include_last_offset and off.size < 1):
        raise ValueError(f"{op}: offsets must be 1-D{' and non-empty' if include_last_offset else ''}, got shape "
                         f"{off.shape}")
    bounds = off if include_last_offset else np.concatenate((off, [n]))
    if bounds.size > 1 and (bounds[0] != 0 or np.any(np.diff(bounds) < 0) or bounds[-1] > n):
        raise ValueError(f"{op}: offsets must start at 0, never decrease and stay within the {n} indices; got "
                         f"{off.tolist() if off.size <= 10 else off.shape}")
    return idx, bounds


def embedding_bag(input, weight, offsets=None, max_norm=None, norm_type=2, scale_grad_by_freq=False,  # noqa: A002
                  mode="mean", sparse=False, per_sample_weights=None, include_last_offset=False, padding_idx=None):
    """The sum, mean or max of each bag of rows of ``weight``, like
    ``torch.nn.functional.embedding_bag``. Indices equal to ``padding_idx`` are left
    out of their bag (and of its count); an empty bag gives zeros.

    Shape: input (B, L) with offsets None, or input (n,) with offsets (B,) (bag b is
    input[offsets[b]:offsets[b + 1]]; (B + 1,) with ``include_last_offset``);
    weight (V, D); per_sample_weights (mode 'sum' only) the input's shape -> (B, D).
    """
    op = "embedding_bag"
    if max_norm is not None or scale_grad_by_freq or sparse:
        raise NotImplementedError(f"{op}: max_norm, scale_grad_by_freq and sparse are not supported")
    if mode not in _MODES:
        raise ValueError(f"{op}: mode must be 'sum', 'mean' or 'max', got {mode!r}")
    weight = as_tensor(weight)
    w = weight.data
    if w.ndim != 2 or w.dtype.kind != "f":
        raise ValueError(f"{op}: expected a 2-D float weight (num_embeddings, embedding_dim), got shape {w.shape} "
                         f"dtype {w.dtype}")
    V, D = w.shape
    pad = check_padding_idx(padding_idx, V, op)
    idx = _ints(input, op, "input")
    if idx.size and (idx.min() < 0 or idx.max() >= V):
        raise IndexOutOfRangeError(f"{op}: indices must be in [0, {V}) (num_embeddings={V}), got values in "
                                   f"[{idx.min()}, {idx.max()}] in input of shape {idx.shape}")
    psw = None if per_sample_weights is None else as_tensor(per_sample_weights)
    if psw is not None and (mode != "sum" or psw.shape != idx.shape or psw.data.dtype.kind != "f"):
        raise ValueError(f"{op}: per_sample_weights must be a float tensor of the input's shape {idx.shape} and "
                         f"needs mode='sum'; got shape {psw.shape}, mode {mode!r}")
    flat, bounds = _bags(idx, offsets, include_last_offset, op)
    B = bounds.size - 1
    bag = np.repeat(np.arange(B), np.diff(bounds))  # the bag of each index in use
    sel = np.arange(bag.size) if pad is None else np.flatnonzero(flat[:bag.size] != pad)
    idx_k, bag_k = np.ascontiguousarray(flat[sel]), bag[sel]
    counts = np.bincount(bag_k, minlength=B)
    full = counts > 0
    starts = (np.cumsum(counts) - counts)[full]
    rows = w[idx_k]
    psw_k = None if psw is None else psw.data.reshape(-1)[sel].astype(w.dtype, copy=False)
    summed = rows if psw_k is None else rows * psw_k[:, None]
    out = np.zeros((B, D), w.dtype)
    if idx_k.size:
        reduce = np.maximum.reduceat if mode == "max" else np.add.reduceat
        out[full] = reduce(summed, starts, axis=0)
    if mode == "mean":
        out[full] /= counts[full, None]
    res = _wrap(out)
    if recording(weight, psw):
        def backward(g):
            G = np.asarray(g, w.dtype)
            if mode == "max":  # each (bag, column) maximum came from its first occurrence
                drows = np.zeros(rows.shape, w.dtype)
                if idx_k.size:
                    pos = np.where(rows == out[bag_k], np.arange(idx_k.size)[:, None], idx_k.size)
                    first = np.minimum.reduceat(pos, starts, axis=0)
                    drows[first, np.arange(D)[None, :]] = G[full]
            else:
                drows = G[bag_k] / counts[bag_k, None] if mode == "mean" else G[bag_k]
            dpsw = None
            if psw is not None and psw.requires_grad:  # d/dpsw = <G[bag], row>
                dpsw = np.zeros(psw.data.size, psw.data.dtype)
                dpsw[sel] = np.sum(drows * rows, axis=1)
                dpsw = dpsw.reshape(psw.shape)
            if psw_k is not None:
                drows = drows * psw_k[:, None]
            if not weight.requires_grad:
                return None, dpsw
            drows = np.ascontiguousarray(drows, dtype=w.dtype)
            target = direct_grad(weight)
            if target is None:
                dw = np.empty((V, D), w.dtype)
                embedding_backward(dw, drows, idx_k, -1, False)
                return dw, dpsw
            embedding_backward(target[0], drows, idx_k, -1, target[1])
            return None, dpsw

        attach(res, backward, (weight, psw), "EmbeddingBagBackward0")
    return res
