"""The multi-process DataLoader iterator: worker processes, in-order results, clean shutdown.

The main process draws every batch's indices (so the order is the one without
workers) and hands them round-robin to the workers, keeping ``prefetch_factor``
tasks per worker in flight. Each worker answers its tasks in order on its own
pipe, so task ``k`` is the next message on the pipe of the worker it went to.

The workers are stopped (``None`` on their queues, the done event, then a join
and, after a grace period, ``terminate``) when the iterator is exhausted (unless
the loader keeps ``persistent_workers``), when a batch raises, on
``KeyboardInterrupt`` and when the iterator is garbage collected.
"""
import itertools
import multiprocessing
import os
import sys
import time

from ..kernels import _threading
from ._worker import STOP, ExceptionWrapper, worker_loop
from .sampler import epoch_indices

_POLL_S = 0.25  # how often the main process checks that the worker it waits for is alive
_JOIN_S = 5.0  # grace period for workers to exit before terminate()


def default_context():
    """'fork' on Linux unless the GNU OpenMP threading layer is running (a forked child
    could not run parallel kernels, see ``fastnn.kernels._threading``); else 'spawn'."""
    if sys.platform.startswith("linux") and _threading.active_layer() != "omp":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def resolve_context(context):
    if context is None:
        return default_context()
    if isinstance(context, str):
        if context not in multiprocessing.get_all_start_methods():
            raise ValueError(f"DataLoader: multiprocessing_context={context!r} is not one of "
                             f"{multiprocessing.get_all_start_methods()}")
        return multiprocessing.get_context(context)
    if not hasattr(context, "Process"):
        raise TypeError(f"DataLoader: multiprocessing_context must be a start method name or a multiprocessing "
                        f"context, got {type(context).__name__}")
    return context


class MultiProcessIter:
    """Iterates a ``DataLoader`` with ``num_workers`` worker processes (see the module docstring)."""

    def __init__(self, loader, base_seed):
        # the loader's settings, not the loader: a persistent loader holds its iterator
        self._sampler, self._batch_sampler, self._iterable = loader.sampler, loader.batch_sampler, loader._iterable
        self._prefetch, self._timeout = loader.prefetch_factor, loader.timeout
        self._persistent = loader.persistent_workers
        try:
            self._len = len(loader)
        except TypeError:
            self._len = None
        self.closed = True  # until the workers exist
        self._owner = os.getpid()  # a forked child that collects this object must not stop the workers
        self._epoch = 0
        self._queues, self._conns, self.workers = [], [], []
        try:
            self._start(loader, base_seed)
        except BaseException:
            self.shutdown()
            raise
        self.reset()

    def _start(self, loader, base_seed):
        ctx = resolve_context(loader.multiprocessing_context)
        n = loader.num_workers
        self._done = ctx.Event()
        spec = (loader._iterable, loader._auto_collation, loader.collate_fn, loader.drop_last, loader.batch_size,
                loader.worker_init_fn)
        for worker_id in range(n):
            task_queue = ctx.Queue()
            reader, writer = ctx.Pipe(duplex=False)
            worker = ctx.Process(target=worker_loop, daemon=True, name=f"fastnn-dataloader-{worker_id}",
                                 args=(spec, loader.dataset, task_queue, writer, self._done, base_seed, worker_id, n,
                                       os.getpid()))
            self._queues.append(task_queue)
            self._conns.append(reader)
            self.workers.append(worker)
            self.closed = False
            worker.start()
            writer.close()  # the worker holds the writing end: EOF here when it dies

    # ------------------------------------------------------------ dispatching
    def reset(self):
        """Start an epoch: fresh batch indices, ``prefetch_factor`` tasks per worker sent."""
        self._epoch += 1
        self._indices = epoch_indices(self._sampler, self._batch_sampler, self._iterable)
        self._send_idx = self._rcvd_idx = 0
        self._task_worker = {}
        self._active = [True] * len(self.workers)
        self._next_worker = itertools.cycle(range(len(self.workers)))
        for _ in range(self._prefetch * len(self.workers)):
            if not self._try_put():
                break

    def _try_put(self):
        """Send the next batch's indices to the next active worker; False when there is none."""
        if self._indices is None or not any(self._active):
            return False
        try:
            batch = next(self._indices)
        except StopIteration:
            self._indices = None
            return False
        worker = next(w for w in self._next_worker if self._active[w])
        self._queues[worker].put((self._epoch, self._send_idx, batch))
        self._task_worker[self._send_idx] = worker
        self._send_idx += 1
        return True

    # ------------------------------------------------------------ receiving
    def __iter__(self):
        return self

    def __len__(self):
        if self._len is None:
            raise TypeError("this DataLoader's IterableDataset has no len()")
        return self._len

    def __next__(self):
        try:
            while True:
                if self.closed or self._rcvd_idx >= self._send_idx:
                    self._end_of_epoch()
                    raise StopIteration
                worker = self._task_worker.pop(self._rcvd_idx)
                result = self._receive(worker)
                self._rcvd_idx += 1
                if result is STOP:  # that worker's stream ended; the others go on
                    self._active[worker] = False
                    continue
                if isinstance(result, ExceptionWrapper):
                    result.reraise()
                self._try_put()
                return result
        except StopIteration:
            raise
        except BaseException:  # a worker's error, a dead worker, a timeout, KeyboardInterrupt
            self.shutdown()
            raise

    def _receive(self, worker):
        """The result of the oldest task sent to ``worker`` in this epoch."""
        conn, process = self._conns[worker], self.workers[worker]
        timeout = self._timeout
        deadline = time.monotonic() + timeout if timeout > 0 else None
        while True:
            wait = _POLL_S if deadline is None else max(0.0, min(_POLL_S, deadline - time.monotonic()))
            if conn.poll(wait):
                try:
                    epoch, _, result = conn.recv()
                except EOFError:
                    raise self._died(process) from None
                if epoch == self._epoch:
                    return result
                continue  # a result of an epoch that was left early (persistent workers)
            if not process.is_alive():
                raise self._died(process)
            if deadline is not None and time.monotonic() >= deadline:
                raise RuntimeError(f"DataLoader timed out after {timeout} seconds waiting for worker "
                                   f"(pid {process.pid})")

    @staticmethod
    def _died(process):
        process.join(0.1)
        return RuntimeError(f"DataLoader worker (pid {process.pid}) exited unexpectedly with exit code "
                            f"{process.exitcode}")

    # ------------------------------------------------------------ shutting down
    def _end_of_epoch(self):
        if not self._persistent:
            self.shutdown()

    def shutdown(self):
        """Stop every worker and reap it (terminate after the grace period); idempotent."""
        if self.closed or os.getpid() != self._owner:
            return
        self.closed = True
        self._done.set()
        for task_queue in self._queues:
            try:
                task_queue.put(None)
            except (OSError, ValueError):
                pass
        for conn in self._conns:  # a worker blocked sending a batch gets EPIPE and exits
            conn.close()
        deadline = time.monotonic() + _JOIN_S
        for worker in self.workers:
            if worker.pid is not None:
                worker.join(max(0.0, deadline - time.monotonic()))
        for worker in self.workers:
            if worker.pid is not None and worker.is_alive():
                worker.terminate()
                worker.join(1.0)
                if worker.is_alive():
                    worker.kill()
                    worker.join()
        for task_queue in self._queues:
            task_queue.cancel_join_thread()
            task_queue.close()

    def __del__(self):
        try:
            self.shutdown()
        except Exception:  # interpreter shutdown: modules may be gone
            pass
