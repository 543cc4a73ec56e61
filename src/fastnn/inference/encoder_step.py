"""The plan's step for a ``TransformerEncoderLayer`` called without masks: the
layer's eval forward as direct kernel calls into arrays the plan owns.

Eagerly, that forward is some twenty operations, each checking its arguments and
allocating its result: at batch 1 the checks cost about as much as the arithmetic.
The step runs the same kernels in the same order (so its result is bitwise the
eager one): the in-projection, the heads packed straight from it (eagerly they are
copied out first), the fused attention with its heads written straight into merged
rows (eagerly they are copied there), the out-projection, the residual add with
LayerNorm, the feed-forward block (its activation in linear1's epilogue, and both
products in one pass over row tiles) and the second add-and-norm; pre-norm layers
in their order. The products use the plan's packed weights (``packs``). The scratch
arrays are shared by every encoder step of one configuration (steps run one at a
time); only the result is the step's own.

A batch-first layer whose batch spreads evenly over the threads (a multiple of
them, or at least four sequences a thread) runs as one kernel instead,
``kernels.encoder.encoder_rows``: each thread takes whole sequences through the
whole layer in its own scratch, which stays in its cache (at batch 32 on two
threads: 0.94x the time of the kernels one after another, 0.88x on one thread).
Its parts are the same kernels, called through the very handles the step's own
normalisation calls use (``layer_norm.rows_handle``), so its result has the same
bits, at any thread count.
"""
import math

import numpy as np

from .._planstate import plan_state
from ..kernels import aligned
from ..kernels import attention as attn_k
from ..kernels import encoder as encoder_k
from ..kernels import layer_norm as ln_k
from ..kernels import matmul_packed as packed_k
from ..kernels._fnptr import handle
from ..kernels._threading import get_threads
from ..kernels.elementwise import add as add_kernel
from ..nn.norm_extra import LayerNorm
from ..nn.transformer import _EPILOGUE
from ..ops.attention import _kernel_mask, pack_size
from ..ops.layer_norm import _flat
from ..ops.linear import product_into
from ..ops.norm import unused
from .steps import _Buffered

ENCODER_KWARGS = frozenset(("src_mask", "src_key_padding_mask", "is_causal"))


def plain_encoder_kwargs(kwargs):
    """True when keyword arguments of an encoder layer's call change nothing: the masks
    None and ``is_causal`` false (as ``TransformerEncoder`` passes them without masks)."""
    return (kwargs.keys() <= ENCODER_KWARGS and kwargs.get("src_mask") is None
            and kwargs.get("src_key_padding_mask") is None and not kwargs.get("is_causal"))


def _plain_norm(norm, E):
    return type(norm) is LayerNorm and norm.normalized_shape == (E,) and "forward" not in norm.__dict__


def encoder_ok(layer, x):
    """True when the step computes ``layer``'s forward of ``x`` (a float Tensor): the
    eager fast path's conditions (``MultiheadAttention._fast_ok``), relu or gelu, and
    LayerNorms over the model width, with no forward overridden."""
    mha = layer.self_attn
    xd = x.data
    if xd.ndim != 3 or xd.dtype != mha.in_proj_weight.data.dtype or not mha._fast_ok(x):
        return False
    if layer._activation_name not in _EPILOGUE:
        return False
    parts = (layer, mha, mha.out_proj, layer.linear1, layer.linear2)
    E = mha.embed_dim
    return all("forward" not in m.__dict__ for m in parts) and _plain_norm(layer.norm1, E) \
        and _plain_norm(layer.norm2, E)


