"""Fused scaled dot-product attention (flash-attention style), forward and backward.

Per (batch*head) ``bh``: q (L, D), k (S, D), v (S, Dv). The forward walks blocks of
BQ queries x BK keys with an online softmax (running row max ``m`` and sum ``l``,
the output block rescaled when the max grows), so no L x S matrix is ever held:
memory is linear in the sequence length. It keeps only the output and the row
logsumexp ``lse``. The backward recomputes each probability block from ``lse``
(flash-attention 2): dV_j += P^T dO_i, dK_j += dS^T Q_i, dQ_i += dS K_j with
dS = P * (dO V^T - rowsum(dO * O)) * scale.

Every product is the GEMM micro-kernel (``microkernel.micro``) on packed operands;
``pack_heads`` lays q, k, v (and dO) out once per call in the three layouts it needs:
``A_ROWS`` (MR-row panels, k-major: the left operand), ``B_COLS`` (NR rows of x as
the columns of a right operand, k = D) and ``B_ROWS`` (x's rows as k, NR-column
panels of D). Masks are additive, (Mb, Lm, S) with Lm in {1, L}, head ``bh`` using
mask ``midx[bh]``; ``causal`` keeps key j <= query i (PyTorch's top-left tril).
Rows whose keys are all masked give zeros (lse = +inf) and zero gradients.
"""
import math

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic, overload

from ._jit import FASTMATH, kernel, serial_kernel
from .microkernel import MR, micro, pack_a

BQ = 64  # queries per block (a multiple of MR)
BK = 64  # keys per block (a multiple of NR: 32 float32, 16 float64)
A_ROWS, B_COLS, B_ROWS = 0, 1, 2  # packing layouts (see the module docstring)
# Flags and offsets passed to helpers as typed globals, not literals: a literal
# True/False/0 argument makes Numba compile the helper once per literal value.
_ADD = _TRANS = np.bool_(True)
_SET = _PLAIN = np.bool_(False)
_ZERO = np.int64(0)


