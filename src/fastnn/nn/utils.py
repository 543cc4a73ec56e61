"""Gradient utilities (``torch.nn.utils``): ``clip_grad_norm_``, ``clip_grad_value_``
and flattening parameters to one vector and back."""
import math
import numbers

import numpy as np

from ..autograd.engine import attach, recording
from ..kernels.optim import sum_of_squares
from ..tensor import Tensor, _wrap

__all__ = ["clip_grad_norm_", "clip_grad_value_", "parameters_to_vector", "vector_to_parameters"]


def _as_tensor_list(parameters, caller):
    """A Tensor (Parameter) or an iterable of them, as a list; TypeError otherwise."""
    if isinstance(parameters, Tensor):
        return [parameters]
    try:
        params = list(parameters)
    except TypeError:
        raise TypeError(f"{caller}: expected a Parameter or an iterable of Parameters, "
                        f"got {type(parameters).__name__}") from None
    for p in params:
        if not isinstance(p, Tensor):
            raise TypeError(f"{caller}: expected Parameters (Tensors), got {type(p).__name__}")
    return params


def _gradients(parameters, caller):
    """The gradient arrays of the parameters whose ``.grad`` is not None."""
    grads = []
    for p in _as_tensor_list(parameters, caller):
        g = p.grad
        if g is None:
            continue
        if not isinstance(g, Tensor) or g.data.dtype.kind != "f":
            raise TypeError(f"{caller}: gradients must be float Tensors, got "
                            f"{type(g).__name__}{'' if not isinstance(g, Tensor) else ' of dtype ' + str(g.dtype)}")
        grads.append(g.data)
    return grads


def _grad_power_sum(grad, norm_type):
    """sum(|grad| ** norm_type) as a Python float (max(|grad|) for the inf norm)."""
    if grad.size == 0:
        return 0.0
    if norm_type == math.inf:
        return float(np.max(np.abs(grad)))
    if norm_type == 2.0:
        out = np.zeros(1, dtype=np.float64)
        sum_of_squares(out, np.ascontiguousarray(grad).reshape(-1))
        return float(out[0])
    return float(np.sum(np.abs(grad.astype(np.float64)) ** norm_type))


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Scale gradients in place so that their joint norm is at most ``max_norm``.

    The norm is taken over all gradients together, as if they were concatenated
    into one vector. Like PyTorch, every gradient is multiplied by
    ``min(1, max_norm / (total_norm + 1e-6))``; parameters whose ``.grad`` is None are
    skipped. The sum of squares (``norm_type=2``) is computed in float64 by a
    deterministic kernel, so the result does not depend on the thread count.

    Args:
        parameters: a Parameter or an iterable of Parameters (Tensors).
        max_norm (float): largest allowed norm of the gradients.
        norm_type (float): p of the p-norm, > 0; ``inf`` (or ``'inf'``) for the max norm.
        error_if_nonfinite (bool): raise ``RuntimeError`` if the total norm is nan or inf.
        foreach: accepted for PyTorch compatibility; ignored.

    Returns:
        Tensor: the total norm of the gradients before clipping (0-d, the gradients'
        dtype; the default dtype when no parameter has a gradient).

    Example:
        >>> loss.backward()
        >>> total = fastnn.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        >>> opt.step()
    """
    caller = "clip_grad_norm_"
    grads = _gradients(parameters, caller)
    if isinstance(max_norm, bool) or not isinstance(max_norm, numbers.Real):
        if not (isinstance(max_norm, Tensor) and max_norm.data.size == 1):
            raise TypeError(f"{caller}: max_norm must be a real number, got {max_norm!r}")
        max_norm = max_norm.item()
    try:
        norm_type = float(norm_type)
    except (TypeError, ValueError):
        raise TypeError(f"{caller}: norm_type must be a number or 'inf', got {norm_type!r}") from None
    if not norm_type > 0:
        raise ValueError(f"{caller}: norm_type must be > 0 or inf, got {norm_type!r}")
    if not grads:
        from .._config import get_default_dtype

        return _wrap(np.zeros((), get_default_dtype()))
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
    return _wrap(np.array(total_norm, dtype=np.result_type(*grads)))


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamp every gradient in place to ``[-clip_value, clip_value]``.

    Args:
        parameters: a Parameter or an iterable of Parameters (Tensors); those whose
            ``.grad`` is None are skipped.
        clip_value (float): the largest allowed magnitude (>= 0).
        foreach: accepted for PyTorch compatibility; ignored.

    Example:
        >>> loss.backward()
        >>> fastnn.nn.utils.clip_grad_value_(model.parameters(), 0.5)
    """
    caller = "clip_grad_value_"
    grads = _gradients(parameters, caller)
    if isinstance(clip_value, Tensor) and clip_value.data.size == 1:
        clip_value = clip_value.item()
    if isinstance(clip_value, bool) or not isinstance(clip_value, numbers.Real):
        raise TypeError(f"{caller}: clip_value must be a real number, got {clip_value!r}")
    clip_value = float(clip_value)
    if clip_value < 0:
        raise ValueError(f"{caller}: clip_value must be >= 0, got {clip_value!r}")
    for g in grads:
        bound = g.dtype.type(clip_value)
        np.clip(g, -bound, bound, out=g)


def parameters_to_vector(parameters):
    """The parameters' values concatenated into one new 1-D Tensor (iteration order).

    Differentiable like PyTorch's: a loss computed from the vector backpropagates
    into the parameters' ``.grad``.

    Example:
        >>> vec = fastnn.nn.utils.parameters_to_vector(model.parameters())
    """
    params = _as_tensor_list(parameters, "parameters_to_vector")
    if not params:
        from .._config import get_default_dtype

        return _wrap(np.zeros(0, dtype=get_default_dtype()))
    dtypes = {p.data.dtype for p in params}
    if len(dtypes) > 1:
        raise TypeError(f"parameters_to_vector: the parameters have several dtypes {sorted(map(str, dtypes))}")
    out = _wrap(np.concatenate([p.data.reshape(-1) for p in params]))
    if recording(*params):
        shapes = [p.data.shape for p in params]
        bounds = np.cumsum([0] + [p.data.size for p in params])

        def backward(g):  # out = cat(p.reshape(-1) for p in params)
            return tuple(g[lo:hi].reshape(shape) for lo, hi, shape in zip(bounds[:-1], bounds[1:], shapes))

        attach(out, backward, tuple(params), "CatBackward0")
    return out


def vector_to_parameters(vec, parameters):
    """Copy consecutive slices of the 1-D ``vec`` (a Tensor or array) into the
    parameters' values, in place.

    Example:
        >>> fastnn.nn.utils.vector_to_parameters(vec, model.parameters())
    """
    params = _as_tensor_list(parameters, "vector_to_parameters")
    if isinstance(vec, Tensor):
        vec = vec.data
    elif not isinstance(vec, np.ndarray):
        raise TypeError(f"vector_to_parameters: expected vec to be a Tensor or an array, got {type(vec).__name__}")
    total = sum(p.data.size for p in params)
    if vec.ndim != 1 or vec.shape[0] != total:
        raise ValueError(f"vector_to_parameters: expected a 1-D vector of {total} values, got shape {vec.shape}")
    start = 0
    for p in params:
        np.copyto(p.data, vec[start:start + p.data.size].reshape(p.data.shape), casting="unsafe")
        p._version += 1
        start += p.data.size
