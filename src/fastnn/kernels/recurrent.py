"""Recurrent layers (Elman RNN, LSTM, GRU): forward over a sequence, backward through time.

Layout is time-major: x (T, N, In), hidden states hs (T+1, N, H) with hs[0] = h_0.
One layer runs as
  gates = x @ W_ih^T                      one matmul for all T steps (the caller)
  sequence_forward: per step t, hw = h_{t-1} @ W_hh^T (matmul's register-blocked
      micro-kernel on a W_hh packed once; a few rows one by one, unpadded), then one
      fused pass: bias, gates, state
(for inference on up to MR rows, sequence_forward_split runs both, split over the
threads by gate columns) and backward as
  sequence_backward: per step t (reversed), the gate gradients, then dh = dhw[t] @ W_hh
  dW_ih = dxw^T @ x, dW_hh = dhw^T @ hs[:-1], dx = dxw @ W_ih   big matmuls (the caller)
Samples are independent, so threads split the batch and each runs all T steps for
its rows: one parallel region per layer and direction, instead of two per step.
Each row's arithmetic is the same however the batch is split, so results do not
depend on the thread count. One forward and one backward kernel cover every cell
type, chosen by ``mode``. Gate order is PyTorch's: LSTM i, f, g, o; GRU r, z, n
with b_hn inside r * (...).
"""
import math

import numpy as np
from numba import get_thread_id, prange, types
from numba.extending import overload

from ._atomic import compare_swap, fetch_add, load_acquire, pause
from ._fnptr import call, handle
from ._jit import FASTMATH, kernel, serial_kernel
from .elementwise import copy_run
from .microkernel import MR, micro
from .recurrent_product import pack_rows, panel_width, times_packed, times_packed_rows, times_rows

RNN_TANH, RNN_RELU, LSTM, GRU = 0, 1, 2, 3
GATES = {RNN_TANH: 1, RNN_RELU: 1, LSTM: 4, GRU: 3}

# tanh as a rational function (Eigen's float approximation, |error| < 4e-7): pure
# arithmetic, so LLVM vectorises it, unlike a call to libm. float32 only.
# Constants are np.float32 so Numba keeps the arithmetic in float32.
_A1, _A3, _A5 = np.float32(4.89352455891786e-03), np.float32(6.37261928875436e-04), np.float32(1.48572235717979e-05)
_A7, _A9 = np.float32(5.12229709037114e-08), np.float32(-8.60467152213735e-11)
_A11, _A13 = np.float32(2.00018790482477e-13), np.float32(-2.76076847742355e-16)
_B0, _B2, _B4 = np.float32(4.89352518554385e-03), np.float32(2.26843463243900e-03), np.float32(1.18534705686654e-04)
_B6 = np.float32(1.19825839466702e-06)
_CLAMP = np.float32(7.90531110763549805)
_HALF = np.float32(0.5)
# add=False typed as a plain bool (a literal False would compile the product twice)
_OVERWRITE = np.bool_(False)


def _tanh(v):
    """tanh in the kernels: the rational approximation for float32, libm's otherwise."""
    return math.tanh(v)


def _sigmoid(v):
    """sigmoid(v) = (1 + tanh(v / 2)) / 2: stable for any v, and shares tanh's fast path."""
    return 0.5 * math.tanh(0.5 * v) + 0.5


# Chosen by the argument's type when a kernel compiles, so each dtype gets straight-line
# code (float64 keeps libm's accuracy for the gradient checks).
@overload(_tanh, jit_options={"fastmath": FASTMATH})
def _tanh_typed(v):
    if v == types.float32:
        def tanh_f32(v):
            x = min(max(v, -_CLAMP), _CLAMP)
            x2 = x * x
            p = ((((((_A13 * x2 + _A11) * x2 + _A9) * x2 + _A7) * x2 + _A5) * x2 + _A3) * x2 + _A1) * x
            q = ((_B6 * x2 + _B4) * x2 + _B2) * x2 + _B0
            return p / q
        return tanh_f32
    return lambda v: math.tanh(v)


@overload(_sigmoid, jit_options={"fastmath": FASTMATH})
def _sigmoid_typed(v):
    if v == types.float32:
        return lambda v: _HALF * _tanh(_HALF * v) + _HALF
    return lambda v: 0.5 * math.tanh(0.5 * v) + 0.5


