"""Recurrent operations: a whole RNN/LSTM/GRU (every step, every layer) as ONE graph
node, ``rnn_sequence``, and ``last_step`` (``x[:, -1]`` or ``x[-1]``).

Internally everything is time-major (T, N, F): batch-first input is copied into
that layout once, the output is returned as a transposed view. Per layer the
forward keeps, when recording, what its backward reads (the layer input, the
activated gates, the hidden states and LSTM's cells / GRU's W_hn h + b_hn) in
arrays that belong to the call, so a module may run several times before one
backward. Work arrays used only inside one forward or one backward call (packed
weights, per-chunk products, the gate gradients) are cached per Python thread.
"""
import threading

import numpy as np

from ..kernels import recurrent as rk
from ..kernels import recurrent_product as rp
from ..kernels._threading import get_threads
from ..kernels.elementwise import column_sum
from ..kernels.matmul import matmul
from ._util import Tensor, _wrap, attach, attach_multi, direct_grad, float_tensor, recording

# rnn_sequence and last_step have no torch.nn.functional name: import them by name
__all__ = []

MODES = {"rnn_tanh": rk.RNN_TANH, "rnn_relu": rk.RNN_RELU, "lstm": rk.LSTM, "gru": rk.GRU}
_NODE_NAMES = {rk.RNN_TANH: "RnnTanhBackward0", rk.RNN_RELU: "RnnReluBackward0", rk.LSTM: "LstmBackward0",
               rk.GRU: "GruBackward0"}


class _Scratch(threading.local):
    def __init__(self):
        self.arrays = {}


_scratch = _Scratch()


def _work(name, shape, dtype, zero=False):
    """This thread's work array ``name`` of ``shape``: never outlives one call's use."""
    arrays = _scratch.arrays
    key = (name, shape, dtype)
    a = arrays.get(key)
    if a is None:
        if len(arrays) > 64:  # many shapes seen: start over rather than grow
            arrays.clear()
        a = arrays[key] = np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
    return a


def _float_input(x, dt, op, what):
    """``x`` as a Tensor of the weights' dtype ``dt`` (constants are converted)."""
    if isinstance(x, Tensor):
        if x.data.dtype == dt:
            return x
        if x.requires_grad:
            raise TypeError(f"{op}: {what} dtype {x.data.dtype} does not match the weights' {dt}; "
                            f"convert the input or the module (.double()/.float())")
        data = x.data
    else:
        try:
            data = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{op}: {what} must be a numeric array, got {type(x).__name__}") from exc
    if data.dtype.kind not in "fiu":
        raise TypeError(f"{op}: {what} must be a real float or integer array, got dtype {data.dtype}")
    return _wrap(data.astype(dt, copy=False))


def _check_state(h, what, want, dt, op):
    if h is None:
        return None
    h = _float_input(h, dt, op, what)
    if h.data.shape != want:
        raise ValueError(f"{op}: expected {what} of shape {want}, got {h.data.shape}")
    return h


def _check_params(params, gates, op):
    """(dtype, G, input size, H, layers) of per-layer (w_ih, w_hh, b_ih, b_hh) after
    checking every shape (the kernels trust them)."""
    if not params:
        raise ValueError(f"{op}: expected at least one layer of parameters")
    dt = params[0][0].data.dtype
    G, In = params[0][0].data.shape
    H = G // gates
    for k, (w_ih, w_hh, b_ih, b_hh) in enumerate(params):
        wants = ((w_ih, (G, In if k == 0 else H)), (w_hh, (G, H)), (b_ih, (G,)), (b_hh, (G,)))
        for name, (p, want) in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), wants):
            if p is not None and (p.data.shape != want or p.data.dtype != dt):
                raise ValueError(f"{op}: expected {name}_l{k} of shape {want} and dtype {dt}, got "
                                 f"{p.data.shape} {p.data.dtype}")
        if (b_ih is None) != (b_hh is None):
            raise ValueError(f"{op}: layer {k} has one bias; give both b_ih and b_hh or neither")
    if dt.kind != "f" or G != gates * H:
        raise ValueError(f"{op}: expected float weights with {gates} * hidden_size rows, got {params[0][0].data.shape}")
    return dt, G, In, H, len(params)


