"""Recurrent layers (Elman RNN, LSTM, GRU): forward over a sequence, backward through time.

Layout is time-major: x (T, N, In), hidden states hs (T+1, N, H) with hs[0] = h_0.
One layer runs as
  gates = x @ W_ih^T                     one matmul for all T steps, before the loop
  per step t: hw = h_{t-1} @ W_hh^T      one matmul
              cell_forward(...)          one fused parallel pass: bias, gates, state
and backward as
  per step t (reversed): cell_backward(...), then dh = dhw[t] @ W_hh (one matmul)
  dW_ih = dxw^T @ x, dW_hh = dhw^T @ hs[:-1], dx = dxw @ W_ih  (one matmul each)
so the work buffers are sized by (T, N) and nothing is allocated per step.
One forward and one backward kernel cover every cell type, chosen by ``mode``.
Gate order is PyTorch's: LSTM i, f, g, o; GRU r, z, n with b_hn inside r * (...).
"""
import math

import numpy as np
from numba import prange

from ._jit import inline, kernel, serial_kernel
from .elementwise import column_sum
from .matmul import matmul

RNN_TANH, RNN_RELU, LSTM, GRU = 0, 1, 2, 3
GATES = {RNN_TANH: 1, RNN_RELU: 1, LSTM: 4, GRU: 3}
# Below this many cells per step the fused pass runs on one thread.
CELL_SERIAL = 2048

# tanh as a rational function (Eigen's float approximation, |error| < 4e-7): pure
# arithmetic, so LLVM vectorises it, unlike a call to libm. float32 only.
# Constants are np.float32 so Numba keeps the arithmetic in float32.
_A1, _A3, _A5 = np.float32(4.89352455891786e-03), np.float32(6.37261928875436e-04), np.float32(1.48572235717979e-05)
_A7, _A9 = np.float32(5.12229709037114e-08), np.float32(-8.60467152213735e-11)
_A11, _A13 = np.float32(2.00018790482477e-13), np.float32(-2.76076847742355e-16)
_B0, _B2, _B4 = np.float32(4.89352518554385e-03), np.float32(2.26843463243900e-03), np.float32(1.18534705686654e-04)
_B6 = np.float32(1.19825839466702e-06)
_CLAMP = np.float32(7.90531110763549805)


@inline
def _tanh(v, fast):
    # fast (float32): the rational approximation; otherwise libm's tanh (float64 checks).
    if not fast:
        return math.tanh(v)
    x = min(max(v, -_CLAMP), _CLAMP)
    x2 = x * x
    p = ((((((_A13 * x2 + _A11) * x2 + _A9) * x2 + _A7) * x2 + _A5) * x2 + _A3) * x2 + _A1) * x
    q = ((_B6 * x2 + _B4) * x2 + _B2) * x2 + _B0
    return p / q


@inline
def _sigmoid(v, fast, half):
    # sigmoid(v) = (1 + tanh(v / 2)) / 2: stable for any v, and shares tanh's fast path.
    # ``half`` is 0.5 in the arrays' dtype (a literal would promote float32 to float64).
    return half * _tanh(half * v, fast) + half


@serial_kernel
def _forward_row(hs, aux, gates, hw, bias, b_hn, t, n, mode, fast):
    H = hs.shape[2]
    half = hs.dtype.type(0.5)
    g = gates[t, n]
    w = hw[n]
    hp = hs[t, n]
    ho = hs[t + 1, n]
    if mode == LSTM:
        for k in range(4 * H):
            g[k] += w[k] + bias[k]
        cp = aux[t, n]
        co = aux[t + 1, n]
        for j in range(H):
            i = _sigmoid(g[j], fast, half)
            f = _sigmoid(g[H + j], fast, half)
            c = _tanh(g[2 * H + j], fast)
            o = _sigmoid(g[3 * H + j], fast, half)
            g[j] = i
            g[H + j] = f
            g[2 * H + j] = c
            g[3 * H + j] = o
            c = f * cp[j] + i * c
            co[j] = c
            ho[j] = o * _tanh(c, fast)
    elif mode == GRU:
        hn = aux[t + 1, n]
        for j in range(H):
            r = _sigmoid(g[j] + w[j] + bias[j], fast, half)
            z = _sigmoid(g[H + j] + w[H + j] + bias[H + j], fast, half)
            hh = w[2 * H + j] + b_hn[j]
            nn = _tanh(g[2 * H + j] + bias[2 * H + j] + r * hh, fast)
            g[j] = r
            g[H + j] = z
            g[2 * H + j] = nn
            hn[j] = hh
            ho[j] = nn + z * (hp[j] - nn)
    elif mode == RNN_TANH:
        for j in range(H):
            ho[j] = _tanh(g[j] + w[j] + bias[j], fast)
    else:
        for j in range(H):
            v = g[j] + w[j] + bias[j]
            ho[j] = max(v, v - v)


