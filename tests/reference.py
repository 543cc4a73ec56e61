"""Slow, obviously-correct NumPy references that the kernels are tested against.

Each function is written for clarity, never speed. Append new references at the
end; keep existing ones unchanged.
"""
import math

import numpy as np


# ----------------------------------------------------------------- dense layers
def linear(x, weight, bias=None):
    out = np.zeros((x.shape[0], weight.shape[0]), dtype=np.float64)
    for i in range(x.shape[0]):
        for j in range(weight.shape[0]):
            out[i, j] = sum(float(x[i, k]) * float(weight[j, k]) for k in range(x.shape[1]))
            if bias is not None:
                out[i, j] += bias[j]
    return out


def matmul(a, b):
    out = np.zeros((a.shape[0], b.shape[1]), dtype=np.float64)
    for i in range(a.shape[0]):
        for j in range(b.shape[1]):
            for k in range(a.shape[1]):
                out[i, j] += float(a[i, k]) * float(b[k, j])
    return out


# ----------------------------------------------------------------- activations
def relu(x):
    return np.where(x > 0, x, 0.0)


def leaky_relu(x, slope):
    return np.where(x > 0, x, slope * x)


def sigmoid(x):
    return np.array([1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))
                     for v in np.asarray(x, np.float64).ravel()]).reshape(np.shape(x))


def tanh(x):
    return np.array([math.tanh(v) for v in np.asarray(x, np.float64).ravel()]).reshape(np.shape(x))


def gelu(x):
    return np.array([0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0)))
                     for v in np.asarray(x, np.float64).ravel()]).reshape(np.shape(x))


def softmax(x, axis=-1):
    x = np.asarray(x, np.float64)
    shifted = x - x.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


# ----------------------------------------------------------------- losses
def mse(pred, target):
    d = np.asarray(pred, np.float64) - np.asarray(target, np.float64)
    return float(np.mean(d * d))


def cross_entropy(logits, target):
    total = 0.0
    for row, t in zip(np.asarray(logits, np.float64), target):
        m = row.max()
        total += math.log(sum(math.exp(v - m) for v in row)) + m - row[t]
    return total / len(target)


def bce_with_logits(x, t):
    x = np.asarray(x, np.float64).ravel()
    t = np.asarray(t, np.float64).ravel()
    return float(np.mean([-(ti * math.log(1 / (1 + math.exp(-xi))) + (1 - ti) * math.log(1 - 1 / (1 + math.exp(-xi))))
                          for xi, ti in zip(x, t)]))


# ----------------------------------------------------------------- recurrent layers
def recurrent(mode, x, layers, h0=None, c0=None):
    """PyTorch's documented RNN/LSTM/GRU equations, one sample and one step at a time.

    mode: 'rnn_tanh', 'rnn_relu', 'lstm' or 'gru'; x (T, N, F) time-major;
    layers: per layer (w_ih, w_hh, b_ih, b_hh), biases may be None;
    h0, c0: (L, N, H) or None. Returns (output (T, N, H), h_n, c_n or None).
    """
    x = np.asarray(x, np.float64)
    T, N = x.shape[:2]
    H = np.asarray(layers[0][1]).shape[1]
    L = len(layers)
    h = np.zeros((L, N, H)) if h0 is None else np.array(h0, np.float64)
    c = np.zeros((L, N, H)) if c0 is None else np.array(c0, np.float64)
    seq = x
    for k, (w_ih, w_hh, b_ih, b_hh) in enumerate(layers):
        w_ih, w_hh = np.asarray(w_ih, np.float64), np.asarray(w_hh, np.float64)
        b_ih = np.zeros(w_ih.shape[0]) if b_ih is None else np.asarray(b_ih, np.float64)
        b_hh = np.zeros(w_hh.shape[0]) if b_hh is None else np.asarray(b_hh, np.float64)
        out = np.zeros((T, N, H))
        for t in range(T):
            for n in range(N):
                xi = w_ih @ seq[t, n] + b_ih
                hh = w_hh @ h[k, n] + b_hh
                if mode == "rnn_tanh":
                    h[k, n] = tanh(xi + hh)
                elif mode == "rnn_relu":
                    h[k, n] = relu(xi + hh)
                elif mode == "lstm":
                    i = sigmoid(xi[:H] + hh[:H])
                    f = sigmoid(xi[H:2 * H] + hh[H:2 * H])
                    g = tanh(xi[2 * H:3 * H] + hh[2 * H:3 * H])
                    o = sigmoid(xi[3 * H:] + hh[3 * H:])
                    c[k, n] = f * c[k, n] + i * g
                    h[k, n] = o * tanh(c[k, n])
                elif mode == "gru":
                    r = sigmoid(xi[:H] + hh[:H])
                    z = sigmoid(xi[H:2 * H] + hh[H:2 * H])
                    nn = tanh(xi[2 * H:] + r * hh[2 * H:])
                    h[k, n] = (1 - z) * nn + z * h[k, n]
                else:
                    raise ValueError(mode)
                out[t, n] = h[k, n]
        seq = out
    return seq, h, (c if mode == "lstm" else None)


