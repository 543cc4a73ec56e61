"""Gradient utilities: ``clip_grad_norm_`` and flattening parameters to one vector."""
import math
import numbers

import numpy as np

from ..kernels.optim import sum_of_squares
from .module import Parameter


def _as_parameter_list(parameters, caller):
    if isinstance(parameters, Parameter):
        return [parameters]
    try:
        params = list(parameters)
    except TypeError:
        raise TypeError(f"{caller}: expected a Parameter or an iterable of Parameters, "
                        f"got {type(parameters).__name__}") from None
    for p in params:
        if not isinstance(p, Parameter):
            raise TypeError(f"{caller}: expected Parameters, got {type(p).__name__}")
    return params


def _grad_power_sum(grad, norm_type):
    """sum(|grad| ** norm_type) as a Python float (max(|grad|) for the inf norm)."""
    if grad.size == 0:
        return 0.0
    if norm_type == math.inf:
        return float(np.max(np.abs(grad)))
    if norm_type == 2.0:
        if grad.dtype not in (np.float32, np.float64):
            grad = grad.astype(np.float64)
        out = np.zeros(1, dtype=np.float64)
        sum_of_squares(out, np.ascontiguousarray(grad).reshape(-1))
        return float(out[0])
    return float(np.sum(np.abs(grad.astype(np.float64)) ** norm_type))


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale gradients in place so that their joint norm is at most ``max_norm``.

    The norm is taken over all gradients together, as if they were concatenated
    into one vector. Like PyTorch, every gradient is multiplied by
    ``min(1, max_norm / (total_norm + 1e-6))``; parameters whose ``.grad`` is None are
    skipped. The sum of squares (``norm_type=2``) is computed in float64 by a
    deterministic kernel, so the result does not depend on the thread count.

    Args:
        parameters: a Parameter or an iterable of Parameters.
        max_norm (float): largest allowed norm of the gradients.
        norm_type (float): p of the p-norm, > 0; ``inf`` (or ``'inf'``) for the max norm.
        error_if_nonfinite (bool): raise ``RuntimeError`` if the total norm is nan or inf.

    Returns:
        float: the total norm of the gradients before clipping.

    Example:
        >>> model.backward(loss_fn.backward())
        >>> total = fastnn.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        >>> opt.step()
    """
    caller = "clip_grad_norm_"
    grads = [p.grad for p in _as_parameter_list(parameters, caller) if p.grad is not None]
    if isinstance(max_norm, bool) or not isinstance(max_norm, numbers.Real):
        raise TypeError(f"{caller}: max_norm must be a real number, got {max_norm!r}")
    try:
        norm_type = float(norm_type)
    except (TypeError, ValueError):
        raise TypeError(f"{caller}: norm_type must be a number or 'inf', got {norm_type!r}") from None
    if not norm_type > 0:
        raise ValueError(f"{caller}: norm_type must be > 0 or inf, got {norm_type!r}")
    for g in grads:
        if not isinstance(g, np.ndarray) or g.dtype.kind != "f":
            raise TypeError(f"{caller}: gradients must be float arrays, got {type(g).__name__}")
    if not grads:
        return 0.0
    sums = [_grad_power_sum(g, norm_type) for g in grads]
    if any(math.isnan(s) for s in sums):
        total_norm = math.nan
    elif norm_type == math.inf:
        total_norm = max(sums)
    else:
        total_norm = math.fsum(sums) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total_norm):
        raise RuntimeError(
            f"{caller}: the total norm of order {norm_type} of the gradients is non-finite, "
            "so it cannot be clipped; pass error_if_nonfinite=False to clip anyway"
        )
    clip_coef = float(max_norm) / (total_norm + 1e-6)
    if not clip_coef >= 1.0:  # also scales (to nan) when the norm is nan, like PyTorch
        for g in grads:
            np.multiply(g, g.dtype.type(clip_coef), out=g)
    return total_norm


def parameters_to_vector(parameters):
    """Concatenate the parameters' values into one new 1-D array (in iteration order)."""
    params = _as_parameter_list(parameters, "parameters_to_vector")
    if not params:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([p.data.reshape(-1) for p in params])


def vector_to_parameters(vec, parameters):
    """Copy consecutive slices of the 1-D array ``vec`` into the parameters' values."""
    params = _as_parameter_list(parameters, "vector_to_parameters")
    vec = np.asarray(vec)
    total = sum(p.data.size for p in params)
    if vec.ndim != 1 or vec.shape[0] != total:
        raise ValueError(f"vector_to_parameters: expected a 1-D array of {total} values, got shape {vec.shape}")
    start = 0
    for p in params:
        np.copyto(p.data, vec[start:start + p.data.size].reshape(p.data.shape), casting="unsafe")
        start += p.data.size