@serial_kernel
def _forward_row(g, w, bias, b_hn, hp, ho, cp, co, mode):
    # One sample's step for H hidden units (every unit, or a part of
    # sequence_forward_split's): g, w, bias hold the row's gates, h_{t-1} @ W_hh^T and
    # biases for them, gate by gate (g[k * H + j]: gate k of unit j); b_hn, hp (h_{t-1}),
    # ho (h_t) H entries each; cp, co: LSTM c_{t-1} and c_t, GRU's co W_hn h + b_hn
    # (any arrays for the Elman cells).
    H = hp.shape[0]
    if mode == LSTM:
        for k in range(4 * H):
            g[k] += w[k] + bias[k]
        for j in range(H):
            i = _sigmoid(g[j])
            f = _sigmoid(g[H + j])
            c = _tanh(g[2 * H + j])
            o = _sigmoid(g[3 * H + j])
            g[j] = i
            g[H + j] = f
            g[2 * H + j] = c
            g[3 * H + j] = o
            c = f * cp[j] + i * c
            co[j] = c
            ho[j] = o * _tanh(c)
    elif mode == GRU:
        hn = co
        for j in range(H):
            r = _sigmoid(g[j] + w[j] + bias[j])
            z = _sigmoid(g[H + j] + w[H + j] + bias[H + j])
            hh = w[2 * H + j] + b_hn[j]
            nn = _tanh(g[2 * H + j] + bias[2 * H + j] + r * hh)
            g[j] = r
            g[H + j] = z
            g[2 * H + j] = nn
            hn[j] = hh
            ho[j] = nn + z * (hp[j] - nn)
    elif mode == RNN_TANH:
        for j in range(H):
            ho[j] = _tanh(g[j] + w[j] + bias[j])
    else:
        for j in range(H):
            v = g[j] + w[j] + bias[j]
            ho[j] = max(v, v - v)


@serial_kernel
def _backward_row(dxw, dhw, d, dc, dout, gates, hs, aux, t, n, mode, dout_bf):
    # One sample's step back: d (H,) holds dL/dh_t from later steps; GRU leaves the
    # direct part z * dh_t of dL/dh_{t-1} in it.
    H = hs.shape[2]
    one = hs.dtype.type(1)
    go = dout[n, t] if dout_bf else dout[t, n]
    g = gates[t, n]
    dg = dxw[t, n]
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
            tc = _tanh(co[j])
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
            # h_t = (1 - z) n + z h_{t-1};  n = tanh(x_n + r (W_hn h_{t-1} + b_hn))
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


@serial_kernel
def _forward_chunk(hs, aux, gates, bias, b_hn, wp, w, hw, ap, n0, n1, mode, packed):
    G = gates.shape[2]
    C = wp.shape[0] * wp.shape[2]
    for t in range(gates.shape[0]):
        if packed:
            times_packed_rows(hw, ap, hs[t], n0, n1 - n0, wp, _OVERWRITE)
        else:  # W_hh not packed (a small batch, eagerly): dot products with its rows
            times_rows(hw, C, hs[t], n0, n1 - n0, w, _OVERWRITE)
        for n in range(n0, n1):
            r = n - n0
            hp, ho = hs[t, n], hs[t + 1, n]
            cp, co = (aux[t, n], aux[t + 1, n]) if mode == LSTM or mode == GRU else (hp, ho)
            _forward_row(gates[t, n], hw[r * C:r * C + G], bias, b_hn, hp, ho, cp, co, mode)