def _biases(b_ih, b_hh, mode, G, H, dt):
    """(b_ih + b_hh with GRU's b_hn left out, b_hn) for one layer."""
    if b_ih is None:
        return np.zeros(G, dt), np.zeros(H, dt)
    bias = b_ih.data + b_hh.data
    if mode == rk.GRU:
        bias[2 * H:] = b_ih.data[2 * H:]
        return bias, np.ascontiguousarray(b_hh.data[2 * H:])
    return bias, bias


def rnn_sequence(input, h0, c0, params, mode, batch_first=False, op="RNN"):  # noqa: A002
    """A stacked RNN/LSTM/GRU over a whole sequence, as one differentiable operation.

    Args:
        input: (T, N, In), (N, T, In) when ``batch_first``, or unbatched (T, In).
        h0, c0: initial states (L, N, H) (unbatched (L, H)) or None for zeros; c0 LSTM only.
        params: per layer ``(w_ih (G, in), w_hh (G, H), b_ih (G,) or None, b_hh)``, G = gates * H.
        mode: 'rnn_tanh', 'rnn_relu', 'lstm', 'gru' (or a ``kernels.recurrent`` code).
        op: the layer name errors show.

    Returns ``(output, h_n, c_n)``: output like the input with H features, h_n and c_n
    like h0 (c_n None unless LSTM). Gradients flow from any of the three to the input,
    h0, c0 and every weight and bias.
    """
    mode = MODES.get(mode, mode)
    if mode not in _NODE_NAMES:
        raise ValueError(f"{op}: mode must be one of {sorted(MODES)}, got {mode!r}")
    dt, G, In, H, L = _check_params(params, rk.GATES[mode], op)
    x = _float_input(input, dt, op, "input")
    xd = x.data
    layout = f"(N, T, {In}) or (T, {In})" if batch_first else f"(T, N, {In}) or (T, {In})"
    if xd.ndim not in (2, 3):
        raise ValueError(f"{op}: expected 2-D or 3-D input {layout}, got shape {xd.shape}")
    if xd.shape[-1] != In:
        raise ValueError(f"{op}: expected input of shape {layout} (input_size={In}), got {xd.shape}")
    if 0 in xd.shape:
        raise ValueError(f"{op}: expected a non-empty input, got shape {xd.shape}")
    unbatched = xd.ndim == 2
    T, N = (xd.shape[0], 1) if unbatched else ((xd.shape[1], xd.shape[0]) if batch_first else xd.shape[:2])
    want = (L, H) if unbatched else (L, N, H)
    h0 = _check_state(h0, "h_0", want, dt, op)
    c0 = _check_state(c0, "c_0", want, dt, op) if mode == rk.LSTM else None
    flat = [p for layer in params for p in layer]
    rec = recording(x, h0, c0, *flat)
    # the time-major input: kept by the graph when recording, else a work array
    if batch_first and not unbatched:
        x_tm = np.empty((T, N, In), dt) if rec else _work("x_tm", (T, N, In), dt)
        np.copyto(x_tm, xd.transpose(1, 0, 2))
    else:
        x_tm = np.ascontiguousarray(xd).reshape(T, N, In)
    chunk, chunks = rp.chunking(N, get_threads())
    nr = rp.panel_width(dt)
    hw = _work("hw", (chunks, chunk * ((G + nr - 1) // nr * nr)), dt, zero=True)
    ap = _work("ap", (chunks, chunk * G), dt, zero=True)
    wp = _work("wp_fwd", rp.panel_shape(H, G, dt), dt)
    aux_shape = (T + 1, N, H) if mode in (rk.LSTM, rk.GRU) else (1, 1, 1)
    h_n = np.empty((L, N, H), dt)
    c_n = np.empty((L, N, H), dt) if mode == rk.LSTM else None
    saved_layers = []
    inp = x_tm.reshape(T * N, In)
    for k, (w_ih, w_hh, b_ih, b_hh) in enumerate(params):
        last = k == L - 1
        gates = np.empty((T, N, G), dt) if rec else _work("gates", (T, N, G), dt)
        aux = np.empty(aux_shape, dt) if rec else _work("aux", aux_shape, dt)
        hs = np.empty((T + 1, N, H), dt) if rec or last else _work(f"hs{k % 2}", (T + 1, N, H), dt)
        hs[0] = 0 if h0 is None else h0.data.reshape(L, N, H)[k]
        if mode == rk.LSTM:
            aux[0] = 0 if c0 is None else c0.data.reshape(L, N, H)[k]
        bias, b_hn = _biases(b_ih, b_hh, mode, G, H, dt)
        w_hh_d = np.ascontiguousarray(w_hh.data)
        matmul(gates.reshape(T * N, G), inp, np.ascontiguousarray(w_ih.data), trans_b=True)
        if N >= rp.MR:  # smaller batches use W_hh as it is (dot products)
            rp.pack_panels(wp, w_hh_d, True)
        rk.sequence_forward(hs, aux, gates, bias, b_hn, wp, w_hh_d, hw, ap, chunk, mode)
        h_n[k] = hs[T]
        if c_n is not None:
            c_n[k] = aux[T]
        if rec:
            saved_layers.append((inp, gates, hs, aux))
        inp = hs[1:].reshape(T * N, H)
    out = hs[1:]
    if unbatched:
        out, h_n = out[:, 0], h_n[:, 0]
        c_n = None if c_n is None else c_n[:, 0]
    elif batch_first:
        out = out.transpose(1, 0, 2)
    outputs = (_wrap(out), _wrap(h_n), None if c_n is None else _wrap(c_n))
    if rec:
        ctx = (saved_layers, params, mode, T, N, H, G, dt, batch_first and not unbatched, unbatched,
               x.requires_grad, h0 is not None and h0.requires_grad, c0 is not None and c0.requires_grad)
        attach_multi(outputs, lambda grads: _sequence_backward(grads, ctx), [x, h0, c0] + flat,
                     _NODE_NAMES[mode], saved=(x,))
    return outputs


def _grad_array(g, shape, dt):
    return np.ascontiguousarray(g, dtype=dt).reshape(shape)


def _sequence_backward(grads, ctx):
    """Backpropagation through time, top layer first; returns (dx, dh0, dc0, *dparams)."""
    layers, params, mode, T, N, H, G, dt, dout_bf, unbatched, need_x, need_h0, need_c0 = ctx
    g_out, g_hn, g_cn = grads
    L, batch_first = len(params), dout_bf
    if g_out is None:
        dout, dout_bf = np.zeros((T, N, H), dt), False
    else:
        dout = _grad_array(g_out, (N, T, H) if dout_bf else (T, N, H), dt)
    dh_n = np.zeros((L, N, H), dt) if g_hn is None else _grad_array(g_hn, (L, N, H), dt)
    dc_shape = (L, N, H) if mode == rk.LSTM else (L, 1, 1)
    dc_n = np.zeros(dc_shape, dt) if g_cn is None else _grad_array(g_cn, dc_shape, dt)
    chunk, chunks = rp.chunking(N, get_threads())  # the thread count may have changed
    nr = rp.panel_width(dt)
    dh = _work("dh", (chunks, chunk * ((H + nr - 1) // nr * nr)), dt, zero=True)
    ap = _work("ap", (chunks, chunk * G), dt, zero=True)
    wp = _work("wp_bwd", rp.panel_shape(G, H, dt), dt)
    dc = _work("dc", dc_shape[1:], dt)
    dxw = _work("dxw", (T, N, G), dt)
    dhw = _work("dhw", (T, N, G), dt) if mode == rk.GRU else dxw
    dh0 = np.empty((L, N, H), dt) if need_h0 else None
    dc0 = np.empty((L, N, H), dt) if need_c0 else None
    dparams = [None] * (4 * L)
    dx = None
    for k in range(L - 1, -1, -1):
        inp, gates, hs, aux = layers[k]
        w_ih, w_hh = params[k][0], params[k][1]
        w_hh_d = np.ascontiguousarray(w_hh.data)
        if N >= rp.MR:
            rp.pack_panels(wp, w_hh_d, False)
        # W_hh^T for the dot-product path of batches under one panel (unused otherwise)
        w_hh_t = np.ascontiguousarray(w_hh_d.T) if N < rp.MR else w_hh_d
        rk.sequence_backward(dxw, dhw, dh, dc, dout, dh_n[k], dc_n[k], gates, hs, aux, wp, w_hh_t, ap,
                             chunk, mode, dout_bf)
        if need_h0:  # dL/dh_0 = dhw[0] @ W_hh (+ GRU's direct z * dL/dh_1, left in dh)
            if mode == rk.GRU:
                np.copyto(dh0[k], dh.reshape(chunks * chunk, -1)[:N, :H])
            matmul(dh0[k], dhw[0], w_hh_d, accumulate=mode == rk.GRU)
        if need_c0:  # the kernel leaves dL/dc_0 = dL/dc_1 * f_1 in dc
            dc0[k] = dc
        dparams[4 * k:4 * k + 4] = _param_grads(params[k], dxw.reshape(T * N, G), dhw.reshape(T * N, G),
                                                inp, hs[:-1].reshape(T * N, H), dhw is dxw)
        if k == 0 and not need_x:
            break
        In = inp.shape[1]
        dinp = np.empty((T * N, In), dt) if k == 0 else _work("dinp", (T * N, In), dt)
        matmul(dinp, dxw.reshape(T * N, G), np.ascontiguousarray(w_ih.data))
        dout, dout_bf = dinp.reshape(T, N, In), False
    if need_x:  # dout is now the input's gradient, time-major
        dx = dout[:, 0] if unbatched else (dout.transpose(1, 0, 2) if batch_first else dout)
    if unbatched:
        dh0 = None if dh0 is None else dh0[:, 0]
        dc0 = None if dc0 is None else dc0[:, 0]
    return (dx, dh0, dc0, *dparams)


def _store(p, value):
    """Write ``value`` (a work array) into ``p``'s gradient; returns what backward returns for p."""
    target = direct_grad(p)
    if target is None:
        return value.copy()
    buf, accumulate = target
    if accumulate:
        buf += value
    else:
        np.copyto(buf, value)
    return None


def _param_grads(layer, dxw, dhw, inp, h_prev, same):
    """One layer's parameter gradients from all steps at once: dW_ih = dxw^T @ x,
    dW_hh = dhw^T @ h_{t-1}, db_ih = sum dxw, db_hh = sum dhw (into .grad when possible)."""
    w_ih, w_hh, b_ih, b_hh = layer
    need = [p is not None and p.requires_grad for p in layer]
    out = [None] * 4
    dt = dxw.dtype
    if same and need[0] and need[1]:
        # one product for both: dxw^T @ [x | h_{t-1}] packs dxw^T once, not twice
        In, H = inp.shape[1], h_prev.shape[1]
        xh = _work("xh", (inp.shape[0], In + H), dt)
        both = _work("dw", (dxw.shape[1], In + H), dt)
        np.concatenate([inp, h_prev], axis=1, out=xh)
        matmul(both, dxw, xh, trans_a=True)
        out[0], out[1] = _store(w_ih, both[:, :In]), _store(w_hh, both[:, In:])
    else:
        for i, (dpre, rhs) in enumerate(((dxw, inp), (dhw, h_prev))):
            if need[i]:
                p = layer[i]
                target = direct_grad(p)
                if target is None:
                    out[i] = np.empty(p.data.shape, dt)
                    matmul(out[i], dpre, rhs, trans_a=True)
                else:
                    matmul(target[0], dpre, rhs, trans_a=True, accumulate=target[1])
    sums_of = None  # LSTM and RNN: both biases get the same sums, computed once
    db = _work("db", (dxw.shape[1],), dt)
    for i, dpre in ((2, dxw), (3, dhw)):
        if need[i]:
            if sums_of is not dpre:
                column_sum(db, dpre, False)
                sums_of = dpre
            out[i] = _store(layer[i], db)
    return out


def last_step(input, batch_first=False, op="LastStep"):  # noqa: A002
    """The last time step of a sequence: ``input[:, -1]`` (batch_first) or ``input[-1]``.

    Shape: (N, T, F) or (T, N, F) -> (N, F).
    """
    x = float_tensor(input, op)
    xd = x.data
    if xd.ndim != 3:
        layout = "(N, T, F)" if batch_first else "(T, N, F)"
        raise ValueError(f"{op}: expected a 3-D input {layout}, got shape {xd.shape}")
    if 0 in xd.shape:
        raise ValueError(f"{op}: expected a non-empty input, got shape {xd.shape}")
    out = _wrap(np.ascontiguousarray(xd[:, -1] if batch_first else xd[-1]))
    if recording(x):
        shape, dt = xd.shape, xd.dtype

        def backward(g):  # out = x[:, -1]: the gradient lands in that slice of zeros
            dx = np.zeros(shape, dt)
            if batch_first:
                dx[:, -1] = g
            else:
                dx[-1] = g
            return (dx,)

        attach(out, backward, (x,), "SelectBackward0")
    return out
