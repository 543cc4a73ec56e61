"""Recurrent operations: a whole RNN/LSTM/GRU (every step, every layer and
direction, dropout between layers) as ONE graph node, ``rnn_sequence``, and
``last_step`` (``x[:, -1]`` or ``x[-1]``).

Internally everything is time-major (T, N, F): batch-first input is copied into
that layout once, the output is returned as a transposed view. A reverse
direction runs on its input reversed in time (see ``_rnn_run``). When recording,
each layer-direction keeps what its backward reads (its input, the activated
gates, the hidden states, LSTM's cells / GRU's W_hn h + b_hn) and each dropout
its mask, in arrays that belong to the call, so a module may run several times
before one backward.
"""
import numpy as np

from .. import random as _random
from ..kernels import recurrent as rk
from . import _rnn_run as run
from ._util import Tensor, _wrap, attach, attach_multi, float_tensor, recording

# rnn_sequence and last_step have no torch.nn.functional name: import them by name
__all__ = []

MODES = {"rnn_tanh": rk.RNN_TANH, "rnn_relu": rk.RNN_RELU, "lstm": rk.LSTM, "gru": rk.GRU}
_NODE_NAMES = {rk.RNN_TANH: "RnnTanhBackward0", rk.RNN_RELU: "RnnReluBackward0", rk.LSTM: "LstmBackward0",
               rk.GRU: "GruBackward0"}
_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")


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


def _check_params(params, gates, D, op):
    """(dtype, G, input size, H, P, layers) of per-(layer, direction) parameter tuples
    ``(w_ih, w_hh, b_ih, b_hh[, w_hr])`` after checking every shape (the kernels trust them)."""
    if not params or len(params) % D:
        raise ValueError(f"{op}: expected {D} parameter tuple(s) per layer, got {len(params)}")
    first = params[0]
    dt = first[0].data.dtype
    G, In = first[0].data.shape
    H = G // gates
    proj = len(first) > 4
    P = first[4].data.shape[0] if proj else H
    for i, layer in enumerate(params):
        k, d = divmod(i, D)
        if len(layer) != len(first):
            raise ValueError(f"{op}: every layer needs {len(first)} parameters, layer {k} has {len(layer)}")
        wants = [(G, In if k == 0 else D * P), (G, P), (G,), (G,), (P, H)]
        for name, p, want in zip(_WEIGHTS, layer, wants):
            if p is not None and (p.data.shape != want or p.data.dtype != dt):
                raise ValueError(f"{op}: expected {name}_l{k}{'_reverse' if d else ''} of shape {want} and "
                                 f"dtype {dt}, got {p.data.shape} {p.data.dtype}")
        if (layer[2] is None) != (layer[3] is None):
            raise ValueError(f"{op}: layer {k} has one bias; give both b_ih and b_hh or neither")
    if dt.kind != "f" or G != gates * H or G == 0:
        raise ValueError(f"{op}: expected float weights with {gates} * hidden_size rows, got {first[0].data.shape}")
    return dt, G, In, H, P, len(params) // D


def _reversed(inp, T, N, rec):
    """The time-major (T*N, F) input reversed in time (new when recording)."""
    F = inp.shape[1]
    r = np.empty((T, N, F), inp.dtype) if rec else run.work("rev", (T, N, F), inp.dtype)
    np.copyto(r, inp.reshape(T, N, F)[::-1])
    return r.reshape(T * N, F)


def _dropout_mask(p, shape, bf, dt):
    """Inverted-dropout mask (T, N, F) from fastnn's default generator, drawn in the
    caller's layout (batch-first when ``bf``), so it matches ``dropout`` on that output."""
    if p >= 1.0:
        return np.zeros(shape, dt)
    T, N, F = shape
    u = _random.resolve(None).random((N, T, F) if bf else shape, dtype=dt)
    mask = np.where(u >= p, dt.type(1 / (1 - p)), dt.type(0))
    return np.ascontiguousarray(mask.transpose(1, 0, 2) if bf else mask)


