"""Transformer layers: TransformerEncoderLayer/Encoder and TransformerDecoderLayer/
Decoder, with PyTorch's arguments, children and ``state_dict`` keys, on
``MultiheadAttention`` (the fused attention kernels) and ``LayerNorm``."""
import copy

import numpy as np

from ..autograd import is_grad_enabled
from ..kernels import activations as act_k
from ..ops import add
from ..ops.layer_norm import add_layer_norm
from ..ops.linear import linear
from ..ops._util import as_tensor
from ..tensor import Tensor
from . import functional as F
from .attention import MultiheadAttention
from .containers import ModuleList
from .dropout import Dropout
from .linear import Linear
from .module import Module

__all__ = ["MultiheadAttention", "TransformerEncoderLayer", "TransformerEncoder", "TransformerDecoderLayer",
           "TransformerDecoder"]

_EPILOGUE = {"relu": act_k.RELU, "gelu": act_k.GELU}  # activations fused into linear1 without autograd


def generate_square_subsequent_mask(sz, dtype=np.float32):
    """The (sz, sz) causal mask: 0 on and below the diagonal, -inf above (as
    ``torch.nn.Transformer.generate_square_subsequent_mask``)."""
    return np.triu(np.full((sz, sz), -np.inf, dtype), 1)


def _detect_is_causal_mask(mask, is_causal, size):
    """PyTorch's rule: ``is_causal`` if given, else whether ``mask`` is the causal mask."""
    if is_causal is not None or mask is None:
        return bool(is_causal)
    m = as_tensor(mask).data
    if m.shape != (size, size):
        return False
    causal = np.triu(np.ones((size, size), bool), 1)
    return bool(np.array_equal(m, causal if m.dtype == np.bool_ else np.where(causal, -np.inf, 0)))


def _layer_norm(d_model, eps, bias):
    from . import LayerNorm  # the nn package's, looked up when a layer is built
    return LayerNorm(d_model, eps=eps, bias=bias)


def _add_norm(norm, x, y, y_bias, keep_sum):
    """(norm(x + (y + y_bias)), that sum if keep_sum), in one pass when ``norm`` is a
    LayerNorm over the last dim (autograd off), else by the separate ops."""
    from . import LayerNorm
    if type(norm) is LayerNorm and len(norm.normalized_shape) == 1:
        return add_layer_norm(x, y, norm.weight, norm.bias, norm.eps, keep_sum, y_bias)
    total = add(x, y if y_bias is None else add(y, y_bias))
    return norm(total), total


def _activation_name(activation, layer):
    if isinstance(activation, str):
        if activation not in ("relu", "gelu"):
            raise ValueError(f"{layer}: activation should be relu/gelu, not {activation}")
        return activation
    if not callable(activation):
        raise TypeError(f"{layer}: activation must be 'relu', 'gelu' or a callable, got {activation!r}")
    return None


class _Layer(Module):
    """What the encoder and decoder layers share: the feed-forward block and config."""

    def _common(self, d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, batch_first,
                norm_first, bias, norms):
        name = type(self).__name__
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias)
        self.norm_first = bool(norm_first)
        for i in range(1, norms + 1):
            setattr(self, f"norm{i}", _layer_norm(d_model, layer_norm_eps, bias))
        for i in range(1, norms + 1):
            setattr(self, f"dropout{i}", Dropout(dropout))
        self._activation_name = _activation_name(activation, name)
        self.activation = activation if self._activation_name is None else getattr(F, activation)
        self._args = {"d_model": d_model, "nhead": nhead, "dim_feedforward": dim_feedforward,
                      "dropout": float(dropout), "layer_norm_eps": float(layer_norm_eps),
                      "batch_first": bool(batch_first), "norm_first": bool(norm_first), "bias": bool(bias)}

    def _ff_block(self, x, drop):
        """The feed-forward block, then the dropout ``drop``."""
        if self._activation_name == "relu":  # the activation in linear1's epilogue
            h = self.linear1.forward_fused(x, "relu")
        else:
            h = self.activation(self.linear1(x))
        return drop(self.linear2(self.dropout(h)))

    def _fast_ff(self, x, out_bias):
        """The feed-forward block without autograd or dropout: relu/gelu in linear1's
        epilogue; ``out_bias`` False: without linear2's bias (the caller adds it)."""
        l1, l2 = self.linear1, self.linear2
        kind = _EPILOGUE.get(self._activation_name)
        h = self.activation(l1(x)) if kind is None else linear(x, l1.weight, l1.bias, kind)
        return linear(h, l2.weight, l2.bias if out_bias else None)

    def _config(self):
        if self._activation_name is None:
            raise TypeError(f"{type(self).__name__}: a custom activation callable cannot be saved; "
                            "use activation='relu' or 'gelu'")
        return dict(self._args, activation=self._activation_name)

    def extra_repr(self):
        return ""


