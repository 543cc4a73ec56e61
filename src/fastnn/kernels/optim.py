"""Fused in-place optimizer updates and a deterministic sum of squares.

Every kernel works on flat, C-contiguous 1-D views (``p.data.reshape(-1)``) and is
generic over float32/float64. Float scalars arrive already cast to the arrays'
dtype (``np.float32(lr)`` for float32 parameters), so the arithmetic stays in that
dtype, as in PyTorch. Each element is independent: a ``prange`` iteration reads and
writes only its own element. Below ``SERIAL_BELOW`` elements a plain ``range`` loop
runs instead, because a parallel launch costs more than the work.

Buffers a configuration does not use (no momentum, not centered) may be passed as
zero-length arrays: the kernels never index them then.
"""
import numpy as np
from numba import prange

from ._jit import BLOCK, SERIAL_BELOW, inline, kernel, linked_kernel, unfused

# clip_grad_norm_ sums squares in this many chunks, whatever the thread count, so
# the rounding (and the result) is the same on 1 thread and on N.
SUM_CHUNKS = 64


@inline
def _lerp(start, end, weight, one_minus_weight):
    """PyTorch's ``lerp``: start + weight*(end-start), or the mirrored form for weight >= 0.5."""
    if weight < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * one_minus_weight


@inline
def _sgd_element(param, momentum_buffer, grad, i, lr, momentum, one_minus_dampening,
                 weight_decay, use_momentum, nesterov, first_step):
    d_p = grad[i]
    if weight_decay != 0:
        d_p = d_p + weight_decay * param[i]
    if use_momentum:
        if first_step:
            buf = d_p
        else:
            buf = momentum_buffer[i] * momentum + one_minus_dampening * d_p
        momentum_buffer[i] = buf
        if nesterov:
            d_p = d_p + momentum * buf
        else:
            d_p = buf
    param[i] = param[i] - lr * d_p


@linked_kernel
def _sgd_views(param, momentum_buffer, grad, lr, momentum, one_minus_dampening,
               weight_decay, use_momentum, nesterov, first_step):
    for i in range(param.shape[0]):  # from 0 over views: vectorises
        _sgd_element(param, momentum_buffer, grad, i, lr, momentum, one_minus_dampening,
                     weight_decay, use_momentum, nesterov, first_step)


