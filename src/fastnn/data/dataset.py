"""Datasets, as in ``torch.utils.data``: map-style and iterable ones, and ways to combine them.

A map-style dataset has ``__getitem__(i)`` and ``__len__``; ``TensorDataset``,
``Subset`` and ``ConcatDataset`` are built from others. ``TensorDataset`` (and a
``Subset`` of one) also gathers a whole batch with one fancy index per tensor
(``gather``), which ``DataLoader`` uses instead of collating sample by sample.
"""
import bisect
import itertools
import math
import mmap
import warnings

import numpy as np

from .. import random as fastnn_random
from ..tensor import Tensor, _wrap

__all__ = ["Dataset", "IterableDataset", "TensorDataset", "Subset", "ConcatDataset", "random_split"]


class Dataset:
    """A map-style dataset: subclasses define ``__getitem__(index)`` and ``__len__()``.

    ``a + b`` is ``ConcatDataset([a, b])``.

    Example:
        >>> class Squares(Dataset):
        ...     def __len__(self):
        ...         return 10
        ...     def __getitem__(self, i):
        ...         return np.float32(i), np.float32(i * i)
    """

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __add__(self, other):
        return ConcatDataset([self, other])


class IterableDataset(Dataset):
    """A dataset that is a stream: subclasses define ``__iter__``.

    With ``num_workers > 0`` every worker iterates its own copy; use
    ``fastnn.data.get_worker_info()`` inside ``__iter__`` to give each a share.
    """

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__")

    def __add__(self, other):
        raise TypeError("IterableDataset does not support + (use itertools.chain over the datasets)")


def check_index(index, n, where):
    """``index`` as an int in ``[0, n)`` (negative counts from the end); IndexError otherwise."""
    if isinstance(index, Tensor):
        index = index.item()
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"{where}: indices must be integers, got {type(index).__name__}")
    i = int(index)
    if not -n <= i < n:
        raise IndexError(f"{where}: index {i} is out of range for a dataset of {n} samples")
    return i + n if i < 0 else i


def check_indices(indices, n, where):
    """An int64 array of batch indices in ``[0, n)``; IndexError naming the first bad one."""
    idx = np.asarray(indices.data if isinstance(indices, Tensor) else indices)
    if idx.dtype.kind not in "iu" and idx.size:
        raise TypeError(f"{where}: indices must be integers, got dtype {idx.dtype}")
    idx = idx.astype(np.int64, copy=False).reshape(-1)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        bad = idx[(idx < -n) | (idx >= n)][0]
        raise IndexError(f"{where}: index {int(bad)} is out of range for a dataset of {n} samples")
    return np.where(idx < 0, idx + n, idx) if idx.size and idx.min() < 0 else idx


def take_rows(array, idx):
    """``array[idx]`` for a batch of row indices; a memory-mapped array is read in
    ascending order (one pass over the file) and the rows put back in ``idx``'s order."""
    if not isinstance(array, np.memmap) or idx.size < 2 or bool(np.all(idx[1:] >= idx[:-1])):
        return array[idx]
    order = np.argsort(idx, kind="stable")
    out = np.empty((idx.size,) + array.shape[1:], array.dtype)
    out[order] = array[idx[order]]
    return out


class _MemmapFile:
    """A whole-file ``np.memmap`` pickled as its file name (reopened read-only), not its bytes."""

    def __init__(self, array):
        order = "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"
        self.args = (array.filename, array.dtype, "r", array.offset, array.shape, order)

    def open(self):
        return np.memmap(*self.args)

    @staticmethod
    def of(array):
        whole = isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap) and array.filename
        return _MemmapFile(array) if whole else array


