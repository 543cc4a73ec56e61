"""The batches ``fit``, ``evaluate`` and ``predict`` iterate over: from arrays or from a loader.

Each source is iterable once per epoch, yielding ``(inputs, targets)``, and says
how many samples (``total``) and batches (``steps``) an epoch has, or None when
it cannot know. ``ArrayBatches`` is fastnn's historical path for in-memory and
memory-mapped arrays (shuffled with ``rng.permutation`` per epoch);
``LoaderBatches`` wraps a ``DataLoader`` and stops its workers when an epoch is
left early (an exception in the training step, a non-finite loss).
"""
import math

import numpy as np

from .dataloader import DataLoader
from .dataset import Dataset, IterableDataset
from .sampler import BatchSampler

__all__ = ["ArrayBatches", "LoaderBatches", "Outputs", "is_data", "inference_loader", "loader_samples",
           "split_batch", "first_of"]


def is_data(x):
    """True for a ``Dataset`` or a ``DataLoader`` (not arrays)."""
    return isinstance(x, (Dataset, DataLoader))


class ArrayBatches:
    """Batches of arrays ``x``, ``y`` (``y`` may be None): slices, or rows in a permutation
    drawn from ``rng`` each epoch (sorted within a batch for a memory-mapped ``x``)."""

    def __init__(self, x, y, batch_size, shuffle=False, rng=None):
        self.x, self.y, self.batch_size, self.shuffle, self.rng = x, y, batch_size, shuffle, rng
        self.total = len(x)
        self.steps = math.ceil(self.total / batch_size)

    def __iter__(self):
        x, y, n, size = self.x, self.y, self.total, self.batch_size
        order = self.rng.permutation(n) if self.shuffle else None
        for lo in range(0, n, size):
            hi = min(lo + size, n)
            if order is None:
                yield x[lo:hi], None if y is None else y[lo:hi]
            else:
                idx = np.sort(order[lo:hi]) if isinstance(x, np.memmap) else order[lo:hi]
                yield x[idx], None if y is None else y[idx]


class LoaderBatches:
    """The ``(inputs, targets)`` batches of a ``DataLoader`` (``targets`` None when ``inputs_only``)."""

    def __init__(self, loader, where, inputs_only=False):
        self.loader, self.where, self.inputs_only = loader, where, inputs_only
        self.total = loader_samples(loader)
        try:
            self.steps = len(loader)
        except TypeError:
            self.steps = None

    def __iter__(self):
        iterator = iter(self.loader)
        try:
            for batch in iterator:
                yield (first_of(batch, self.where), None) if self.inputs_only else split_batch(batch, self.where)
        finally:
            shutdown = getattr(iterator, "shutdown", None)
            if shutdown is not None and not self.loader.persistent_workers:
                shutdown()


def inference_loader(x, batch_size):
    """``x`` if it is a DataLoader, else a sequential one over the Dataset ``x`` (its throwaway
    generator leaves fastnn's default generator, which Dropout uses, untouched)."""
    if isinstance(x, DataLoader):
        return x
    return DataLoader(x, batch_size=batch_size, generator=np.random.default_rng(0))


def loader_samples(loader):
    """Samples in one epoch of ``loader``, or None when it cannot be known up front."""
    if isinstance(loader.dataset, IterableDataset):
        return None
    batches = loader.batch_sampler
    if isinstance(batches, BatchSampler):
        try:
            n = len(batches.sampler)
        except TypeError:
            return None
        return n - n % batches.batch_size if batches.drop_last else n
    return None


def _describe(value):
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def split_batch(batch, where):
    """``(inputs, targets)`` of a loader's batch, which must hold exactly those two."""
    if isinstance(batch, (list, tuple)) and len(batch) == 2:
        return batch[0], batch[1]
    raise TypeError(f"{where}: each batch of the DataLoader must be (inputs, targets), got {_describe(batch)}; "
                    f"return (x, y) samples from the Dataset or a collate_fn that makes such batches")


def first_of(batch, where):
    """The inputs of a batch: the batch itself, or its first element when it is a list/tuple."""
    if isinstance(batch, (list, tuple)):
        if not batch:
            raise ValueError(f"{where}: got an empty batch")
        return batch[0]
    if isinstance(batch, dict):
        raise TypeError(f"{where}: cannot take the inputs from a dict batch; give the inputs as a Tensor "
                        f"or the first element of each sample")
    return batch


class Outputs:
    """Batches of model outputs written into one array: ``out`` (checked, or allocated on the
    first batch) when the sample count ``n`` is known, else the pieces joined at the end."""

    def __init__(self, n, out, where):
        self.n, self.out, self.where, self.count, self.chunks = n, out, where, 0, []

    def add(self, y):
        n, lo = self.n, self.count
        if n is None:
            self.chunks.append(y.copy())
        else:
            if lo + len(y) > n:
                raise RuntimeError(f"{self.where}: the data gave more than the {n} samples it announced")
            if lo == 0 and self.out is None:
                self.out = np.empty((n,) + y.shape[1:], y.dtype)
            elif lo == 0 and (self.out.shape[0] != n or self.out.shape[1:] != y.shape[1:]):
                raise ValueError(f"{self.where}: out has shape {self.out.shape}, expected {(n,) + y.shape[1:]}")
            self.out[lo:lo + len(y)] = y
        self.count += len(y)

    def result(self):
        if self.n is not None:
            if self.count != self.n:
                raise RuntimeError(f"{self.where}: the data gave {self.count} samples, expected {self.n}")
            return self.out
        if not self.chunks:
            raise ValueError(f"{self.where}: no samples")
        joined = np.concatenate(self.chunks)
        if self.out is None:
            return joined
        if self.out.shape != joined.shape:
            raise ValueError(f"{self.where}: out has shape {self.out.shape}, expected {joined.shape}")
        self.out[...] = joined
        return self.out
