"""Data-parallel training over MPI (mpi4py, extra ``[mpi]``).

Every rank holds the same model (parameters and buffers broadcast from rank 0 at
the start) and computes its own share of each batch; after backward the
gradients of all parameters are packed into one preallocated contiguous buffer
and summed across ranks with a single ``Allreduce`` (queued on the autograd engine
by the forward, run when ``loss.backward()`` ends), so every rank takes the same
optimizer step. BatchNorm normalises with each rank's local batch statistics and
its running statistics are broadcast from rank 0 before each forward, as
PyTorch's ``DistributedDataParallel`` does by default.

Two ways in:

* ``fastnn.distributed.fit(...)`` (also ``fastnn.fit(..., distributed=True)``):
  every rank passes the same ``x``, ``y`` and arguments; each global batch of
  ``batch_size`` rows is split across the ranks, outputs are gathered so that the
  loss, the metrics and the gradient are those of the whole batch, and only rank
  0 draws the progress bar. Launch with ``mpirun -n N python script.py``.
* ``DataParallel(module)`` for hand-written loops on per-rank data (``shard``).

A rank that raises ends the whole job (``comm.Abort``) after printing its error,
instead of leaving the other ranks waiting in a collective.
"""
import contextlib
import sys
import traceback

import numpy as np

from ._collectives import (
    GradientSum, _share_cores, broadcast_state, get_comm, launched, rank, size,
)
from .autograd.engine import attach, queue_callback, recording
from .autograd.grad_mode import is_grad_enabled
from .nn.module import Module
from .tensor import Tensor, _wrap

__all__ = ["DataParallel", "abort_on_error", "fit", "get_comm", "launched", "rank", "shard", "size"]