def rnn_sequence(input, h0, c0, params, mode, batch_first=False, op="RNN",  # noqa: A002
                 bidirectional=False, dropout=0.0, training=False):
    """A stacked (bidirectional) RNN/LSTM/GRU over a whole sequence, as one differentiable operation.

    Args:
        input: (T, N, In), (N, T, In) when ``batch_first``, or unbatched (T, In).
        h0, c0: initial states (L*D, N, P) and (L*D, N, H) (unbatched without N) or None
            for zeros; c0 LSTM only. D = 2 if bidirectional else 1; P = H unless projected.
        params: per layer and direction (index layer * D + direction)
            ``(w_ih (G, in), w_hh (G, P), b_ih (G,) or None, b_hh[, w_hr (P, H)])``, G = gates * H.
        mode: 'rnn_tanh', 'rnn_relu', 'lstm', 'gru' (or a ``kernels.recurrent`` code).
        op: the layer name errors show.
        dropout, training: inverted dropout with probability ``dropout`` on every layer's
            output except the last, when ``training`` (fastnn's default generator).

    Returns ``(output, h_n, c_n)``: output like the input with D*P features, h_n and c_n
    like h0 and c0 (c_n None unless LSTM). Gradients flow from any of the three to the
    input, h0, c0 and every weight and bias.
    """
    mode = MODES.get(mode, mode)
    if mode not in _NODE_NAMES:
        raise ValueError(f"{op}: mode must be one of {sorted(MODES)}, got {mode!r}")
    D = 2 if bidirectional else 1
    dt, G, In, H, P, L = _check_params(params, rk.GATES[mode], D, op)
    if len(params[0]) > 4 and mode != rk.LSTM:
        raise ValueError(f"{op}: a projection (weight_hr) is for LSTM only")
    dropout = float(dropout)
    if not 0.0 <= dropout <= 1.0:
        raise ValueError(f"{op}: dropout should be a number in range [0, 1], got {dropout}")
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
    h0 = _check_state(h0, "h_0", (L * D, P) if unbatched else (L * D, N, P), dt, op)
    c0 = _check_state(c0, "c_0", (L * D, H) if unbatched else (L * D, N, H), dt, op) if mode == rk.LSTM else None
    flat = [p for layer in params for p in layer]
    rec = recording(x, h0, c0, *flat)
    bf = batch_first and not unbatched
    # the time-major input: kept by the graph when recording, else a work array
    if bf:
        x_tm = np.empty((T, N, In), dt) if rec else run.work("x_tm", (T, N, In), dt)
        np.copyto(x_tm, xd.transpose(1, 0, 2))
    else:
        x_tm = np.ascontiguousarray(xd).reshape(T, N, In)
    h0d = None if h0 is None else np.ascontiguousarray(h0.data).reshape(L * D, N, P)
    c0d = None if c0 is None else np.ascontiguousarray(c0.data).reshape(L * D, N, H)
    h_n = np.empty((L * D, N, P), dt)
    c_n = np.empty((L * D, N, H), dt) if mode == rk.LSTM else None
    drop = dropout if training and L > 1 else 0.0
    saved, masks = [], []
    inp = x_tm.reshape(T * N, In)
    for k in range(L):
        last = k == L - 1
        outs = []
        for d in range(D):
            i = k * D + d
            out, aux, sv = run.forward(inp if d == 0 else _reversed(inp, T, N, rec), T, N,
                                       None if h0d is None else h0d[i], None if c0d is None else c0d[i],
                                       params[i], mode, rec, last and D == 1, f"{k % 2}{d}")
            h_n[i] = out[T - 1]
            if c_n is not None:
                c_n[i] = aux[T]
            saved.append(sv)
            outs.append(out)
        y = outs[0]
        if D == 2:  # the reverse direction's outputs back in time order, beside the forward's
            y = np.empty((T, N, 2 * P), dt) if rec or last else run.work(f"cat{k % 2}", (T, N, 2 * P), dt)
            y[:, :, :P] = outs[0]
            y[:, :, P:] = outs[1][::-1]
        if drop and not last:
            mask = _dropout_mask(drop, (T, N, D * P), bf, dt)
            y = np.multiply(y, mask, out=np.empty(mask.shape, dt) if rec else run.work(f"drop{k % 2}", mask.shape, dt))
            masks.append(mask)
        inp = y.reshape(T * N, D * P)
    out = y
    if unbatched:
        out, h_n = out[:, 0], h_n[:, 0]
        c_n = None if c_n is None else c_n[:, 0]
    elif bf:
        out = out.transpose(1, 0, 2)
    outputs = (_wrap(out), _wrap(h_n), None if c_n is None else _wrap(c_n))
    if rec:
        ctx = (saved, masks, params, mode, T, N, H, P, D, dt, bf, unbatched, x.requires_grad,
               h0 is not None and h0.requires_grad, c0 is not None and c0.requires_grad)
        attach_multi(outputs, lambda grads: _sequence_backward(grads, ctx), [x, h0, c0] + flat,
                     _NODE_NAMES[mode], saved=(x,))
    return outputs


