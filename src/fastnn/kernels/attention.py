"""Fused scaled dot-product attention (flash-attention style): the forward, and the
packing and block helpers it shares with the backward (``attention_backward``).

Per (batch*head) ``bh``: q (L, D), k (S, D), v (S, Dv). The forward walks blocks of
BQ queries x BK keys with an online softmax (running max ``m`` and sum ``lsum`` per
query, the output block rescaled when the max grows), so no L x S matrix is ever
held: memory is linear in the sequence length. It keeps only the output and the row
logsumexp ``lse``. Its score blocks are transposed (keys x queries, S^T = K Q^T), so
the softmax's per-query max and sum run down columns as plain vector loops (a max
reduction along a row does not vectorise). The backward recomputes each probability
block from ``lse`` (flash-attention 2). In float32 the softmax loops, exp included,
run in explicit 64-byte vectors (``vector_exp``); float64 keeps ``math.exp``.

Every product is the GEMM micro-kernel (``microkernel.micro``); ``pack_heads`` lays
q, k, v (and dO) out once per call in the three layouts needed: ``A_ROWS`` (MR-row
panels, k-major: the left operand), ``B_COLS`` (NR rows of x as the columns of a
right operand, k = D) and ``B_ROWS`` (x's rows as k, NR-column panels of D). A
probability block is the left operand of the products after it as it lies, read
in place (``micro_cols``, ``micro_rows``), not packed. Masks are additive, (Mb, Lm,
S) with Lm in {1, L} (the forward takes them transposed, (Mb, S, Lm)), head ``bh``
using mask ``midx[bh]``; ``causal`` keeps key j <= query i (PyTorch's top-left tril).
Rows whose keys are all masked give zeros (lse = +inf) and zero gradients.
"""
import math

import numpy as np
from numba import prange, types
from numba.extending import overload

from ._fnptr import call, handle
from ._jit import FASTMATH, SERIAL_BELOW, kernel, serial_kernel
from .microkernel import MR, copy8, micro, micro_cols, micro_rows, pack_a
from .vector_exp import G, W, online_cols

BQ = 64  # queries per block (a multiple of MR)
BK = 64  # keys per block (a multiple of NR: 32 float32, 16 float64)
# the float32 softmax loops run whole vectors: G vectors of queries a row, a vector of keys
assert BQ % (G * W) == 0 and BK % W == 0
A_ROWS, B_COLS, B_ROWS = 0, 1, 2  # packing layouts (see the module docstring)
# Flags and offsets passed to helpers as typed globals, not literals: a literal
# True/False/0 argument makes Numba compile the helper once per literal value.
_ADD = _COLS = np.bool_(True)
_SET = _PLAIN = _ROWS = np.bool_(False)
_ZERO = np.int64(0)
# On a causal block on the diagonal (first query = first key), the micro-tiles whose
# keys all come after their queries are skipped: TRI_Q when rows are queries (columns
# or the contraction: keys), TRI_K when rows are keys (columns or contraction: queries).
NO_TRI, TRI_Q, TRI_K = np.int64(0), np.int64(1), np.int64(2)


# ---------------------------------------------------------------- softmax loops
def _online(st, m, lsum, alpha, shift, bk):
    """The forward's online-softmax step (``_online_t``): float32 blocks in explicit
    64-byte vectors (``vector_exp.online_cols``), float64 ones as written here."""


@overload(_online, jit_options={"fastmath": FASTMATH})
def _online_typed(st, m, lsum, alpha, shift, bk):
    if st.dtype == types.float32:
        return lambda st, m, lsum, alpha, shift, bk: _online_cols(st, m, lsum, alpha, bk)
    return lambda st, m, lsum, alpha, shift, bk: _online_t(st, m, lsum, alpha, shift, bk)


@serial_kernel
def _online_cols(st, m, lsum, alpha, bk):
    # online_cols as a kernel of its own (one call a block): inlined, its vector code
    # compiled again in each process that compiled a kernel calling _online (0.9 CPU s
    # twice in the cold transformer demo, whose training and inference call it)
    online_cols(st, m, lsum, alpha, bk)


