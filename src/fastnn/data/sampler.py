"""Samplers, as in ``torch.utils.data``: the order in which a ``DataLoader`` visits samples.

Iterating a sampler yields Python ints, as PyTorch's do. fastnn's samplers also
have ``index_array()``: the whole epoch's indices as one int64 array, drawn with
the same random numbers, so a ``BatchSampler`` over them (``batches()``) hands
the loader index arrays without a Python loop over samples.

Random samplers draw from their ``generator`` (a ``numpy.random.Generator``, or
an int seed turned into one once) or, when it is None, from fastnn's default
generator (``fastnn.manual_seed``) at the start of each epoch.
"""
import itertools

import numpy as np

from .. import random as fastnn_random

__all__ = ["Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "WeightedRandomSampler",
           "BatchSampler", "epoch_indices"]


def as_generator(generator, where):
    """None (fastnn's default generator, looked up when drawing) or a NumPy Generator."""
    if generator is None or isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return np.random.default_rng(int(generator))
    raise TypeError(f"{where}: generator must be a numpy.random.Generator, an int seed or None, "
                    f"got {type(generator).__name__}")


def _positive_int(value, name, where):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{where}: {name} should be a positive integer value, but got {name}={value!r}")
    return int(value)


def _check_bool(value, name, where):
    if not isinstance(value, bool):
        raise ValueError(f"{where}: {name} should be a boolean value, but got {name}={value!r}")
    return value


def _owner(cls, name):
    return next((c for c in cls.__mro__ if name in vars(c)), None)


def has_index_array(sampler):
    """True when ``sampler.index_array()`` gives what iterating it would: its class does not
    override ``__iter__`` below the class that defines ``index_array``."""
    cls = type(sampler)
    owner = _owner(cls, "index_array")
    return owner is not None and owner is not Sampler and issubclass(owner, _owner(cls, "__iter__"))


class Sampler:
    """Base class: subclasses define ``__iter__`` (indices) and usually ``__len__``."""

    def __init__(self, data_source=None):
        pass

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__")

    def index_array(self):
        """The epoch's indices as an int64 array (consumes the same random numbers as iterating)."""
        return np.fromiter(iter(self), dtype=np.int64)


class SequentialSampler(Sampler):
    """``0, 1, ..., len(data_source) - 1``."""

    def __init__(self, data_source):
        self.data_source = data_source

    def __len__(self):
        return len(self.data_source)

    def index_array(self):
        return np.arange(len(self.data_source), dtype=np.int64)

    def __iter__(self):
        return iter(range(len(self.data_source)))


