"""Elementwise arithmetic with NumPy broadcasting: + - * / ** and unary math.

Generic elementwise work runs in NumPy (one vectorised pass each); gradients are
summed back over broadcast dimensions (``unbroadcast``)."""
import numpy as np

from ._util import Tensor, _wrap, as_tensor, attach, recording, unbroadcast

__all__ = ["add", "sub", "mul", "div", "true_divide", "neg", "negative", "pow", "exp", "log", "sqrt",
           "multiply", "subtract", "divide"]


def _operand(x):
    """A Tensor stays; a Python number stays a number (it keeps the tensor's dtype, as
    in PyTorch); anything else becomes a constant Tensor."""
    if isinstance(x, Tensor) or isinstance(x, (int, float, bool)):
        return x
    return as_tensor(x)


def _data(x):
    return x.data if isinstance(x, Tensor) else x


def _binary(a, b, op):
    a, b = _operand(a), _operand(b)
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        a = as_tensor(a)
    ad, bd = _data(a), _data(b)
    try:
        out = op(ad, bd)
    except ValueError as exc:
        raise ValueError(f"{op.__name__}: shapes {np.shape(ad)} and {np.shape(bd)} cannot be broadcast "
                         "together") from exc
    if not isinstance(out, np.ndarray):
        out = np.asarray(out)
    return a, b, ad, bd, out


def _needs(t):
    return isinstance(t, Tensor) and t.requires_grad


def add(input, other, alpha=1):  # noqa: A002 (PyTorch's names)
    """input + alpha * other, broadcasting."""
    if alpha != 1:
        other = mul(other, alpha)
    a, b, ad, bd, out = _binary(input, other, np.add)
    res = _wrap(out)
    if recording(a if isinstance(a, Tensor) else None, b if isinstance(b, Tensor) else None):
        sa, sb = np.shape(ad), np.shape(bd)
        na, nb = _needs(a), _needs(b)

        def backward(g):
            return (unbroadcast(g, sa) if na else None), (unbroadcast(g, sb) if nb else None)

        attach(res, backward, (a if na else None, b if nb else None), "AddBackward0")
    return res


def sub(input, other, alpha=1):  # noqa: A002
    """input - alpha * other, broadcasting."""
    if alpha != 1:
        other = mul(other, alpha)
    a, b, ad, bd, out = _binary(input, other, np.subtract)
    res = _wrap(out)
    if recording(a if isinstance(a, Tensor) else None, b if isinstance(b, Tensor) else None):
        sa, sb = np.shape(ad), np.shape(bd)
        na, nb = _needs(a), _needs(b)

        def backward(g):
            return (unbroadcast(g, sa) if na else None), (unbroadcast(np.negative(g), sb) if nb else None)

        attach(res, backward, (a if na else None, b if nb else None), "SubBackward0")
    return res


def mul(input, other):  # noqa: A002
    """input * other, broadcasting."""
    a, b, ad, bd, out = _binary(input, other, np.multiply)
    res = _wrap(out)
    if recording(a if isinstance(a, Tensor) else None, b if isinstance(b, Tensor) else None):
        sa, sb = np.shape(ad), np.shape(bd)
        na, nb = _needs(a), _needs(b)

        def backward(g):
            return ((unbroadcast(g * bd, sa).astype(ad.dtype, copy=False) if na else None),
                    (unbroadcast(g * ad, sb).astype(bd.dtype, copy=False) if nb else None))

        attach(res, backward, (a if na else None, b if nb else None), "MulBackward0",
               saved=tuple(t for t in (a, b) if isinstance(t, Tensor)))
    return res


def div(input, other, rounding_mode=None):  # noqa: A002
    """input / other (true division), broadcasting; ``rounding_mode`` 'trunc' or
    'floor' rounds the quotient (no gradient)."""
    if rounding_mode is not None:
        if rounding_mode not in ("trunc", "floor"):
            raise ValueError(f"div: rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}")
        q = np.true_divide(_data(_operand(input)), _data(_operand(other)))
        q = np.trunc(q) if rounding_mode == "trunc" else np.floor(q)
        return _wrap(np.asarray(q))
    a, b, ad, bd, out = _binary(input, other, np.true_divide)
    if out.dtype.kind != "f":
        out = out.astype(np.float32)
    res = _wrap(out)
    if recording(a if isinstance(a, Tensor) else None, b if isinstance(b, Tensor) else None):
        sa, sb = np.shape(ad), np.shape(bd)
        na, nb = _needs(a), _needs(b)

        def backward(g):
            da = unbroadcast(g / bd, sa).astype(ad.dtype, copy=False) if na else None
            db = unbroadcast(-g * out / bd, sb).astype(bd.dtype, copy=False) if nb else None
            return da, db

        attach(res, backward, (a if na else None, b if nb else None), "DivBackward0",
               saved=tuple(t for t in (a, b) if isinstance(t, Tensor)))
    return res


true_divide = divide = div
multiply = mul
subtract = sub


def neg(input):  # noqa: A002
    """-input."""
    x = as_tensor(input)
    res = _wrap(np.negative(x.data))
    if recording(x):
        attach(res, lambda g: (np.negative(g),), (x,), "NegBackward0")
    return res


negative = neg


def pow(input, exponent):  # noqa: A001,A002
    """input ** exponent, broadcasting (either may be a tensor)."""
    a, b, ad, bd, out = _binary(input, exponent, np.power)
    res = _wrap(out)
    if recording(a if isinstance(a, Tensor) else None, b if isinstance(b, Tensor) else None):
        sa, sb = np.shape(ad), np.shape(bd)
        na, nb = _needs(a), _needs(b)

        def backward(g):
            da = db = None
            if na:
                da = unbroadcast(g * bd * np.power(ad, bd - 1), sa).astype(ad.dtype, copy=False)
            if nb:
                with np.errstate(divide="ignore", invalid="ignore"):
                    logs = np.where(ad > 0, np.log(np.where(ad > 0, ad, 1)), 0)
                db = unbroadcast(g * out * logs, sb).astype(bd.dtype, copy=False)
            return da, db

        attach(res, backward, (a if na else None, b if nb else None), "PowBackward0",
               saved=tuple(t for t in (a, b) if isinstance(t, Tensor)))
    return res


def exp(input):  # noqa: A002
    x = as_tensor(input)
    y = np.exp(x.data)
    res = _wrap(y)
    if recording(x):
        attach(res, lambda g: (g * y,), (x,), "ExpBackward0")
    return res


def log(input):  # noqa: A002
    x = as_tensor(input)
    xd = x.data
    res = _wrap(np.log(xd))
    if recording(x):
        attach(res, lambda g: (g / xd,), (x,), "LogBackward0", saved=(x,))
    return res


def sqrt(input):  # noqa: A002
    x = as_tensor(input)
    y = np.sqrt(x.data)
    res = _wrap(y)
    if recording(x):
        attach(res, lambda g: (g / (2 * y),), (x,), "SqrtBackward0")
    return res
