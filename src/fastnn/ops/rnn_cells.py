"""One step of an RNN/LSTM/GRU cell as one graph node: ``rnn_cell``.

It runs the recurrent layer kernels for a single step (``_rnn_run``), so the cells
share every compiled kernel with RNN, LSTM and GRU. Built for loops of many
steps: validation is a few shape comparisons and the backward closure captures
only the step's saved arrays.
"""
import numpy as np

from ..kernels import recurrent as rk
from . import _rnn_run as run
from ._util import _wrap, attach, attach_multi, recording
from .recurrent import MODES, _check_state, _float_input

# rnn_cell has no torch.nn.functional name: import it by name
__all__ = []

_NAMES = {rk.RNN_TANH: "RnnTanhCellBackward0", rk.RNN_RELU: "RnnReluCellBackward0",
          rk.LSTM: "LstmCellBackward0", rk.GRU: "GruCellBackward0"}


def _check_weights(w_ih, w_hh, b_ih, b_hh, gates, op):
    dt = w_ih.data.dtype
    G, In = w_ih.data.shape if w_ih.data.ndim == 2 else (0, 0)
    H = G // gates
    if dt.kind != "f" or G == 0 or G != gates * H:
        raise ValueError(f"{op}: expected float weight_ih of shape ({gates} * hidden_size, input_size), "
                         f"got {w_ih.data.shape} {dt}")
    for name, p, want in (("weight_hh", w_hh, (G, H)), ("bias_ih", b_ih, (G,)), ("bias_hh", b_hh, (G,))):
        if p is not None and (p.data.shape != want or p.data.dtype != dt):
            raise ValueError(f"{op}: expected {name} of shape {want} and dtype {dt}, got {p.data.shape} {p.data.dtype}")
    if (b_ih is None) != (b_hh is None):
        raise ValueError(f"{op}: give both bias_ih and bias_hh or neither")
    return dt, In, H


def rnn_cell(input, hx, cx, w_ih, w_hh, b_ih, b_hh, mode, op="RNNCell"):  # noqa: A002
    """One step of an RNN ('rnn_tanh', 'rnn_relu'), LSTM or GRU cell.

    Args:
        input: (N, In) or unbatched (In,). hx: (N, H) / (H,) or None for zeros;
        cx: LSTM's cell state like hx, or None. Weights as ``torch.nn.*Cell``'s:
        w_ih (G, In), w_hh (G, H), biases (G,) or None, G = gates * H.

    Returns h' (RNN, GRU) or ``(h', c')`` (LSTM), shaped like hx.
    """
    mode = MODES.get(mode, mode)
    if mode not in _NAMES:
        raise ValueError(f"{op}: mode must be one of {sorted(MODES)}, got {mode!r}")
    dt, In, H = _check_weights(w_ih, w_hh, b_ih, b_hh, rk.GATES[mode], op)
    x = _float_input(input, dt, op, "input")
    xd = x.data
    if xd.ndim not in (1, 2) or xd.shape[-1] != In or 0 in xd.shape:
        raise ValueError(f"{op}: expected input of shape (N, {In}) or ({In},), got {xd.shape}")
    unbatched = xd.ndim == 1
    N = 1 if unbatched else xd.shape[0]
    want = (H,) if unbatched else (N, H)
    hx = _check_state(hx, "hx", want, dt, op)
    lstm = mode == rk.LSTM
    cx = _check_state(cx, "cx", want, dt, op) if lstm else None
    layer = (w_ih, w_hh, b_ih, b_hh)
    rec = recording(x, hx, cx, w_ih, w_hh, b_ih, b_hh)
    h0 = None if hx is None else np.ascontiguousarray(hx.data).reshape(N, H)
    c0 = None if cx is None else np.ascontiguousarray(cx.data).reshape(N, H)
    out, aux, saved = run.forward(np.ascontiguousarray(xd).reshape(N, In), 1, N, h0, c0, layer, mode, True, True)
    h = _wrap(out[0].reshape(want))
    c = _wrap(aux[1].reshape(want)) if lstm else None
    if not rec:
        return (h, c) if lstm else h
    need = (x.requires_grad, hx is not None and hx.requires_grad, cx is not None and cx.requires_grad)
    shapes = (xd.shape, want)

    def backward(grads):
        g_h, g_c = grads if lstm else (grads, None)
        dh = None if g_h is None else np.ascontiguousarray(g_h, dtype=dt).reshape(N, H)
        dc = None if g_c is None else np.ascontiguousarray(g_c, dtype=dt).reshape(N, H)
        dx = np.empty((N, In), dt) if need[0] else None
        dout = run.work("zero_out", (1, N, H), dt, zero=True)
        dh0, dc0, dps = run.backward(dout, False, dh, dc, saved, layer, mode, need[1], need[2], dx)
        return (None if dx is None else dx.reshape(shapes[0]), None if dh0 is None else dh0.reshape(shapes[1]),
                None if dc0 is None else dc0.reshape(shapes[1]), *dps)

    if lstm:
        attach_multi((h, c), backward, (x, hx, cx) + layer, _NAMES[mode], saved=(x,))
        return h, c
    attach(h, backward, (x, hx, cx) + layer, _NAMES[mode], saved=(x,))
    return h