class TransformerEncoderLayer(_Layer):
    """Self-attention and a feed-forward block, each with a residual connection and
    LayerNorm, like ``torch.nn.TransformerEncoderLayer``.

    Args:
        d_model: model width; nhead: attention heads (d_model % nhead == 0).
        dim_feedforward: hidden width of the feed-forward block (default 2048).
        dropout: dropout rate (default 0.1). activation: 'relu', 'gelu' or a callable.
        layer_norm_eps: LayerNorm eps. batch_first: (N, S, E) instead of (S, N, E).
        norm_first: LayerNorm before each block (pre-norm) instead of after.
        bias: biases in the Linear and LayerNorm layers.

    Shape: src (S, N, E), (N, S, E) with batch_first, or (S, E) -> the same.

    Example:
        >>> layer = fastnn.nn.TransformerEncoderLayer(64, 4, 128, batch_first=True)
        >>> layer(fastnn.randn(8, 20, 64)).shape
        (8, 20, 64)
    """

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu", layer_norm_eps=1e-5,
                 batch_first=False, norm_first=False, bias=True, device=None, dtype=None):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first)
        self._common(d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, batch_first,
                     norm_first, bias, 2)
        if dtype is not None:
            self.to(dtype)

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = src
        if (src_mask is None and src_key_padding_mask is None and not is_causal and not self.training
                and not is_grad_enabled() and isinstance(x, Tensor) and self.self_attn._fast_ok(x)):
            return self._fast_forward(x)
        if self.norm_first:
            x = add(x, self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal))
            return add(x, self._ff_block(self.norm2(x), self.dropout2))
        x = self.norm1(add(x, self._sa_block(x, src_mask, src_key_padding_mask, is_causal)))
        return self.norm2(add(x, self._ff_block(x, self.dropout2)))

    def _fast_forward(self, x):
        # eval under no_grad, no masks: no dropout calls, one in-projection, heads as views;
        # each residual add, the bias of the Linear before it and the LayerNorm after it in one pass
        sa, ff, out_bias = self.self_attn._fast_self_attention, self._fast_ff, self.self_attn.out_proj.bias
        if self.norm_first:
            h, x = _add_norm(self.norm2, x, sa(self.norm1(x), False), out_bias, True)
            return add(x, ff(h, True))
        x = _add_norm(self.norm1, x, sa(x, False), out_bias, False)[0]
        return _add_norm(self.norm2, x, ff(x, False), self.linear2.bias, False)[0]

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False,
                           is_causal=is_causal)[0]
        return self.dropout1(x)


class TransformerDecoderLayer(_Layer):
    """Self-attention, cross-attention on ``memory`` and a feed-forward block, each
    with a residual connection and LayerNorm, like ``torch.nn.TransformerDecoderLayer``.

    Args: as :class:`TransformerEncoderLayer`.

    Shape: tgt (T, N, E), memory (S, N, E) (batch first with ``batch_first``) -> (T, N, E).

    Example:
        >>> layer = fastnn.nn.TransformerDecoderLayer(64, 4, 128, batch_first=True)
        >>> layer(fastnn.randn(8, 10, 64), fastnn.randn(8, 20, 64)).shape
        (8, 10, 64)
    """

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu", layer_norm_eps=1e-5,
                 batch_first=False, norm_first=False, bias=True, device=None, dtype=None):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first)
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first)
        self._common(d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, batch_first,
                     norm_first, bias, 3)
        if dtype is not None:
            self.to(dtype)

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False):
        x = tgt
        if self.norm_first:
            x = add(x, self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal))
            x = add(x, self._mha_block(self.norm2(x), memory, memory_mask, memory_key_padding_mask,
                                       memory_is_causal))
            return add(x, self._ff_block(self.norm3(x), self.dropout3))
        x = self.norm1(add(x, self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal)))
        x = self.norm2(add(x, self._mha_block(x, memory, memory_mask, memory_key_padding_mask, memory_is_causal)))
        return self.norm3(add(x, self._ff_block(x, self.dropout3)))

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False,
                           is_causal=is_causal)[0]
        return self.dropout1(x)

    def _mha_block(self, x, mem, attn_mask, key_padding_mask, is_causal):
        x = self.multihead_attn(x, mem, mem, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                                need_weights=False, is_causal=is_causal)[0]
        return self.dropout2(x)