class TensorDataset(Dataset):
    """Samples are rows of the given tensors: ``dataset[i] == (t0[i], t1[i], ...)``.

    Args:
        *tensors: Tensors or arrays (memory-mapped ones too: rows are read per
            batch) with the same first dimension.

    Example:
        >>> ds = TensorDataset(np.zeros((100, 3), np.float32), np.arange(100))
        >>> x0, y0 = ds[0]
    """

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset: expected at least one tensor")
        arrays = [t.data if isinstance(t, Tensor) else t if isinstance(t, np.ndarray) else np.asarray(t)
                  for t in tensors]
        sizes = [a.shape[0] if a.ndim else None for a in arrays]
        if None in sizes or len(set(sizes)) != 1:
            shapes = ", ".join(str(tuple(a.shape)) for a in arrays)
            raise ValueError(f"TensorDataset: size mismatch between tensors: every tensor needs the same "
                             f"first dimension, got shapes {shapes}")
        self._arrays = tuple(arrays)
        self.tensors = tuple(t if isinstance(t, Tensor) else _wrap(a) for t, a in zip(tensors, arrays))

    def __len__(self):
        return self._arrays[0].shape[0]

    def __getitem__(self, index):
        i = check_index(index, len(self), "TensorDataset")
        return tuple(_wrap(np.asarray(a[i])) for a in self._arrays)

    def gather(self, indices):
        """The collated batch of ``indices`` (what ``default_collate`` of the samples gives:
        a list with one batch Tensor per tensor), one fancy index per tensor."""
        idx = check_indices(indices, len(self), "TensorDataset")
        return [_wrap(take_rows(a, idx)) for a in self._arrays]

    def __getstate__(self):
        return {"arrays": tuple(_MemmapFile.of(a) for a in self._arrays)}

    def __setstate__(self, state):
        self._arrays = tuple(a.open() if isinstance(a, _MemmapFile) else a for a in state["arrays"])
        self.tensors = tuple(_wrap(a) for a in self._arrays)


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices`` (in that order).

    Args:
        dataset: any map-style dataset.
        indices: a sequence of indices into it.
    """

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = indices

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, index):
        if isinstance(index, list):
            return [self[i] for i in index]
        return self.dataset[self.indices[check_index(index, len(self), "Subset")]]

    def gather(self, indices):
        """The collated batch (see ``TensorDataset.gather``), when ``dataset`` can gather."""
        cached = getattr(self, "_index_array", None)
        if cached is None or cached[0] is not self.indices or len(cached[1]) != len(self.indices):
            cached = self._index_array = (self.indices, np.asarray(self.indices, dtype=np.int64).reshape(-1))
        idx = check_indices(indices, len(self), "Subset")
        return self.dataset.gather(cached[1][idx])


class ConcatDataset(Dataset):
    """The datasets one after the other.

    Args:
        datasets: map-style datasets (not ``IterableDataset``).

    Attributes:
        cumulative_sizes: the running total of their lengths.
    """

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: datasets should not be an empty iterable")
        for d in self.datasets:
            if isinstance(d, IterableDataset):
                raise ValueError("ConcatDataset does not support IterableDataset")
        self.cumulative_sizes = list(itertools.accumulate(len(d) for d in self.datasets))

    def __len__(self):
        return self.cumulative_sizes[-1]

    def __getitem__(self, index):
        i = check_index(index, len(self), "ConcatDataset")
        k = bisect.bisect_right(self.cumulative_sizes, i)
        return self.datasets[k][i - (self.cumulative_sizes[k - 1] if k else 0)]


def can_gather(dataset):
    """True when ``dataset.gather(indices)`` gives the batch that collating its samples would:
    a ``TensorDataset``, or ``Subset``s of one, whose ``__getitem__`` is not overridden."""
    if isinstance(dataset, Subset):
        return type(dataset).__getitem__ is Subset.__getitem__ and can_gather(dataset.dataset)
    return isinstance(dataset, TensorDataset) and type(dataset).__getitem__ is TensorDataset.__getitem__


def _split_lengths(lengths, n):
    """PyTorch's rule: fractions summing to 1 become counts, the remainder spread round-robin."""
    if math.isclose(sum(lengths), 1) and sum(lengths) <= n:
        counts = []
        for i, frac in enumerate(lengths):
            if frac < 0 or frac > 1:
                raise ValueError(f"random_split: fraction at index {i} is not between 0 and 1")
            counts.append(int(math.floor(n * frac)))
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        for i, length in enumerate(counts):
            if length == 0:
                warnings.warn(f"random_split: length of split at index {i} is 0; this might result in an "
                              f"empty dataset", stacklevel=3)
        lengths = counts
    if any(isinstance(v, bool) or not float(v).is_integer() or v < 0 for v in lengths):
        raise ValueError(f"random_split: lengths must be non-negative ints or fractions summing to 1, "
                         f"got {list(lengths)}")
    lengths = [int(v) for v in lengths]
    if sum(lengths) != n:
        raise ValueError(f"random_split: sum of input lengths ({sum(lengths)}) does not equal the length "
                         f"of the input dataset ({n})")
    return lengths


def random_split(dataset, lengths, generator=None):
    """Split ``dataset`` at random into non-overlapping ``Subset``s.

    Args:
        dataset: a map-style dataset.
        lengths: the subsets' lengths, or fractions summing to 1 (``floor(n * f)``
            each, the remainder added one by one from the first subset on).
        generator: a NumPy Generator or int seed (default: fastnn's default
            generator, ``fastnn.manual_seed``).

    Example:
        >>> train, val = random_split(ds, [0.8, 0.2], generator=np.random.default_rng(0))
    """
    lengths = _split_lengths(list(lengths), len(dataset))
    indices = fastnn_random.resolve(generator).permutation(sum(lengths)).tolist()
    return [Subset(dataset, indices[end - length:end])
            for end, length in zip(itertools.accumulate(lengths), lengths)]