@kernel
def sequence_forward(hs, aux, gates, bias, b_hn, wp, w, hw, ap, chunk, mode, packed, fn):
    """Run one layer over all T steps: per step hw = h_{t-1} @ W_hh^T, then gates and state.

    gates (T, N, G): in x @ W_ih^T, overwritten with the activated gates (LSTM, GRU);
    hs (T+1, N, H): reads hs[0] = h_0, writes hs[1:]; aux (T+1, N, H): LSTM c (aux[0] =
    c_0), GRU W_hn h + b_hn; bias (G,) = b_ih + b_hh (GRU: b_in in the n part), b_hn (H,).
    wp: W_hh^T packed by pack_panels when ``packed``, else w: W_hh (G, H) itself (an
    eager call on a batch under MR rows, where packing costs more than it saves);
    hw, ap: per-chunk scratch (``chunk`` rows each, from chunking()).
    Samples are independent, so each prange iteration runs every step for its own
    ``chunk`` rows: one parallel region per layer, no barrier per step.
    fn: ``forward_handle`` of these arguments; ``_forward_chunk`` is called through
    its address (``_fnptr``), so its body compiles once, serially, not in this shell.
    """
    N = gates.shape[1]
    last = hw.shape[0] - 1
    if last == 0:  # one chunk: no parallel launch
        call(fn, (hs, aux, gates, bias, b_hn, wp, w, hw[last], ap[last], last * chunk, N, mode, packed))
        return
    for c in prange(last + 1):
        n0 = c * chunk
        call(fn, (hs, aux, gates, bias, b_hn, wp, w, hw[c], ap[c], n0, min(n0 + chunk, N), mode, packed))


def forward_handle(hs, aux, gates, bias, b_hn, wp, w, hw, ap, mode):
    """The ``fn`` argument of sequence_forward (whose arguments these are)."""
    return handle(_forward_chunk, (hs, aux, gates, bias, b_hn, wp, w, hw[0], ap[0], 0, 0, mode, True))


SYNC_LINE = 8  # int64s in a cache line: each flag of the split hand-off has a line of its own
PATIENCE = 200  # spin-waits (25 ns each on this Zen 4) before a thread runs a late part itself


