"""The backward of the fused attention (``attention.attention_forward``), flash-attention 2
style: each probability block is recomputed from the forward's row logsumexp ``lse``,
dV_j += P^T dO_i, dK_j += dS^T Q_i, dQ_i += dS K_j with
dS = P * (dO V^T - rowsum(dO * O)) * scale. Packs, block sizes and masks: see
``attention``'s docstring (here the masks are untransposed, (Mb, Lm, S))."""
import math

import numpy as np
from numba import prange, types
from numba.extending import overload

from ._fnptr import call, handle
from ._jit import FASTMATH, inline, kernel, serial_kernel
from .attention import BK, BQ, NO_TRI, TRI_K, TRI_Q, _COLS, _ROWS, _ZERO, _scores, _times_block, _unit
from .elementwise import copy_run
from .vector_exp import prob_row

_ONE = np.float32(1)  # the logits' factor once a mask has been added (a typed global: see attention._ADD)


@serial_kernel
def _limit(i, j0, bk, causal):
    # how many keys j0.. of the block query i sees
    if not causal:
        return bk
    return max(0, min(bk, i - j0 + 1))


@serial_kernel
def _pair(s, dp, qa, doa, kcols, vcols, lse, delta, mask, midx, mrows, has_mask, scale, causal,
          bh, i0, bq, j0, bk, D, Dv, NR):
    # The block (queries i0.., keys j0..): s <- P = exp(q k^T * scale + mask - lse),
    # dp <- dS * scale = P * (dO v^T - delta) * scale; zero past the causal limit.
    tri = TRI_Q if causal and i0 == j0 else NO_TRI  # a diagonal block: skip the tiles it hides
    _scores(s, qa[bh], i0 * D, kcols[bh], j0, bq, bk, D, NR, tri)
    _scores(dp, doa[bh], i0 * Dv, vcols[bh], j0, bq, bk, Dv, NR, tri)
    for r in range(bq):
        i = i0 + r
        lim = _limit(i, j0, bk, causal)
        a = scale
        if has_mask:  # the logits first, then exp of them (a = 1)
            row, mrow = s[r], mask[midx[bh], i if mrows > 1 else 0]
            for c in range(lim):
                row[c] = row[c] * scale + mrow[j0 + c]
            a = _ONE
        _probs(s, dp, r, a, lse[bh, i], delta[bh, i], scale, lim, bk)


def _probs(s, dp, r, a, shift, dl, scale, lim, bk):
    """Row r of a probability block: s[r, c] <- p = exp(s[r, c] * a - shift), dp[r, c] <-
    p * (dp[r, c] - dl) * scale for c < lim, zeros for lim <= c < bk. float32 rows in
    explicit 64-byte vectors (``vector_exp.prob_row``, zeros up to BK), float64 rows as
    written in ``_probs_loop``."""


@overload(_probs, jit_options={"fastmath": FASTMATH})
def _probs_typed(s, dp, r, a, shift, dl, scale, lim, bk):
    if s.dtype == types.float32:
        return lambda s, dp, r, a, shift, dl, scale, lim, bk: prob_row(s, dp, r, a, shift, dl, scale, lim)
    return lambda s, dp, r, a, shift, dl, scale, lim, bk: _probs_loop(s, dp, r, a, shift, dl, scale, lim, bk)


@serial_kernel
def _probs_loop(s, dp, r, a, shift, dl, scale, lim, bk):
    row, drow = s[r], dp[r]
    for c in range(lim):
        p = math.exp(row[c] * a - shift)
        row[c] = p
        drow[c] = p * (drow[c] - dl) * scale
    for c in range(lim, bk):
        row[c] = 0
        drow[c] = 0


@inline
def _store(dst, r0, acc, rows, cols):
    # dst[r0 + r, c] = acc[r, c] for r < rows, c < cols (see elementwise.copy_run)
    for r in range(rows):
        copy_run(dst[r0 + r], 0, acc[r], 0, cols)


