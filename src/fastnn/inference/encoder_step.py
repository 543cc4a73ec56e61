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
"""
import math

import numpy as np

from .._planstate import plan_state
from ..kernels import aligned
from ..kernels import attention as attn_k
from ..kernels import layer_norm as ln_k
from ..kernels import matmul_packed as packed_k
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
        self.lse = aligned.empty((BH, L), dt)
        self.merged, self.y, self.x1, self.hn = (aligned.empty((M, E), dt) for _ in range(4))
        self.h = aligned.empty((M, F), dt)
        self.mean, self.rstd = np.empty(M, np.float64), np.empty(M, np.float64)


class EncoderLayerStep(_Buffered):
    """A TransformerEncoderLayer (eval, no masks) in direct kernel calls."""

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
        self.L = L

    def _attention(self, rows):
        """s.merged = the attention of ``rows`` (M, E), out-projection not included."""
        s = self.s
        product_into(s.qkv, rows, self.w_in, self.b_in)
        q4, k4, v4 = self.split  # the heads, packed straight from the in-projection
        attn_k.pack_heads(s.ka, k4, attn_k.A_ROWS, s.NR, self.L)
        attn_k.pack_heads(s.qc, q4, attn_k.B_COLS, s.NR, s.Lp)
        attn_k.pack_heads(s.vr, v4, attn_k.B_ROWS, s.NR, s.Sp)
        attn_k.attention_forward(self.heads, s.lse, s.ka, s.qc, s.vr, *self.attn_args)
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

    def compute(self, xd):
        s, out2 = self.s, self.out.reshape(self.M, self.E)
        x2 = xd.reshape(self.M, self.E)
        b_out, b2 = self.b_out, self.b2
        if not self.first:  # x1 = norm1(x + sa(x)); out = norm2(x1 + ff(x1))
            self._attention(x2)
            _add_norm(s.x1, s.x1, x2, s.y, b_out, self.zero, self.norm1, False)
            self._feed_forward(s.y, s.x1, None)
            _add_norm(out2, out2, s.x1, s.y, b2, self.zero, self.norm2, False)
            return
        # x1 = x + sa(norm1(x)); out = x1 + ff(norm2(x1))
        w, b, eps, affine = self.norm1[:4]
        ln_k.norm_rows_forward(s.hn, s.mean, s.rstd, x2, w, b, 1, 1 if affine else self.E, eps, affine, affine)
        self._attention(s.hn)
        _add_norm(s.hn, s.x1, x2, s.y, b_out, self.zero, self.norm2, True)
        self._feed_forward(out2, s.hn, b2)
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


def _add_norm(out, total, x, y, y_bias, zero, norm, keep_sum):
    """out = norm(x + (y + y_bias)) and total = that sum when keep_sum, as ``add_layer_norm``."""
    eps, w, b = norm[2], norm[4], norm[5]
    ln_k.add_norm_rows_forward(out, total, x, y, zero if y_bias is None else y_bias, w, b, eps, keep_sum,
                               y_bias is not None)