@serial_kernel
def _run_part(hs, aux, gates, bias, b_hn, wp, hw, ap, gs, t, u0, u1, mode):
    # Step t of hidden units u0..u1-1 for every row, reading gates (a copy of each
    # row's, in gs, is activated), writing hs and aux: run twice, it writes the same bits.
    N = gates.shape[1]
    gc = gates.shape[2] // hs.shape[2]
    NR = wp.shape[2]
    c0, c1 = gc * u0, gc * u1  # the part's gate columns (permuted: gate by gate)
    C = c1 - c0
    times_packed_rows(hw, ap, hs[t], 0, N, wp[c0 // NR:c1 // NR], _OVERWRITE)
    g = gs[:C]
    for n in range(N):
        copy_run(g, 0, gates[t, n], c0, C)
        hp, ho = hs[t, n, u0:u1], hs[t + 1, n, u0:u1]
        cp, co = (aux[t, n, u0:u1], aux[t + 1, n, u0:u1]) if mode == LSTM or mode == GRU else (hp, ho)
        _forward_row(g, hw[n * C:(n + 1) * C], bias[c0:c1], b_hn[u0:u1], hp, ho, cp, co, mode)


@serial_kernel
def _project(gates, x, wip, ap, tmp, item, bounds):
    # Input product item ``item`` of sequence_forward_split: one MR-row panel of x
    # (T*N, In) times one part's gate columns of W_ih^T (wip: packed, permuted part by
    # part), into those rows and columns of gates (item = part * panels + panel).
    R, In = x.shape
    G = gates.shape[2]
    parts = bounds.shape[0] - 1
    gc = G // bounds[parts]
    NR = wip.shape[2]
    panels = (R + MR - 1) // MR
    q, p = item // panels, item % panels
    r0 = p * MR
    rows = min(MR, R - r0)
    c0, c1 = gc * bounds[q], gc * bounds[q + 1]
    C = c1 - c0
    pack_rows(ap, x, r0, rows)
    g = gates.reshape(R * G)
    if rows == MR:  # straight into gates, G apart
        for j in range(c0 // NR, c1 // NR):
            micro(g, r0 * G + j * NR, G, ap, 0, wip, j * In * NR, In, _OVERWRITE)
        return
    times_packed(tmp, ap, wip[c0 // NR:c1 // NR], rows, _OVERWRITE)
    for r in range(rows):
        copy_run(g, (r0 + r) * G + c0, tmp, r * C, C)


@serial_kernel
def _forward_part(hs, aux, gates, x, wip, bias, b_hn, wp, hw, ap, gs, sync, bounds, mode, patience, me):
    # One thread's run of sequence_forward_split: first the input product's items,
    # then at each step its parts; in each round every item it can claim (from its own
    # share on: the same weights as the call before, in its core's cache), then a wait
    # for each other item to be done; one still not done after ``patience`` spins, its
    # thread held up, it runs itself.
    T = gates.shape[0]
    parts = bounds.shape[0] - 1
    items = parts * ((x.shape[0] + MR - 1) // MR)
    for t in range(-1, T):  # t = -1: the input product
        n = items if t < 0 else parts
        base = 0 if t < 0 else (items + t * parts) * 2 * SYNC_LINE  # n claim flags, then n done flags
        start = me * n // parts
        for k in range(2 * n):  # claim what it can, its own share first; then wait for each
            q = (start + k) % n if k < n else k - n
            done = base + (n + q) * SYNC_LINE
            if k < n:
                claim = base + q * SYNC_LINE
                run = load_acquire(sync, claim) == 0 and compare_swap(sync, claim, 0, 1)
            else:
                spins = 0
                while spins < patience and load_acquire(sync, done) == 0:
                    spins += 1
                    pause()
                run = load_acquire(sync, done) == 0
            if not run:
                continue
            if t < 0:
                _project(gates, x, wip, ap, hw, q, bounds)
            else:
                _run_part(hs, aux, gates, bias, b_hn, wp, hw, ap, gs, t, bounds[q], bounds[q + 1], mode)
            fetch_add(sync, done, 1)  # (a full barrier: the item's stores come first)


@kernel
def sequence_forward_split(hs, aux, gates, x, wip, bias, b_hn, wp, hw, ap, gs, sync, bounds, mode, patience, fn):
    """One layer over all T steps, its input product included, for a batch too small
    to split (one MR panel of rows): the product's rows and columns and then each
    step's hidden units split into parts (``bounds``, from :func:`split_bounds`), which
    the threads claim and run, meeting after the product and after each step.

    x (T*N, In): the layer's input, time-major; wip: W_ih^T packed by pack_panels;
    gates (T, N, G): overwritten with x @ W_ih^T. The gate columns are permuted part by
    part (:func:`split_order`): W_ih's and W_hh's rows before pack_panels, so a
    part's columns are whole panels of wip and wp, and ``bias`` alike, so a part's
    gates of a row are contiguous; hs, aux and b_hn keep their order. After the
    product, ``gates`` is only read (for inference: the activated gates are not kept).

    A thread runs the share of its thread number first, so from call to call it reads
    the same weights from its own core's cache (one core streams W_hh from its cache
    at a rate two cores double). A thread that comes late (a sleeping worker) or
    never (a one-thread pool, or more parts than threads) leaves its share to the
    others: an item is claimed only by a thread about to run it. A thread held up
    while it runs an item (descheduled by the system) is not waited for long: after
    a bounded spin another thread runs the item too, which is safe because an item
    writes the same bits whoever runs it and when. So the order and speed the pool
    runs the iterations at cannot block a step. Each step's output sums the same
    products in the same order as sequence_forward's: given the same gates, the same
    bits in the optimised build (a bounds-checked one compiles GRU's cell loop in the
    two kernels with different contractions: the last place may differ there).
    hw (parts, MR * G), ap (parts, MR * max(H, In)), gs (parts, G): per-iteration
    scratch; sync: int64, :func:`sync_size` long, overwritten. patience: spin-waits
    before a thread runs an item that is not done (:func:`split_patience`). fn:
    :func:`split_handle`.
    """
    for i in range(sync.shape[0]):  # (a plain loop: never fused with the prange below)
        sync[i] = 0
    parts = bounds.shape[0] - 1
    for c in prange(parts):
        me = get_thread_id() % parts
        call(fn, (hs, aux, gates, x, wip, bias, b_hn, wp, hw[c], ap[c], gs[c], sync, bounds, mode, patience, me))


def split_handle(hs, aux, gates, x, wip, bias, b_hn, wp, hw, ap, gs, sync, bounds, mode, patience):
    """The ``fn`` argument of sequence_forward_split (whose arguments these are)."""
    return handle(_forward_part, (hs, aux, gates, x, wip, bias, b_hn, wp, hw[0], ap[0], gs[0], sync, bounds, mode,
                                  patience, patience))


def split_patience(wp, parts):
    """The spin-waits before a thread runs an item that is not done itself: PATIENCE,
    about 5 us here, plus about twice the time a core takes to stream a part's weights."""
    return PATIENCE + wp.nbytes // (2048 * parts)


def split_bounds(H, threads, dtype):
    """The hidden units' part boundaries (int64, parts + 1) for sequence_forward_split:
    whole panels of each gate per part, ``threads`` parts at most (one thread: one
    part); None when H is not a whole number of at least two panels."""
    NR = panel_width(dtype)
    panels = H // NR
    parts = min(threads, panels)
    if H % NR or panels < 2:
        return None
    return np.array([q * panels // parts * NR for q in range(parts + 1)], np.int64)


def split_order(H, gc, bounds):
    """The order of W_hh's rows (gate k's unit j is row k*H + j) that puts each part's
    gate columns together, part by part, for pack_panels."""
    return np.concatenate([np.arange(k * H + bounds[q], k * H + bounds[q + 1])
                           for q in range(len(bounds) - 1) for k in range(gc)])


def sync_size(T, N, parts):
    """The length of sequence_forward_split's sync array (T steps of N rows)."""
    return (parts * ((T * N + MR - 1) // MR) + T * parts) * 2 * SYNC_LINE


@serial_kernel
def _backward_chunk(dxw, dhw, dh, dc, dout, dh_n, dc_n, gates, hs, aux, wp, ap, n0, n1, mode, dout_bf):
    H = hs.shape[2]
    C = wp.shape[0] * wp.shape[2]
    dh[:] = 0
    for n in range(n0, n1):  # the gradients w.r.t. h_n (and c_n) enter at the last step
        copy_run(dh, (n - n0) * C, dh_n[n], 0, H)
        if mode == LSTM:
            copy_run(dc[n], 0, dc_n[n], 0, H)
    for t in range(gates.shape[0] - 1, -1, -1):
        for n in range(n0, n1):
            r = n - n0
            _backward_row(dxw, dhw, dh[r * C:r * C + H], dc, dout, gates, hs, aux, t, n, mode, dout_bf)
        if t > 0:  # dL/dh_{t-1} (+)= dhw[t] @ W_hh
            times_packed_rows(dh, ap, dhw[t], n0, n1 - n0, wp, mode == GRU)


@kernel
def sequence_backward(dxw, dhw, dh, dc, dout, dh_n, dc_n, gates, hs, aux, wp, ap, chunk, mode, dout_bf, fn):
    """Backpropagate one layer through all T steps (reversed), chunks of rows in parallel.

    dout: the layer's output gradient (T, N, H), or (N, T, H) when ``dout_bf``;
    dh_n, dc_n (N, H): the gradients w.r.t. its last h and (LSTM) c.
    Overwrites dxw (T, N, G) with d(pre-activations) on the input side and, for GRU,
    dhw (T, N, G) on the hidden side (differs in the n part; else dhw is dxw). dxw
    must not alias ``gates`` (so LLVM vectorises the row loops). wp: W_hh packed by
    pack_panels; dh (chunks, chunk * padded H), dc (N, H) (LSTM), ap: per-chunk scratch. fn: ``backward_handle``
    of these arguments (``_backward_chunk`` called through its address, as above).
    """
    N = gates.shape[1]
    last = dh.shape[0] - 1
    if last == 0:
        call(fn, (dxw, dhw, dh[last], dc, dout, dh_n, dc_n, gates, hs, aux, wp, ap[last], last * chunk, N,
                  mode, dout_bf))
        return
    for c in prange(last + 1):
        n0 = c * chunk
        call(fn, (dxw, dhw, dh[c], dc, dout, dh_n, dc_n, gates, hs, aux, wp, ap[c], n0, min(n0 + chunk, N),
                  mode, dout_bf))


def backward_handle(dxw, dhw, dh, dc, dout, dh_n, dc_n, gates, hs, aux, wp, ap, mode, dout_bf):
    """The ``fn`` argument of sequence_backward (whose arguments these are)."""
    return handle(_backward_chunk, (dxw, dhw, dh[0], dc, dout, dh_n, dc_n, gates, hs, aux, wp, ap[0], 0, 0,
                                    mode, dout_bf))
