"""``embedding``: rows of a table picked by integer indices (a gather kernel); the
weight gradient is a race-free scatter-add written straight into ``weight.grad``."""
import numpy as np

from ..kernels.embedding import embedding_backward, embedding_forward
from ._util import Tensor, _wrap, as_tensor, attach, direct_grad, recording

__all__ = ["embedding"]


class IndexOutOfRangeError(IndexError, ValueError):
    """An index outside the table: an IndexError, as PyTorch raises, and a ValueError,
    as fastnn raised before."""


def check_padding_idx(padding_idx, num_embeddings, op):
    """``padding_idx`` in [-V, V) as a row number in [0, V), or None."""
    if padding_idx is None:
        return None
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)) \
            or not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(f"{op}: padding_idx must be an int in [-{num_embeddings}, {num_embeddings}), "
                         f"got {padding_idx!r}")
    return int(padding_idx) % num_embeddings


def _indices(input, V, op):  # noqa: A002
    idx = input.data if isinstance(input, Tensor) else np.asarray(input)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{op}: indices must be an integer array, got dtype {idx.dtype}")
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= V:
            raise IndexOutOfRangeError(f"{op}: indices must be in [0, {V}) (num_embeddings={V}), got values in "
                                       f"[{lo}, {hi}] in input of shape {idx.shape}")
    return idx


def lookup(input, weight, padding_idx=None, op="embedding"):  # noqa: A002
    """``weight[input]`` with ``padding_idx``'s row getting no gradient; errors name ``op``."""
    weight = as_tensor(weight)
    w = weight.data
    if w.ndim != 2 or w.dtype.kind != "f":
        raise ValueError(f"{op}: expected a 2-D float weight (num_embeddings, embedding_dim), got shape "
                         f"{w.shape} dtype {w.dtype}")
    V, D = w.shape
    pad = check_padding_idx(padding_idx, V, op)
    idx = _indices(input, V, op)
    flat = np.ascontiguousarray(idx, dtype=np.int64).reshape(-1)
    if not w.flags.c_contiguous:
        w = np.ascontiguousarray(w)
    out2 = np.empty((flat.size, D), w.dtype)
    embedding_forward(out2, w, flat)
    out = _wrap(out2.reshape(idx.shape + (D,)))
    if recording(weight):
        pad_row = -1 if pad is None else pad

        def backward(g):  # out[i] = weight[idx[i]]: dweight[idx[i]] += g[i], except the padding row
            g2 = np.ascontiguousarray(g, dtype=w.dtype).reshape(flat.size, D)
            target = direct_grad(weight)
            if target is None:
                dw = np.empty((V, D), w.dtype)
                embedding_backward(dw, g2, flat, pad_row, False)
                return (dw,)
            embedding_backward(target[0], g2, flat, pad_row, target[1])
            return (None,)

        attach(out, backward, (weight,), "EmbeddingBackward0")
    return out


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,  # noqa: A002
              sparse=False):
    """Rows of ``weight`` picked by the integer ``input``, like ``torch.nn.functional.embedding``.

    ``padding_idx``'s row receives no gradient. ``max_norm``, ``scale_grad_by_freq``
    and ``sparse`` are not supported (NotImplementedError).

    Shape: input (*) integers in [0, num_embeddings), weight (num_embeddings, D) -> (*, D).
    """
    if max_norm is not None:
        raise NotImplementedError("embedding: max_norm is not supported (renormalise the weight yourself)")
    if scale_grad_by_freq:
        raise NotImplementedError("embedding: scale_grad_by_freq=True is not supported")
    if sparse:
        raise NotImplementedError("embedding: sparse gradients are not supported (use sparse=False)")
    return lookup(input, weight, padding_idx, "embedding")
