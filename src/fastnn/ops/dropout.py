"""Dropout: inverted dropout while training (zero each element, or each channel, with
probability ``p`` and scale the rest by 1/(1-p)); the input itself otherwise.

Random numbers come from fastnn's default generator (``fastnn.manual_seed``) unless
a ``generator`` (a ``numpy.random.Generator`` or an int seed) is given: that
argument is a fastnn extension the Dropout modules use.
"""
import numpy as np

from .. import random as _random
from ..kernels.elementwise import dropout_forward, multiply
from ._util import Tensor, _wrap, as_tensor, attach, float_tensor, recording

__all__ = ["dropout", "dropout1d", "dropout2d"]


def _check_p(p, op):
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: dropout probability has to be between 0 and 1, but got {p}")
    return p


def _identity(input):  # noqa: A002
    return input if isinstance(input, Tensor) else as_tensor(input)


def dropout(input, p=0.5, training=True, inplace=False, generator=None):  # noqa: A002
    """Zero each element with probability ``p``, scale the rest by 1/(1-p), like
    ``torch.nn.functional.dropout``. Returns ``input`` itself when not ``training`` or
    ``p == 0``. ``inplace`` is accepted; the result is computed out of place.

    Shape: any -> the same.
    """
    p = _check_p(p, "dropout")
    if not training or p == 0.0:
        return _identity(input)
    x = float_tensor(input, "dropout")
    xd = x.data
    if not xd.flags.c_contiguous:
        xd = np.ascontiguousarray(xd)
    out = np.empty(xd.shape, xd.dtype)
    mask = np.empty(xd.shape, xd.dtype)
    if p == 1.0:  # everything dropped (the kernel's scale 1/(1-p) would be inf)
        out.fill(0)
        mask.fill(0)
    else:
        uniform = _random.resolve(generator).random(xd.size, dtype=xd.dtype)
        dropout_forward(out.reshape(-1), mask.reshape(-1), xd.reshape(-1), uniform, p)
    result = _wrap(out)
    if recording(x):
        def backward(g):  # out = x * mask
            dx = np.empty(mask.shape, mask.dtype)
            multiply(dx.reshape(-1), np.ascontiguousarray(g, dtype=mask.dtype).reshape(-1), mask.reshape(-1))
            return (dx,)

        attach(result, backward, (x,), "MulBackward0")
    return result


def _channel_dropout(input, p, training, generator, op, ranks, unbatched_rank):  # noqa: A002
    """One keep/drop draw per (sample, channel): the first two dims, or the first of an
    unbatched input (of rank ``unbatched_rank``)."""
    p = _check_p(p, op)
    x = float_tensor(input, op)
    xd = x.data
    if xd.ndim not in ranks:
        raise ValueError(f"{op}: expected a {ranks[0]}-D or {ranks[1]}-D input, got shape {xd.shape}")
    if not training or p == 0.0:
        return x
    lead = 1 if xd.ndim == unbatched_rank else 2
    channels = xd.shape[:lead]
    if p == 1.0:
        mask = np.zeros(channels, xd.dtype)
    else:
        uniform = _random.resolve(generator).random(channels, dtype=xd.dtype)
        mask = (uniform >= p).astype(xd.dtype) * xd.dtype.type(1 / (1 - p))
    mask = mask.reshape(channels + (1,) * (xd.ndim - lead))
    out = _wrap(xd * mask)
    if recording(x):
        def backward(g):  # out = x * mask (mask broadcast over each channel)
            return ((g * mask).astype(xd.dtype, copy=False),)

        attach(out, backward, (x,), "MulBackward0")
    return out


def dropout1d(input, p=0.5, training=True, inplace=False, generator=None):  # noqa: A002
    """Zero whole channels with probability ``p`` (scaling the rest by 1/(1-p)), like
    ``torch.nn.functional.dropout1d``. Shape: (N, C, L) or (C, L) -> the same."""
    return _channel_dropout(input, p, training, generator, "dropout1d", (2, 3), 2)


def dropout2d(input, p=0.5, training=True, inplace=False, generator=None):  # noqa: A002
    """Zero whole channels with probability ``p`` (scaling the rest by 1/(1-p)), like
    ``torch.nn.functional.dropout2d``. Shape: (N, C, H, W) -> the same; a 3-D input is
    read as (N, C, L), as PyTorch 2 does."""
    return _channel_dropout(input, p, training, generator, "dropout2d", (3, 4), None)