class RandomSampler(Sampler):
    """A random permutation each epoch, or ``num_samples`` draws with replacement.

    Args:
        data_source: the dataset (its length is used).
        replacement: draw with replacement (then ``num_samples`` may exceed the length).
        num_samples: samples per epoch (default: the dataset's length); without
            replacement, more than the length repeats whole permutations.
        generator: a NumPy Generator or int seed (default: fastnn's default generator).

    Example:
        >>> sampler = RandomSampler(range(10), generator=np.random.default_rng(0))
    """

    def __init__(self, data_source, replacement=False, num_samples=None, generator=None):
        self.data_source = data_source
        self.replacement = _check_bool(replacement, "replacement", "RandomSampler")
        self._num_samples = num_samples
        self.generator = as_generator(generator, "RandomSampler")
        if num_samples is not None:
            _positive_int(num_samples, "num_samples", "RandomSampler")

    @property
    def num_samples(self):
        return len(self.data_source) if self._num_samples is None else int(self._num_samples)

    def __len__(self):
        return self.num_samples

    def index_array(self):
        n, count = len(self.data_source), self.num_samples
        rng = fastnn_random.resolve(self.generator)
        if self.replacement:
            return rng.integers(0, n, size=count, dtype=np.int64)
        parts = [rng.permutation(n) for _ in range(count // n)]
        if count % n:
            parts.append(rng.permutation(n)[:count % n])
        return np.concatenate(parts).astype(np.int64, copy=False) if parts else np.empty(0, np.int64)

    def __iter__(self):
        return iter(self.index_array().tolist())


class SubsetRandomSampler(Sampler):
    """The given ``indices`` in a random order each epoch.

    Args:
        indices: a sequence of indices.
        generator: a NumPy Generator or int seed (default: fastnn's default generator).
    """

    def __init__(self, indices, generator=None):
        self.indices = indices
        self.generator = as_generator(generator, "SubsetRandomSampler")

    def __len__(self):
        return len(self.indices)

    def index_array(self):
        order = fastnn_random.resolve(self.generator).permutation(len(self.indices))
        return np.asarray(self.indices, dtype=np.int64).reshape(-1)[order]

    def __iter__(self):
        return iter(self.index_array().tolist())


class WeightedRandomSampler(Sampler):
    """``num_samples`` indices drawn with probabilities proportional to ``weights``.

    Args:
        weights: one non-negative weight per sample.
        num_samples: indices per epoch.
        replacement: draw with replacement (default True).
        generator: a NumPy Generator or int seed (default: fastnn's default generator).
    """

    def __init__(self, weights, num_samples, replacement=True, generator=None):
        self.num_samples = _positive_int(num_samples, "num_samples", "WeightedRandomSampler")
        self.replacement = _check_bool(replacement, "replacement", "WeightedRandomSampler")
        w = np.asarray(getattr(weights, "data", weights), dtype=np.float64)
        if w.ndim != 1:
            raise ValueError(f"WeightedRandomSampler: weights should be a 1-d sequence, got shape {w.shape}")
        if w.size == 0 or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError("WeightedRandomSampler: weights must be finite, non-negative and not all zero")
        if not replacement and self.num_samples > np.count_nonzero(w):
            raise ValueError(f"WeightedRandomSampler: cannot draw {self.num_samples} samples without "
                             f"replacement from {np.count_nonzero(w)} non-zero weights")
        self.weights = w
        self.generator = as_generator(generator, "WeightedRandomSampler")

    def __len__(self):
        return self.num_samples

    def index_array(self):
        rng = fastnn_random.resolve(self.generator)
        p = self.weights / self.weights.sum()
        return rng.choice(p.size, size=self.num_samples, replace=self.replacement, p=p).astype(np.int64)

    def __iter__(self):
        return iter(self.index_array().tolist())


class BatchSampler(Sampler):
    """Groups the indices of ``sampler`` into lists of ``batch_size``.

    Args:
        sampler: a sampler or any iterable of indices.
        batch_size: indices per batch.
        drop_last: drop the last batch when it is smaller than ``batch_size``.

    Example:
        >>> list(BatchSampler(SequentialSampler(range(5)), batch_size=2, drop_last=False))
        [[0, 1], [2, 3], [4]]
    """

    def __init__(self, sampler, batch_size, drop_last):
        self.batch_size = _positive_int(batch_size, "batch_size", "BatchSampler")
        self.drop_last = _check_bool(drop_last, "drop_last", "BatchSampler")
        self.sampler = sampler

    def __len__(self):
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def batches(self):
        """The epoch's batches: int64 index arrays when the sampler has ``index_array``
        (fastnn's fast path for the loader), else the lists ``__iter__`` gives."""
        size = self.batch_size
        if has_index_array(self.sampler):
            idx = self.sampler.index_array()
            stop = len(idx) - len(idx) % size if self.drop_last else len(idx)
            for lo in range(0, stop, size):
                yield idx[lo:lo + size]
            return
        yield from self

    def __iter__(self):
        batch = []
        for index in self.sampler:
            batch.append(index)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch


def epoch_indices(sampler, batch_sampler, iterable):
    """What a loader's fetcher gets per batch in one epoch: index arrays (or lists) from the
    batch sampler, single indices from the sampler (no automatic batching), or None
    forever (an iterable dataset, whose fetcher ends the epoch)."""
    if iterable:
        return itertools.repeat(None)
    if batch_sampler is None:
        return iter(sampler)
    if isinstance(batch_sampler, BatchSampler):
        return iter(batch_sampler.batches())
    return iter(batch_sampler)