class _Scratch:
    """The arrays one encoder configuration's steps compute through."""

    def __init__(self, N, L, E, H, F, dt):
        M, BH, Dh = N * L, N * H, E // H
        self.NR = packed_k.panel_width(dt)
        self.Lp = -(-L // attn_k.BQ) * attn_k.BQ
        self.Sp = -(-L // attn_k.BK) * attn_k.BK
        self.qkv = aligned.empty((M, 3 * E), dt)
        self.ka = aligned.empty((BH, pack_size(attn_k.A_ROWS, L, Dh, self.NR, L)), dt)
        self.qc = aligned.empty((BH, pack_size(attn_k.B_COLS, L, Dh, self.NR, self.Lp)), dt)
        self.vr = aligned.empty((BH, pack_size(attn_k.B_ROWS, L, Dh, self.NR, self.Sp)), dt)
        self.lse = np.empty((BH, 0), dt)  # no row logsumexp: nothing runs backward
        self.merged, self.y, self.x1, self.hn = (aligned.empty((M, E), dt) for _ in range(4))
        self.h = aligned.empty((M, F), dt)
        self.mean, self.rstd = np.empty(M, np.float64), np.empty(M, np.float64)
        self.dims = (N, L, E, H, F, dt)
        self.threads = {}  # T -> _Scratch for one sequence per thread (``per_thread``)

    def per_thread(self, T):
        """Scratch for ``encoder_rows``: a batch of T sequences, one per thread, with the
        heads' views ``split`` (q, k, v: (T, H, L, Dh)) and ``heads`` (of ``merged``)."""
        t = self.threads.get(T)
        if t is None:
            _, L, E, H, F, dt = self.dims
            t = self.threads[T] = _Scratch(T, L, E, H, F, dt)
            t.qkv, t.merged, t.y, t.x1, t.hn, t.h = (a.reshape(T, L, -1) for a in (t.qkv, t.merged, t.y, t.x1,
                                                                                   t.hn, t.h))
            t.mean, t.rstd = t.mean.reshape(T, L), t.rstd.reshape(T, L)
            Dh = E // H
            t.split = tuple(t.qkv.reshape(T, L, 3, H, Dh).transpose(2, 0, 3, 1, 4))
            t.heads = t.merged.reshape(T, L, H, Dh).transpose(0, 2, 1, 3)
        return t


class EncoderLayerStep(_Buffered):
    """A TransformerEncoderLayer (eval, no masks) in direct kernel calls."""

    uses_packs = True

    def __init__(self, layer, x, workspaces, alloc):
        super().__init__(layer, x, x.data.shape, alloc)
        mha = layer.self_attn
        dt = self.dtype
        A, B, E = self.shape
        N, L = (A, B) if mha.batch_first else (B, A)
        H, F = mha.num_heads, layer.linear1.weight.data.shape[0]
        key = ("encoder", self.shape, dt, H, F)
        s = workspaces.get(key)
        if s is None:
            s = workspaces[key] = _Scratch(N, L, E, H, F, dt)
        self.s, self.first, self.M, self.E = s, layer.norm_first, N * L, E
        self.kind = _EPILOGUE[layer._activation_name]
        self.w_in, self.b_in = mha.in_proj_weight, _data(mha.in_proj_bias)
        self.w_out, self.b_out = mha.out_proj.weight, _data(mha.out_proj.bias)
        self.w1, self.b1 = layer.linear1.weight, _data(layer.linear1.bias)
        self.w2, self.b2 = layer.linear2.weight, _data(layer.linear2.bias)
        self.norm1, self.norm2 = (_norm_args(n, E, dt) for n in (layer.norm1, layer.norm2))
        w, b, _, affine = self.norm1[:4]
        self.ln1 = (w, b, 1 if affine else E, affine)  # norm1 as norm_rows_forward takes it (pre-norm)
        self.zero = np.zeros(E, dt)  # the y_bias of an add-and-norm without one
        self.ffn_fn = None  # the fused feed-forward kernel's handle, once it has run
        # the heads as views: qkv (rows, 3E) -> (3, N, H, L, Dh); the attention's rows
        # (N, H, L, Dh) written straight into merged (rows, E)
        Dh = E // H
        if mha.batch_first:
            self.split = s.qkv.reshape(N, L, 3, H, Dh).transpose(2, 0, 3, 1, 4)
            self.heads = s.merged.reshape(N, L, H, Dh).transpose(0, 2, 1, 3)
        else:
            self.split = s.qkv.reshape(L, N, 3, H, Dh).transpose(2, 1, 3, 0, 4)
            self.heads = s.merged.reshape(L, N, H, Dh).transpose(1, 2, 0, 3)
        masks, index, rows, has_mask = _kernel_mask(None, (N, H), L, L, dt)  # no mask, as eagerly
        self.attn_args = (masks, index, rows, has_mask, dt.type(1.0 / math.sqrt(Dh)), False, L, Dh, s.NR, s.Sp)
        self.attn_fn = attn_k.forward_handle(self.heads, s.lse, s.ka, s.qc, s.vr, *self.attn_args)
        q4, k4, v4 = self.split
        self.pack_fns = (attn_k.pack_handle(s.ka, k4, attn_k.A_ROWS, s.NR, L),
                         attn_k.pack_handle(s.qc, q4, attn_k.B_COLS, s.NR, s.Lp),
                         attn_k.pack_handle(s.vr, v4, attn_k.B_ROWS, s.NR, s.Sp))
        self.L, self.N = L, N
        self.batch_first = mha.batch_first
        self.fused = None  # encoder_rows's arguments, once made (False: the layer is not one to fuse)
        self.norm_fns = {}  # x2 writeable -> the normalisations' handles (``_norms``)

    def _attention(self, rows):
        """s.merged = the attention of ``rows`` (M, E), out-projection not included."""
        s = self.s
        product_into(s.qkv, rows, self.w_in, self.b_in)
        q4, k4, v4 = self.split  # the heads, packed straight from the in-projection
        pk, pq, pv = self.pack_fns
        attn_k.pack_heads(s.ka, k4, attn_k.A_ROWS, s.NR, self.L, pk)
        attn_k.pack_heads(s.qc, q4, attn_k.B_COLS, s.NR, s.Lp, pq)
        attn_k.pack_heads(s.vr, v4, attn_k.B_ROWS, s.NR, s.Sp, pv)
        attn_k.attention_forward(self.heads, s.lse, s.ka, s.qc, s.vr, *self.attn_args, self.attn_fn)
        product_into(s.y, s.merged, self.w_out, None)

    def _feed_forward(self, out2, rows, b2):
        """out2 = linear2(act(linear1(rows))) + b2, fused row tile by row tile when the
        plan packs both weights (the same bits as the two products)."""
        s, packs = self.s, plan_state.packs
        fn = None if packs is None else packs.feed_forward(out2, rows, s.h, self.w1, self.b1, self.kind, self.w2, b2,
                                                           self.ffn_fn)
        if fn is None:
            product_into(s.h, rows, self.w1, self.b1, self.kind)
            product_into(out2, s.h, self.w2, b2)
        self.ffn_fn = fn

    def _norms(self, out2, x2):
        """The step's normalisations, in their order, as (kernel, arguments but ``fn``),
        and their rows kernels' handles (``fn``): pre-norm, the first LayerNorm and the
        add-and-norm; post-norm, the two add-and-norms. The handles are made once per
        writeability of x2 (the one way the arguments' types can change)."""
        s, first = self.s, self.first
        (_, _, eps1, _, nw1, nb1), (_, _, eps2, _, nw2, nb2) = self.norm1, self.norm2
        y_out = self.zero if self.b_out is None else self.b_out
        if first:
            w, b, spatial, affine = self.ln1
            calls = ((ln_k.norm_rows_forward, (s.hn, s.mean, s.rstd, x2, w, b, 1, spatial, eps1, affine, affine)),
                     (ln_k.add_norm_rows_forward, (s.hn, s.x1, x2, s.y, y_out, nw2, nb2, eps2, True,
                                                   self.b_out is not None)))
        else:
            y2 = self.zero if self.b2 is None else self.b2
            calls = ((ln_k.add_norm_rows_forward, (s.x1, s.x1, x2, s.y, y_out, nw1, nb1, eps1, False,
                                                   self.b_out is not None)),
                     (ln_k.add_norm_rows_forward, (out2, out2, s.x1, s.y, y2, nw2, nb2, eps2, False,
                                                   self.b2 is not None)))
        fns = self.norm_fns.get(x2.flags.writeable)
        if fns is None:
            fns = self.norm_fns[x2.flags.writeable] = tuple(
                (ln_k.norm_rows_handle if k is ln_k.norm_rows_forward else ln_k.add_norm_handle)(*a) for k, a in calls)
        return calls, fns

    def _fused_args(self, out2, x2, packs, norm_fns):
        """``encoder_rows``'s arguments from qkv to tmp and its handles, or False when a
        product of the layer is not one the plan packs."""
        s, M, dt = self.s, self.M, self.dtype
        weights = tuple(packs.packed(w, M) for w in (self.w_in, self.w_out, self.w1, self.w2))
        if any(bp is None for bp in weights):
            return False
        ap, tmp = packs.workspace(dt)
        t = s.per_thread(ap.shape[0])
        biases = tuple(np.zeros(w.data.shape[0], dt) if b is None else b
                       for w, b in ((self.w_in, self.b_in), (self.w_out, self.b_out), (self.w1, self.b1),
                                    (self.w2, self.b2)))
        has = tuple(b is not None for b in (self.b_in, self.b_out, self.b1, self.b2))
        first, kind, ident = self.first, int(self.kind), int(packed_k.IDENTITY)
        norms = (self.norm1[4], self.norm1[5], self.norm2[4], self.norm2[5])
        attn = self.attn_args + (s.Lp,)
        q4, k4, v4 = t.split

        def prod(out, a, bp, bias, act, has_bias):
            return handle(packed_k._row_tile, (out, a, bp, ap[0], tmp[0], 0, 0, bias, act, 0.0, has_bias))

        def pack(dst, x, pad):
            return handle(attn_k.pack_head_range, (dst, x, 0, s.NR, pad, 0, 0))

        hn, x1, y, h = t.hn[0], t.x1[0], t.y[0], t.h[0]
        fns = np.array((prod(t.qkv[0], hn if first else x2[:self.L], weights[0], biases[0], ident, has[0]),
                        prod(y, t.merged[0], weights[1], biases[1], ident, False),
                        prod(h, hn if first else x1, weights[2], biases[2], kind, has[2]),
                        prod(out2[:self.L] if first else y, h, weights[3], biases[3], ident, first and has[3]),
                        pack(t.ka, k4, self.L), pack(t.qc, q4, s.Lp), pack(t.vr, v4, s.Sp),
                        handle(attn_k._forward_block, (t.heads, t.lse, t.ka, t.qc, t.vr) + self.attn_args[:6] + (0,)
                               + self.attn_args[6:])) + norm_fns, np.int64)
        args = (t.qkv, q4, k4, v4, t.heads, t.merged, t.y, t.x1, t.hn, t.h, t.mean, t.rstd, t.lse, t.ka, t.qc, t.vr,
                weights, biases, has, norms, self.ln1, (self.norm1[2], self.norm2[2]), kind, first, attn, ap, tmp)
        return args, fns

    def _run_fused(self, out2, x2, norm_fns):
        """True when ``encoder_rows`` computed the layer, sequence by sequence: batch
        first, a batch that spreads evenly enough over the threads, packed products, and
        a writeable input (a read-only one is another array type than the handles')."""
        if self.fused is False or not self.batch_first or not x2.flags.writeable:
            return False
        threads, packs = get_threads(), plan_state.packs
        if packs is None or not (self.N % threads == 0 or self.N >= 4 * threads):
            return False
        if self.fused is None:
            self.fused = self._fused_args(out2, x2, packs, norm_fns)
            if self.fused is False:
                return False
        args, fns = self.fused
        encoder_k.encoder_rows(out2, x2, *args, threads, fns)
        return True

    def compute(self, xd):
        s, out2 = self.s, self.out.reshape(self.M, self.E)
        x2 = xd.reshape(self.M, self.E)
        calls, fns = self._norms(out2, x2)
        if self._run_fused(out2, x2, fns):
            return
        (norm_a, args_a), (norm_b, args_b) = calls
        if not self.first:  # x1 = norm1(x + sa(x)); out = norm2(x1 + ff(x1))
            self._attention(x2)
            norm_a(*args_a, fns[0])
            self._feed_forward(s.y, s.x1, None)
            norm_b(*args_b, fns[1])
            return
        # x1 = x + sa(norm1(x)); out = x1 + ff(norm2(x1))
        norm_a(*args_a, fns[0])
        self._attention(s.hn)
        norm_b(*args_b, fns[1])
        self._feed_forward(out2, s.hn, self.b2)
        flat = out2.reshape(-1)
        add_kernel(flat, s.x1.reshape(-1), flat)


def _data(p):
    return None if p is None else p.data


def _norm_args(norm, E, dt):
    """A LayerNorm's (weight, bias, eps, affine) as ``layer_norm`` passes them to its
    kernel, then (weight, bias) as ``add_layer_norm`` does (ones and zeros for None)."""
    affine = norm.weight is not None or norm.bias is not None
    w, b = _flat(norm.weight, E, dt, 1), _flat(norm.bias, E, dt, 0)
    ln = (w, b) if affine else (unused(dt), unused(dt))
    return ln + (float(norm.eps), affine, w, b)