class _Stack(Module):
    """``num_layers`` deep copies of one layer, then an optional norm."""

    def __init__(self, layer, num_layers, norm):
        super().__init__()
        if not isinstance(layer, Module):
            raise TypeError(f"{type(self).__name__}: expected a layer Module, got {type(layer).__name__}")
        if isinstance(num_layers, bool) or not isinstance(num_layers, (int, np.integer)) or num_layers < 1:
            raise ValueError(f"{type(self).__name__}: num_layers must be a positive int, got {num_layers!r}")
        self.layers = ModuleList([copy.deepcopy(layer) for _ in range(num_layers)])
        self.num_layers = int(num_layers)
        self.norm = norm

    def _seq_len(self, x):
        shape = as_tensor(x).data.shape
        batch_first = self.layers[0].self_attn.batch_first
        return shape[1] if batch_first and len(shape) == 3 else shape[0]

    def _finish(self, x):
        return x if self.norm is None else self.norm(x)

    def _config(self):
        return {"num_layers": self.num_layers}

    @classmethod
    def _from_config(cls, config, children):
        return cls(children["layers"][0], config["num_layers"], children.get("norm"))


class TransformerEncoder(_Stack):
    """A stack of ``num_layers`` copies of ``encoder_layer``, like
    ``torch.nn.TransformerEncoder`` (``layers.0.self_attn...`` state keys).

    Args:
        encoder_layer: a ``TransformerEncoderLayer`` (deep-copied for each layer).
        num_layers: how many. norm: an optional final LayerNorm.

    Shape: as the layer's.

    Example:
        >>> layer = fastnn.nn.TransformerEncoderLayer(128, 4, 512, batch_first=True)
        >>> encoder = fastnn.nn.TransformerEncoder(layer, 2)
        >>> encoder(fastnn.randn(32, 64, 128)).shape
        (32, 64, 128)
    """

    def __init__(self, encoder_layer, num_layers, norm=None, enable_nested_tensor=True, mask_check=True):
        super().__init__(encoder_layer, num_layers, norm)

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        is_causal = _detect_is_causal_mask(mask, is_causal, self._seq_len(src))
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=mask, is_causal=is_causal, src_key_padding_mask=src_key_padding_mask)
        return self._finish(x)


class TransformerDecoder(_Stack):
    """A stack of ``num_layers`` copies of ``decoder_layer``, like
    ``torch.nn.TransformerDecoder``.

    Args: decoder_layer (a ``TransformerDecoderLayer``), num_layers, norm=None.

    Shape: tgt (T, N, E), memory (S, N, E) (batch first with ``batch_first``) -> (T, N, E).

    Example:
        >>> layer = fastnn.nn.TransformerDecoderLayer(64, 4, 128, batch_first=True)
        >>> decoder = fastnn.nn.TransformerDecoder(layer, 2)
        >>> decoder(fastnn.randn(8, 10, 64), fastnn.randn(8, 20, 64)).shape
        (8, 10, 64)
    """

    def __init__(self, decoder_layer, num_layers, norm=None):
        super().__init__(decoder_layer, num_layers, norm)

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=None, memory_is_causal=False):
        tgt_is_causal = _detect_is_causal_mask(tgt_mask, tgt_is_causal, self._seq_len(tgt))
        x = tgt
        for layer in self.layers:
            x = layer(x, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                      tgt_key_padding_mask=tgt_key_padding_mask, memory_key_padding_mask=memory_key_padding_mask,
                      tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal)
        return self._finish(x)
