"""Embedding: a lookup table of learned vectors, like ``torch.nn.Embedding``."""
import numpy as np

from .. import _config
from ..kernels.embedding import embedding_backward, embedding_forward
from . import init
from ._validate import as_grad, check_positive_int
from .module import Module, Parameter


class Embedding(Module):
    """Maps integer indices to rows of ``weight``, like ``torch.nn.Embedding``.

    Args:
        num_embeddings: size of the table (valid indices are 0 .. num_embeddings - 1).
        embedding_dim: length of each vector.
        padding_idx: optional index whose row starts at zero and never receives a
            gradient (negative values count from the end, as in PyTorch).
        dtype: parameter dtype (default: ``fastnn.get_default_dtype()``).

    Shape:
        indices (*) of any integer dtype -> output (*, embedding_dim).
        weight (num_embeddings, embedding_dim), initialised N(0, 1).

    Example:
        >>> emb = fastnn.nn.Embedding(1000, 32)
        >>> emb(np.array([[1, 2, 3]])).shape
        (1, 3, 32)
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, dtype=None, generator=None):
        super().__init__()
        self.num_embeddings = check_positive_int(num_embeddings, "Embedding", "num_embeddings")
        self.embedding_dim = check_positive_int(embedding_dim, "Embedding", "embedding_dim")
        if padding_idx is not None:
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)) \
                    or not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise ValueError(f"Embedding: padding_idx must be an int in [-{self.num_embeddings}, "
                                 f"{self.num_embeddings}), got {padding_idx!r}")
            padding_idx = int(padding_idx) % self.num_embeddings
        self.padding_idx = padding_idx
        dt = dtype or _config.get_default_dtype()
        self.weight = Parameter(np.empty((self.num_embeddings, self.embedding_dim), dt))
        self._idx = None
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None):
        init.normal_(self.weight, 0.0, 1.0, generator)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None):
        """An Embedding holding a copy of ``embeddings`` (V, D); ``freeze`` turns off its gradient."""
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or embeddings.dtype.kind != "f":
            raise ValueError(f"Embedding.from_pretrained: expected a 2-D float array, got shape "
                             f"{embeddings.shape} dtype {embeddings.dtype}")
        layer = cls(*embeddings.shape, padding_idx=padding_idx, dtype=embeddings.dtype)
        layer.weight.data[...] = embeddings
        layer.weight.requires_grad = not freeze
        return layer

    def _check_indices(self, indices):
        idx = np.asarray(indices)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"Embedding: indices must be an integer array, got dtype {idx.dtype}")
        if idx.size:
            lo, hi = int(idx.min()), int(idx.max())
            if lo < 0 or hi >= self.num_embeddings:
                raise ValueError(f"Embedding: indices must be in [0, {self.num_embeddings}) "
                                 f"(num_embeddings={self.num_embeddings}), got values in [{lo}, {hi}] "
                                 f"in input of shape {idx.shape}")
        return idx

    def forward(self, indices):
        idx = self._check_indices(indices)
        w = self.weight.data
        flat = np.ascontiguousarray(idx, dtype=np.int64).reshape(-1)
        out = np.empty((flat.size, self.embedding_dim), w.dtype)
        embedding_forward(out, w, flat)
        self._idx = (flat, idx.shape) if self.training else None
        return out.reshape(idx.shape + (self.embedding_dim,))

    def backward(self, grad_output):
        """Accumulates the weight gradient; returns None (indices have no gradient)."""
        flat, shape = self._saved(self._idx)
        g = as_grad(grad_output, "Embedding", shape + (self.embedding_dim,), self.weight.data.dtype)
        if self.weight.requires_grad:
            dw, acc = self.weight.grad_for_write()
            pad = -1 if self.padding_idx is None else self.padding_idx
            embedding_backward(dw, g.reshape(flat.size, self.embedding_dim), flat, pad, acc)

    def _config(self):
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim,
                "padding_idx": self.padding_idx}

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")
