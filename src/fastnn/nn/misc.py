"""Small layers with PyTorch's names and arguments: ``Bilinear``, ``Unflatten`` and
``EmbeddingBag``. Each ``forward`` is one call of its functional form."""
import math

import numpy as np

from .. import _config
from ..ops.embedding import check_padding_idx
from ..ops.shape import unflatten
from ..tensor import Tensor
from . import functional as F
from . import init
from ._validate import check_positive_int
from .module import Module, Parameter
from .parameter import add_weight_and_bias

__all__ = ["Bilinear", "Unflatten", "EmbeddingBag"]


class Bilinear(Module):
    """y = x1^T A x2 + b, like ``torch.nn.Bilinear``.

    Args:
        in1_features, in2_features: sizes of the two inputs' last dims.
        out_features: size of each output sample.
        bias: learn an additive bias (default True).
        dtype: parameter dtype (default: ``fastnn.get_default_dtype()``).

    Shape: input1 (*, in1_features), input2 (*, in2_features) with the same leading
        dims -> (*, out_features). weight (out_features, in1_features, in2_features),
        bias (out_features,), both initialised U(-1/sqrt(in1), 1/sqrt(in1)).

    Example:
        >>> m = nn.Bilinear(20, 30, 40)
        >>> m(fastnn.randn(128, 20), fastnn.randn(128, 30)).shape
        (128, 40)
    """

    def __init__(self, in1_features, in2_features, out_features, bias=True, device=None, dtype=None, generator=None):
        super().__init__()
        self.in1_features = check_positive_int(in1_features, "Bilinear", "in1_features")
        self.in2_features = check_positive_int(in2_features, "Bilinear", "in2_features")
        self.out_features = check_positive_int(out_features, "Bilinear", "out_features")
        add_weight_and_bias(self, (self.out_features, self.in1_features, self.in2_features), self.out_features,
                            bias, dtype)
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None):
        bound = 1 / math.sqrt(self.in1_features)
        init.uniform_(self.weight, -bound, bound, generator)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound, generator)

    def forward(self, input1, input2):
        return F.bilinear(input1, input2, self.weight, self.bias)

    def _config(self):
        return {"in1_features": self.in1_features, "in2_features": self.in2_features,
                "out_features": self.out_features, "bias": self.bias is not None}

    def extra_repr(self):
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")


class Unflatten(Module):
    """Splits dim ``dim`` into ``unflattened_size`` (one entry may be -1).

    Shape: (*, prod(unflattened_size), *) -> (*, *unflattened_size, *).

    Example:
        >>> nn.Unflatten(1, (2, 5))(fastnn.randn(4, 10)).shape
        (4, 2, 5)
    """

    def __init__(self, dim, unflattened_size):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise TypeError(f"Unflatten: dim must be an int, got {dim!r}")
        if not isinstance(unflattened_size, (tuple, list)) or not all(
                isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in unflattened_size):
            raise TypeError(f"Unflatten: unflattened_size must be a tuple of ints, got {unflattened_size!r}")
        self.dim, self.unflattened_size = int(dim), tuple(int(s) for s in unflattened_size)

    def forward(self, input):  # noqa: A002 (PyTorch's name)
        return unflatten(input, self.dim, self.unflattened_size)

    def _config(self):
        return {"dim": self.dim, "unflattened_size": list(self.unflattened_size)}

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


class EmbeddingBag(Module):
    """Sums, means or maxima of bags of embeddings, like ``torch.nn.EmbeddingBag``.

    Args:
        num_embeddings: size of the table.
        embedding_dim: length of each vector.
        mode: 'mean' (default), 'sum' or 'max'.
        include_last_offset: offsets hold B + 1 entries, the last the end of the last bag.
        padding_idx: an index left out of its bag; its row starts at zero and gets no gradient.
        max_norm, norm_type, scale_grad_by_freq, sparse: only their defaults are supported.
        dtype: parameter dtype (default: ``fastnn.get_default_dtype()``).

    Shape: forward(input, offsets=None, per_sample_weights=None): input (B, L) (one
        bag per row), or input (n,) with offsets (B,) -> (B, embedding_dim).
        weight (num_embeddings, embedding_dim), initialised N(0, 1).

    Example:
        >>> bag = nn.EmbeddingBag(10, 3, mode="sum")
        >>> bag(fastnn.tensor([1, 2, 4, 5, 4, 3, 2, 9]), fastnn.tensor([0, 4])).shape
        (2, 3)
    """

    def __init__(self, num_embeddings, embedding_dim, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
                 mode="mean", sparse=False, _weight=None, include_last_offset=False, padding_idx=None, device=None,
                 dtype=None, generator=None):
        super().__init__()
        self.num_embeddings = check_positive_int(num_embeddings, "EmbeddingBag", "num_embeddings")
        self.embedding_dim = check_positive_int(embedding_dim, "EmbeddingBag", "embedding_dim")
        if max_norm is not None or scale_grad_by_freq or sparse:
            raise NotImplementedError("EmbeddingBag: max_norm, scale_grad_by_freq and sparse are not supported")
        if mode not in ("sum", "mean", "max"):
            raise ValueError(f"EmbeddingBag: mode must be 'sum', 'mean' or 'max', got {mode!r}")
        self.mode, self.include_last_offset = mode, bool(include_last_offset)
        self.padding_idx = check_padding_idx(padding_idx, self.num_embeddings, "EmbeddingBag")
        shape = (self.num_embeddings, self.embedding_dim)
        if _weight is None:
            self.weight = Parameter(np.empty(shape, dtype or _config.get_default_dtype()))
            self.reset_parameters(generator)
        else:
            data = _weight.data if isinstance(_weight, Tensor) else np.asarray(_weight)
            if data.shape != shape:
                raise ValueError(f"EmbeddingBag: _weight must have shape {shape}, got {data.shape}")
            self.weight = Parameter(data.astype(dtype or data.dtype, copy=False))

    def reset_parameters(self, generator=None):
        init.normal_(self.weight, 0.0, 1.0, generator)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    def forward(self, input, offsets=None, per_sample_weights=None):  # noqa: A002
        return F.embedding_bag(input, self.weight, offsets, mode=self.mode, per_sample_weights=per_sample_weights,
                               include_last_offset=self.include_last_offset, padding_idx=self.padding_idx)

    def _config(self):
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim, "mode": self.mode,
                "include_last_offset": self.include_last_offset, "padding_idx": self.padding_idx}

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}, mode={self.mode!r}"
        return s + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")
