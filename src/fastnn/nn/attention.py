"""MultiheadAttention, on ``F.scaled_dot_product_attention`` (the fused kernels) or,
when the attention weights are asked for, on the materialised computation."""
import numpy as np

from .. import _config
from ..ops import cat, expand, mean, permute, reshape, split, squeeze, transpose, unsqueeze
from ..ops._util import _wrap, as_tensor
from ..ops.attention import additive_mask, attention_with_weights, scaled_dot_product_attention
from . import functional as F
from . import init
from ._validate import check_positive_int
from .linear import Linear
from .module import Module, Parameter

_NAME = "MultiheadAttention"


def _as_input(x, dtype, what):
    """``x`` as a Tensor of the module's dtype (constants are converted)."""
    t = as_tensor(x)
    if t.data.dtype != dtype:
        if t.requires_grad:
            raise TypeError(f"{_NAME}: {what} dtype {t.data.dtype} does not match the module's {np.dtype(dtype)}")
        if t.data.dtype.kind not in "fiu":
            raise TypeError(f"{_NAME}: {what} must be a real float tensor, got dtype {t.data.dtype}")
        t = _wrap(t.data.astype(dtype))
    return t


def _pad_key(mask):
    """An additive mask with one more key (a zero column), for bias_k and add_zero_attn."""
    return None if mask is None else np.pad(mask, [(0, 0)] * (mask.ndim - 1) + [(0, 1)])


