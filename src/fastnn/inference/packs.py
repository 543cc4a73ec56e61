"""Packed weights for the Linear products of layers a plan runs as they are.

A Transformer layer is not one of the plan's steps: its eval forward (one
in-projection, the fused attention, the feed-forward block, the add-and-norms) runs
as written. Its products still take constant right-hand sides, the layer's weights,
which ``matmul`` would pack into panels on every call. While a plan runs, ``linear``
asks the plan's :class:`PackedWeights` for the product instead: a weight that is one
of the model's parameters is packed once (``kernels.matmul_packed``) and reused for
as long as the plan is valid, which already requires every parameter unchanged
(``.data`` and ``_version``). The result is bitwise the unpacked product's.
"""
import numpy as np

from ..kernels import matmul_packed as packed_k
from ..kernels._threading import get_threads
from ..kernels.matmul import GEMV_SPLIT_FLOPS


class PackedWeights:
    """The packed forms of a model's weights, made on first use, for one plan."""

    def __init__(self, tensors):
        self.allowed = {id(t) for t in tensors}  # the model's parameters and buffers
        self.packed_weights = {}  # id(weight) -> packed weight.T
        self.workspaces = {}  # dtype -> (room for rows of x per thread, edge tiles)

    def packed(self, weight, M):
        """weight's packed form for products with M rows, or None when such a product
        is not one to pack: a weight not of the model, or a product small enough that
        ``matmul`` runs it unpacked."""
        w = weight.data
        (N, K), key = w.shape, id(weight)
        if key not in self.allowed or M * N * K < GEMV_SPLIT_FLOPS or not packed_k.packs(M, N, K, w.dtype):
            return None
        bp = self.packed_weights.get(key)
        if bp is None:
            bp = self.packed_weights[key] = packed_k.pack_weight(np.ascontiguousarray(w), M)
        return bp

    def workspace(self, dtype):
        ws = self.workspaces.get(dtype)
        if ws is None:
            ws = self.workspaces[dtype] = packed_k.workspace(dtype)
        return ws

    def linear(self, out2, x2, weight, b, act_kind, act_slope):
        """out2 (M, N) = act(x2 (M, K) @ weight.T + b) from the packed weight and True
        (b: (N,) or None), or False (nothing written) when the product is not one to
        pack (``packed``)."""
        bp = self.packed(weight, x2.shape[0])
        if bp is None:
            return False
        w = weight.data
        ws = self.workspace(w.dtype)
        packed_k.gemm_packed(out2, x2, bp, ws[0], ws[1], get_threads(), w[0] if b is None else b, act_kind,
                             float(act_slope), b is not None)
        return True

    def feed_forward(self, out2, x2, h, w1, b1, act_kind, w2, b2, fn=None):
        """out2 = act(x2 @ w1.T + b1) @ w2.T + b2 through h, as two ``linear`` calls
        (the same bits) fused row tile by row tile (``ffn_packed``); returns the
        kernel's handle (``ffn_handle``; a caller calling again with arguments of the
        same types passes it back as ``fn``), or None (nothing written) unless both
        products are ones to pack."""
        M = x2.shape[0]
        bp1, bp2 = self.packed(w1, M), self.packed(w2, M)
        if bp1 is None or bp2 is None:
            return None
        ap, tmp = self.workspace(w1.data.dtype)
        bias1, bias2 = w1.data[0] if b1 is None else b1, w2.data[0] if b2 is None else b2
        if fn is None:
            fn = packed_k.ffn_handle(h, x2, bp1, ap, tmp, bias1, act_kind, 0.0, b1 is not None)
        packed_k.ffn_packed(out2, x2, h, bp1, bias1, act_kind, 0.0, b1 is not None, bp2, bias2, b2 is not None, ap, tmp,
                            get_threads(), fn)
        return fn