def _bounds(n, ranks):
    """Row boundaries of each rank's share of ``n`` rows: rank r gets rows [b[r], b[r+1])."""
    return [n * r // ranks for r in range(ranks + 1)]


def shard(x, y=None, comm=None):
    """This rank's contiguous share of the rows of ``x`` (and ``y``): sizes differ by at most one.

    Example:
        >>> x_local, y_local = fastnn.distributed.shard(x, y)  # doctest: +SKIP
    """
    comm = get_comm(comm)
    bounds = _bounds(len(x), comm.Get_size())
    lo, hi = bounds[comm.Get_rank()], bounds[comm.Get_rank() + 1]
    return x[lo:hi] if y is None else (x[lo:hi], y[lo:hi])


@contextlib.contextmanager
def abort_on_error(comm=None):
    """Print this rank's error and end every rank (``comm.Abort(1)``) if the block raises.

    Does nothing special with a single rank (the exception propagates). Use it
    around the body of any script run under ``mpirun``, so that a failing rank
    cannot leave the others waiting forever in a collective.
    """
    try:
        yield
    except BaseException as exc:
        if isinstance(exc, SystemExit) and exc.code in (None, 0):
            raise
        comm = get_comm(comm)
        if comm.Get_size() == 1:
            raise
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        sys.stdout.flush()
        print(f"fastnn: rank {comm.Get_rank()} of {comm.Get_size()} failed; ending all ranks.\n{detail}",
              file=sys.stderr, flush=True)
        comm.Abort(1)
        raise  # only reached with a comm whose Abort returns


class DataParallel(Module):
    """Data-parallel training across MPI ranks, like ``torch.nn.parallel.DistributedDataParallel``.

    At construction rank 0's parameters and buffers are broadcast to every rank,
    and, unless threads were chosen (``NUMBA_NUM_THREADS``, ``fastnn.set_num_threads``),
    each rank's fastnn threads are set to its share of the machine's cores.
    ``forward`` runs the wrapped module on this rank's local batch (after
    broadcasting rank 0's buffers, e.g. BatchNorm running statistics, in training
    mode). With grad enabled it also queues, on the autograd engine, one averaging
    of the gradients over the ranks (one ``Allreduce`` on a flat buffer) for the end
    of this thread's next ``backward``: after ``loss.backward()`` every rank holds the
    same averaged gradients, so an optimizer over ``model.parameters()`` takes the
    same step everywhere. Local batches of equal size give the gradient of the mean
    loss over the union of the batches. Gradients accumulated over several backward
    passes stay right (each pass averages what is new).

    ``state_dict``/``load_state_dict`` are the wrapped module's (no ``module.``
    prefix), so checkpoints load in a single process unchanged; save the model
    itself with ``fastnn.save(model.module, path)``.

    Args:
        module: the model (the same architecture on every rank).
        comm: an mpi4py communicator (default ``MPI.COMM_WORLD``).
        broadcast_buffers: broadcast rank 0's buffers before each training forward.

    Shape:
        Those of the wrapped module.

    Example:
        >>> model = fastnn.distributed.DataParallel(build_model())  # doctest: +SKIP
        >>> opt = fastnn.optim.SGD(model.parameters(), lr=0.1)  # doctest: +SKIP
        >>> x_local, y_local = fastnn.distributed.shard(x, y)  # doctest: +SKIP
        >>> opt.zero_grad(); loss_fn(model(x_local[:32]), y_local[:32]).backward(); opt.step()  # doctest: +SKIP
    """

    def __init__(self, module, comm=None, broadcast_buffers=True):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DataParallel: expected a fastnn.nn.Module, got {type(module).__name__}")
        self.module = module
        self.comm = get_comm(comm)
        self.broadcast_buffers = bool(broadcast_buffers)
        self._module_forward = module.forward
        self._has_buffers = any(True for _ in module.buffers())
        self._sum = None
        self._key = ("fastnn.distributed.DataParallel", id(self))
        object.__setattr__(self, "training", module.training)
        _share_cores(self.comm)
        broadcast_state(module, self.comm)

    @property
    def rank(self):
        return self.comm.Get_rank()

    @property
    def world_size(self):
        return self.comm.Get_size()

    # ------------------------------------------------------- local batches
    def forward(self, *inputs, **kwargs):
        self._sync_buffers()
        out = self._module_forward(*inputs, **kwargs)
        if is_grad_enabled() and self.world_size > 1:
            queue_callback(self._key, self._average_gradients)
        return out

    def _average_gradients(self):
        self.allreduce_gradients(average=True)

    def _root_gradients(self):
        self.allreduce_gradients(average=False, contribute=self.rank == 0)

    def allreduce_gradients(self, average=True, contribute=True):
        """Sum (``average``: then divide by the number of ranks) every gradient across
        ranks in one ``Allreduce``; ranks with ``contribute`` False add nothing.
        ``backward`` calls it by itself after a forward through this wrapper."""
        if self.world_size == 1:
            return
        params = [p for p in self.module.parameters() if p.requires_grad]
        if self._sum is None or not self._sum.matches(params):
            self._sum = GradientSum(params)
        self._sum(self.comm, 1.0 / self.world_size if average else 1.0, contribute)

    def _sync_buffers(self, always=False):
        if self._has_buffers and self.broadcast_buffers and (always or self.module.training) and self.world_size > 1:
            broadcast_state(self.module, self.comm, params=False)

    # ------------------------------------------------------- global batches
    def forward_global(self, x):
        """The module's output for a global batch ``x`` (the same on every rank).

        In training mode each rank runs its share of the rows and the outputs are
        gathered with one ``Allgatherv``; the gathered output's backward hands each
        rank the gradient of its own rows, and the parameters' gradients are then
        summed over the ranks (one ``Allreduce`` at the end of ``backward``). A batch
        with fewer than two rows per rank runs whole on every rank (rank 0's
        gradients are kept). In eval mode every rank runs the whole batch with no
        communication, so a callback may predict on rank 0 alone.
        """
        if not isinstance(x, Tensor):
            x = np.asarray(x)
        ranks = self.world_size
        if not self.module.training:
            return self._module_forward(x)
        self._sync_buffers()
        grad = is_grad_enabled() and ranks > 1
        if ranks == 1 or x.ndim == 0 or len(x) < 2 * ranks:  # BatchNorm needs 2 rows per rank
            if grad:
                queue_callback(self._key, self._root_gradients)
            return self._module_forward(x)
        bounds = _bounds(len(x), ranks)
        lo, hi = bounds[self.rank], bounds[self.rank + 1]
        local = self._module_forward(x[lo:hi])
        if not isinstance(local, Tensor):
            raise TypeError(f"DataParallel: the model returned {type(local).__name__}; "
                            "distributed fit needs a model that returns one Tensor")
        out = _wrap(self._allgather(np.ascontiguousarray(local.data), bounds, len(x)))
        if grad and recording(local):
            # every rank holds the whole batch's output gradient: each takes its rows,
            # scaled so that the averaging Allreduce sums the ranks' shares
            attach(out, lambda g: (g[lo:hi] * ranks,), (local,), "AllgatherBackward")
            queue_callback(self._key, self._average_gradients)
        return out

    def _allgather(self, local, bounds, n):
        row = int(np.prod(local.shape[1:], dtype=np.int64))
        out = np.empty((n,) + local.shape[1:], local.dtype)
        counts = [(hi - lo) * row for lo, hi in zip(bounds, bounds[1:])]
        self.comm.Allgatherv(local, [out, (counts, [lo * row for lo in bounds[:-1]])])
        return out

    @contextlib.contextmanager
    def global_batches(self):
        """Within the block, calling the wrapped module runs :meth:`forward_global`:
        code written for one process (``fastnn.fit``) then trains on the union of the
        ranks' work, its ``loss.backward()`` summing the gradients over the ranks."""
        module = self.module
        module.__dict__["forward"] = self.forward_global
        try:
            yield module
        finally:
            module.__dict__.pop("forward", None)

    # ------------------------------------------------------- state, modes
    def state_dict(self, prefix=""):
        return self.module.state_dict(prefix)

    def load_state_dict(self, state_dict, strict=True):
        return self.module.load_state_dict(state_dict, strict)

    def extra_repr(self):
        return f"world_size={self.world_size}"


def _agree(comm, what):
    """Rank 0's values of ``what`` (a dict), after checking the ranks agree on the rest.

    ``what["seed"]`` may differ (rank 0's is used); every other entry must match,
    else each rank raises the same ``ValueError`` (instead of a deadlock later).
    """
    everyone = comm.allgather(what)
    for key in what:
        if key != "seed" and len({repr(w[key]) for w in everyone}) != 1:
            raise ValueError(f"fastnn.distributed.fit: the ranks disagree on {key}: {[w[key] for w in everyone]}; "
                             "every rank must see the same data, arguments and checkpoint")
    return everyone[0]


def fit(model, x, y, loss, optimizer, epochs=1, batch_size=32, shuffle=True, validation_data=None,
        seed=None, progress=True, comm=None, **kwargs):
    """``fastnn.fit`` across the ranks of ``comm``: same arguments, same result, N times the hands.

    Every rank calls it with the same ``x``, ``y`` (or memory maps of the same
    files) and arguments. Each global batch of ``batch_size`` rows is split
    across the ranks (shuffled with rank 0's ``seed``); the loss, metrics and
    gradients are those of the whole batch, so without BatchNorm (which uses
    each rank's local batch statistics) or Dropout the weights follow the
    single-process ``fastnn.fit`` with the same ``batch_size`` up to rounding.
    Only rank 0 draws the progress bar and writes ``checkpoint_dir``; to
    ``resume``, every rank reads the checkpoint (a shared file system when the
    ranks run on several machines). ``callbacks`` run on every rank; in eval mode
    (validation, ``predict`` in a callback) each rank computes whole batches on its
    own, without communication. On return, every rank's model equals rank 0's. If
    any rank raises, its error is printed and the job ends.

    Example (``mpirun -n 2 python train.py``):
        >>> history = fastnn.fit(model, x, y, loss_fn, opt, epochs=5, batch_size=256,  # doctest: +SKIP
        ...                      seed=0, distributed=True)
    """
    from .training import fit as local_fit

    comm = get_comm(comm)
    if comm.Get_rank() != 0 and kwargs.get("checkpoint_dir") is not None:  # rank 0 alone writes them
        kwargs["checkpoint_dir"] = None
    with abort_on_error(comm):
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> np.uint64(1))
        resumed = None
        if kwargs.get("resume") is not None:  # loaded here, so the ranks can check they start at one epoch
            from .checkpoint import Checkpoint, load_checkpoint
            if not isinstance(kwargs["resume"], Checkpoint):
                kwargs["resume"] = load_checkpoint(kwargs["resume"], model, optimizer, kwargs.get("scheduler"))
            resumed = kwargs["resume"].epoch
        seed = _agree(comm, {"seed": seed, "samples": len(x), "batch_size": batch_size, "epochs": epochs,
                             "resumed_epoch": resumed})["seed"]
        parallel = DataParallel(model, comm)
        with parallel.global_batches():
            history = local_fit(model, x, y, loss, optimizer, epochs=epochs, batch_size=batch_size,
                                shuffle=shuffle, validation_data=validation_data, seed=seed,
                                progress=bool(progress) and comm.Get_rank() == 0, **kwargs)
        parallel._sync_buffers(always=True)
        comm.Barrier()  # rank 0's last checkpoint is complete when any rank returns
    return history
