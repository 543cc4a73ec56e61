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
        self.packed = {}  # id(weight) -> packed weight.T
        self.workspaces = {}  # dtype -> (room for rows of x per thread, edge tiles)

    def linear(self, out2, x2, weight, b, act_kind, act_slope):
        """out2 (M, N) = act(x2 (M, K) @ weight.T + b) from the packed weight and True
        (b: (N,) or None), or False (nothing written) when the product is not one to
        pack: a weight not of the model, or a product small enough that ``matmul`` runs
        it unpacked."""
        w = weight.data
        M, (N, K) = x2.shape[0], w.shape
        key = id(weight)
        if key not in self.allowed or M * N * K < GEMV_SPLIT_FLOPS or not packed_k.packs(M, N, K, w.dtype):
            return False
        bp = self.packed.get(key)
        if bp is None:
            bp = self.packed[key] = packed_k.pack_weight(np.ascontiguousarray(w), M)
        ws = self.workspaces.get(w.dtype)
        if ws is None:
            ws = self.workspaces[w.dtype] = packed_k.workspace(w.dtype)
        packed_k.gemm_packed(out2, x2, bp, ws[0], ws[1], get_threads(), w[0] if b is None else b, act_kind,
                             float(act_slope), b is not None)
        return True