def _grad_array(g, shape, dt):
    return np.ascontiguousarray(g, dtype=dt).reshape(shape)


def _direction_grad(dout, bf, d, P):
    """One direction's part of a layer's output gradient, contiguous; the reverse
    direction's reversed in time."""
    half = dout[..., d * P:(d + 1) * P]
    if d:
        half = half[:, ::-1] if bf else half[::-1]
    return np.ascontiguousarray(half)


def _sequence_backward(grads, ctx):
    """Backpropagation through time, top layer first; returns (dx, dh0, dc0, *dparams)."""
    saved, masks, params, mode, T, N, H, P, D, dt, dout_bf, unbatched, need_x, need_h0, need_c0 = ctx
    g_out, g_hn, g_cn = grads
    L, batch_first, per = len(params) // D, dout_bf, len(params[0])
    if g_out is None:
        dout, dout_bf = np.zeros((T, N, D * P), dt), False
    else:
        dout = _grad_array(g_out, (N, T, D * P) if dout_bf else (T, N, D * P), dt)
    dh_n = None if g_hn is None else _grad_array(g_hn, (L * D, N, P), dt)
    dc_n = None if g_cn is None else _grad_array(g_cn, (L * D, N, H), dt)
    dh0 = np.empty((L * D, N, P), dt) if need_h0 else None
    dc0 = np.empty((L * D, N, H), dt) if need_c0 else None
    dparams = [None] * (per * len(params))
    dinp = None
    for k in range(L - 1, -1, -1):
        need_inp = k > 0 or need_x
        In = params[k * D][0].data.shape[1]
        if need_inp:
            dinp = np.empty((T * N, In), dt) if k == 0 else run.work("dinp", (T * N, In), dt)
        douts = [dout] if D == 1 else [_direction_grad(dout, dout_bf, d, P) for d in range(D)]
        for d in range(D):
            i = k * D + d
            target = None if not need_inp else (dinp if d == 0 else run.work("dinp_r", (T * N, In), dt))
            g_h0, g_c0, dps = run.backward(douts[d], dout_bf, None if dh_n is None else dh_n[i],
                                           None if dc_n is None else dc_n[i], saved[i], params[i], mode,
                                           need_h0, need_c0, target)
            if need_h0:
                dh0[i] = g_h0
            if need_c0:
                dc0[i] = g_c0
            dparams[per * i:per * (i + 1)] = dps
            if d == 1 and need_inp:  # the reverse direction saw its input reversed in time
                dinp.reshape(T, N, In)[...] += target.reshape(T, N, In)[::-1]
        if not need_inp:
            break
        dout, dout_bf = dinp.reshape(T, N, In), False
        if k > 0 and masks:  # through the dropout on the layer below's output
            dout *= masks[k - 1]
    dx = None
    if need_x:  # dout is now the input's gradient, time-major
        dx = dout[:, 0] if unbatched else (dout.transpose(1, 0, 2) if batch_first else dout)
    if unbatched:
        dh0 = None if dh0 is None else dh0[:, 0]
        dc0 = None if dc0 is None else dc0[:, 0]
    return (dx, dh0, dc0, *dparams)


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