# ---------------------------------------------------------------- exp
@intrinsic
def _f32_from_bits(typingctx, bits):
    """The float32 whose bit pattern is the int32 ``bits`` (an LLVM bitcast: vectorises)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


def _exp(x):
    """exp in the softmax loops: a vectorisable polynomial for float32, libm otherwise."""
    return math.exp(x)


_LOG2E, _LN2_HI, _LN2_LO = np.float32(1.4426950408889634), np.float32(0.693359375), np.float32(-2.12194440e-4)
_P0, _P1, _P2 = np.float32(1.9875691500e-4), np.float32(1.3981999507e-3), np.float32(8.3334519073e-3)
_P3, _P4, _P5 = np.float32(4.1665795894e-2), np.float32(1.6666665459e-1), np.float32(5.0000001201e-1)
_LOW, _HIGH, _ONE, _HALF = np.float32(-87.0), np.float32(88.0), np.float32(1.0), np.float32(0.5)


@overload(_exp, jit_options={"fastmath": FASTMATH})
def _exp_typed(x):
    if x == types.float32:
        def exp_f32(x):
            # Cephes expf: exp(x) = 2^n * p(r), n = round(x / ln 2), |r| <= ln(2)/2;
            # 2^n built in the exponent bits. 0 below -87 (and for -inf), no NaN input here.
            c = min(max(x, _LOW), _HIGH)
            n = np.float32(math.floor(c * _LOG2E + _HALF))
            r = c - n * _LN2_HI - n * _LN2_LO
            p = ((((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5) * r * r + r + _ONE)
            scale = _f32_from_bits(np.int32((np.int32(n) + np.int32(127)) << np.int32(23)))
            return p * scale if x > _LOW else np.float32(0)
        return exp_f32
    return lambda x: math.exp(x)


# ---------------------------------------------------------------- packing
@serial_kernel
def _pack_head(out, src, layout, NR, rows_pad):
    # one head of ``pack_heads``
    R, D = src.shape
    if layout == A_ROWS:
        pack_a(out, src, _PLAIN, _ZERO, R, _ZERO, D)
    elif layout == B_COLS:
        out[R // NR * NR * D:] = 0  # the last, partial panel
        for i in range(R):
            base = i // NR * NR * D + i % NR
            for d in range(D):
                out[base + d * NR] = src[i, d]
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
def pack_heads(dst, x, layout, NR, rows_pad):
    """dst[bh] = x[bh] (rows, D) packed in ``layout`` (overwrites dst); rows padded
    with zeros to ``rows_pad`` (B_COLS, B_ROWS) or to MR (A_ROWS). Parallel over bh.

    A_ROWS: dst[p*MR*D + d*MR + r] = x[p*MR + r, d]
    B_COLS: dst[p*NR*D + d*NR + j] = x[p*NR + j, d]
    B_ROWS: dst[q*rows_pad*NR + i*NR + j] = x[i, q*NR + j] (zero past D)"""
    for bh in prange(x.shape[0]):
        _pack_head(dst[bh], x[bh], layout, NR, rows_pad)


# ---------------------------------------------------------------- forward
@serial_kernel
def _scores(s, a, a_off, bcols, j0, rows, bk, D, NR):
    # s[r, c] = sum_d a-panel[r, d] * bcols[(j0 + c), d] for the rows x bk block
    # (a: A_ROWS pack of the block's rows from a_off; bcols: B_COLS pack).
    BKs = s.shape[1]
    for g in range((rows + MR - 1) // MR):
        for p in range((bk + NR - 1) // NR):
            micro(s, g * MR * BKs + p * NR, BKs, a, a_off + g * MR * D, bcols, (j0 + p * NR) * D, D, _SET)


@serial_kernel
def _times_rows(acc, acc_row0, ap, rows, brows, b_off, kc, Dp, NR, rows_pad):
    # acc[acc_row0 + r, :] += (ap: A_ROWS panels of ``rows`` rows, depth kc) @ brows
    # (B_ROWS pack, its k range starting at b_off); acc is (*, Dp), Dp a multiple of NR.
    for g in range((rows + MR - 1) // MR):
        for q in range(Dp // NR):
            micro(acc, (acc_row0 + g * MR) * Dp + q * NR, Dp, ap, g * MR * kc, brows,
                  q * rows_pad * NR + b_off * NR, kc, _ADD)


@serial_kernel
def _unit(u, nb):
    # (head, block) of work unit u of a head's nb blocks, ordered so that each thread
    # gets as many short as long causal blocks: 0, nb-1, 1, nb-2, ...
    k = u % nb
    return u // nb, (k // 2 if k % 2 == 0 else nb - 1 - k // 2)


@serial_kernel
def _limit(i, j0, bk, causal):
    # how many keys j0.. of the block query i sees
    if not causal:
        return bk
    return max(0, min(bk, i - j0 + 1))


@serial_kernel
def _softmax_rows(s, mask, midx, mrows, has_mask, scale, causal, bh, i0, bq, j0, bk):
    # s[r, c] = q_i . k_j * scale + mask for the block (in place); entries past each
    # row's causal limit are not touched. Returns nothing.
    for r in range(bq):
        i = i0 + r
        lim = _limit(i, j0, bk, causal)
        row = s[r]
        if has_mask:
            mrow = mask[midx[bh], i if mrows > 1 else 0, j0:]
            for c in range(lim):
                row[c] = row[c] * scale + mrow[c]
        else:
            for c in range(lim):
                row[c] = row[c] * scale


@serial_kernel
def _forward_block(out, lse, qa, kcols, vrows, mask, midx, mrows, has_mask, scale, causal, u, S, D, NR, Sp):
    # Unit u = (head bh, query block qb): online softmax over the block's keys;
    # writes out[bh, i0:i0+bq] and lse[bh, i0:i0+bq].
    L, Dv = out.shape[1], out.shape[2]
    bh, qb = _unit(u, (L + BQ - 1) // BQ)
    Dvp = (Dv + NR - 1) // NR * NR
    i0 = qb * BQ
    bq = min(BQ, L - i0)
    s = np.empty((BQ, BK), out.dtype)
    pp = np.empty(BQ * BK, out.dtype)
    o = np.zeros((BQ, Dvp), out.dtype)
    ninf = out.dtype.type(-np.inf)
    m = np.full(BQ, ninf, out.dtype)
    lsum = np.zeros(BQ, out.dtype)
    kend = min(S, i0 + bq) if causal else S
    for j0 in range(0, kend, BK):
        bk = min(BK, S - j0)
        _scores(s, qa[bh], i0 * D, kcols[bh], j0, bq, bk, D, NR)
        _softmax_rows(s, mask, midx, mrows, has_mask, scale, causal, bh, i0, bq, j0, bk)
        for r in range(bq):  # online softmax: rescale what was summed when the max grows
            lim = _limit(i0 + r, j0, bk, causal)
            row = s[r]
            mx = ninf
            for c in range(lim):
                mx = max(mx, row[c])
            m_new = max(m[r], mx)
            if m_new == ninf:  # every key so far masked
                row[:bk] = 0
                continue
            alpha = _exp(m[r] - m_new)
            total = out.dtype.type(0)
            for c in range(lim):
                e = _exp(row[c] - m_new)
                row[c] = e
                total += e
            row[lim:bk] = 0
            lsum[r] = lsum[r] * alpha + total
            m[r] = m_new
            if alpha != 1:
                orow = o[r]
                for d in range(Dvp):
                    orow[d] *= alpha
        pack_a(pp, s, _PLAIN, _ZERO, bq, _ZERO, bk)  # O += P V_j
        _times_rows(o, _ZERO, pp, bq, vrows[bh], j0, bk, Dvp, NR, Sp)
    for r in range(bq):
        i = i0 + r
        dest = out[bh, i]
        if lsum[r] > 0:
            inv = 1 / lsum[r]
            for d in range(Dv):
                dest[d] = o[r, d] * inv
            lse[bh, i] = m[r] + math.log(lsum[r])
        else:  # no key to attend to: zeros, and a gradient of zero
            dest[:] = 0
            lse[bh, i] = np.inf


@kernel
def attention_forward(out, lse, qa, kcols, vrows, mask, midx, mrows, has_mask, scale, causal, S, D, NR, Sp):
    """out (BH, L, Dv) = softmax(q k^T * scale + mask) v and lse (BH, L) its row
    logsumexp (both overwritten) from the packs qa (A_ROWS of q (BH, L, D)), kcols
    (B_COLS of k (BH, S, D)), vrows (B_ROWS of v, Sp rows). Parallel over (bh, query
    block), ordered so that each thread gets as many short as long causal blocks."""
    BH, L = lse.shape
    for u in prange(BH * ((L + BQ - 1) // BQ)):
        _forward_block(out, lse, qa, kcols, vrows, mask, midx, mrows, has_mask, scale, causal,
                       np.int64(u), S, D, NR, Sp)


# ---------------------------------------------------------------- backward
@serial_kernel
def _pair(s, dp, qa, doa, kcols, vcols, lse, delta, mask, midx, mrows, has_mask, scale, causal,
          bh, i0, bq, j0, bk, D, Dv, NR):
    # The block (queries i0.., keys j0..): s <- P = exp(q k^T * scale + mask - lse),
    # dp <- dS * scale = P * (dO v^T - delta) * scale; zero past the causal limit.
    _scores(s, qa[bh], i0 * D, kcols[bh], j0, bq, bk, D, NR)
    _scores(dp, doa[bh], i0 * Dv, vcols[bh], j0, bq, bk, Dv, NR)
    _softmax_rows(s, mask, midx, mrows, has_mask, scale, causal, bh, i0, bq, j0, bk)
    for r in range(bq):
        i = i0 + r
        lim = _limit(i, j0, bk, causal)
        row, drow = s[r], dp[r]
        shift, dl = lse[bh, i], delta[bh, i]
        for c in range(lim):
            p = _exp(row[c] - shift)
            row[c] = p
            drow[c] = p * (drow[c] - dl) * scale
        row[lim:bk] = 0
        drow[lim:bk] = 0


@serial_kernel
def _key_block(dk, dv, dqacc, qa, doa, kcols, vcols, krows, qrows, dorows, lse, delta, mask, midx, mrows,
               has_mask, scale, causal, bh, jb, with_dq, D, NR, Lp, Sp):
    # dK_j, dV_j of key block jb of head bh (overwritten), summed over query blocks;
    # with_dq: also dqacc[i] += dS K_j (dqacc (>= L, Dp), this head's own).
    L, S, Dv = lse.shape[1], dk.shape[1], dv.shape[2]
    Dp, Dvp = (D + NR - 1) // NR * NR, (Dv + NR - 1) // NR * NR
    j0 = jb * BK
    bk = min(BK, S - j0)
    s = np.empty((BQ, BK), dk.dtype)
    dp = np.empty((BQ, BK), dk.dtype)
    pt = np.empty(BQ * BK, dk.dtype)
    dkacc = np.zeros((BK, Dp), dk.dtype)
    dvacc = np.zeros((BK, Dvp), dk.dtype)
    for i0 in range(j0 // BQ * BQ if causal else 0, L, BQ):
        bq = min(BQ, L - i0)
        _pair(s, dp, qa, doa, kcols, vcols, lse, delta, mask, midx, mrows, has_mask, scale, causal,
              bh, i0, bq, j0, bk, D, Dv, NR)
        pack_a(pt, s, _TRANS, _ZERO, bk, _ZERO, bq)  # dV_j += P^T dO_i
        _times_rows(dvacc, _ZERO, pt, bk, dorows[bh], i0, bq, Dvp, NR, Lp)
        pack_a(pt, dp, _TRANS, _ZERO, bk, _ZERO, bq)  # dK_j += dS^T Q_i
        _times_rows(dkacc, _ZERO, pt, bk, qrows[bh], i0, bq, Dp, NR, Lp)
        if with_dq:  # dQ_i += dS K_j
            pack_a(pt, dp, _PLAIN, _ZERO, bq, _ZERO, bk)
            _times_rows(dqacc, i0, pt, bq, krows[bh], j0, bk, Dp, NR, Sp)
    dk[bh, j0:j0 + bk] = dkacc[:bk, :D]
    dv[bh, j0:j0 + bk] = dvacc[:bk, :Dv]


@serial_kernel
def _query_block(dq, qa, doa, kcols, vcols, krows, lse, delta, mask, midx, mrows, has_mask, scale, causal,
                 bh, qb, S, Dv, NR, Sp):
    # dQ_i of query block qb of head bh (overwritten), summed over key blocks.
    L, D = dq.shape[1], dq.shape[2]
    Dp = (D + NR - 1) // NR * NR
    i0 = qb * BQ
    bq = min(BQ, L - i0)
    s = np.empty((BQ, BK), dq.dtype)
    dp = np.empty((BQ, BK), dq.dtype)
    pt = np.empty(BQ * BK, dq.dtype)
    dqacc = np.zeros((BQ, Dp), dq.dtype)
    for j0 in range(0, min(S, i0 + bq) if causal else S, BK):
        bk = min(BK, S - j0)
        _pair(s, dp, qa, doa, kcols, vcols, lse, delta, mask, midx, mrows, has_mask, scale, causal,
              bh, i0, bq, j0, bk, D, Dv, NR)
        pack_a(pt, dp, _PLAIN, _ZERO, bq, _ZERO, bk)
        _times_rows(dqacc, _ZERO, pt, bq, krows[bh], j0, bk, Dp, NR, Sp)
    dq[bh, i0:i0 + bq] = dqacc[:bq, :D]


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
        dq[u] = dqacc[:L, :D]


@kernel
def attention_backward(dq, dk, dv, qa, doa, kcols, vcols, krows, qrows, dorows, lse, delta, mask, midx, mrows,
                       has_mask, scale, causal, NR, Lp, Sp, split):
    """dq (BH, L, D), dk (BH, S, D), dv (BH, S, Dv), all overwritten, from the packs of
    q (qa A_ROWS, qrows B_ROWS), k (kcols B_COLS, krows B_ROWS), v (vcols B_COLS) and
    dO (doa A_ROWS, dorows B_ROWS), the forward's lse and delta = rowsum(dO * out).
    ``split`` False: parallel over heads, each owning its dq, dk, dv (5 block products
    per block pair). True (fewer heads than threads): dK/dV parallel over (head, key
    block), then dQ over (head, query block), recomputing P (7 products).
    A thin parallel shell: each unit is one call of the serial ``_backward_unit``."""
    BH, L = lse.shape
    nqb, nkb = (L + BQ - 1) // BQ, (dk.shape[1] + BK - 1) // BK
    units = (BH * nkb, BH * nqb, BH)  # per phase
    for phase in range(0 if split else 2, 2 if split else 3):
        for u in prange(units[phase]):
            _backward_unit(dq, dk, dv, qa, doa, kcols, vcols, krows, qrows, dorows, lse, delta, mask, midx,
                           mrows, has_mask, scale, causal, phase, np.int64(u), NR, Lp, Sp)
