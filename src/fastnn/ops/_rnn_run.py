"""One recurrent layer in one direction, forward and backward through time: the
kernel drivers that ``rnn_sequence`` (every layer and direction of RNN/LSTM/GRU)
and ``rnn_cell`` (one step) share.

A layer-direction runs on a time-major input ``inp`` (T*N, In): a reverse direction
is handed its input reversed in time, so the kernels always step forward.
With a projection (LSTM ``proj_size``: h_t = W_hr u_t, u_t = o * tanh(c_t)) the
recurrence is run in u with the product W_hh W_hr as recurrent weights (h_0 enters
the first step's gates), and h = u W_hr^T is one matmul over all steps, so the
same kernels serve it. Work arrays used only inside one call (packed weights,
per-chunk products, the gate gradients) are cached per Python thread.
"""
import threading

import numpy as np

from ..kernels import recurrent as rk
from ..kernels import recurrent_product as rp
from ..kernels._threading import get_threads
from ..kernels.elementwise import column_sum
from ..kernels.matmul import matmul
from ._util import direct_grad


class _Scratch(threading.local):
    def __init__(self):
        self.arrays = {}


_scratch = _Scratch()


def work(name, shape, dtype, zero=False):
    """This thread's work array ``name`` of ``shape``: never outlives one call's use
    (``zero`` ones are read-only zeros)."""
    arrays = _scratch.arrays
    key = (name, shape, dtype)
    a = arrays.get(key)
    if a is None:
        if len(arrays) > 64:  # many shapes seen: start over rather than grow
            arrays.clear()
        a = arrays[key] = np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
    return a


def _biases(b_ih, b_hh, mode, G, H, dt):
    """(b_ih + b_hh with GRU's b_hn left out, b_hn) for one layer."""
    if b_ih is None:
        return np.zeros(G, dt), np.zeros(H, dt)
    bias = b_ih.data + b_hh.data
    if mode == rk.GRU:
        bias[2 * H:] = b_ih.data[2 * H:]
        return bias, np.ascontiguousarray(b_hh.data[2 * H:])
    return bias, bias


