"""A Transformer encoder layer's eval forward (no masks, batch first), sequence by
sequence: one parallel region for the whole layer.

Run operation by operation, the layer is a dozen parallel regions over the whole
batch (the in-projection, three head packs, the attention, the out-projection, the
add-and-norms, the feed-forward block): each ends in a barrier, and each streams
the batch's activations through memory once more. Yet everything but the products'
weights is local to one sequence. :func:`encoder_rows` gives each thread whole
sequences and runs all of the layer on one sequence's rows in the thread's own
scratch arrays, which stay in its cache from one sequence to the next (batch-sized
intermediates would cost a trip to memory for every line written): the products as
row tiles of the packed ones (``matmul_packed._row_tile``, a sequence's rows in
tiles of up to ``MC``), the heads packed, the attention's query blocks
(``attention._forward_block``), the residual adds with LayerNorm. The same kernels
on the same rows as the operations, in the same order, so the result is bitwise
theirs (and the same at any thread count).

The parts are called through their addresses (``_fnptr``): this shell compiles in
a fraction of a second and shares their machine code with the operations. Handles,
one per call site (a bias may be of another array type than the next), rows of an
(10, 2) int64 array in this order: the four row-tile products (in_proj, out_proj,
linear1, linear2; ``matmul_packed._row_tile``), the k, q and v head packs
(``attention.pack_head_range``), the attention block (``attention._forward_block``),
then the two normalisations' rows kernels, the very handles the batch's kernels
are called with (so the same machine code, see ``layer_norm.rows_handle``): the
two add-and-norms, or a pre-norm layer's first LayerNorm and its add-and-norm.
"""
import numpy as np
from numba import prange

from ._fnptr import call
from ._jit import kernel, serial_kernel
from .activations import IDENTITY
from .attention import A_ROWS, B_COLS, B_ROWS, BQ
from .matmul import MC

_IDENT = np.int64(IDENTITY)
_NO_SLOPE = np.float64(0.0)
_ZERO, _ONE, _MC = np.int64(0), np.int64(1), np.int64(MC)
_KEEP, _DROP = np.bool_(True), np.bool_(False)
_K, _Q, _V = np.int64(A_ROWS), np.int64(B_COLS), np.int64(B_ROWS)


