"""softmax and log_softmax along any dim, on the row kernels of ``kernels.softmax``.

The dim is moved last and the data viewed as rows (R, C) (a copy only when the
dim is not already last and contiguous); the kernels run over rows, forward and
backward, and the result is moved back (a view)."""
import warnings

import numpy as np

from ..kernels import softmax as softmax_k
from ._util import _wrap, attach, check_dim, float_tensor, recording

__all__ = ["softmax", "log_softmax"]


def implicit_dim(ndim, op):
    """PyTorch's legacy choice when no dim is given: 0 for 0-, 1- and 3-D inputs, else 1."""
    warnings.warn(f"Implicit dimension choice for {op} has been deprecated. Change the call to include dim=X "
                  "as an argument.", UserWarning, stacklevel=4)
    return 0 if ndim in (0, 1, 3) else 1


def _to_rows(a, d):
    """``a`` with axis ``d`` moved last, C-contiguous, as (R, C) rows; and that moved shape."""
    if d != a.ndim - 1:
        order = [i for i in range(a.ndim) if i != d] + [d]
        a = a.transpose(order)
    return np.ascontiguousarray(a).reshape(-1, a.shape[-1]), a.shape


def _from_rows(rows, moved_shape, d, shape):
    """The inverse of ``_to_rows``: (R, C) rows back in ``shape`` (a view when possible)."""
    a = rows.reshape(moved_shape)
    if d != a.ndim - 1:
        order = list(range(a.ndim - 1))
        order.insert(d, a.ndim - 1)
        a = a.transpose(order)
    return a.reshape(shape)


def _softmax(input, dim, dtype, log, op):
    x = float_tensor(input, op)
    xd = x.data
    if dim is None:
        dim = implicit_dim(xd.ndim, op)
    d = check_dim(dim, xd.ndim, op)
    src = xd if dtype is None else xd.astype(dtype)
    if src.dtype.kind != "f":
        raise TypeError(f"{op}: dtype must be a float dtype, got {src.dtype}")
    if src.size == 0:
        return _attach_empty(_wrap(np.empty(src.shape, src.dtype)), x, op)
    src = src if src.ndim else src.reshape(1)
    rows, moved_shape = _to_rows(src, d)
    y = np.empty(rows.shape, rows.dtype)
    softmax_k.softmax_rows_forward(y, rows, log)
    out = _wrap(_from_rows(y, moved_shape, d, xd.shape))
    if recording(x):
        def backward(g):
            # softmax: dx = y * (g - <g, y>); log_softmax: dx = g - exp(y) * sum(g)
            g_rows, _ = _to_rows(np.asarray(g, y.dtype).reshape(src.shape), d)
            dx = np.empty(y.shape, y.dtype)
            softmax_k.softmax_rows_backward(dx, g_rows, y, log)
            return (_from_rows(dx, moved_shape, d, xd.shape).astype(xd.dtype, copy=False),)

        attach(out, backward, (x,), "LogSoftmaxBackward0" if log else "SoftmaxBackward0")
    return out


def _attach_empty(out, x, op):
    if recording(x):
        attach(out, lambda g: (np.zeros(x.data.shape, x.data.dtype),), (x,), f"{op}_backward")
    return out


def softmax(input, dim=None, dtype=None, *, _stacklevel=3):  # noqa: A002 (PyTorch's names)
    """exp(x) / sum(exp(x)) along ``dim``, shifted by the max for stability.

    Args:
        input: a float tensor (integers become the default float dtype).
        dim: the dim to normalise over (None: PyTorch's legacy implicit choice, with a warning).
        dtype: compute (and return) in this float dtype; the gradient comes back in
            the input's dtype.

    Shape: any -> the same.

    Example:
        >>> fastnn.softmax(fastnn.tensor([[1.0, 2.0, 3.0]]), dim=1).sum(1)
        tensor([1.])
    """
    return _softmax(input, dim, dtype, False, "softmax")


def log_softmax(input, dim=None, dtype=None, *, _stacklevel=3):  # noqa: A002
    """log(softmax(x)) along ``dim``, computed stably as x - logsumexp(x).

    Args and shape as :func:`softmax`.

    Example:
        >>> round(fastnn.log_softmax(fastnn.zeros(2, 4), dim=-1)[0, 0].item(), 4)  # log(1/4)
        -1.3863
    """
    return _softmax(input, dim, dtype, True, "log_softmax")
