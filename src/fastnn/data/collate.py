"""Turning samples into batches (``default_collate``, ``default_convert``) and fetching them.

``default_collate`` follows PyTorch's: Tensors and arrays are stacked into one
batch Tensor, Python floats become a float64 Tensor and ints an int64 one,
strings stay a list, and tuples, lists, dicts and named tuples are collated
field by field (a tuple sample gives a list, as in PyTorch).

A fetcher maps what the sampler yields (a batch of indices, or one index when
automatic batching is off) to what the loader returns; a map-style dataset that
can gather (``TensorDataset``, a ``Subset`` of one, or an array used as the
dataset) gets its whole batch with one fancy index per tensor.
"""
import collections.abc

import numpy as np

from ..tensor import Tensor, _wrap
from .dataset import can_gather, check_indices, take_rows

__all__ = ["default_collate", "default_convert"]

_ERROR = "default_collate: batch must contain Tensors, numpy arrays, numbers, dicts or lists; found {}"


def stack_samples(arrays, where):
    """``np.stack(arrays)``; a RuntimeError naming the shapes when the samples are ragged."""
    first = arrays[0].shape
    for i, a in enumerate(arrays):
        if a.shape != first:
            raise RuntimeError(f"{where}: stack expects each sample to be of equal size, but got shape "
                               f"{tuple(first)} at entry 0 and {tuple(a.shape)} at entry {i} (pad the samples "
                               f"to one shape, or pass a collate_fn that does)")
    return np.stack(arrays)


def _numeric(array):
    if array.dtype.kind in "OSUV":
        raise TypeError(_ERROR.format(array.dtype))
    return array


def default_collate(batch):
    """Collate a list of samples into a batch (see the module docstring).

    Example:
        >>> default_collate([(np.zeros(3), 0), (np.ones(3), 1)])  # [Tensor (2, 3), Tensor([0, 1])]
    """
    elem = batch[0]
    if isinstance(elem, (Tensor, np.ndarray)):
        arrays = [b.data if isinstance(b, Tensor) else _numeric(np.asarray(b)) for b in batch]
        return _wrap(stack_samples(arrays, "default_collate"))
    if isinstance(elem, np.generic):
        return _wrap(_numeric(np.array(batch)))
    if isinstance(elem, float):
        return _wrap(np.array(batch, dtype=np.float64))
    if isinstance(elem, bool):
        return _wrap(np.array(batch, dtype=np.bool_))
    if isinstance(elem, int):
        return _wrap(np.array(batch, dtype=np.int64))
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        return {key: default_collate([d[key] for d in batch]) for key in elem}
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # named tuple
        return type(elem)(*(default_collate(list(samples)) for samples in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        if any(len(b) != size for b in batch):
            sizes = sorted({len(b) for b in batch})
            raise RuntimeError(f"default_collate: each element in list of batch should be of equal size, "
                               f"got sizes {sizes}")
        return [default_collate(list(samples)) for samples in zip(*batch)]
    raise TypeError(_ERROR.format(type(elem).__name__))


def default_convert(data):
    """Arrays and NumPy scalars become Tensors, recursively (the collate of ``batch_size=None``)."""
    if isinstance(data, Tensor):
        return data
    if isinstance(data, (np.ndarray, np.generic)):
        array = np.asarray(data)
        return data if array.dtype.kind in "OSUV" else _wrap(array)
    if isinstance(data, collections.abc.Mapping):
        return {key: default_convert(data[key]) for key in data}
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
        return [default_convert(d) for d in data]
    return data


class MapFetcher:
    """Batches of a map-style dataset from index arrays (or single samples from ints)."""

    def __init__(self, dataset, auto_collation, collate_fn):
        self.dataset, self.auto_collation, self.collate_fn = dataset, auto_collation, collate_fn
        self.gather = None
        if auto_collation and collate_fn is default_collate:
            if can_gather(dataset):
                self.gather = dataset.gather
            elif isinstance(dataset, (np.ndarray, Tensor)):
                array = dataset.data if isinstance(dataset, Tensor) else dataset
                self.gather = lambda idx: _wrap(take_rows(array, check_indices(idx, len(array), "DataLoader")))

    def fetch(self, index):
        if not self.auto_collation:
            return self.collate_fn(self.dataset[index])
        if self.gather is not None:
            return self.gather(index)
        index = index.tolist() if isinstance(index, np.ndarray) else list(index)
        getitems = getattr(self.dataset, "__getitems__", None)
        data = getitems(index) if getitems else [self.dataset[i] for i in index]
        return self.collate_fn(data)


class IterableFetcher:
    """Batches of ``batch_size`` samples from an iterable dataset's iterator."""

    def __init__(self, dataset, auto_collation, collate_fn, drop_last, batch_size):
        self.iterator = iter(dataset)
        self.auto_collation, self.collate_fn = auto_collation, collate_fn
        self.drop_last, self.batch_size = drop_last, batch_size

    def fetch(self, index=None):
        """The next batch; StopIteration when the stream ends."""
        if not self.auto_collation:
            return self.collate_fn(next(self.iterator))
        data = []
        for sample in self.iterator:
            data.append(sample)
            if len(data) == self.batch_size:
                break
        if not data or (self.drop_last and len(data) < self.batch_size):
            raise StopIteration
        return self.collate_fn(data)