def embedding(indices, weight):
    """weight[indices], one row at a time."""
    idx = np.asarray(indices)
    out = np.zeros(idx.shape + (weight.shape[1],), np.float64)
    for pos in np.ndindex(idx.shape):
        out[pos] = weight[idx[pos]]
    return out


def embedding_grad(indices, grad_output, num_embeddings, padding_idx=None):
    """d weight: each index's output gradient added to its row (padding row left 0)."""
    idx = np.asarray(indices).ravel()
    g = np.asarray(grad_output, np.float64).reshape(idx.size, -1)
    dw = np.zeros((num_embeddings, g.shape[1]))
    for i, row in enumerate(idx):
        if row != padding_idx:
            dw[row] += g[i]
    return dw


# ----------------------------------------------------------------- convolution, pooling, batch norm
def conv2d(x, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """x (N, C, H, W), weight (OC, C/groups, KH, KW): PyTorch's cross-correlation."""
    N, C, H, W = x.shape
    OC, Cg, KH, KW = weight.shape
    (SH, SW), (PH, PW), (DH, DW) = stride, padding, dilation
    OH = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1
    OW = (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1
    padded = np.zeros((N, C, H + 2 * PH, W + 2 * PW))
    padded[:, :, PH:PH + H, PW:PW + W] = x
    out = np.zeros((N, OC, OH, OW))
    OCg = OC // groups
    for n in range(N):
        for oc in range(OC):
            g = oc // OCg
            for oh in range(OH):
                for ow in range(OW):
                    s = 0.0 if bias is None else float(bias[oc])
                    for cg in range(Cg):
                        for kh in range(KH):
                            for kw in range(KW):
                                s += float(weight[oc, cg, kh, kw]) * float(
                                    padded[n, g * Cg + cg, oh * SH + kh * DH, ow * SW + kw * DW])
                    out[n, oc, oh, ow] = s
    return out


def _pool_len(size, k, s, p, d, ceil_mode):
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def max_pool2d(x, kernel, stride, padding=(0, 0), dilation=(1, 1), ceil_mode=False):
    """Max over each window of x (N, C, H, W); positions outside the input are ignored."""
    N, C, H, W = x.shape
    OH = _pool_len(H, kernel[0], stride[0], padding[0], dilation[0], ceil_mode)
    OW = _pool_len(W, kernel[1], stride[1], padding[1], dilation[1], ceil_mode)
    out = np.zeros((N, C, OH, OW))
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    vals = [x[n, c, ih, iw]
                            for ih in (oh * stride[0] - padding[0] + kh * dilation[0] for kh in range(kernel[0]))
                            for iw in (ow * stride[1] - padding[1] + kw * dilation[1] for kw in range(kernel[1]))
                            if 0 <= ih < H and 0 <= iw < W]
                    out[n, c, oh, ow] = max(vals)
    return out


def avg_pool2d(x, kernel, stride, padding=(0, 0), ceil_mode=False, count_include_pad=True):
    """Mean over each window; with count_include_pad the divisor counts padding
    (but not the part of a ceil_mode window beyond the padding), as in PyTorch."""
    N, C, H, W = x.shape
    OH = _pool_len(H, kernel[0], stride[0], padding[0], 1, ceil_mode)
    OW = _pool_len(W, kernel[1], stride[1], padding[1], 1, ceil_mode)
    out = np.zeros((N, C, OH, OW))
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    h0, w0 = oh * stride[0] - padding[0], ow * stride[1] - padding[1]
                    h1, w1 = min(h0 + kernel[0], H + padding[0]), min(w0 + kernel[1], W + padding[1])
                    total, inside = 0.0, 0
                    for ih in range(max(h0, 0), min(h1, H)):
                        for iw in range(max(w0, 0), min(w1, W)):
                            total += x[n, c, ih, iw]
                            inside += 1
                    out[n, c, oh, ow] = total / ((h1 - h0) * (w1 - w0) if count_include_pad else inside)
    return out


def adaptive_avg_pool2d(x, output_size):
    """Output cell (i, j) averages rows floor(i*H/OH)..ceil((i+1)*H/OH)-1 (columns alike)."""
    N, C, H, W = x.shape
    OH, OW = output_size
    out = np.zeros((N, C, OH, OW))
    for i in range(OH):
        for j in range(OW):
            h0, h1 = (i * H) // OH, -((-(i + 1) * H) // OH)
            w0, w1 = (j * W) // OW, -((-(j + 1) * W) // OW)
            out[:, :, i, j] = np.asarray(x[:, :, h0:h1, w0:w1], np.float64).mean(axis=(2, 3))
    return out


def batch_norm(x, weight, bias, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """PyTorch's documented BatchNorm over all axes but 1. Returns (out, new running
    mean, new running var); in training the running variance gets the unbiased
    batch variance."""
    x = np.asarray(x, np.float64)
    axes = tuple(i for i in range(x.ndim) if i != 1)
    shape = [1] * x.ndim
    shape[1] = x.shape[1]
    if training:
        mean = x.mean(axis=axes)
        var = x.var(axis=axes)
        count = x.size // x.shape[1]
        new_mean = (1 - momentum) * running_mean + momentum * mean
        new_var = (1 - momentum) * running_var + momentum * var * count / (count - 1)
    else:
        mean, var = np.asarray(running_mean, np.float64), np.asarray(running_var, np.float64)
        new_mean, new_var = running_mean, running_var
    out = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    if weight is not None:
        out = out * np.reshape(weight, shape) + np.reshape(bias, shape)
    return out, new_mean, new_var


# ----------------------------------------------------------------- softmax family
def log_softmax(x, axis=-1):
    x = np.asarray(x, np.float64)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax_grad(y, g, log=False):
    """dL/dx of y = softmax(x) (or log_softmax if ``log``) over the last axis, by the
    explicit Jacobian of each row: J[i, j] = s_i (delta_ij - s_j), s = softmax(x)."""
    y = np.asarray(y, np.float64)
    g = np.asarray(g, np.float64)
    s = np.exp(y) if log else y
    rows_y, rows_g, rows_s = y.reshape(-1, y.shape[-1]), g.reshape(-1, y.shape[-1]), s.reshape(-1, y.shape[-1])
    dx = np.zeros_like(rows_y)
    for r in range(rows_y.shape[0]):
        if log:  # d log s_i / d x_j = delta_ij - s_j
            jac = np.eye(rows_s.shape[1]) - rows_s[r][None, :]
        else:
            jac = np.diag(rows_s[r]) - np.outer(rows_s[r], rows_s[r])
        dx[r] = rows_g[r] @ jac
    return dx.reshape(y.shape)


# ------------------------------------------------- layer, group and instance norm
def row_norm(x, rows, eps=1e-5):
    """x viewed as ``rows`` rows, each as (x - mean) / sqrt(var + eps) (biased var),
    float64, by two plain passes. Returns (xhat of x's shape, mean (rows,), rstd (rows,))."""
    x2 = np.asarray(x, np.float64).reshape(rows, -1)
    mean = x2.mean(axis=1)
    var = ((x2 - mean[:, None]) ** 2).mean(axis=1)
    rstd = 1.0 / np.sqrt(var + eps)
    return ((x2 - mean[:, None]) * rstd[:, None]).reshape(np.shape(x)), mean, rstd


def row_norm_grad(x, dxhat, rows, eps=1e-5):
    """dL/dx of xhat = row_norm(x) from dL/dxhat, by each row's explicit Jacobian
    J = rstd * (I - 1/L) - rstd^3 / L * outer(x - mean, x - mean) (symmetric)."""
    x2 = np.asarray(x, np.float64).reshape(rows, -1)
    g2 = np.asarray(dxhat, np.float64).reshape(rows, -1)
    L = x2.shape[1]
    dx = np.empty_like(x2)
    for r in range(rows):
        d = x2[r] - x2[r].mean()
        rstd = 1.0 / np.sqrt((d * d).mean() + eps)
        jac = rstd * (np.eye(L) - 1.0 / L) - rstd ** 3 / L * np.outer(d, d)
        dx[r] = jac @ g2[r]
    return dx.reshape(np.shape(x))


def _channel_view(a, C, ndim):
    return np.reshape(a, (1, C) + (1,) * (ndim - 2))


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """PyTorch's layer_norm: normalise over the trailing ``normalized_shape`` dims."""
    x = np.asarray(x, np.float64)
    rows = x.size // int(np.prod(normalized_shape))
    out = row_norm(x, rows, eps)[0]
    if weight is not None:
        out = out * weight
    return out if bias is None else out + bias


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    """PyTorch's group_norm on (N, C, *): each (sample, group of C / G channels) alone."""
    x = np.asarray(x, np.float64)
    out = row_norm(x, x.shape[0] * num_groups, eps)[0]
    if weight is not None:
        out = out * _channel_view(weight, x.shape[1], x.ndim)
    return out if bias is None else out + _channel_view(bias, x.shape[1], x.ndim)


def norm_backward(x, g, rows, channel_of, weight=None, eps=1e-5):
    """(dx, dweight, dbias) of out = row_norm(x) * w + b with w, b indexed by
    ``channel_of`` (an int array of x's shape: the parameter index of each element)."""
    x = np.asarray(x, np.float64)
    g = np.asarray(g, np.float64)
    w = np.ones(channel_of.max() + 1) if weight is None else np.asarray(weight, np.float64).reshape(-1)
    xhat = row_norm(x, rows, eps)[0]
    dx = row_norm_grad(x, g * w[channel_of], rows, eps)
    dweight = np.bincount(channel_of.reshape(-1), (g * xhat).reshape(-1), minlength=w.size)
    dbias = np.bincount(channel_of.reshape(-1), g.reshape(-1), minlength=w.size)
    return dx, dweight, dbias
