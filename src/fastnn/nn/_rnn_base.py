"""The machinery shared by RNN, LSTM and GRU (see ``nn/recurrent.py``)."""
import math

import numpy as np

from .. import _config
from ..kernels import recurrent as rk
from ..kernels import recurrent_product as rp
from ..kernels._threading import get_threads
from ..kernels.elementwise import column_sum
from ..kernels.matmul import matmul
from . import init
from ._validate import as_float_array, as_grad, check_positive_int
from .module import Module, Parameter


class RNNBase(Module):
    """Shared machinery of RNN, LSTM and GRU: parameters, validation, work buffers.

    Internally everything is time-major (T, N, F); batch-first input is transposed
    once on entry and the output is returned as a transposed view. Per-layer work
    buffers are sized by (T, N) and reused across calls; ``backward`` consumes the
    forward's cache (a second ``backward`` needs a new ``forward``).
    """

    _name = "RNNBase"

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=None, generator=None):
        super().__init__()
        name = self._name
        self.input_size = check_positive_int(input_size, name, "input_size")
        self.hidden_size = check_positive_int(hidden_size, name, "hidden_size")
        self.num_layers = check_positive_int(num_layers, name, "num_layers")
        if dropout:
            raise NotImplementedError(f"{name}: dropout between layers is not supported (got {dropout!r})")
        if bidirectional:
            raise NotImplementedError(f"{name}: bidirectional=True is not supported")
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self._mode = mode
        dt = dtype or _config.get_default_dtype()
        G = rk.GATES[mode] * self.hidden_size
        for k in range(self.num_layers):
            in_k = self.input_size if k == 0 else self.hidden_size
            setattr(self, f"weight_ih_l{k}", Parameter(np.empty((G, in_k), dt)))
            setattr(self, f"weight_hh_l{k}", Parameter(np.empty((G, self.hidden_size), dt)))
            if self.bias:
                setattr(self, f"bias_ih_l{k}", Parameter(np.empty(G, dt)))
                setattr(self, f"bias_hh_l{k}", Parameter(np.empty(G, dt)))
        self._cache = None
        self._work = None
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None):
        """PyTorch's default: every weight and bias ~ U(-1/sqrt(hidden), 1/sqrt(hidden))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound, generator)

    def flatten_parameters(self):
        """No-op, for code written for PyTorch's cuDNN path."""

    def _dtype_changed(self):
        self._work = None
        self._cache = None

    def _layer(self, k):
        p = self._parameters
        b_ih, b_hh = p.get(f"bias_ih_l{k}"), p.get(f"bias_hh_l{k}")
        return p[f"weight_ih_l{k}"], p[f"weight_hh_l{k}"], b_ih, b_hh

    # ---------------------------------------------------------------- checks
    def _check_input(self, x, dt):
        shape = "(N, T, {0}) or (T, {0})" if self.batch_first else "(T, N, {0}) or (T, {0})"
        shape = shape.format(self.input_size)
        x = as_float_array(x, self._name, dt, ndim=(2, 3), shape_hint=f" {shape}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"{self._name}: expected input of shape {shape} (input_size="
                             f"{self.input_size}), got {x.shape}")
        if 0 in x.shape:
            raise ValueError(f"{self._name}: expected a non-empty input, got shape {x.shape}")
        return x

    def _check_state(self, h, what, N, unbatched, dt):
        want = (self.num_layers, self.hidden_size) if unbatched else (self.num_layers, N, self.hidden_size)
        h = as_float_array(h, self._name, dt, name=what)
        if h.shape != want:
            raise ValueError(f"{self._name}: expected {what} of shape {want}, got {h.shape}")
        return h.reshape(self.num_layers, N, self.hidden_size)

    def _state_grad(self, g, what, want, dt):
        g = as_float_array(g, f"{self._name}.backward", dt, name=what)
        if g.shape != want:
            raise ValueError(f"{self._name}.backward: expected {what} of shape {want}, got {g.shape}")
        return g.reshape(want[0], -1, self.hidden_size)

    def _initial_state(self, hx, N, unbatched, dt):
        if hx is None:
            return None, None
        if self._mode == rk.LSTM:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"{self._name}: hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
            return (self._check_state(hx[0], "h_0", N, unbatched, dt),
                    self._check_state(hx[1], "c_0", N, unbatched, dt))
        if isinstance(hx, (tuple, list)):
            raise TypeError(f"{self._name}: hx must be an array h_0, got a {type(hx).__name__}")
        return self._check_state(hx, "h_0", N, unbatched, dt), None

    # ---------------------------------------------------------------- buffers
    def _work_buffers(self, T, N, dt):
        """Per-layer buffers sized by (T, N), and per-chunk scratch shared by the layers."""
        chunk, chunks = rp.chunking(N, get_threads())
        key = (T, N, np.dtype(dt), chunk)
        if self._work is not None and self._work[0] == key:
            return self._work[1], self._work[2]
        H, G = self.hidden_size, rk.GATES[self._mode] * self.hidden_size
        nr = rp.panel_width(dt)
        pad = lambda n: (n + nr - 1) // nr * nr
        has_aux = self._mode in (rk.LSTM, rk.GRU)
        layers = []
        for k in range(self.num_layers):
            buf = {"gates": np.empty((T, N, G), dt),
                   "aux": np.zeros((T + 1, N, H) if has_aux else (1, 1, 1), dt),
                   "hs": np.empty((T + 1, N, H), dt) if k < self.num_layers - 1 else None,
                   "dc": np.empty((N, H) if self._mode == rk.LSTM else (1, 1), dt)}
            layers.append(buf)  # "dxw", "dhw": added by the first backward
        scratch = {"chunk": chunk, "hw": np.zeros((chunks, chunk * pad(G)), dt),
                   "dh": np.zeros((chunks, chunk * pad(H)), dt), "ap": np.zeros((chunks, chunk * G), dt),
                   "wp_fwd": np.empty(rp.panel_shape(H, G, dt), dt),
                   "wp_bwd": np.empty(rp.panel_shape(G, H, dt), dt), "db": np.empty(G, dt)}
        self._work = (key, layers, scratch)
        return layers, scratch

    def _biases(self, k, dt):
        """(b_ih + b_hh with GRU's b_hn left out, b_hn) for layer k."""
        H, G = self.hidden_size, rk.GATES[self._mode] * self.hidden_size
        _, _, b_ih, b_hh = self._layer(k)
        if b_ih is None:
            return np.zeros(G, dt), np.zeros(H, dt)
        bias = b_ih.data + b_hh.data
        if self._mode == rk.GRU:
            bias[2 * H:] = b_ih.data[2 * H:]
            return bias, np.ascontiguousarray(b_hh.data[2 * H:])
        return bias, bias

    # ---------------------------------------------------------------- compute
    def forward(self, x, hx=None):
        dt = self.weight_ih_l0.data.dtype
        x = self._check_input(x, dt)
        unbatched = x.ndim == 2
        if unbatched:
            x = x.reshape(x.shape[0], 1, self.input_size)
        T, N = (x.shape[1], x.shape[0]) if self.batch_first and not unbatched else x.shape[:2]
        h0, c0 = self._initial_state(hx, N, unbatched, dt)
        self._cache = None
        work, scratch = self._work_buffers(T, N, dt)
        if self.batch_first and not unbatched:  # to time-major, in a reused buffer
            x_tm = scratch.setdefault("x_tm", np.empty((T, N, self.input_size), dt))
            np.copyto(x_tm, x.transpose(1, 0, 2))
            x = x_tm
        inputs, states = [], []
        inp = x.reshape(T * N, self.input_size)
        for k, buf in enumerate(work):
            w_ih, w_hh, _, _ = self._layer(k)
            hs = buf["hs"] if buf["hs"] is not None else np.empty((T + 1, N, self.hidden_size), dt)
            hs[0] = 0 if h0 is None else h0[k]
            if self._mode == rk.LSTM:
                buf["aux"][0] = 0 if c0 is None else c0[k]
            bias, b_hn = self._biases(k, dt)
            gates = buf["gates"]
            matmul(gates.reshape(T * N, -1), inp, w_ih.data, trans_b=True)
            if N >= rp.MR:  # smaller batches use W_hh as it is (dot products)
                rp.pack_panels(scratch["wp_fwd"], w_hh.data, True)
            rk.sequence_forward(hs, buf["aux"], gates, bias, b_hn, scratch["wp_fwd"], w_hh.data,
                                scratch["hw"], scratch["ap"], scratch["chunk"], self._mode)
            inputs.append(inp)
            states.append(hs)
            inp = hs[1:].reshape(T * N, self.hidden_size)
        if self.training:
            self._cache = (inputs, states, work, scratch, unbatched)
        out = states[-1][1:]
        h_n = np.stack([hs[T] for hs in states])
        c_n = np.stack([buf["aux"][T] for buf in work]) if self._mode == rk.LSTM else None
        if unbatched:
            out, h_n = out[:, 0], h_n[:, 0]
            c_n = c_n[:, 0] if c_n is not None else None
        elif self.batch_first:
            out = out.transpose(1, 0, 2)
        return (out, (h_n, c_n)) if self._mode == rk.LSTM else (out, h_n)

    def backward(self, grad_output, grad_h_n=None, grad_c_n=None):
        """Gradient w.r.t. x from d loss / d output; accumulates every parameter's grad.

        Args:
            grad_output: shaped like ``output`` (None: zeros).
            grad_h_n, grad_c_n: optional gradients w.r.t. ``h_n`` and (LSTM) ``c_n``, for
                models that read the final state instead of (or as well as) the output.
        """
        inputs, states, work, scratch, unbatched = self._saved(self._cache)
        T, N, H = states[-1].shape[0] - 1, states[-1].shape[1], self.hidden_size
        dt = states[-1].dtype
        if unbatched:
            shape, dout_bf = (T, H), False
        else:
            shape, dout_bf = ((N, T, H), True) if self.batch_first else ((T, N, H), False)
        if grad_output is None:
            grad_output = np.zeros(shape, dt)
        dout = as_grad(grad_output, self._name, shape, dt).reshape((N, T, H) if dout_bf else (T, N, H))
        if grad_c_n is not None and self._mode != rk.LSTM:
            raise TypeError(f"{self._name}.backward: grad_c_n is only for LSTM")
        want = (self.num_layers, H) if unbatched else (self.num_layers, N, H)
        dh_n, dc_n = [np.zeros((self.num_layers, N, H), dt) if g is None else self._state_grad(g, what, want, dt)
                      for g, what in ((grad_h_n, "grad_h_n"), (grad_c_n, "grad_c_n"))]
        self._cache = None  # one backward per forward, as in PyTorch
        for k in range(self.num_layers - 1, -1, -1):
            buf, hs, inp = work[k], states[k], inputs[k]
            if "dxw" not in buf:  # gradients of the pre-activations, input and hidden side
                buf["dxw"] = np.empty_like(buf["gates"])
                buf["dhw"] = np.empty_like(buf["gates"]) if self._mode == rk.GRU else buf["dxw"]
            dxw, dhw = buf["dxw"], buf["dhw"]
            w_ih, w_hh, _, _ = self._layer(k)
            if N >= rp.MR:
                rp.pack_panels(scratch["wp_bwd"], w_hh.data, False)
            # W_hh^T for the dot-product path of batches under one panel (unused otherwise)
            w_hh_t = np.ascontiguousarray(w_hh.data.T) if N < rp.MR else w_hh.data
            rk.sequence_backward(dxw, dhw, scratch["dh"], buf["dc"], dout, dh_n[k], dc_n[k],
                                 buf["gates"], hs, buf["aux"], scratch["wp_bwd"], w_hh_t, scratch["ap"],
                                 scratch["chunk"], self._mode, dout_bf)
            dxw2 = dxw.reshape(T * N, -1)
            self._param_grads(k, buf, dxw2, dxw2 if dhw is dxw else dhw.reshape(T * N, -1), inp,
                              hs[:-1].reshape(T * N, H), scratch["db"])
            if k == 0 and not self.needs_input_grad:
                return None
            if k == 0:  # returned: a new array
                dinp = np.empty((T * N, inp.shape[1]), dt)
            else:
                dinp = scratch.setdefault("dinp", np.empty((T * N, H), dt))
            matmul(dinp, dxw.reshape(T * N, -1), w_ih.data)
            dout, dout_bf = dinp.reshape(T, N, inp.shape[1]), False
        if unbatched:
            return dout[:, 0]
        return dout.transpose(1, 0, 2) if self.batch_first else dout

    def _param_grads(self, k, buf, dxw, dhw, inp, h_prev, db):
        """Layer k's parameter gradients from all steps at once: dW_ih (+)= dxw^T @ x,
        dW_hh (+)= dhw^T @ h_{t-1}, db_ih (+)= sum dxw, db_hh (+)= sum dhw."""
        w_ih, w_hh, b_ih, b_hh = self._layer(k)
        if dhw is dxw and w_ih.requires_grad and w_hh.requires_grad:
            # one product for both: dxw^T @ [x | h_{t-1}] packs dxw^T once, not twice
            if "xh" not in buf:
                buf["xh"] = np.empty((inp.shape[0], inp.shape[1] + h_prev.shape[1]), dxw.dtype)
                buf["dw"] = np.empty((dxw.shape[1], buf["xh"].shape[1]), dxw.dtype)
            xh, both = buf["xh"], buf["dw"]
            np.concatenate([inp, h_prev], axis=1, out=xh)
            matmul(both, dxw, xh, trans_a=True)
            for p, part in ((w_ih, both[:, :inp.shape[1]]), (w_hh, both[:, inp.shape[1]:])):
                grad, acc = p.grad_for_write()
                if acc:
                    grad += part
                else:
                    grad[...] = part
        else:
            for p, dpre, rhs in ((w_ih, dxw, inp), (w_hh, dhw, h_prev)):
                if p.requires_grad:
                    grad, acc = p.grad_for_write()
                    matmul(grad, dpre, rhs, trans_a=True, accumulate=acc)
        sums_of = None  # LSTM and RNN: both biases get the same sums, computed once
        for p, dpre in ((b_ih, dxw), (b_hh, dhw)):
            if p is None or not p.requires_grad:
                continue
            if sums_of is not dpre:
                column_sum(db, dpre, False)
                sums_of = dpre
            grad, acc = p.grad_for_write()
            if acc:
                grad += db
            else:
                grad[...] = db

    # ---------------------------------------------------------------- config
    def _config(self):
        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "bias": self.bias, "batch_first": self.batch_first}

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        return s