@kernel
def cell_forward(hs, aux, gates, hw, bias, b_hn, t, mode, fast):
    """Step t of a layer: pre-activations, gate non-linearities and state update, fused.

    gates (T, N, G): in x_t @ W_ih^T, overwritten with the activated gates (LSTM, GRU).
    hw (N, G) = h_{t-1} @ W_hh^T; bias (G,) = b_ih + b_hh (GRU: b_in only in the n part);
    b_hn (H,) GRU only. Writes hs[t+1] (T+1, N, H) and aux[t+1]: LSTM c_t (reads aux[t]
    = c_{t-1}), GRU W_hn h + b_hn. ``fast``: float32 tanh approximation. Parallel over rows.
    """
    N = hw.shape[0]
    if N * hs.shape[2] < CELL_SERIAL:
        for n in range(N):
            _forward_row(hs, aux, gates, hw, bias, b_hn, t, n, mode, fast)
    else:
        for n in prange(N):
            _forward_row(hs, aux, gates, hw, bias, b_hn, t, n, mode, fast)


@serial_kernel
def _backward_row(dxw, dhw, dh, dc, dout, gates, hs, aux, t, n, mode, fast, dout_bf):
    H = hs.shape[2]
    one = hs.dtype.type(1)
    go = dout[n, t] if dout_bf else dout[t, n]
    g = gates[t, n]  # may be dxw[t, n] itself: each j reads its gates before writing
    dg = dxw[t, n]
    d = dh[n]
    if mode == LSTM:
        cp = aux[t, n]
        co = aux[t + 1, n]
        dcn = dc[n]
        for j in range(H):
            i = g[j]
            f = g[H + j]
            c = g[2 * H + j]
            o = g[3 * H + j]
            dht = go[j] + d[j]
            tc = _tanh(co[j], fast)
            # c_t = f c_{t-1} + i g;  h_t = o tanh(c_t)
            dct = dcn[j] + dht * o * (one - tc * tc)
            dcn[j] = dct * f
            dg[j] = dct * c * i * (one - i)
            dg[H + j] = dct * cp[j] * f * (one - f)
            dg[2 * H + j] = dct * i * (one - c * c)
            dg[3 * H + j] = dht * tc * o * (one - o)
    elif mode == GRU:
        hp = hs[t, n]
        hn = aux[t + 1, n]
        dw = dhw[t, n]
        for j in range(H):
            r = g[j]
            z = g[H + j]
            nn = g[2 * H + j]
            dht = go[j] + d[j]
            # h_t = (one - z) n + z h_{t-1};  n = tanh(x_n + r (W_hn h_{t-1} + b_hn))
            dnp = dht * (one - z) * (one - nn * nn)
            drp = dnp * hn[j] * r * (one - r)
            dzp = dht * (hp[j] - nn) * z * (one - z)
            dg[j] = drp
            dg[H + j] = dzp
            dg[2 * H + j] = dnp
            dw[j] = drp
            dw[H + j] = dzp
            dw[2 * H + j] = dnp * r
            d[j] = dht * z
    else:
        ho = hs[t + 1, n]
        for j in range(H):
            dht = go[j] + d[j]
            y = ho[j]
            if mode == RNN_TANH:
                dg[j] = dht * (one - y * y)
            else:
                dg[j] = dht if y > 0 else dht - dht