@kernel
def sgd_update(param, momentum_buffer, grad, lr, momentum, one_minus_dampening,
               weight_decay, use_momentum, nesterov, first_step):
    """SGD step (PyTorch): d = g + wd*p; buf = d on the first step, else
    momentum*buf + (1-dampening)*d; d = d + momentum*buf (nesterov) or buf;
    p -= lr*d. Overwrites ``param`` and (with ``use_momentum``) ``momentum_buffer``;
    reads ``grad``. All arrays (n,); parallel over elements.
    """
    n = param.shape[0]
    if n < SERIAL_BELOW:
        _sgd_views(param, momentum_buffer, grad, lr, momentum, one_minus_dampening,
                   weight_decay, use_momentum, nesterov, first_step)
    else:
        for blk in prange((n + BLOCK - 1) // BLOCK):  # fixed blocks: see _jit.BLOCK
            lo, hi = blk * BLOCK, min(n, (blk + 1) * BLOCK)
            _sgd_views(param[lo:hi], momentum_buffer[lo:hi], grad[lo:hi], lr, momentum,
                       one_minus_dampening, weight_decay, use_momentum, nesterov, first_step)


@inline
def _adam_element(param, exp_avg, exp_avg_sq, max_exp_avg_sq, grad, i, step_size, beta1,
                  one_minus_beta1, beta2, one_minus_beta2, bias_correction2_sqrt, eps,
                  weight_decay, decay, decoupled, amsgrad):
    g = grad[i]
    p = param[i]
    if weight_decay != 0:
        if decoupled:
            p = p * decay
        else:
            g = g + weight_decay * p
    m = _lerp(exp_avg[i], g, one_minus_beta1, beta1)
    v = exp_avg_sq[i] * beta2 + one_minus_beta2 * g * g
    exp_avg[i] = m
    exp_avg_sq[i] = v
    if amsgrad:  # normalise by the largest second moment so far (torch.maximum: NaN wins)
        v = np.maximum(max_exp_avg_sq[i], v)
        max_exp_avg_sq[i] = v
    denom = np.sqrt(v) / bias_correction2_sqrt + eps
    param[i] = p - step_size * (m / denom)


@linked_kernel
def _adam_views(param, exp_avg, exp_avg_sq, max_exp_avg_sq, grad, step_size, beta1,
                one_minus_beta1, beta2, one_minus_beta2, bias_correction2_sqrt, eps,
                weight_decay, decay, decoupled, amsgrad):
    for i in range(param.shape[0]):  # from 0 over views: vectorises
        _adam_element(param, exp_avg, exp_avg_sq, max_exp_avg_sq, grad, i, step_size, beta1,
                      one_minus_beta1, beta2, one_minus_beta2, bias_correction2_sqrt, eps,
                      weight_decay, decay, decoupled, amsgrad)


@kernel
def adam_update(param, exp_avg, exp_avg_sq, max_exp_avg_sq, grad, step_size, beta1,
                one_minus_beta1, beta2, one_minus_beta2, bias_correction2_sqrt, eps,
                weight_decay, decay, decoupled, amsgrad):
    """Adam/AdamW step (PyTorch): p *= decay (=1-lr*wd, AdamW) or g += wd*p (Adam);
    m = lerp(m, g, 1-beta1); v = beta2*v + (1-beta2)*g*g; amsgrad: vmax = max(vmax, v)
    and v = vmax below; p -= step_size * m / (sqrt(v)/sqrt(1-beta2^t) + eps),
    step_size = lr/(1-beta1^t). Overwrites ``param``, ``exp_avg``, ``exp_avg_sq`` and
    (``amsgrad``) ``max_exp_avg_sq`` (else it may be zero-length); reads ``grad``.
    Arrays (n,).
    """
    n = param.shape[0]
    if n < SERIAL_BELOW:
        _adam_views(param, exp_avg, exp_avg_sq, max_exp_avg_sq, grad, step_size, beta1,
                    one_minus_beta1, beta2, one_minus_beta2, bias_correction2_sqrt, eps,
                    weight_decay, decay, decoupled, amsgrad)
    else:
        for blk in prange((n + BLOCK - 1) // BLOCK):  # fixed blocks: see _jit.BLOCK
            lo, hi = blk * BLOCK, min(n, (blk + 1) * BLOCK)
            _adam_views(param[lo:hi], exp_avg[lo:hi], exp_avg_sq[lo:hi], max_exp_avg_sq[lo:hi], grad[lo:hi],
                        step_size, beta1, one_minus_beta1, beta2, one_minus_beta2,
                        bias_correction2_sqrt, eps, weight_decay, decay, decoupled, amsgrad)


@unfused
def _centered_square(square_avg, grad_avg):
    # square_avg - grad_avg**2, product rounded first (PyTorch's addcmul(value=-1))
    return square_avg - grad_avg * grad_avg


@inline
def _rmsprop_element(param, square_avg, grad_avg, momentum_buffer, grad, i, lr, alpha,
                     one_minus_alpha, eps, weight_decay, momentum, centered, use_momentum):
    g = grad[i]
    if weight_decay != 0:
        g = g + weight_decay * param[i]
    sq = square_avg[i] * alpha + one_minus_alpha * g * g
    square_avg[i] = sq
    if centered:
        ga = _lerp(grad_avg[i], g, one_minus_alpha, alpha)
        grad_avg[i] = ga
        avg = np.sqrt(_centered_square(sq, ga)) + eps
    else:
        avg = np.sqrt(sq) + eps
    if use_momentum:
        buf = momentum_buffer[i] * momentum + g / avg
        momentum_buffer[i] = buf
        param[i] = param[i] - lr * buf
    else:
        param[i] = param[i] - lr * (g / avg)


@linked_kernel
def _rmsprop_views(param, square_avg, grad_avg, momentum_buffer, grad, lr, alpha,
                   one_minus_alpha, eps, weight_decay, momentum, centered, use_momentum):
    for i in range(param.shape[0]):  # from 0 over views: vectorises
        _rmsprop_element(param, square_avg, grad_avg, momentum_buffer, grad, i, lr, alpha,
                         one_minus_alpha, eps, weight_decay, momentum, centered, use_momentum)


@kernel
def rmsprop_update(param, square_avg, grad_avg, momentum_buffer, grad, lr, alpha,
                   one_minus_alpha, eps, weight_decay, momentum, centered, use_momentum):
    """RMSprop step (PyTorch): g += wd*p; s = alpha*s + (1-alpha)*g*g;
    centered: a = lerp(a, g, 1-alpha), avg = sqrt(s - a*a) + eps, else sqrt(s) + eps;
    momentum: buf = momentum*buf + g/avg, p -= lr*buf; else p -= lr*g/avg.
    Overwrites ``param``, ``square_avg`` and the used ones of ``grad_avg``,
    ``momentum_buffer``; reads ``grad``. Arrays (n,); parallel over elements.
    """
    n = param.shape[0]
    if n < SERIAL_BELOW:
        _rmsprop_views(param, square_avg, grad_avg, momentum_buffer, grad, lr, alpha,
                       one_minus_alpha, eps, weight_decay, momentum, centered, use_momentum)
    else:
        for blk in prange((n + BLOCK - 1) // BLOCK):  # fixed blocks: see _jit.BLOCK
            lo, hi = blk * BLOCK, min(n, (blk + 1) * BLOCK)
            _rmsprop_views(param[lo:hi], square_avg[lo:hi], grad_avg[lo:hi], momentum_buffer[lo:hi],
                           grad[lo:hi], lr, alpha, one_minus_alpha, eps, weight_decay, momentum, centered,
                           use_momentum)


@inline
def _chunk_sum_of_squares(partials, x, c, chunk):
    start = c * chunk
    stop = min(start + chunk, x.shape[0])
    total = 0.0
    xs = x[start:stop]
    for j in range(xs.shape[0]):  # from 0 over a view: vectorises
        v = np.float64(xs[j])
        total += v * v
    partials[c] = total


@kernel
def sum_of_squares(out, x):
    """out[0] = sum(x**2) accumulated in float64 (overwritten); x (n,).
    ``SUM_CHUNKS`` fixed chunks of x are summed into partials (in parallel when large),
    then merged serially, so the result does not depend on the thread count.
    """
    n = x.shape[0]
    chunk = (n + SUM_CHUNKS - 1) // SUM_CHUNKS
    partials = np.empty(SUM_CHUNKS, dtype=np.float64)
    if n < SERIAL_BELOW:
        for c in range(SUM_CHUNKS):
            _chunk_sum_of_squares(partials, x, c, chunk)
    else:
        for c in prange(SUM_CHUNKS):
            _chunk_sum_of_squares(partials, x, c, chunk)
    total = 0.0
    for c in range(SUM_CHUNKS):
        total += partials[c]
    out[0] = total


@linked_kernel
def _adagrad_views(param, state_sum, grad, clr, eps, weight_decay):
    for i in range(param.shape[0]):  # from 0 over views: vectorises
        g = grad[i]
        if weight_decay != 0:
            g = g + weight_decay * param[i]
        s = state_sum[i] + g * g
        state_sum[i] = s
        param[i] = param[i] - clr * (g / (np.sqrt(s) + eps))


@kernel
def adagrad_update(param, state_sum, grad, clr, eps, weight_decay):
    """Adagrad step (PyTorch): g += wd*p; sum += g*g; p -= clr * g / (sqrt(sum) + eps),
    clr = lr / (1 + (t-1)*lr_decay). Overwrites ``param`` and ``state_sum``; reads
    ``grad``. Arrays (n,); parallel over elements.
    """
    n = param.shape[0]
    if n < SERIAL_BELOW:
        _adagrad_views(param, state_sum, grad, clr, eps, weight_decay)
    else:
        for blk in prange((n + BLOCK - 1) // BLOCK):  # fixed blocks: see _jit.BLOCK
            lo, hi = blk * BLOCK, min(n, (blk + 1) * BLOCK)
            _adagrad_views(param[lo:hi], state_sum[lo:hi], grad[lo:hi], clr, eps, weight_decay)
