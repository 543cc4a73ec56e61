"""Flat-buffer MPI collectives behind ``fastnn.distributed``.

``broadcast_state`` copies one rank's parameters and buffers to all ranks with
one ``Bcast``; ``GradientSum`` sums every gradient across ranks with one
``Allreduce``. Both pack many arrays into one contiguous buffer, so the number
of MPI calls per step does not grow with the number of layers.
"""
import numpy as np


def _state_arrays(module, params=True, buffers=True):
    """``[(owner, name, kind, array)]`` for the parameters and/or buffers of ``module``."""
    out = []
    for owner, name, kind in module._state_slots().values():
        if kind == "param" and params:
            out.append((owner, name, kind, owner._parameters[name].data))
        elif kind == "buffer" and buffers:
            out.append((owner, name, kind, np.asarray(owner._buffers[name])))
    return out


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
        elif isinstance(owner._buffers[name], np.ndarray) and owner._buffers[name].ndim > 0:
            np.copyto(owner._buffers[name], value, casting="unsafe")
        else:  # a 0-d or scalar buffer (num_batches_tracked): replaced, as load_state_dict does
            owner._buffers[name] = np.asarray(value, dtype=array.dtype).copy()


class GradientSum:
    """Sums the gradients of ``params`` across ranks with one ``Allreduce`` on one flat buffer.

    Layout: the gradients one after another, then one has-gradient count per
    parameter, so a parameter no rank computed a gradient for keeps ``grad=None``.
    The buffer is allocated once; each parameter's reusable gradient buffer
    (``Parameter.grad_for_write``) becomes its view into it, so backward writes
    gradients in place and only gradients held elsewhere are copied in and out.
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
            if view.dtype == p.data.dtype:
                if p.grad is not None:
                    np.copyto(view, p.grad)
                    p.grad = view
                p._spare = view

    def matches(self, params):
        return len(params) == len(self.params) and all(
            p is q and (p.data.shape, p.data.dtype) == layout for p, q, layout in zip(params, self.params, self.layout))

    def __call__(self, comm, scale):
        from mpi4py import MPI

        for i, (p, view) in enumerate(zip(self.params, self.views)):
            self.counts[i] = p.grad is not None
            if p.grad is None:
                view.fill(0)
            elif p.grad is not view:
                np.copyto(view, p.grad, casting="same_kind")
        comm.Allreduce(MPI.IN_PLACE, self.flat, op=MPI.SUM)
        if scale != 1:
            self.grads *= scale
        for i, (p, view) in enumerate(zip(self.params, self.views)):
            if self.counts[i] != 0:
                grad, _ = p.grad_for_write()  # overwritten: it was None or held this rank's part
                if grad is not view:
                    np.copyto(grad, view, casting="same_kind")
