"""Loss kernels: per-chunk or per-row partial results, reduced in a fixed order
by the caller, so a loss value never depends on the thread count."""
import math

from numba import prange

from ._jit import BLOCK, kernel
from .activations import softmax_row
from .elementwise import CHUNK


@kernel
def mse_forward(partials, pred, target):
    """partials[c] = sum over chunk c of (pred - target)^2 (overwrites). Flat inputs."""
    n = pred.shape[0]
    for c in prange(partials.shape[0]):
        s = pred.dtype.type(0)
        p, t = pred[c * CHUNK:min((c + 1) * CHUNK, n)], target[c * CHUNK:min((c + 1) * CHUNK, n)]
        for i in range(p.shape[0]):  # from 0 over views: vectorises
            d = p[i] - t[i]
            s += d * d
        partials[c] = s


@kernel
def mse_backward(dpred, pred, target, scale):
    """dpred = scale * (pred - target), scale = 2 / n (overwrites). Flat."""
    n = pred.shape[0]
    for blk in prange((n + BLOCK - 1) // BLOCK):  # fixed blocks: see _jit.BLOCK
        lo, hi = blk * BLOCK, min(n, (blk + 1) * BLOCK)
        d, p, t = dpred[lo:hi], pred[lo:hi], target[lo:hi]  # views indexed from 0 vectorise
        for i in range(hi - lo):
            d[i] = scale * (p[i] - t[i])


@kernel
def cross_entropy_forward(losses, probs, logits, targets):
    """Fused log-softmax + NLL per row, stable log-sum-exp.

    losses[r] = logsumexp(logits[r]) - logits[r, t_r]; probs[r] = softmax(logits[r]),
    kept for backward (both overwritten). logits (N, C), targets (N,) int64.
    """
    for r in prange(logits.shape[0]):
        losses[r] = softmax_row(probs[r], logits[r]) - logits[r, targets[r]]


@kernel
def cross_entropy_backward(dlogits, probs, targets, scale):
    """dlogits[r] = scale * (probs[r] - onehot(t_r)), scale = 1/N (overwrites)."""
    N, C = probs.shape
    for r in prange(N):
        for c in range(C):
            dlogits[r, c] = scale * probs[r, c]
        dlogits[r, targets[r]] -= scale


@kernel
def bce_logits_forward(partials, x, target):
    """partials[c] = sum over chunk c of max(x,0) - x*t + log1p(exp(-|x|))."""
    n = x.shape[0]
    for c in prange(partials.shape[0]):
        s = x.dtype.type(0)
        xs, t = x[c * CHUNK:min((c + 1) * CHUNK, n)], target[c * CHUNK:min((c + 1) * CHUNK, n)]
        for i in range(xs.shape[0]):  # from 0 over views: vectorises
            v = xs[i]
            s += max(v, v * 0) - v * t[i] + math.log1p(math.exp(-abs(v)))
        partials[c] = s


@kernel
def bce_logits_backward(dx, x, target, scale):
    """dx = scale * (sigmoid(x) - t), scale = 1/n (overwrites). Flat."""
    n = x.shape[0]
    for blk in prange((n + BLOCK - 1) // BLOCK):  # fixed blocks: see _jit.BLOCK
        lo, hi = blk * BLOCK, min(n, (blk + 1) * BLOCK)
        d, xs, t = dx[lo:hi], x[lo:hi], target[lo:hi]  # views indexed from 0 vectorise
        for i in range(hi - lo):
            v = xs[i]
            if v >= 0:
                sig = 1 / (1 + math.exp(-v))
            else:
                e = math.exp(v)
                sig = e / (1 + e)
            d[i] = scale * (sig - t[i])