@kernel
def cell_backward(dxw, dhw, dh, dc, dout, gates, hs, aux, t, mode, fast, dout_bf):
    """Backward of step t: gradients of the gate pre-activations.

    dout: the layer's output gradient, (T, N, H), or (N, T, H) when ``dout_bf``.
    dh (N, H): in dL/dh_t from steps after t; out (GRU) the direct part z * dh_t of
    dL/dh_{t-1} (the caller then adds dhw[t] @ W_hh). dc (N, H) LSTM: dL/dc_t in,
    dL/dc_{t-1} out. Overwrites dxw[t] (input side; may alias gates) and, for GRU,
    dhw[t] (hidden side, differs in the n part). Parallel over rows.
    """
    N = dh.shape[0]
    if N * hs.shape[2] < CELL_SERIAL:
        for n in range(N):
            _backward_row(dxw, dhw, dh, dc, dout, gates, hs, aux, t, n, mode, fast, dout_bf)
    else:
        for n in prange(N):
            _backward_row(dxw, dhw, dh, dc, dout, gates, hs, aux, t, n, mode, fast, dout_bf)


def layer_forward(hs, aux, gates, hw, x, w_ih, w_hh, bias, b_hn, mode):
    """Run one layer over the whole sequence (Python driver, one matmul + one kernel a step).

    x (T*N, In) time-major rows; hs (T+1, N, H) with hs[0] = h_0 set by the caller
    (and aux[0] = c_0 for LSTM). Overwrites gates (T, N, G), hs[1:], aux[1:], hw (N, G).
    """
    T, N, G = gates.shape
    fast = hs.dtype == np.float32
    matmul(gates.reshape(T * N, G), x, w_ih, trans_b=True)
    for t in range(T):
        matmul(hw, hs[t], w_hh, trans_b=True)
        cell_forward(hs, aux, gates, hw, bias, b_hn, t, mode, fast)


def layer_backward(dxw, dhw, dh, dc, dout, dout_bf, gates, hs, aux, w_hh_t, mode):
    """Backpropagate one layer through time; fills dxw (T, N, G) and dhw (T, N, G).

    dxw may be ``gates`` itself (then the forward's gates are consumed); dhw is dxw
    except for GRU. w_hh_t (H, G) = W_hh^T. The caller turns dxw/dhw into weight,
    bias and input gradients with :func:`layer_param_grads`.
    """
    T = gates.shape[0]
    fast = hs.dtype == np.float32
    dh.fill(0)
    if mode == LSTM:
        dc.fill(0)
    for t in range(T - 1, -1, -1):
        cell_backward(dxw, dhw, dh, dc, dout, gates, hs, aux, t, mode, fast, dout_bf)
        if t > 0:
            matmul(dh, dhw[t], w_hh_t, trans_b=True, accumulate=mode == GRU)


def layer_param_grads(dw_ih, dw_hh, db_ih, db_hh, dxw, dhw, x, hs, acc):
    """Parameter gradients of one layer from all steps at once (None to skip one).

    dW_ih (+)= dxw^T @ x; dW_hh (+)= dhw^T @ hs[:-1]; db_ih (+)= sum dxw; db_hh (+)= sum dhw.
    ``acc``: dict name -> accumulate flag (from Parameter.grad_for_write).
    """
    T, N, G = dxw.shape
    dxw2 = dxw.reshape(T * N, G)
    dhw2 = dhw.reshape(T * N, G)
    if dw_ih is not None:
        matmul(dw_ih, dxw2, x, trans_a=True, accumulate=acc["w_ih"])
    if dw_hh is not None:
        matmul(dw_hh, dhw2, hs[:-1].reshape(T * N, hs.shape[2]), trans_a=True, accumulate=acc["w_hh"])
    if db_ih is not None:
        column_sum(db_ih, dxw2, acc["b_ih"])
    if db_hh is not None:
        column_sum(db_hh, dhw2, acc["b_hh"])