def forward(inp, T, N, h0, c0, layer, mode, rec, keep, tag=""):
    """Run one layer-direction over T steps.

    Args:
        inp: (T*N, In) C-contiguous, time-major. h0 (N, P), c0 (N, H): arrays or None.
        layer: Tensors ``(w_ih, w_hh, b_ih, b_hh[, w_hr])``, shapes already checked.
        rec: keep what backward reads in new arrays; keep: the output must be a new array.
        tag: names the work arrays of the output (a layer's output is the next one's input).

    Returns ``(out (T, N, P), aux, saved)``: aux[T] is LSTM's c_T; saved is what
    :func:`backward` reads (None unless ``rec``).
    """
    w_ih, w_hh, b_ih, b_hh = layer[:4]
    w_hr = layer[4] if len(layer) > 4 else None
    dt = inp.dtype
    G = w_ih.data.shape[0]
    H = G // rk.GATES[mode]
    aux_shape = (T + 1, N, H) if mode in (rk.LSTM, rk.GRU) else (1, 1, 1)
    gates = np.empty((T, N, G), dt) if rec else work("gates", (T, N, G), dt)
    aux = np.empty(aux_shape, dt) if rec else work("aux", aux_shape, dt)
    new_hs = rec or (keep and w_hr is None)
    hs = np.empty((T + 1, N, H), dt) if new_hs else work("hs" + tag, (T + 1, N, H), dt)
    bias, b_hn = _biases(b_ih, b_hh, mode, G, H, dt)
    matmul(gates.reshape(T * N, G), inp, np.ascontiguousarray(w_ih.data), trans_b=True)
    w_rec = np.ascontiguousarray(w_hh.data)
    if w_hr is None:
        hs[0] = 0 if h0 is None else h0
    else:  # the recurrence in u: h_{t-1} W_hh^T = u_{t-1} (W_hh W_hr)^T; h_0 joins step 0
        w_hh_d, w_hr_d = w_rec, np.ascontiguousarray(w_hr.data)
        w_rec = np.empty((G, H), dt)
        matmul(w_rec, w_hh_d, w_hr_d)
        hs[0] = 0
        if h0 is not None:
            matmul(gates[0], h0, w_hh_d, trans_b=True, accumulate=True)
    if mode == rk.LSTM:
        aux[0] = 0 if c0 is None else c0
    chunk, chunks = rp.chunking(N, get_threads())
    nr = rp.panel_width(dt)
    hw = work("hw", (chunks, chunk * ((G + nr - 1) // nr * nr)), dt, zero=True)
    ap = work("ap", (chunks, chunk * G), dt, zero=True)
    wp = work("wp_fwd", rp.panel_shape(H, G, dt), dt)
    packed = N >= rp.MR  # smaller batches use W_hh as it is (dot products): packing costs more
    if packed:
        rp.pack_panels(wp, w_rec, True)
    rk.sequence_forward(hs, aux, gates, bias, b_hn, wp, w_rec, hw, ap, chunk, mode, packed,
                        rk.forward_handle(hs, aux, gates, bias, b_hn, wp, w_rec, hw, ap, mode))
    if w_hr is None:
        out, extra = hs[1:], None
    else:
        P = w_hr_d.shape[0]
        out = np.empty((T, N, P), dt) if rec or keep else work("proj" + tag, (T, N, P), dt)
        matmul(out.reshape(T * N, P), hs[1:].reshape(T * N, H), w_hr_d, trans_b=True)
        extra = (None if h0 is None else h0.copy(), w_rec)
    return out, aux, ((inp, gates, hs, aux, extra) if rec else None)


def backward(dout, dout_bf, dh_n, dc_n, saved, layer, mode, need_h0, need_c0, dinp):
    """Backpropagate one layer-direction through all its steps.

    Args:
        dout: (T, N, P) C-contiguous ((N, T, P) when ``dout_bf``): the output's gradient.
        dh_n (N, P), dc_n (N, H): gradients of the last h and c, or None.
        saved: from :func:`forward`. dinp: (T*N, In) array to overwrite with the
            input's gradient, or None when it is not needed.

    Returns ``(dh0 or None, dc0 or None, [gradient or None per parameter])``.
    """
    inp, gates, hs, aux, extra = saved
    T, N, G = gates.shape
    H, dt = hs.shape[2], gates.dtype
    w_hh_d = np.ascontiguousarray(layer[1].data)
    w_rec, dproj = w_hh_d, None
    if extra is not None:  # projection: the kernel sees u_t, dL/du_t = dL/dh_t W_hr
        h0, w_rec = extra
        w_hr_d = np.ascontiguousarray(layer[4].data)
        P = w_hr_d.shape[0]
        dproj = np.empty((T, N, P), dt)
        np.copyto(dproj, dout.transpose(1, 0, 2) if dout_bf else dout)
        if dh_n is not None:
            dproj[T - 1] += dh_n
        dout, dout_bf, dh_n = work("du", (T, N, H), dt), False, None
        matmul(dout.reshape(T * N, H), dproj.reshape(T * N, P), w_hr_d)
    lstm = mode == rk.LSTM
    if dh_n is None:
        dh_n = work("zero_h", (N, H), dt, zero=True)
    if dc_n is None:
        dc_n = work("zero_c", (N, H) if lstm else (1, 1), dt, zero=True)
    chunk, chunks = rp.chunking(N, get_threads())  # the thread count may have changed
    nr = rp.panel_width(dt)
    dh = work("dh", (chunks, chunk * ((H + nr - 1) // nr * nr)), dt, zero=True)
    ap = work("ap", (chunks, chunk * G), dt, zero=True)
    wp = work("wp_bwd", rp.panel_shape(G, H, dt), dt)
    dc = work("dc", (N, H) if lstm else (1, 1), dt)
    dxw = work("dxw", (T, N, G), dt)
    dhw = work("dhw", (T, N, G), dt) if mode == rk.GRU else dxw
    if T > 1:  # (one step: the kernel multiplies nothing by W_hh)
        rp.pack_panels(wp, w_rec, False)
    args = (dxw, dhw, dh, dc, dout, dh_n, dc_n, gates, hs, aux, wp, ap)
    rk.sequence_backward(*args, chunk, mode, dout_bf, rk.backward_handle(*args, mode, dout_bf))
    dh0 = dc0 = None
    if need_h0:  # dL/dh_0 = dhw[0] @ W_hh (+ GRU's direct z * dL/dh_1, left in dh)
        dh0 = np.empty((N, w_hh_d.shape[1]), dt)
        if mode == rk.GRU:
            np.copyto(dh0, dh.reshape(chunks * chunk, -1)[:N, :H])
        matmul(dh0, dhw[0], w_hh_d, accumulate=mode == rk.GRU)
    if need_c0:  # the kernel leaves dL/dc_0 = dL/dc_1 * f_1 in dc
        dc0 = dc.copy()
    dxw2, h_prev = dxw.reshape(T * N, G), hs[:-1].reshape(T * N, H)
    if extra is None:
        grads = _param_grads(layer, dxw2, dhw.reshape(T * N, G), inp, h_prev, dhw is dxw)
    else:
        grads = _proj_grads(layer, dxw2, inp, h_prev, hs[1:].reshape(T * N, H), dproj, extra[0], w_hh_d, w_hr_d)
    if dinp is not None:
        matmul(dinp, dxw2, np.ascontiguousarray(layer[0].data))
    return dh0, dc0, grads


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


def _product_grad(p, a, b):
    """a^T @ b as ``p``'s gradient: into ``.grad`` when possible, else returned."""
    target = direct_grad(p)
    if target is None:
        out = np.empty(p.data.shape, a.dtype)
        matmul(out, a, b, trans_a=True)
        return out
    matmul(target[0], a, b, trans_a=True, accumulate=target[1])
    return None


def _bias_grads(layer, out, dxw, dhw):
    sums_of = None  # LSTM and RNN: both biases get the same sums, computed once
    db = work("db", (dxw.shape[1],), dxw.dtype)
    for i, dpre in ((2, dxw), (3, dhw)):
        if layer[i] is not None and layer[i].requires_grad:
            if sums_of is not dpre:
                column_sum(db, dpre, False)
                sums_of = dpre
            out[i] = _store(layer[i], db)


_CONCAT_ROWS = 128  # below this many rows (T * N) the copies cost more than a second packing


def _param_grads(layer, dxw, dhw, inp, h_prev, same):
    """One layer's parameter gradients from all steps at once: dW_ih = dxw^T @ x,
    dW_hh = dhw^T @ h_{t-1}, db_ih = sum dxw, db_hh = sum dhw (into .grad when possible)."""
    w_ih, w_hh = layer[0], layer[1]
    out = [None] * 4
    dt = dxw.dtype
    if same and w_ih.requires_grad and w_hh.requires_grad and dxw.shape[0] >= _CONCAT_ROWS:
        # one product for both: dxw^T @ [x | h_{t-1}] packs dxw^T once, not twice
        In, H = inp.shape[1], h_prev.shape[1]
        xh = work("xh", (inp.shape[0], In + H), dt)
        both = work("dw", (dxw.shape[1], In + H), dt)
        np.concatenate([inp, h_prev], axis=1, out=xh)
        matmul(both, dxw, xh, trans_a=True)
        out[0], out[1] = _store(w_ih, both[:, :In]), _store(w_hh, both[:, In:])
    else:
        for i, (dpre, rhs) in enumerate(((dxw, inp), (dhw, h_prev))):
            if layer[i].requires_grad:
                out[i] = _product_grad(layer[i], dpre, rhs)
    _bias_grads(layer, out, dxw, dhw)
    return out


def _proj_grads(layer, dxw, inp, u_prev, u, dproj, h0, w_hh_d, w_hr_d):
    """A projected LSTM layer's parameter gradients. With E = W_hh W_hr the recurrent
    weights the kernel used: dE = dxw^T @ u_{t-1}; dW_hh = dE W_hr^T + dxw_0^T h_0;
    dW_hr = W_hh^T dE + dh^T @ u."""
    w_ih, w_hh, w_hr = layer[0], layer[1], layer[4]
    out = [None] * 5
    dt = dxw.dtype
    G, H = dxw.shape[1], u.shape[1]
    d_rec = work("d_rec", (G, H), dt)
    matmul(d_rec, dxw, u_prev, trans_a=True)
    if w_ih.requires_grad:
        out[0] = _product_grad(w_ih, dxw, inp)
    if w_hh.requires_grad:
        dw = work("dw_hh", w_hh_d.shape, dt)
        matmul(dw, d_rec, w_hr_d, trans_b=True)
        if h0 is not None:
            matmul(dw, dxw[:h0.shape[0]], h0, trans_a=True, accumulate=True)
        out[1] = _store(w_hh, dw)
    if w_hr.requires_grad:
        dw = work("dw_hr", w_hr_d.shape, dt)
        matmul(dw, w_hh_d, d_rec, trans_a=True)
        matmul(dw, dproj.reshape(-1, w_hr_d.shape[0]), u, trans_a=True, accumulate=True)
        out[4] = _store(w_hr, dw)
    _bias_grads(layer, out, dxw, dxw)
    return out
