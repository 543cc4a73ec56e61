"""``DataLoader``: batches of a dataset, in the main process or in worker processes.

Arguments, defaults, conflicts and iteration follow ``torch.utils.data.DataLoader``.
Shuffling draws from ``generator`` (a ``numpy.random.Generator`` or an int seed)
or, when it is None, from fastnn's default generator (``fastnn.manual_seed``):
the same seed gives the same order, with or without workers. As in PyTorch each
``iter(loader)`` first draws a base seed for the workers (worker ``i`` is seeded
with ``base_seed + i``), then the sampler draws the epoch's order.
"""
import numpy as np

from .. import random as fastnn_random
from ._multiprocess import MultiProcessIter
from .collate import IterableFetcher, MapFetcher, default_collate, default_convert
from .dataset import IterableDataset
from .sampler import BatchSampler, RandomSampler, SequentialSampler, as_generator, epoch_indices

__all__ = ["DataLoader"]


def _check_args(dataset, batch_size, shuffle, sampler, batch_sampler, num_workers, drop_last, timeout,
                prefetch_factor, persistent_workers):
    """PyTorch's argument checks; returns ``(shuffle, batch_size, drop_last, prefetch_factor)``."""
    if isinstance(num_workers, bool) or not isinstance(num_workers, (int, np.integer)) or num_workers < 0:
        raise ValueError(f"DataLoader: num_workers option should be a non-negative int; use num_workers=0 to "
                         f"disable multiprocessing, got {num_workers!r}")
    if timeout < 0:
        raise ValueError(f"DataLoader: timeout option should be non-negative, got {timeout!r}")
    if num_workers == 0 and prefetch_factor is not None:
        raise ValueError("DataLoader: prefetch_factor option could only be specified in multiprocessing; let "
                         "num_workers > 0 to enable multiprocessing, otherwise set prefetch_factor to None")
    if num_workers > 0 and prefetch_factor is None:
        prefetch_factor = 2
    if prefetch_factor is not None and (not isinstance(prefetch_factor, (int, np.integer)) or prefetch_factor < 1):
        raise ValueError(f"DataLoader: prefetch_factor option should be a positive int, got {prefetch_factor!r}")
    if persistent_workers and num_workers == 0:
        raise ValueError("DataLoader: persistent_workers option needs num_workers > 0")
    if isinstance(dataset, IterableDataset):
        for name, value, unset in (("shuffle", shuffle, shuffle in (None, False)),
                                   ("sampler", sampler, sampler is None),
                                   ("batch_sampler", batch_sampler, batch_sampler is None)):
            if not unset:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified {name} option, but got "
                                 f"{name}={value!r}")
    else:
        shuffle = bool(shuffle)
    if sampler is not None and shuffle:
        raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
    if batch_sampler is not None:
        if batch_size != 1 or shuffle or sampler is not None or drop_last:
            raise ValueError("DataLoader: batch_sampler option is mutually exclusive with batch_size, shuffle, "
                             "sampler, and drop_last")
        batch_size, drop_last = None, False
    elif batch_size is None and drop_last:
        raise ValueError("DataLoader: batch_size=None option disables auto-batching and is mutually exclusive "
                         "with drop_last")
    return bool(shuffle), batch_size, drop_last, prefetch_factor