@kernel
def encoder_rows(out, x, qkv, q4, k4, v4, heads, merged, y, x1, hn, h, mean, rstd, lse, ka, qc, vr, weights,
                 biases, has_biases, norms, ln1, eps, kind, first, attn, ap, tmp, threads, fns):
    """out (N*L, E) = a TransformerEncoderLayer's eval forward of x (N*L, E), rows
    n*L..n*L+L one sequence; ``first``: norm_first; ``threads`` <= T.

    Thread c works in its own arrays (index c of the first axis, T of them), sequence
    after sequence: qkv (T, L, 3E) with q4, k4, v4 its heads (T, H, L, Dh) views;
    merged (T, L, E) with ``heads`` its (T, H, L, Dh) view; y, x1, hn (T, L, E); h
    (T, L, F); mean, rstd (T, L) float64; lse (T*H, 0) and ka, qc, vr (T*H, pack) as
    ``attention_forward`` takes them (heads c*H..c*H+H); ap[c], tmp[c] the products'
    workspace (``matmul_packed.workspace``). weights: the in_proj, out_proj, linear1
    and linear2 weights packed (``pack_weight``); biases: theirs ((N_out,), read when
    ``has_biases``); norms: (weight1, bias1, weight2, bias2) as ``add_norm_rows_forward``
    takes them, ln1 (weight1, bias1, spatial, affine) as ``norm_rows_forward`` does
    (pre-norm); eps: (eps1, eps2); kind: linear1's epilogue activation; attn: (maskt,
    midx, mrows, has_mask, scale, causal, S, D, NR, Sp, Lp) as ``attention_forward``
    takes them, and the queries padded; fns: the handles (module docstring)."""
    N, L = x.shape[0] // q4.shape[2], q4.shape[2]
    for c in prange(threads):
        for s in range(c * N // threads, (c + 1) * N // threads):
            _sequence(out, x, qkv, q4, k4, v4, heads, merged, y, x1, hn, h, mean, rstd, lse, ka, qc, vr, weights,
                      biases, has_biases, norms, ln1, eps, kind, first, attn, ap[c], tmp[c], fns, np.int64(c),
                      np.int64(s), L)


@serial_kernel
def _sequence(out, x, qkv, q4, k4, v4, heads, merged, y, x1, hn, h, mean, rstd, lse, ka, qc, vr, weights,
              biases, has_biases, norms, ln1, eps, kind, first, attn, ap, tmp, fns, c, n, L):
    # the layer on sequence n (rows n*L..n*L+L of x and out) in thread c's arrays
    p_in, p_out, p1, p2 = (fns[0, 0], fns[0, 1]), (fns[1, 0], fns[1, 1]), (fns[2, 0], fns[2, 1]), (fns[3, 0], fns[3, 1])
    pack_k, pack_q, pack_v = (fns[4, 0], fns[4, 1]), (fns[5, 0], fns[5, 1]), (fns[6, 0], fns[6, 1])
    block, norm_a, norm_b = (fns[7, 0], fns[7, 1]), (fns[8, 0], fns[8, 1]), (fns[9, 0], fns[9, 1])
    w_in, w_out, w1, w2 = weights
    b_in, b_out, b1, b2 = biases
    has_in, has_out, has1, has2 = has_biases
    nw1, nb1, nw2, nb2 = norms
    maskt, midx, mrows, has_mask, scale, causal, S, D, NR, Sp, Lp = attn
    H = q4.shape[1]
    xs, outs = x[n * L:n * L + L], out[n * L:n * L + L]
    qkv_c, merged_c, y_c, x1_c, hn_c, h_c = qkv[c], merged[c], y[c], x1[c], hn[c], h[c]
    src = xs
    if first:  # hn = norm1(x)
        lw, lb, spatial, affine = ln1
        call(norm_a, (hn_c, mean[c], rstd[c], xs, lw, lb, _ZERO, L, _ONE, spatial, eps[0], affine, affine))
        src = hn_c
    # the attention: qkv = src @ w_in.T + b_in, heads packed, merged rows = attention
    _product(p_in, qkv_c, src, w_in, ap, tmp, b_in, _IDENT, has_in)
    call(pack_k, (ka, k4, _K, NR, L, c * H, c * H + H))
    call(pack_q, (qc, q4, _Q, NR, Lp, c * H, c * H + H))
    call(pack_v, (vr, v4, _V, NR, Sp, c * H, c * H + H))
    nb = (L + BQ - 1) // BQ
    for u in range(c * H * nb, (c + 1) * H * nb):
        call(block, (heads, lse, ka, qc, vr, maskt, midx, mrows, has_mask, scale, causal, u, S, D, NR, Sp))
    _product(p_out, y_c, merged_c, w_out, ap, tmp, b_out, _IDENT, _DROP)  # its bias: in the add
    if not first:  # x1 = norm1(x + y + b_out); out = norm2(x1 + ff(x1))
        call(norm_a, (x1_c, x1_c, xs, y_c, b_out, nw1, nb1, _ZERO, L, eps[0], _DROP, has_out))
        _product(p1, h_c, x1_c, w1, ap, tmp, b1, kind, has1)
        _product(p2, y_c, h_c, w2, ap, tmp, b2, _IDENT, _DROP)
        call(norm_b, (outs, outs, x1_c, y_c, b2, nw2, nb2, _ZERO, L, eps[1], _DROP, has2))
        return
    # x1 = x + y + b_out, hn = norm2(x1); out = x1 + ff(hn)
    call(norm_b, (hn_c, x1_c, xs, y_c, b_out, nw2, nb2, _ZERO, L, eps[1], _KEEP, has_out))
    _product(p1, h_c, hn_c, w1, ap, tmp, b1, kind, has1)
    _product(p2, outs, h_c, w2, ap, tmp, b2, _IDENT, has2)
    for r in range(L):
        orow = outs[r]
        xrow = x1_c[r]
        for j in range(orow.shape[0]):
            orow[j] = xrow[j] + orow[j]


@serial_kernel
def _product(fn, out, a, bp, ap, tmp, bias, kind, has_bias):
    # out = act(a @ w.T + bias), w packed in bp, for one sequence's rows: in row tiles of
    # at most MC rows, the most the workspace's packing room holds (the same bits)
    for rt in range((out.shape[0] + MC - 1) // MC):
        call(fn, (out, a, bp, ap, tmp, np.int64(rt), _MC, bias, kind, _NO_SLOPE, has_bias))