class MultiheadAttention(Module):
    """Multi-head attention, like ``torch.nn.MultiheadAttention``.

    Args:
        embed_dim: model width E (split over the heads: E % num_heads == 0).
        num_heads: number of heads H.
        dropout: dropout on the attention weights while training.
        bias: biases in the input and output projections.
        add_bias_kv: learnt ``bias_k``/``bias_v`` rows appended to key and value.
        add_zero_attn: a zero key/value row appended (after the projections).
        kdim, vdim: feature sizes of key and value (default embed_dim); when they
            differ from embed_dim the projections are ``q_proj_weight``,
            ``k_proj_weight``, ``v_proj_weight`` instead of ``in_proj_weight``.
        batch_first: inputs and output are (N, L, E) instead of (L, N, E).

    Shape:
        query (L, N, E), key (S, N, kdim), value (S, N, vdim) (or batch first, or
        unbatched (L, E)); key_padding_mask (N, S) (True or -inf: ignore that key);
        attn_mask (L, S) or (N*H, L, S) (True or -inf: not allowed).
        -> output (L, N, E), weights (N, L, S) averaged over heads, (N, H, L, S)
        with ``average_attn_weights=False``, or None without ``need_weights``.

    Example:
        >>> mha = fastnn.nn.MultiheadAttention(64, 4, batch_first=True)
        >>> x = fastnn.randn(8, 20, 64)
        >>> out, _ = mha(x, x, x, need_weights=False)
        >>> out.shape
        (8, 20, 64)
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False, add_zero_attn=False,
                 kdim=None, vdim=None, batch_first=False, device=None, dtype=None):
        super().__init__()
        self.embed_dim = check_positive_int(embed_dim, _NAME, "embed_dim")
        self.num_heads = check_positive_int(num_heads, _NAME, "num_heads")
        self.kdim = self.embed_dim if kdim is None else check_positive_int(kdim, _NAME, "kdim")
        self.vdim = self.embed_dim if vdim is None else check_positive_int(vdim, _NAME, "vdim")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"{_NAME}: embed_dim must be divisible by num_heads, got embed_dim={embed_dim} "
                             f"and num_heads={num_heads}")
        if isinstance(dropout, bool) or not 0.0 <= float(dropout) <= 1.0:
            raise ValueError(f"{_NAME}: dropout must be in [0, 1], got {dropout!r}")
        self.dropout = float(dropout)
        self.batch_first = bool(batch_first)
        self.head_dim = self.embed_dim // self.num_heads
        self._qkv_same_embed_dim = self.kdim == self.embed_dim and self.vdim == self.embed_dim
        dt = dtype or _config.get_default_dtype()
        E = self.embed_dim
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(np.empty((3 * E, E), dt))
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = Parameter(np.empty((E, E), dt))
            self.k_proj_weight = Parameter(np.empty((E, self.kdim), dt))
            self.v_proj_weight = Parameter(np.empty((E, self.vdim), dt))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(np.empty(3 * E, dt))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(E, E, bias=bias, dtype=dt)
        if add_bias_kv:
            self.bias_k = Parameter(np.empty((1, 1, E), dt))
            self.bias_v = Parameter(np.empty((1, 1, E), dt))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = bool(add_zero_attn)
        self._reset_parameters()

    def _reset_parameters(self):
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            for w in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                init.xavier_uniform_(w)
        if self.in_proj_bias is not None:
            init.constant_(self.in_proj_bias, 0.0)
            init.constant_(self.out_proj.bias, 0.0)
        if self.bias_k is not None:
            init.xavier_normal_(self.bias_k)
            init.xavier_normal_(self.bias_v)

    # ------------------------------------------------------------------ forward
    def _project(self, query, key, value, same):
        """q, k, v = the input projections, each (L or S, N, E)."""
        E, b = self.embed_dim, self.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else split(b, E)
        if not self._qkv_same_embed_dim:
            return (F.linear(query, self.q_proj_weight, bq), F.linear(key, self.k_proj_weight, bk),
                    F.linear(value, self.v_proj_weight, bv))
        if same:  # self-attention: one product for all three
            return split(F.linear(query, self.in_proj_weight, b), E, -1)
        wq, wk, wv = split(self.in_proj_weight, E)
        return F.linear(query, wq, bq), F.linear(key, wk, bk), F.linear(value, wv, bv)

    def _masks(self, attn_mask, key_padding_mask, L, N, S, dt):
        """Both masks as additive arrays, checked: attn (L, S) or (N*H, L, S); padding (N, S)."""
        attn = kpm = None
        if attn_mask is not None:
            attn = additive_mask(attn_mask, dt, _NAME, true_means_keep=False)
            if attn.ndim == 2 and attn.shape != (L, S):
                raise RuntimeError(f"{_NAME}: the shape of the 2D attn_mask is {attn.shape}, but should be {(L, S)}")
            if attn.ndim == 3 and attn.shape != (N * self.num_heads, L, S):
                raise RuntimeError(f"{_NAME}: the shape of the 3D attn_mask is {attn.shape}, but should be "
                                   f"{(N * self.num_heads, L, S)}")
            if attn.ndim not in (2, 3):
                raise RuntimeError(f"{_NAME}: attn_mask's dimension {attn.ndim} is not supported (shape {attn.shape})")
        if key_padding_mask is not None:
            kpm = additive_mask(key_padding_mask, dt, _NAME, true_means_keep=False)
            if kpm.shape != (N, S):
                raise RuntimeError(f"{_NAME}: expected key_padding_mask of shape {(N, S)}, got {kpm.shape}")
        return attn, kpm

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        dt = self.out_proj.weight.data.dtype
        same = query is key and key is value
        q_in = _as_input(query, dt, "query")
        k_in, v_in = (q_in, q_in) if same else (_as_input(key, dt, "key"), _as_input(value, dt, "value"))
        batched = q_in.data.ndim == 3
        if q_in.data.ndim not in (2, 3) or k_in.data.ndim != q_in.data.ndim or v_in.data.ndim != q_in.data.ndim:
            raise ValueError(f"{_NAME}: expected query, key and value all 3-D (batched) or 2-D (unbatched), got "
                             f"shapes {q_in.data.shape}, {k_in.data.shape} and {v_in.data.shape}")
        if batched and self.batch_first:
            q_in, k_in, v_in = (transpose(t, 0, 1) for t in (q_in, k_in, v_in))
        elif not batched:
            q_in, k_in, v_in = (unsqueeze(t, 1) for t in (q_in, k_in, v_in))
            if key_padding_mask is not None:
                key_padding_mask = np.asarray(as_tensor(key_padding_mask).data)[None]
        self._check_shapes(q_in.data.shape, k_in.data.shape, v_in.data.shape)
        L, N, E = q_in.data.shape
        S = k_in.data.shape[0]
        if is_causal and attn_mask is None:
            raise RuntimeError(f"{_NAME}: need attn_mask if specifying the is_causal hint")
        attn, kpm = self._masks(attn_mask, key_padding_mask, L, N, S, dt)
        causal = bool(is_causal) and kpm is None and not need_weights
        if causal:
            attn = None  # the hint says attn_mask is the causal mask: the kernel makes it
        q, k, v = self._project(q_in, k_in, v_in, same)
        if self.bias_k is not None:
            k = cat([k, expand(self.bias_k, 1, N, E)])
            v = cat([v, expand(self.bias_v, 1, N, E)])
            attn, kpm = _pad_key(attn), _pad_key(kpm)
        H, Dh = self.num_heads, self.head_dim
        q, k, v = (permute(reshape(t, (t.data.shape[0], N, H, Dh)), (1, 2, 0, 3)) for t in (q, k, v))
        if self.add_zero_attn:
            zeros = np.zeros((N, H, 1, Dh), dt)
            k, v = cat([k, zeros], 2), cat([v, zeros], 2)
            attn, kpm = _pad_key(attn), _pad_key(kpm)
        mask = self._merged(attn, kpm, N)
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            out, weights = attention_with_weights(q, k, v, mask, p)
            if average_attn_weights:
                weights = mean(weights, 1)
        else:
            out = scaled_dot_product_attention(q, k, v, mask, p, causal)
        out = self.out_proj(reshape(permute(out, (2, 0, 1, 3)), (L, N, E)))
        if batched and self.batch_first:
            out = transpose(out, 0, 1)
        elif not batched:
            out = squeeze(out, 1)
            weights = None if weights is None else squeeze(weights, 0)
        return out, weights

    def _fast_ok(self, x):
        """Whether ``_fast_self_attention`` computes this module's self-attention of ``x``."""
        return (self._qkv_same_embed_dim and self.bias_k is None and not self.add_zero_attn
                and x.data.ndim == 3 and x.data.shape[-1] == self.embed_dim
                and x.data.dtype == self.in_proj_weight.data.dtype)

    def _fast_self_attention(self, x, out_bias=True):
        """Self-attention of the 3-D Tensor ``x`` without masks, weights or autograd (eval
        under no_grad): one in-projection, the heads split and merged as array views.
        ``out_bias`` False: without out_proj's bias (the caller adds it)."""
        H, Dh = self.num_heads, self.head_dim
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias).data
        if self.batch_first:  # (N, L, E): heads (N, H, L, Dh) by views
            N, L, E = x.data.shape
            qkv = qkv.reshape(N, L, 3, H, Dh).transpose(2, 0, 3, 1, 4)
        else:  # (L, N, E)
            L, N, E = x.data.shape
            qkv = qkv.reshape(L, N, 3, H, Dh).transpose(2, 1, 3, 0, 4)
        out = scaled_dot_product_attention(_wrap(qkv[0]), _wrap(qkv[1]), _wrap(qkv[2])).data
        out = out.transpose(0, 2, 1, 3) if self.batch_first else out.transpose(2, 0, 1, 3)
        merged = _wrap(np.ascontiguousarray(out).reshape(x.data.shape))
        return F.linear(merged, self.out_proj.weight, self.out_proj.bias if out_bias else None)

    def _check_shapes(self, qs, ks, vs):
        if qs[-1] != self.embed_dim:
            raise ValueError(f"{_NAME}: expected query with embedding dimension {self.embed_dim}, got shape {qs}")
        if ks[:2] != vs[:2] or ks[1] != qs[1] or ks[-1] != self.kdim or vs[-1] != self.vdim:
            raise ValueError(f"{_NAME}: key {ks} and value {vs} must have the same length and batch as each other "
                             f"and as query {qs}, and kdim={self.kdim}, vdim={self.vdim} features")

    def _merged(self, attn, kpm, N):
        """attn (L, S) or (N*H, L, S) plus kpm (N, S), broadcast to (N or 1, H or 1, L, S)."""
        if attn is not None:
            attn = attn[None, None] if attn.ndim == 2 else attn.reshape(N, self.num_heads, *attn.shape[1:])
        if kpm is not None:
            kpm = kpm[:, None, None, :]
        if attn is None or kpm is None:
            return attn if kpm is None else kpm
        return attn + kpm

    def _config(self):
        return {"embed_dim": self.embed_dim, "num_heads": self.num_heads, "dropout": self.dropout,
                "bias": self.in_proj_bias is not None, "add_bias_kv": self.bias_k is not None,
                "add_zero_attn": self.add_zero_attn, "kdim": self.kdim, "vdim": self.vdim,
                "batch_first": self.batch_first}

    def extra_repr(self):
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}"