# ---------------------------------------------------------------- packing
@serial_kernel
def _pack_head(out, src, layout, NR, rows_pad):
    # one head of ``pack_heads``
    R, D = src.shape
    if layout == A_ROWS:
        pack_a(out, src, _PLAIN, _ZERO, R, _ZERO, D)
    elif layout == B_COLS:
        out[R // NR * NR * D:] = 0  # the last, partial panel
        for i in range(0, R, 8):  # 8 rows at a time (NR is a multiple of 8)
            copy8(out[i // NR * NR * D + i % NR:], NR, src[i:i + 8], min(8, R - i), D)
    else:
        npan = (D + NR - 1) // NR
        if D % NR:  # the last panel's columns past D
            out[:] = 0
        for q in range(npan):
            cols = min(NR, D - q * NR)
            for i in range(R):
                o = out[q * rows_pad * NR + i * NR:]
                s = src[i, q * NR:]
                for j in range(cols):
                    o[j] = s[j]


@kernel
def pack_heads(dst, x, layout, NR, rows_pad, fn):
    """dst[n*H + h] = x[n, h] (rows, D) packed in ``layout`` (overwrites dst); x is
    (N, H, rows, D) with any strides (the heads of an in-projection (N, rows, 3, H, D),
    say, packed without copying them out first; contiguous (BH, rows, D) heads as
    ``x[None]``); rows padded with zeros to ``rows_pad`` (B_COLS, B_ROWS) or to MR
    (A_ROWS). Parallel over heads; small inputs (under ``SERIAL_BELOW`` elements) on
    the calling thread. ``fn``: :func:`pack_handle` of these arguments,
    ``pack_head_range`` called through its address (its body is not compiled again
    in here: ``_fnptr``).

    A_ROWS: dst[p*MR*D + d*MR + r] = x[p*MR + r, d]
    B_COLS: dst[p*NR*D + d*NR + j] = x[p*NR + j, d]
    B_ROWS: dst[q*rows_pad*NR + i*NR + j] = x[i, q*NR + j] (zero past D)"""
    N, H = x.shape[0], x.shape[1]
    if x.size < SERIAL_BELOW:
        call(fn, (dst, x, layout, NR, rows_pad, _ZERO, N * H))
        return
    for u in prange(N * H):
        bh = np.int64(u)
        call(fn, (dst, x, layout, NR, rows_pad, bh, bh + 1))


def pack_handle(dst, x, layout, NR, rows_pad):
    """The ``fn`` argument of :func:`pack_heads` (given its other arguments)."""
    return handle(pack_head_range, (dst, x, layout, NR, rows_pad, 0, 0))


@serial_kernel
def pack_head_range(dst, x, layout, NR, rows_pad, bh0, bh1):
    """Heads bh0..bh1-1 of :func:`pack_heads`, on the calling thread."""
    H = x.shape[1]
    for bh in range(bh0, bh1):
        _pack_head(dst[bh], x[bh // H, bh % H], layout, NR, rows_pad)


# ---------------------------------------------------------------- forward
@serial_kernel
def _scores(s, a, a_off, bcols, j0, rows, bk, D, NR, tri):
    # s[r, c] = sum_d a-panel[r, d] * bcols[(j0 + c), d] for the rows x bk block
    # (a: A_ROWS pack of the block's rows from a_off; bcols: B_COLS pack); tiles that
    # ``tri`` hides are left as they were (the caller masks them).
    BKs = s.shape[1]
    for g in range((rows + MR - 1) // MR):
        for p in range((bk + NR - 1) // NR):
            if (tri == TRI_Q and p * NR >= (g + 1) * MR) or (tri == TRI_K and g * MR >= (p + 1) * NR):
                continue
            micro(s, g * MR * BKs + p * NR, BKs, a, a_off + g * MR * D, bcols, (j0 + p * NR) * D, D, _SET)


@serial_kernel
def _times_block(acc, acc_row0, a, a_cols, rows, brows, b_off, kc, Dp, NR, rows_pad, tri):
    # acc[acc_row0 + r, :] += A @ brows for r < rows (acc: (*, Dp), Dp a multiple of NR;
    # brows: a B_ROWS pack, its k range of depth kc starting at b_off), A a block read
    # in place: A(r, k) = a[k, r] when ``a_cols`` (a probability block transposed),
    # a[r, k] otherwise (a: C-contiguous 2-D with whole micro-tiles of A; the rows of
    # acc past ``rows`` get sums of whatever a holds there, and are never read).
    # ``tri``: each row group sums only the k that causality lets it see (the rest
    # of its probabilities are zeros).
    lda = a.shape[1]
    for g in range((rows + MR - 1) // MR):
        k0 = min(kc, g * MR) if tri == TRI_K else 0
        k1 = min(kc, (g + 1) * MR) if tri == TRI_Q else kc
        for q in range(Dp // NR if k0 < k1 else 0):
            c_off, b_at = (acc_row0 + g * MR) * Dp + q * NR, q * rows_pad * NR + (b_off + k0) * NR
            if a_cols:
                micro_cols(acc, c_off, Dp, a, k0 * lda + g * MR, lda, brows, b_at, k1 - k0, _ADD)
            else:
                micro_rows(acc, c_off, Dp, a, g * MR * lda + k0, lda, brows, b_at, k1 - k0, _ADD)


@serial_kernel
def _unit(u, nb):
    # (head, block) of work unit u of a head's nb blocks, ordered so that each thread
    # gets as many short as long causal blocks: 0, nb-1, 1, nb-2, ...
    k = u % nb
    return u // nb, (k // 2 if k % 2 == 0 else nb - 1 - k // 2)


@serial_kernel
def _logits_t(st, maskt, midx, mrows, has_mask, scale, causal, bh, i0, bq, j0, bk):
    # st[j, c] <- st[j, c] * scale + mask[i0 + c, j0 + j] for the first bk rows (keys),
    # -inf where causality hides key j0 + j from query i0 + c (maskt: (Mb, S, Lm)).
    BQs = st.shape[1]
    ninf = st.dtype.type(-np.inf)
    for j in range(bk):
        row = st[j]
        for c in range(BQs):
            row[c] *= scale
        if has_mask:
            mrow = maskt[midx[bh], j0 + j]
            if mrows > 1:
                for c in range(bq):
                    row[c] += mrow[i0 + c]
            else:
                add = mrow[0]
                for c in range(BQs):
                    row[c] += add
        if causal:
            for c in range(min(BQs, j0 + j - i0)):
                row[c] = ninf


@serial_kernel
def _online_t(st, m, lsum, alpha, shift, bk):
    # Online softmax over the key rows of st (keys x queries, logits): the column max
    # m grows, alpha = exp(m_old - m_new) rescales lsum (and, by the caller, the output),
    # st <- exp(st - m_new), summed into lsum. Columns whose logits are all -inf so far
    # keep m = -inf, shift 0 (exp gives 0, never NaN). Column-wise: vector loops. The
    # float64 step (float32 runs ``vector_exp.online_cols``, the same sums in vectors).
    BQs = st.shape[1]
    ninf = st.dtype.type(-np.inf)
    for c in range(BQs):
        shift[c] = m[c]
    for j in range(bk):
        row = st[j]
        for c in range(BQs):
            x = row[c]
            shift[c] = x if x > shift[c] else shift[c]
    for c in range(BQs):
        new = shift[c]
        shift[c] = new if new > ninf else 0
        alpha[c] = math.exp(m[c] - shift[c])
        lsum[c] *= alpha[c]
        m[c] = new
    for j in range(bk):
        row = st[j]
        for c in range(BQs):
            e = math.exp(row[c] - shift[c])
            row[c] = e
            lsum[c] += e


@serial_kernel
def _forward_block(out, lse, ka, qcols, vrows, maskt, midx, mrows, has_mask, scale, causal, u, S, D, NR, Sp):
    # Unit u = (head bh, query block qb): online softmax over the block's keys, with the
    # scores transposed (keys x queries) so that the softmax runs down columns;
    # writes out[n, h, i0:i0+bq] (bh = n*H + h) and lse[bh, i0:i0+bq] (none when lse
    # is (BH, 0): inference, where no backward reads it).
    H, L, Dv = out.shape[1], out.shape[2], out.shape[3]
    bh, qb = _unit(u, (L + BQ - 1) // BQ)
    Dvp = (Dv + NR - 1) // NR * NR
    i0 = qb * BQ
    bq = min(BQ, L - i0)
    dt = out.dtype
    st = np.empty((BK, BQ), dt)
    o = np.zeros((BQ, Dvp), dt)
    m = np.full(BQ, -np.inf, dt)
    lsum, alpha, shift = np.zeros(BQ, dt), np.empty(BQ, dt), np.empty(BQ, dt)
    for j0 in range(0, min(S, i0 + bq) if causal else S, BK):
        bk = min(BK, S - j0)
        diagonal = causal and j0 == i0
        _scores(st, ka[bh], j0 * D, qcols[bh], i0, bk, BQ, D, NR, TRI_K if diagonal else NO_TRI)  # S^T = K_j Q_i^T
        _logits_t(st, maskt, midx, mrows, has_mask, scale, causal, bh, i0, bq, j0, bk)
        _online(st, m, lsum, alpha, shift, bk)
        for r in range(bq):
            a = alpha[r]
            orow = o[r]
            for d in range(Dvp):
                orow[d] *= a
        # O += P V_j
        _times_block(o, _ZERO, st, _COLS, bq, vrows[bh], j0, bk, Dvp, NR, Sp, TRI_Q if diagonal else NO_TRI)
    keep = lse.shape[1] > 0
    for r in range(bq):
        i = i0 + r
        dest = out[bh // H, bh % H, i]
        if lsum[r] != 0:  # (a NaN score makes lsum NaN, and the row NaN, as in PyTorch)
            inv = 1 / lsum[r]
            for d in range(Dv):
                dest[d] = o[r, d] * inv
            if keep:
                lse[bh, i] = m[r] + math.log(lsum[r])
        else:  # no key to attend to: zeros, and a gradient of zero
            dest[:] = 0
            if keep:
                lse[bh, i] = np.inf


@kernel
def attention_forward(out, lse, ka, qcols, vrows, maskt, midx, mrows, has_mask, scale, causal, S, D, NR, Sp, fn):
    """out (N, H, L, Dv) = softmax(q k^T * scale + mask) v and lse (BH, L) its row
    logsumexp (both overwritten; lse (BH, 0) for none, when no backward needs it; BH =
    N*H, head bh = n*H + h; out of any strides, so heads can land straight in a merged
    (N, L, H*Dv) layout; contiguous (BH, L, Dv) results as ``out[None]``) from the packs
    ka (A_ROWS of k (BH, S, D)), qcols (B_COLS of q (BH, L, D), rows padded to a
    multiple of BQ), vrows (B_ROWS of v, Sp rows); maskt: the masks transposed, (Mb,
    S, Lm). Parallel over (bh, query block), ordered so that each thread gets as many
    short as long causal blocks. ``fn``: :func:`forward_handle` of these arguments; a
    unit is one call of ``_forward_block`` through it, so its body compiles once,
    serially, never again inside this shell (``_fnptr``)."""
    BH, L = out.shape[0] * out.shape[1], out.shape[2]
    for u in prange(BH * ((L + BQ - 1) // BQ)):
        call(fn, (out, lse, ka, qcols, vrows, maskt, midx, mrows, has_mask, scale, causal, np.int64(u), S, D, NR,
                  Sp))


def forward_handle(out, lse, ka, qcols, vrows, maskt, midx, mrows, has_mask, scale, causal, S, D, NR, Sp):
    """The ``fn`` argument of :func:`attention_forward` (given its other arguments)."""
    return handle(_forward_block, (out, lse, ka, qcols, vrows, maskt, midx, mrows, has_mask, scale, causal, 0, S, D,
                                   NR, Sp))
