"""Embedding: a lookup table of learned vectors, like ``torch.nn.Embedding``."""
import numpy as np

from .. import _config
from ..ops.embedding import check_padding_idx, lookup
from ..tensor import Tensor
from . import init
from ._validate import check_positive_int
from .module import Module, Parameter


class Embedding(Module):
    """Maps integer indices to rows of ``weight``, like ``torch.nn.Embedding``.

    Args:
        num_embeddings: size of the table (valid indices are 0 .. num_embeddings - 1).
        embedding_dim: length of each vector.
        padding_idx: optional index whose row starts at zero and never receives a
            gradient (negative values count from the end, as in PyTorch).
        max_norm, norm_type, scale_grad_by_freq, sparse: PyTorch's options; only
            their defaults are supported (others raise NotImplementedError).
        dtype: parameter dtype (default: ``fastnn.get_default_dtype()``).
        generator: random source for the initialisation (default fastnn's).

    Shape:
        indices (*) of any integer dtype -> output (*, embedding_dim).
        weight (num_embeddings, embedding_dim), initialised N(0, 1).

    Example:
        >>> emb = fastnn.nn.Embedding(1000, 32)
        >>> emb(fastnn.tensor([[1, 2, 3]])).shape
        (1, 3, 32)
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, sparse=False, _weight=None, _freeze=False, device=None, dtype=None,
                 generator=None):
        super().__init__()
        self.num_embeddings = check_positive_int(num_embeddings, "Embedding", "num_embeddings")
        self.embedding_dim = check_positive_int(embedding_dim, "Embedding", "embedding_dim")
        if max_norm is not None or scale_grad_by_freq or sparse:
            raise NotImplementedError("Embedding: max_norm, scale_grad_by_freq and sparse are not supported")
        self.padding_idx = check_padding_idx(padding_idx, self.num_embeddings, "Embedding")
        self.max_norm, self.norm_type = None, norm_type
        self.scale_grad_by_freq, self.sparse = False, False
        dt = dtype or _config.get_default_dtype()
        shape = (self.num_embeddings, self.embedding_dim)
        if _weight is None:
            self.weight = Parameter(np.empty(shape, dt), requires_grad=not _freeze)
            self.reset_parameters(generator)
        else:
            data = _weight.data if isinstance(_weight, Tensor) else np.asarray(_weight)
            if data.shape != shape:
                raise ValueError(f"Embedding: _weight must have shape {shape}, got {data.shape}")
            self.weight = Parameter(data.astype(dtype or data.dtype, copy=False), requires_grad=not _freeze)

    def reset_parameters(self, generator=None):
        init.normal_(self.weight, 0.0, 1.0, generator)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None, max_norm=None, norm_type=2.0,
                        scale_grad_by_freq=False, sparse=False):
        """An Embedding holding a copy of ``embeddings`` (V, D); ``freeze`` turns off its gradient."""
        data = embeddings.data if isinstance(embeddings, Tensor) else np.asarray(embeddings)
        if data.ndim != 2 or data.dtype.kind != "f":
            raise ValueError(f"Embedding.from_pretrained: expected a 2-D float array, got shape "
                             f"{data.shape} dtype {data.dtype}")
        return cls(*data.shape, padding_idx=padding_idx, max_norm=max_norm, norm_type=norm_type,
                   scale_grad_by_freq=scale_grad_by_freq, sparse=sparse, _weight=data,
                   _freeze=freeze)

    def forward(self, input):  # noqa: A002 (PyTorch's name)
        return lookup(input, self.weight, self.padding_idx, "Embedding")

    def _config(self):
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim,
                "padding_idx": self.padding_idx}

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")
