"""Input checks shared by every layer: run once at the layer boundary, in Python,
before any kernel sees the data. Errors name the layer, what it expected and
what it got."""
import numpy as np

from .. import _config

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))  # what layers and kernels compute in


def float_dtype_for(x):
    """The float dtype a parameter-free layer computes in for input ``x``."""
    dt = np.asarray(x).dtype
    if dt in FLOAT_DTYPES:
        return dt.type
    return _config.get_default_dtype()


def as_float_array(x, layer, dtype, ndim=None, name="input", shape_hint=""):
    """Return ``x`` as a C-contiguous array of ``dtype``.

    Accepts any real number array (ints and other floats are converted); rejects
    complex, boolean, object and string data with ``TypeError`` and a wrong rank
    (``ndim`` an int or a tuple of allowed ranks) with ``ValueError``.
    """
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{layer}: {name} must be a numeric array, got {type(x).__name__}") from exc
    if x.dtype.kind not in "fiu":
        raise TypeError(f"{layer}: {name} must be a real float or integer array, got dtype {x.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            ranks = " or ".join(f"{r}-D" for r in allowed)
            raise ValueError(f"{layer}: expected {ranks} {name}{shape_hint}, got shape {x.shape}")
    if x.dtype != dtype or not x.flags.c_contiguous:
        x = np.ascontiguousarray(x, dtype=dtype)
    return x


def as_grad(grad_output, layer, expected_shape, dtype):
    """Check ``grad_output`` has the forward output's shape; return it contiguous."""
    g = as_float_array(grad_output, layer, dtype, name="grad_output")
    if g.shape != tuple(expected_shape):
        raise ValueError(f"{layer}.backward: expected grad_output of shape {tuple(expected_shape)}, got {g.shape}")
    return g


def as_index_array(x, layer, num_classes, name="target", ndim=None):
    """Integer class indices in ``[0, num_classes)`` as a contiguous int64 array."""
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        if x.dtype.kind == "f" and x.size and np.all(np.isfinite(x)) and np.all(x == np.round(x)):
            x = x.astype(np.int64)
        else:
            raise TypeError(f"{layer}: {name} must be an integer array of class indices, got dtype {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{layer}: expected {ndim}-D {name}, got shape {x.shape}")
    if x.size:
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"{layer}: {name} values must be in [0, {num_classes}), got range [{lo}, {hi}]")
    return np.ascontiguousarray(x, dtype=np.int64)


def check_positive_int(value, layer, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{layer}: {name} must be a positive int, got {value!r}")
    return int(value)