class DataLoader:
    """Iterates over ``dataset`` in batches, optionally shuffled and in worker processes.

    Args:
        dataset: a map-style dataset (``__getitem__``/``__len__``; an array or a
            Tensor works too) or an ``IterableDataset``.
        batch_size: samples per batch (None: no batching, samples one by one).
        shuffle: reshuffle every epoch (a ``RandomSampler`` over ``generator``).
        sampler: the order of the samples (instead of ``shuffle``).
        batch_sampler: yields lists of indices (instead of ``batch_size``,
            ``shuffle``, ``sampler`` and ``drop_last``).
        num_workers: worker processes (0: load in the main process).
        collate_fn: turns a list of samples into a batch (default: ``default_collate``).
        pin_memory: accepted for compatibility (no effect on the CPU).
        drop_last: drop the last, smaller batch.
        timeout: seconds to wait for a worker's batch (0: forever).
        worker_init_fn: called as ``worker_init_fn(worker_id)`` in each worker
            after its seeding.
        multiprocessing_context: 'fork', 'spawn', 'forkserver' or a context
            (default: 'fork' on Linux where fastnn's threading layer allows it).
        generator: a NumPy Generator or int seed for the shuffling order and the
            workers' base seed (default: fastnn's default generator).
        prefetch_factor: batches in flight per worker (default 2 with workers).
        persistent_workers: keep the workers between epochs.

    Workers run fastnn kernels with one thread each (``fastnn.set_num_threads(1)``,
    as PyTorch's workers do); ``worker_init_fn`` may change it. A batch that
    raises in a worker re-raises in the main process with the worker's traceback.

    Example:
        >>> loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True,
        ...                     generator=np.random.default_rng(0))
        >>> for xb, yb in loader:
        ...     loss = loss_fn(model(xb), yb)
    """

    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None, num_workers=0,
                 collate_fn=None, pin_memory=False, drop_last=False, timeout=0, worker_init_fn=None,
                 multiprocessing_context=None, generator=None, *, prefetch_factor=None, persistent_workers=False):
        shuffle, batch_size, drop_last, prefetch_factor = _check_args(
            dataset, batch_size, shuffle, sampler, batch_sampler, num_workers, drop_last, timeout, prefetch_factor,
            persistent_workers)
        self.dataset = dataset
        self.generator = as_generator(generator, "DataLoader")
        self._iterable = isinstance(dataset, IterableDataset)
        if sampler is None and not self._iterable:
            sampler = RandomSampler(dataset, generator=self.generator) if shuffle else SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None and not self._iterable:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        elif batch_size is not None and self._iterable and (isinstance(batch_size, bool) or batch_size <= 0):
            raise ValueError(f"DataLoader: batch_size should be a positive integer value, but got "
                             f"batch_size={batch_size!r}")
        self.batch_size, self.drop_last = batch_size, drop_last
        self.sampler, self.batch_sampler = sampler, batch_sampler
        self._auto_collation = batch_sampler is not None or (self._iterable and batch_size is not None)
        self.collate_fn = collate_fn if collate_fn is not None else (
            default_collate if self._auto_collation else default_convert)
        self.num_workers, self.prefetch_factor = int(num_workers), prefetch_factor
        self.pin_memory, self.timeout = bool(pin_memory), timeout
        self.worker_init_fn, self.multiprocessing_context = worker_init_fn, multiprocessing_context
        self.persistent_workers = bool(persistent_workers)
        self._iterator = None

    def __iter__(self):
        base_seed = int(fastnn_random.resolve(self.generator).integers(2 ** 62))
        if self.num_workers == 0:
            return _SingleProcessIter(self)
        if not self.persistent_workers:
            return MultiProcessIter(self, base_seed)
        if self._iterator is None or self._iterator.closed:
            self._iterator = MultiProcessIter(self, base_seed)
        else:
            self._iterator.reset()
        return self._iterator

    def __len__(self):
        if self._iterable:
            n = len(self.dataset)  # TypeError when the stream has no length, as in PyTorch
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return len(self.batch_sampler if self._auto_collation else self.sampler)

    def _index_iter(self):
        return epoch_indices(self.sampler, self.batch_sampler, self._iterable)

    def _fetcher(self):
        if self._iterable:
            return IterableFetcher(self.dataset, self._auto_collation, self.collate_fn, self.drop_last,
                                   self.batch_size)
        return MapFetcher(self.dataset, self._auto_collation, self.collate_fn)

    # ------------------------------------------------------------ checkpoints
    def _generators(self):
        """``[(name, Generator)]`` behind the shuffling order (distinct objects)."""
        found, seen = [], set()
        owners = (("generator", self), ("sampler.generator", self.sampler),
                  ("batch_sampler.generator", self.batch_sampler),
                  ("batch_sampler.sampler.generator", getattr(self.batch_sampler, "sampler", None)))
        for name, owner in owners:
            g = getattr(owner, "generator", None)
            if isinstance(g, np.random.Generator) and id(g) not in seen:
                seen.add(id(g))
                found.append((name, g))
        return found

    def state_dict(self):
        """The bit-generator states of the generators behind the shuffling order (fastnn's
        default generator, used when there is none, is saved by ``save_checkpoint`` anyway)."""
        return {"generators": {name: g.bit_generator.state for name, g in self._generators()}}

    def load_state_dict(self, state):
        """Restore ``state_dict()``: the next epochs shuffle as they would have."""
        saved = state.get("generators", {})
        for name, g in self._generators():
            if name in saved:
                g.bit_generator.state = saved[name]

    def __repr__(self):
        return (f"DataLoader(dataset={type(self.dataset).__name__}, batch_size={self.batch_size}, "
                f"num_workers={self.num_workers})")


class _SingleProcessIter:
    """Iterates a ``DataLoader`` in the main process."""

    def __init__(self, loader):
        self._loader = loader
        self._indices = loader._index_iter()
        self._fetcher = loader._fetcher()

    def __iter__(self):
        return self

    def __len__(self):
        return len(self._loader)

    def __next__(self):
        return self._fetcher.fetch(next(self._indices))  # StopIteration ends both
