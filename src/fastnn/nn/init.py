"""Weight initialisation, PyTorch's formulas (``torch.nn.init``).

Each function fills a Tensor or ``Parameter`` (or a NumPy array) in place, outside
autograd (as under ``no_grad``), and returns it; the randomness comes from
``generator`` (a ``numpy.random.Generator`` or an int seed) or fastnn's default
generator (``fastnn.manual_seed``).

Example:
    >>> from fastnn.nn import init
    >>> init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    >>> init.zeros_(conv.bias)
"""
import math
import numbers

import numpy as np

from .. import random as _random
from ..tensor import Tensor

__all__ = ["calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "zeros_", "ones_", "eye_",
           "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
           "default_weight_and_bias_"]


def _array(tensor):
    """The ndarray a Tensor/Parameter holds (or the array itself)."""
    if isinstance(tensor, Tensor):
        return tensor.data
    if isinstance(tensor, np.ndarray):
        return tensor
    raise TypeError(f"init: expected a Tensor, Parameter or ndarray, got {type(tensor).__name__}")


def _calculate_fan_in_and_fan_out(tensor):
    """``(fan_in, fan_out)`` of a weight: dims 1 and 0 times the receptive field."""
    array = _array(tensor)
    if array.ndim < 2:
        raise ValueError(f"init: fan in and fan out can not be computed for a tensor with fewer than 2 "
                         f"dimensions, got shape {array.shape}")
    receptive = int(np.prod(array.shape[2:])) if array.ndim > 2 else 1
    return array.shape[1] * receptive, array.shape[0] * receptive


_fans = _calculate_fan_in_and_fan_out


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for ``nonlinearity`` (PyTorch's table)."""
    linear_fns = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                  "conv_transpose3d", "sigmoid", "identity")
    if nonlinearity in linear_fns:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, bool) or not isinstance(param, numbers.Real):
            raise ValueError(f"init: negative_slope {param!r} is not a valid number")
        else:
            slope = float(param)
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"init: unsupported nonlinearity {nonlinearity!r}")


def _fill(tensor, values):
    """Write ``values`` into ``tensor`` in place (no autograd record; bumps its version)."""
    target = _array(tensor)
    target[...] = values
    if isinstance(tensor, Tensor):
        tensor._version += 1
    return tensor


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """Fill with values drawn from U(a, b)."""
    arr = _array(tensor)
    return _fill(tensor, _random.resolve(generator).uniform(a, b, size=arr.shape))


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    """Fill with values drawn from N(mean, std^2)."""
    arr = _array(tensor)
    return _fill(tensor, _random.resolve(generator).normal(mean, std, size=arr.shape))


def _normal_quantile(p):
    """Inverse of the standard normal CDF for p in (0, 1) (Acklam's rational
    approximation, relative error below 1.2e-9)."""
    a = (-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02,
         -3.066479806614716e+01, 2.506628277459239e+00)
    b = (-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01,
         -1.328068155288572e+01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00,
         4.374664141464968e+00, 2.938163982698783e+00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00)
    p = np.clip(p, np.finfo(np.float64).tiny, 1 - np.finfo(np.float64).eps / 2)
    tail = np.minimum(p, 1 - p)
    q = np.sqrt(-2 * np.log(tail))
    x_tail = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / \
             ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    x_tail = np.where(p < 0.5, x_tail, -x_tail)
    r = (p - 0.5) ** 2
    x_mid = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * (p - 0.5) / \
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    return np.where(tail < 0.02425, x_tail, x_mid)


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
    """Fill with values from N(mean, std^2) truncated to ``[a, b]`` (inverse-CDF
    sampling, exact also far in the tails)."""
    arr = _array(tensor)
    if not std > 0 or not a < b:
        raise ValueError(f"trunc_normal_: expected std > 0 and a < b, got std={std!r}, a={a!r}, b={b!r}")
    lo, hi = (a - mean) / std, (b - mean) / std
    flip = lo > 0  # sample the lower tail, where the CDF keeps its precision, and mirror
    if flip:
        lo, hi = -hi, -lo
    cdf_lo, cdf_hi = (0.5 * math.erfc(-v / math.sqrt(2.0)) for v in (lo, hi))
    u = _random.resolve(generator).uniform(cdf_lo, cdf_hi, size=arr.shape)
    z = np.clip(_normal_quantile(u), lo, hi)
    if flip:
        z = -z
    return _fill(tensor, np.clip(mean + std * z, a, b))


def zeros_(tensor):
    return _fill(tensor, 0)


def ones_(tensor):
    return _fill(tensor, 1)


def constant_(tensor, val):
    return _fill(tensor, val)


def eye_(tensor):
    """Fill a 2-D tensor with the identity matrix (ones on the main diagonal)."""
    arr = _array(tensor)
    if arr.ndim != 2:
        raise ValueError(f"eye_: only 2-D tensors are supported, got shape {arr.shape}")
    return _fill(tensor, np.eye(*arr.shape))


def dirac_(tensor, groups=1):
    """Fill a 3-, 4- or 5-D convolution weight with the Dirac delta: the convolution
    then preserves the identity of its inputs (of each group's first channels)."""
    arr = _array(tensor)
    if arr.ndim not in (3, 4, 5):
        raise ValueError(f"dirac_: only 3-, 4- and 5-D tensors are supported, got shape {arr.shape}")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or arr.shape[0] % groups:
        raise ValueError(f"dirac_: dim 0 ({arr.shape[0]}) must be divisible by groups ({groups!r})")
    out_per_group = arr.shape[0] // groups
    values = np.zeros(arr.shape)
    centre = tuple(s // 2 for s in arr.shape[2:])
    for g in range(groups):  # one slice assignment per group
        d = np.arange(min(out_per_group, arr.shape[1]))
        values[(g * out_per_group + d, d) + centre] = 1
    return _fill(tensor, values)


def xavier_uniform_(tensor, gain=1.0, generator=None):
    fan_in, fan_out = _fans(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    fan_in, fan_out = _fans(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def _kaiming_std(tensor, a, mode, nonlinearity):
    fan_in, fan_out = _fans(tensor)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"init: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity), generator)


def orthogonal_(tensor, gain=1.0, generator=None):
    """Fill with a (semi-)orthogonal matrix from the QR decomposition of a Gaussian
    one, times ``gain``; dims after the first are flattened (at least 2-D)."""
    arr = _array(tensor)
    if arr.ndim < 2:
        raise ValueError(f"orthogonal_: only tensors with 2 or more dimensions are supported, got shape {arr.shape}")
    if arr.size == 0:
        return tensor
    rows = arr.shape[0]
    cols = arr.size // rows
    flat = _random.resolve(generator).standard_normal((rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q = q * np.sign(np.diag(r))  # a uniform distribution over orthogonal matrices
    if rows < cols:
        q = q.T
    return _fill(tensor, (gain * q).reshape(arr.shape))


def default_weight_and_bias_(weight, bias, generator=None):
    """PyTorch's default for Linear/Conv: kaiming_uniform_(a=sqrt(5)) on the weight,
    uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) on the bias."""
    kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
    if bias is not None:
        fan_in, _ = _fans(weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        uniform_(bias, -bound, bound, generator)
