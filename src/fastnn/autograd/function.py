"""``autograd.Function``: custom differentiable operations, PyTorch's interface.

Example:
    >>> class Exp(fastnn.autograd.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         y = x.exp()
    ...         ctx.save_for_backward(y)
    ...         return y
    ...     @staticmethod
    ...     def backward(ctx, grad_output):
    ...         (y,) = ctx.saved_tensors
    ...         return grad_output * y
    >>> Exp.apply(fastnn.randn(3, requires_grad=True)).sum().backward()
"""
import numpy as np

from . import engine
from .grad_mode import _state, no_grad


class FunctionCtx:
    """The ``ctx`` passed to ``forward`` and ``backward``: ``save_for_backward``,
    ``saved_tensors``, ``needs_input_grad``, ``mark_non_differentiable`` and
    ``set_materialize_grads``; any other attribute may be set to pass values along."""

    def __init__(self, needs_input_grad):
        self.needs_input_grad = needs_input_grad
        self._saved = ()
        self._versions = ()
        self._released = False
        self._non_differentiable = set()
        self.materialize_grads = True

    def save_for_backward(self, *tensors):
        self._saved = tensors
        self._versions = tuple(getattr(t, "_version", None) for t in tensors)

    @property
    def saved_tensors(self):
        if self._released:
            raise RuntimeError(engine._RELEASED)
        for t, version in zip(self._saved, self._versions):
            if version is not None and t._version != version:
                raise RuntimeError(
                    "one of the variables needed for gradient computation has been modified by an inplace "
                    f"operation: [{t.dtype} {list(t.shape)}] is at version {t._version}; expected version "
                    f"{version} instead.")
        return self._saved

    def mark_non_differentiable(self, *tensors):
        self._non_differentiable.update(id(t) for t in tensors)

    def mark_dirty(self, *tensors):
        pass

    def set_materialize_grads(self, value):
        self.materialize_grads = bool(value)


class Function:
    """Base class of custom operations: subclasses write static ``forward(ctx, *args)``
    and ``backward(ctx, *grad_outputs)`` and are called as ``MyFunction.apply(*args)``.

    ``forward`` runs without recording; it returns a Tensor (or array) or a tuple of
    them. ``backward`` gets one gradient Tensor per output and returns one gradient
    (Tensor, array or None) per ``forward`` argument.
    """

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("Function subclasses must implement forward(ctx, ...)")

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError("Function subclasses must implement backward(ctx, ...)")

    @classmethod
    def apply(cls, *args, **kwargs):
        from ..tensor import Tensor, _wrap

        needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        ctx = FunctionCtx(needs)
        with no_grad():
            result = cls.forward(ctx, *args, **kwargs)
        single = not isinstance(result, tuple)
        outputs = (result,) if single else result
        outputs = tuple(o if isinstance(o, Tensor) or o is None or not isinstance(o, (np.ndarray, np.generic))
                        else _wrap(np.asarray(o)) for o in outputs)
        if not (_state.enabled and any(needs)):
            return outputs[0] if single else outputs
        # outputs that are inputs returned as they are become new tensors sharing data
        outputs = tuple(_wrap(o.data) if isinstance(o, Tensor) and any(o is a for a in args) else o
                        for o in outputs)
        differentiable = [isinstance(o, Tensor) and id(o) not in ctx._non_differentiable
                          and o.data.dtype.kind == "f" for o in outputs]
        shapes = [(o.shape, o.dtype) if isinstance(o, Tensor) else None for o in outputs]
        name = f"{cls.__name__}Backward"

        def backward_fn(grads):
            grads = (grads,) if single else grads
            wrapped = []
            for g, info in zip(grads, shapes):
                if g is None and ctx.materialize_grads and info is not None:
                    g = np.zeros(info[0], info[1])
                wrapped.append(None if g is None else _wrap(g))
            with no_grad():
                res = cls.backward(ctx, *wrapped)
            ctx._released = True
            if not isinstance(res, tuple):
                res = (res,)
            if len(res) < len(args) and all(r is None for r in res[len(args):]):
                pass
            if len(res) != len(args):
                raise RuntimeError(f"function {name} returned an incorrect number of gradients "
                                   f"(expected {len(args)}, got {len(res)})")
            out = []
            for r, a in zip(res, args):
                if r is None or not isinstance(a, Tensor) or not a.requires_grad:
                    out.append(None)
                    continue
                r = r.data if isinstance(r, Tensor) else np.asarray(r)
                if r.shape != a.shape:
                    try:
                        r = np.broadcast_to(r, a.shape)
                    except ValueError:
                        raise RuntimeError(f"function {name} returned an invalid gradient: got shape "
                                           f"{r.shape}, expected {a.shape}") from None
                out.append(r.astype(a.dtype, copy=False))
            return tuple(out)

        inputs = [a if isinstance(a, Tensor) else None for a in args]
        if single:
            if differentiable[0]:
                engine.attach(outputs[0], backward_fn, inputs, name)
            return outputs[0]
        marked = [o if d else None for o, d in zip(outputs, differentiable)]
        engine.attach_multi(marked, backward_fn, inputs, name)
        return outputs


class once_differentiable:  # noqa: N801 (PyTorch's name)
    """Decorator accepted for ``backward`` methods written for PyTorch; a no-op here."""

    def __new__(cls, fn):
        return fn