@serial_kernel
def _key_block(dk, dv, dqacc, qa, doa, kcols, vcols, krows, qrows, dorows, lse, delta, mask, midx, mrows,
               has_mask, scale, causal, bh, jb, with_dq, D, NR, Lp, Sp):
    # dK_j, dV_j of key block jb of head bh (overwritten), summed over query blocks;
    # with_dq: also dqacc[i] += dS K_j (dqacc (>= L, Dp), this head's own).
    L, S, Dv = lse.shape[1], dk.shape[1], dv.shape[2]
    Dp, Dvp = (D + NR - 1) // NR * NR, (Dv + NR - 1) // NR * NR
    j0 = jb * BK
    bk = min(BK, S - j0)
    s = np.zeros((BQ, BK), dk.dtype)  # zeros: rows past a short block are read (not used) as A
    dp = np.zeros((BQ, BK), dk.dtype)
    dkacc = np.zeros((BK, Dp), dk.dtype)
    dvacc = np.zeros((BK, Dvp), dk.dtype)
    for i0 in range(j0 // BQ * BQ if causal else 0, L, BQ):
        bq = min(BQ, L - i0)
        _pair(s, dp, qa, doa, kcols, vcols, lse, delta, mask, midx, mrows, has_mask, scale, causal,
              bh, i0, bq, j0, bk, D, Dv, NR)
        tri_k, tri_q = (TRI_K, TRI_Q) if causal and i0 == j0 else (NO_TRI, NO_TRI)
        _times_block(dvacc, _ZERO, s, _COLS, bk, dorows[bh], i0, bq, Dvp, NR, Lp, tri_k)  # dV_j += P^T dO_i
        _times_block(dkacc, _ZERO, dp, _COLS, bk, qrows[bh], i0, bq, Dp, NR, Lp, tri_k)  # dK_j += dS^T Q_i
        if with_dq:  # dQ_i += dS K_j
            _times_block(dqacc, i0, dp, _ROWS, bq, krows[bh], j0, bk, Dp, NR, Sp, tri_q)
    _store(dk[bh], j0, dkacc, bk, D)
    _store(dv[bh], j0, dvacc, bk, Dv)


@serial_kernel
def _query_block(dq, qa, doa, kcols, vcols, krows, lse, delta, mask, midx, mrows, has_mask, scale, causal,
                 bh, qb, S, Dv, NR, Sp):
    # dQ_i of query block qb of head bh (overwritten), summed over key blocks.
    L, D = dq.shape[1], dq.shape[2]
    Dp = (D + NR - 1) // NR * NR
    i0 = qb * BQ
    bq = min(BQ, L - i0)
    s = np.zeros((BQ, BK), dq.dtype)  # zeros: rows past a short block are read (not used) as A
    dp = np.zeros((BQ, BK), dq.dtype)
    dqacc = np.zeros((BQ, Dp), dq.dtype)
    for j0 in range(0, min(S, i0 + bq) if causal else S, BK):
        bk = min(BK, S - j0)
        _pair(s, dp, qa, doa, kcols, vcols, lse, delta, mask, midx, mrows, has_mask, scale, causal,
              bh, i0, bq, j0, bk, D, Dv, NR)
        tri_q = TRI_Q if causal and j0 == i0 else NO_TRI
        _times_block(dqacc, _ZERO, dp, _ROWS, bq, krows[bh], j0, bk, Dp, NR, Sp, tri_q)
    _store(dq[bh], i0, dqacc, bq, D)


@serial_kernel
def _backward_unit(dq, dk, dv, qa, doa, kcols, vcols, krows, qrows, dorows, lse, delta, mask, midx, mrows,
                   has_mask, scale, causal, phase, u, NR, Lp, Sp):
    # Work unit u of ``attention_backward``'s phase: 0, dK/dV of one (head, key block);
    # 1, dQ of one (head, query block); 2, dQ, dK, dV of head u.
    BH, L, D = dq.shape
    S = dk.shape[1]
    if phase == 0:
        bh, jb = _unit(u, (S + BK - 1) // BK)
        _key_block(dk, dv, np.zeros((1, 1), dq.dtype), qa, doa, kcols, vcols, krows, qrows, dorows, lse, delta,
                   mask, midx, mrows, has_mask, scale, causal, bh, jb, phase == 2, D, NR, Lp, Sp)
    elif phase == 1:
        bh, qb = _unit(u, (L + BQ - 1) // BQ)
        _query_block(dq, qa, doa, kcols, vcols, krows, lse, delta, mask, midx, mrows, has_mask, scale, causal,
                     bh, qb, S, dv.shape[2], NR, Sp)
    else:
        dqacc = np.zeros(((L + BQ - 1) // BQ * BQ, (D + NR - 1) // NR * NR), dq.dtype)
        for jb in range((S + BK - 1) // BK):
            _key_block(dk, dv, dqacc, qa, doa, kcols, vcols, krows, qrows, dorows, lse, delta, mask, midx,
                       mrows, has_mask, scale, causal, u, jb, phase == 2, D, NR, Lp, Sp)
        _store(dq[u], 0, dqacc, L, D)


@kernel
def attention_backward(dq, dk, dv, qa, doa, kcols, vcols, krows, qrows, dorows, lse, delta, mask, midx, mrows,
                       has_mask, scale, causal, NR, Lp, Sp, split, fn):
    """dq (BH, L, D), dk (BH, S, D), dv (BH, S, Dv), all overwritten, from the packs of
    q (qa A_ROWS, qrows B_ROWS), k (kcols B_COLS, krows B_ROWS), v (vcols B_COLS) and
    dO (doa A_ROWS, dorows B_ROWS), the forward's lse and delta = rowsum(dO * out).
    ``split`` False: parallel over heads, each owning its dq, dk, dv (5 block products
    per block pair). True (fewer heads than threads): dK/dV parallel over (head, key
    block), then dQ over (head, query block), recomputing P (7 products).
    A thin parallel shell: each unit is one call of the serial ``_backward_unit``
    through ``fn``, :func:`backward_handle` of these arguments (``_fnptr``: the unit's
    body compiles once, serially, never again inside this shell)."""
    BH, L = lse.shape
    nqb, nkb = (L + BQ - 1) // BQ, (dk.shape[1] + BK - 1) // BK
    units = (BH * nkb, BH * nqb, BH)  # per phase
    for phase in range(0 if split else 2, 2 if split else 3):
        for u in prange(units[phase]):
            call(fn, (dq, dk, dv, qa, doa, kcols, vcols, krows, qrows, dorows, lse, delta, mask, midx, mrows,
                      has_mask, scale, causal, phase, np.int64(u), NR, Lp, Sp))


def backward_handle(dq, dk, dv, qa, doa, kcols, vcols, krows, qrows, dorows, lse, delta, mask, midx, mrows,
                    has_mask, scale, causal, NR, Lp, Sp):
    """The ``fn`` argument of :func:`attention_backward` (given its other arguments)."""
    return handle(_backward_unit, (dq, dk, dv, qa, doa, kcols, vcols, krows, qrows, dorows, lse, delta, mask, midx,
                                   mrows, has_mask, scale, causal, 0, 0, NR, Lp, Sp))
