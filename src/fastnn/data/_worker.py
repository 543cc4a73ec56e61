"""The loop a ``DataLoader`` worker process runs, and what crosses the process boundary.

A worker gets tasks ``(epoch, task index, batch indices)`` from its own queue and
answers each, in order, on its own pipe with ``(epoch, task index, result)``: the
batch, an ``ExceptionWrapper`` (the worker's traceback as text) or ``STOP`` (its
iterable dataset ran out). ``None`` on the queue, the done event or the parent's
death ends the loop. Results are pickled in the worker (``Connection.send``), so a
batch that cannot be pickled comes back as an error instead of being lost.
"""
import os
import queue
import random
import sys
import traceback

import numpy as np

__all__ = ["WorkerInfo", "get_worker_info"]

_POLL_S = 0.5  # how often an idle worker checks that its parent is alive


class WorkerInfo:
    """What ``get_worker_info()`` returns inside a worker process.

    Attributes:
        id: this worker's number, ``0 .. num_workers - 1``.
        num_workers: how many workers the loader runs.
        seed: this worker's seed (``base_seed + id``; fastnn's default generator,
            NumPy's global one and ``random`` are seeded with it).
        dataset: this process's copy of the dataset.
    """

    def __init__(self, id, num_workers, seed, dataset):  # noqa: A002 (PyTorch's name)
        self.id, self.num_workers, self.seed, self.dataset = id, num_workers, seed, dataset

    def __repr__(self):
        return f"WorkerInfo(id={self.id}, num_workers={self.num_workers}, seed={self.seed})"


_info = [None]


def get_worker_info():
    """A ``WorkerInfo`` inside a DataLoader worker process, None in the main process.

    Example:
        >>> class Shards(IterableDataset):
        ...     def __iter__(self):
        ...         info = get_worker_info()
        ...         start, step = (0, 1) if info is None else (info.id, info.num_workers)
        ...         return iter(range(start, 100, step))
    """
    return _info[0]


class _Stop:
    """The answer of a worker whose iterable dataset is exhausted."""

    def __reduce__(self):
        return (_stop, ())


def _stop():
    return STOP


STOP = _Stop()


class _ReadableMessage(str):
    def __repr__(self):
        return str(self)


class ExceptionWrapper:
    """An exception raised in a worker, with its traceback as text, to re-raise in the main process."""

    def __init__(self, exc_info, where):
        self.exc_type = exc_info[0]
        self.text = "".join(traceback.format_exception(*exc_info))
        self.where = where

    def reraise(self):
        """Raise the worker's exception type (RuntimeError if it cannot take a message) with its traceback."""
        message = f"Caught {self.exc_type.__name__} {self.where}.\nOriginal {self.text}"
        if issubclass(self.exc_type, KeyError):  # KeyError shows repr(message): keep the lines readable
            message = _ReadableMessage(message)
        try:
            error = self.exc_type(message)
        except Exception:
            raise RuntimeError(message) from None
        raise error


def _seed_everything(seed):
    from .. import random as fastnn_random

    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    fastnn_random.manual_seed(seed)


def _send(conn, message, worker_id):
    """Send ``message``; if it cannot be pickled, send the pickling error instead."""
    try:
        conn.send(message)
    except (OSError, EOFError):
        raise
    except Exception:  # the batch cannot be pickled
        wrapper = ExceptionWrapper(sys.exc_info(), f"in DataLoader worker process {worker_id} (sending a batch)")
        conn.send(message[:2] + (wrapper,))


class _Answerer:
    """Turns tasks into results: the fetcher, the current epoch and whether the stream ran out."""

    def __init__(self, spec, dataset, where):
        from .collate import MapFetcher

        self.iterable, self.auto_collation, self.collate_fn, self.drop_last, self.batch_size, init_fn = spec
        self.dataset, self.where = dataset, where
        self.error = self.fetcher = self.epoch = None
        self.exhausted = False
        try:
            if init_fn is not None:
                init_fn(_info[0].id)
            if not self.iterable:
                self.fetcher = MapFetcher(dataset, self.auto_collation, self.collate_fn)
        except Exception:
            self.error = ExceptionWrapper(sys.exc_info(), where)  # answers every task

    def answer(self, epoch, batch):
        from .collate import IterableFetcher

        if self.error is not None:
            return self.error
        try:
            if self.iterable and epoch != self.epoch:  # a new epoch: a fresh iterator
                self.epoch, self.exhausted = epoch, False
                self.fetcher = IterableFetcher(self.dataset, self.auto_collation, self.collate_fn, self.drop_last,
                                               self.batch_size)
            if self.exhausted:
                return STOP
            return self.fetcher.fetch(batch)
        except StopIteration:
            self.exhausted = True
            return STOP
        except Exception:
            return ExceptionWrapper(sys.exc_info(), self.where)


def worker_loop(spec, dataset, task_queue, conn, done_event, base_seed, worker_id, num_workers, parent_pid):
    """The worker process: seeds, one thread, ``worker_init_fn``, then answers tasks until told to stop.

    ``spec`` is ``(iterable, auto_collation, collate_fn, drop_last, batch_size, worker_init_fn)``.
    """
    from .. import _config

    try:
        seed = base_seed + worker_id
        _seed_everything(seed)
        _config.set_num_threads(1)
        _info[0] = WorkerInfo(worker_id, num_workers, seed, dataset)
        answerer = _Answerer(spec, dataset, f"in DataLoader worker process {worker_id}")
        while not done_event.is_set():
            try:
                task = task_queue.get(timeout=_POLL_S)
            except queue.Empty:
                if os.getppid() != parent_pid:
                    break
                continue
            if task is None:
                break
            epoch, index, batch = task
            _send(conn, (epoch, index, answerer.answer(epoch, batch)), worker_id)
    except KeyboardInterrupt:  # the main process raises it too and shuts the workers down
        pass
    except (OSError, EOFError):  # the main process closed its end: shutting down
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass
