"""The plan's step for an RNN, LSTM or GRU called on its input alone (no ``hx``).

The eager layer (``ops.recurrent.rnn_sequence``) works out on every call what does
not change between calls of a plan: the summed biases, contiguous copies of the
weights, W_hh packed into the micro-kernel's panels, the work arrays, the
per-chunk kernel handle. The step makes them once, for each layer and direction,
and a call runs the kernels only: the input product x @ W_ih^T (on W_ih packed once
when the product packs, the bits of the unpacked product) and ``sequence_forward``.
A batch of up to MR rows whose hidden size is whole panels runs both in one kernel
instead, ``sequence_forward_split``: the input product, then each step, split over
the threads by gate columns (each core streams its part of W_hh from its own cache),
one thread running it as one part, so that the results do not depend on the thread count.

Every batch runs on the packed W_hh, a batch of one or a few rows one row at a time
(``times_packed_row``, at the speed W_hh streams from cache), where an eager call
on fewer than MR rows multiplies by W_hh's rows as they are (dot products), as
packing W_hh on every call would cost it more than it saves. Results equal the eager
eval forward within float32 rounding (the same products summed in another order).
"""
import numpy as np

from ..kernels import activations as act_k
from ..kernels import aligned
from ..kernels import matmul_packed as packed_k
from ..kernels import recurrent as rk
from ..kernels import recurrent_product as rp
from ..kernels._threading import get_threads
from ..kernels.microkernel import MR
from ..nn.recurrent import GRU, LSTM, RNN
from ..ops._rnn_run import _biases
from ..ops.linear import linear_into
from ..tensor import _wrap
from .steps import Diverged, Step, packed_weight

RECURRENT = (RNN, LSTM, GRU)


def recurrent_ok(module, x):
    """True when the step can stand in for ``module(x)``: a batched float input of the
    weights' dtype, no projection (``proj_size``), the class's own forward."""
    xd = getattr(x, "data", None)
    return (type(xd) is np.ndarray and xd.ndim == 3 and xd.dtype == module.weight_ih_l0.data.dtype
            and xd.dtype.kind == "f" and 0 not in xd.shape and not module.proj_size
            and "forward" not in module.__dict__)


