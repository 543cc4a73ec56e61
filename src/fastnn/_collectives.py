"""MPI plumbing and flat-buffer collectives behind ``fastnn.distributed``.

The communicator helpers (``get_comm``, ``rank``, ``size``, ``launched``) are
public as ``fastnn.distributed.*``.

``broadcast_state`` copies one rank's parameters and buffers to all ranks with
one ``Bcast``; ``GradientSum`` sums every gradient across ranks with one
``Allreduce``. Both pack many arrays into one contiguous buffer, so the number
of MPI calls per step does not grow with the number of layers.
"""
import os

import numpy as np

from .tensor import Tensor, _wrap

_LAUNCHER_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise ImportError("fastnn.distributed needs mpi4py and an MPI library: pip install 'fastnn[mpi]'") from err
    return MPI


def launched():
    """True when an MPI launcher (mpirun, mpiexec, srun) started this process with more than one rank.

    Reads the launcher's environment only: MPI is not initialised.
    """
    for name in _LAUNCHER_SIZE_VARIABLES:
        try:
            if int(os.environ.get(name, "1")) > 1:
                return True
        except ValueError:
            pass
    return False


def get_comm(comm=None):
    """``comm``, or ``MPI.COMM_WORLD`` when None."""
    return _mpi().COMM_WORLD if comm is None else comm


def rank(comm=None):
    """This process's rank in ``comm`` (default ``COMM_WORLD``)."""
    return get_comm(comm).Get_rank()


def size(comm=None):
    """Number of ranks in ``comm`` (default ``COMM_WORLD``)."""
    return get_comm(comm).Get_size()


def _share_cores(comm):
    """Give each rank its share of this machine's cores, unless threads were chosen.

    Ranks on one machine would otherwise each start a thread per core and fight
    over them. Chosen means ``NUMBA_NUM_THREADS`` set, or ``fastnn.set_num_threads``
    below the default. The ranks per machine come from ``MPI.COMM_TYPE_SHARED``.
    """
    import numba

    from ._config import get_num_threads, set_num_threads
    if comm.Get_size() == 1 or "NUMBA_NUM_THREADS" in os.environ or get_num_threads() != numba.config.NUMBA_NUM_THREADS:
        return
    local = comm.Split_type(_mpi().COMM_TYPE_SHARED)
    ranks_here = local.Get_size()
    local.Free()
    set_num_threads(max(1, get_num_threads() // ranks_here))



def _array(value):
    """The ndarray behind a buffer (a Tensor, or an array-like left by older code)."""
    return value.data if isinstance(value, Tensor) else np.asarray(value)


def _state_arrays(module, params=True, buffers=True):
    """``[(owner, name, kind, array)]`` for the parameters and/or buffers of ``module``."""
    out = []
    for owner, name, kind in module._state_slots().values():
        if kind == "param" and params:
            out.append((owner, name, kind, owner._parameters[name].data))
        elif kind == "buffer" and buffers:
            out.append((owner, name, kind, _array(owner._buffers[name])))
    return out


def _set_buffer(owner, name, value):
    """Write ``value`` into buffer ``name`` of ``owner`` (in place where it can)."""
    buffer = owner._buffers[name]
    array = _array(buffer)
    if isinstance(array, np.ndarray) and array.ndim > 0 and array.flags.writeable:
        np.copyto(array, value, casting="unsafe")
        return
    fresh = np.array(value, dtype=array.dtype, copy=True)  # 0-d counters (num_batches_tracked)
    if isinstance(buffer, Tensor):
        buffer.data = fresh
    else:
        owner._buffers[name] = _wrap(fresh)


def broadcast_state(module, comm, root=0, params=True, buffers=True):
    """Copy ``root``'s parameters and buffers to every rank: one ``Bcast`` of a float64 buffer.

    float64 holds float32/float64 values and integer counters up to 2**53 exactly.
    """
    items = _state_arrays(module, params, buffers)
    sizes = [int(a.size) for *_, a in items]
    flat = np.empty(sum(sizes), np.float64)
    offsets = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))
    if comm.Get_rank() == root:
        for (*_, array), lo, hi in zip(items, offsets, offsets[1:]):
            flat[lo:hi] = array.reshape(-1)
    if flat.size:
        comm.Bcast(flat, root=root)
    for (owner, name, kind, array), lo, hi in zip(items, offsets, offsets[1:]):
        value = flat[lo:hi].reshape(array.shape)
        if kind == "param":
            np.copyto(owner._parameters[name].data, value, casting="unsafe")
        else:
            _set_buffer(owner, name, value)


class GradientSum:
    """Sums the gradients of ``params`` across ranks with one ``Allreduce`` on one flat buffer.

    Layout: the gradients one after another, then one has-gradient count per
    parameter, so a parameter no rank computed a gradient for keeps ``grad=None``.
    The buffer is allocated once; each parameter's reusable gradient buffer (the
    spare that ``zero_grad`` keeps and backward's kernels write into) becomes its
    view into it, so backward writes gradients in place and only gradients held
    elsewhere are copied in; after the sum every ``p.grad`` holds its view.
    """

    def __init__(self, params):
        self.params = list(params)
        self.layout = [(p.data.shape, p.data.dtype) for p in self.params]
        sizes = [p.data.size for p in self.params]
        self.offsets = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64))).tolist()
        total = self.offsets[-1]
        dtype = np.result_type(*[p.data.dtype for p in self.params]) if self.params else np.float64
        self.flat = np.zeros(total + len(self.params), dtype)
        self.grads, self.counts = self.flat[:total], self.flat[total:]
        self.views = [self.grads[lo:hi].reshape(p.data.shape)
                      for p, lo, hi in zip(self.params, self.offsets, self.offsets[1:])]
        for p, view in zip(self.params, self.views):
            if view.dtype != p.data.dtype:
                continue
            if p.grad is not None:
                np.copyto(view, p.grad.data)
                p.grad.data = view
            elif hasattr(type(p), "_spare"):  # a Parameter: backward's next gradient buffer
                p._spare = view

    def matches(self, params):
        return len(params) == len(self.params) and all(
            p is q and (p.data.shape, p.data.dtype) == layout for p, q, layout in zip(params, self.params, self.layout))

    def __call__(self, comm, scale=1.0, contribute=True):
        """Sum over the ranks, times ``scale``; a rank with ``contribute`` False adds
        nothing (then every rank ends with the contributing ranks' gradients)."""
        from mpi4py import MPI

        for i, (p, view) in enumerate(zip(self.params, self.views)):
            grad = p.grad if contribute else None
            self.counts[i] = grad is not None
            if grad is None:
                view.fill(0)
            elif grad.data is not view:
                np.copyto(view, grad.data, casting="same_kind")
        comm.Allreduce(MPI.IN_PLACE, self.flat, op=MPI.SUM)
        if scale != 1:
            self.grads *= scale
        for i, (p, view) in enumerate(zip(self.params, self.views)):
            self._install(p, view, self.counts[i] != 0)

    @staticmethod
    def _install(p, view, any_rank):
        """Make ``p.grad`` the summed ``view`` (None where no rank had a gradient)."""
        grad = p.grad
        if not any_rank:
            p.grad = None
        elif view.dtype != p.data.dtype:
            summed = view.astype(p.data.dtype)
            if grad is None:
                p.grad = _wrap(summed)
            else:
                grad.data = summed
        elif grad is None:
            p.grad = _wrap(view)
            if getattr(p, "_spare", None) is view:
                p._spare = None
        elif grad.data is not view:
            grad.data = view
