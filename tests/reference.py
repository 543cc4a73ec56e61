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