class _Direction:
    """One layer in one direction: its constants and work arrays, and its run."""

    def __init__(self, layer, mode, T, N, dt, workspaces):
        w_ih, w_hh = (np.ascontiguousarray(p.data) for p in layer[:2])
        G, H = w_hh.shape
        self.bias, self.b_hn = _biases(layer[2], layer[3], mode, G, H, dt)
        threads = get_threads()
        chunk, chunks = rp.chunking(N, threads)
        # one panel of rows: the threads split the input product and each step's hidden
        # units, on the gate columns (of both products, and the biases) permuted part by
        # part; one thread runs it as one part, so that the results do not depend on
        # the thread count
        self.bounds = rk.split_bounds(H, threads, dt) if N <= MR else None
        if self.bounds is not None:
            order = rk.split_order(H, G // H, self.bounds)
            w_ih, w_hh, self.bias = w_ih[order], w_hh[order], self.bias[order]
        self.gates = aligned.empty((T, N, G), dt)
        self.gates2 = self.gates.reshape(T * N, G)
        self.w_ih = w_ih
        In = w_ih.shape[1]
        if self.bounds is None:
            self.packed = packed_weight(w_ih, T * N, workspaces)  # (bp, ap, tmp) or None
        else:  # (the split kernel runs the input product too, on W_ih^T in panels)
            self.wip = aligned.empty(rp.panel_shape(In, G, dt), dt)
            rp.pack_panels(self.wip, w_ih, True)
        self.hs = aligned.empty((T + 1, N, H), dt)
        self.hs[0] = 0
        self.aux = aligned.empty((T + 1, N, H) if mode in (rk.LSTM, rk.GRU) else (1, 1, 1), dt)
        self.aux[0] = 0
        self.wp = aligned.empty(rp.panel_shape(H, G, dt), dt)
        rp.pack_panels(self.wp, w_hh, True)
        self.w_hh, self.chunk, self.mode = w_hh, chunk, mode
        if self.bounds is not None:
            parts = len(self.bounds) - 1
            self.hw = aligned.empty((parts, MR * G), dt)
            self.ap = aligned.empty((parts, MR * max(H, In)), dt)
            self.gs = aligned.empty((parts, G), dt)
            self.patience = rk.split_patience(self.wp, parts)
            self.sync = aligned.empty(rk.sync_size(T, N, parts), np.int64)
            # (the handle is made for the types of the arguments: gates2 has an input's, (T*N, .) C-contiguous)
            self.fn = rk.split_handle(self.hs, self.aux, self.gates, self.gates2, self.wip, self.bias, self.b_hn,
                                      self.wp, self.hw, self.ap, self.gs, self.sync, self.bounds, mode, self.patience)
            return
        nr = rp.panel_width(dt)
        self.hw = np.zeros((chunks, chunk * ((G + nr - 1) // nr * nr)), dt)
        self.ap = np.zeros((chunks, chunk * G), dt)
        self.fn = rk.forward_handle(self.hs, self.aux, self.gates, self.bias, self.b_hn, self.wp, w_hh, self.hw,
                                    self.ap, mode)

    def run(self, inp):
        """The layer's outputs hs[1:] (T, N, H) for its time-major input ``inp`` (T*N, In)."""
        if self.bounds is not None:
            rk.sequence_forward_split(self.hs, self.aux, self.gates, inp, self.wip, self.bias, self.b_hn, self.wp,
                                      self.hw, self.ap, self.gs, self.sync, self.bounds, self.mode, self.patience,
                                      self.fn)
            return self.hs[1:]
        if self.packed is not None:
            packed_k.gemm_packed(self.gates2, inp, *self.packed, get_threads(), self.bias, act_k.IDENTITY, 0.0, False)
        else:
            linear_into(self.gates2, inp, self.w_ih, None)
        rk.sequence_forward(self.hs, self.aux, self.gates, self.bias, self.b_hn, self.wp, self.w_hh, self.hw,
                            self.ap, self.chunk, self.mode, True, self.fn)
        return self.hs[1:]


class RecurrentStep(Step):
    """``module(x)`` for an RNN, LSTM or GRU in eval mode: its kernels on constants and
    buffers made once (``owned``); returns the same Tensors, views of them, each call."""

    def __init__(self, module, x, workspaces):
        self.key = module
        xd = x.data
        self.shape, self.dtype = xd.shape, xd.dtype
        self.bf = module.batch_first
        T, N, In = (xd.shape[1], xd.shape[0], xd.shape[2]) if self.bf else xd.shape
        self.T, self.N = T, N
        D, L, H = 2 if module.bidirectional else 1, module.num_layers, module.hidden_size
        mode, dt = module._mode, xd.dtype
        self.x_tm = aligned.empty((T, N, In), dt)  # the input, time-major
        self.layers = []
        self.cat, self.rev = [], []
        for k in range(L):
            sfxs = ("", "_reverse")[:D]
            self.layers.append([_Direction(module._layer(k, s), mode, T, N, dt, workspaces) for s in sfxs])
            self.cat.append(aligned.empty((T, N, D * H), dt) if D == 2 else None)
            self.rev.append(aligned.empty((T, N, In if k == 0 else D * H), dt) if D == 2 else None)
        self.h_n = aligned.empty((L * D, N, H), dt)
        self.c_n = aligned.empty((L * D, N, H), dt) if mode == rk.LSTM else None
        y = self.layers[-1][0].hs[1:] if D == 1 else self.cat[-1]
        out = _wrap(y.transpose(1, 0, 2) if self.bf else y)
        self.result = (out, (_wrap(self.h_n), _wrap(self.c_n))) if mode == rk.LSTM else (out, _wrap(self.h_n))

    def owned(self):
        arrays = [self.h_n] + [d.hs for dirs in self.layers for d in dirs] + [c for c in self.cat if c is not None]
        return tuple(arrays) + (() if self.c_n is None else (self.c_n,))

    def __call__(self, *args):
        xd = getattr(args[0], "data", None) if len(args) == 1 else None
        if type(xd) is not np.ndarray or xd.shape != self.shape or xd.dtype != self.dtype:
            raise Diverged()
        T, N = self.T, self.N
        np.copyto(self.x_tm, xd.transpose(1, 0, 2) if self.bf else xd)
        inp = self.x_tm.reshape(T * N, -1)
        for k, dirs in enumerate(self.layers):
            y = dirs[0].run(inp)
            if len(dirs) == 2:  # the reverse direction runs on its input reversed in time
                rev = self.rev[k]
                np.copyto(rev, inp.reshape(rev.shape)[::-1])
                back = dirs[1].run(rev.reshape(T * N, -1))
                cat = self.cat[k]
                H = back.shape[2]
                cat[:, :, :H] = y
                cat[:, :, H:] = back[::-1]
                y = cat
            for d, direction in enumerate(dirs):
                i = k * len(dirs) + d
                # (the reverse direction's last state is its step T, the sequence's start)
                self.h_n[i] = direction.hs[T]
                if self.c_n is not None:
                    self.c_n[i] = direction.aux[T]
            inp = y.reshape(T * N, -1)
        return self.result

    def output(self, x):
        """The output alone (what ``Sequential`` passes on to the next layer)."""
        return self(x)[0]
