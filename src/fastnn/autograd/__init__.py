"""fastnn.autograd: the graph, ``backward``, ``grad``, grad mode and ``Function``."""
import numpy as np

from . import engine
from .engine import Node
from .function import Function, FunctionCtx, once_differentiable
from .grad_mode import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled

__all__ = ["Function", "FunctionCtx", "Node", "backward", "enable_grad", "grad", "inference_mode",
           "is_grad_enabled", "no_grad", "once_differentiable", "set_grad_enabled"]


def _as_list(x):
    if x is None:
        return None
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def _root_grads(outputs, grad_outputs, caller):
    from ..tensor import Tensor

    grads = _as_list(grad_outputs) or [None] * len(outputs)
    if len(grads) != len(outputs):
        raise RuntimeError(f"{caller}: got {len(grads)} gradients for {len(outputs)} outputs")
    edges, arrays = [], []
    for i, (out, g) in enumerate(zip(outputs, grads)):
        if not isinstance(out, Tensor):
            raise TypeError(f"{caller}: expected Tensors, got {type(out).__name__}")
        if not out.requires_grad:
            raise RuntimeError(f"{caller}: element {i} of tensors does not require grad and does not have a grad_fn")
        if g is None:
            if out.data.size != 1:
                raise RuntimeError(f"{caller}: grad can be implicitly created only for scalar outputs, "
                                   f"got an output of shape {tuple(out.shape)}")
            g = np.ones(out.shape, out.dtype)
        else:
            g = g.data if isinstance(g, Tensor) else np.asarray(g)
            if g.shape != out.shape:
                raise RuntimeError(f"{caller}: gradient of shape {g.shape} does not match the output's "
                                   f"shape {tuple(out.shape)}")
            g = g.astype(out.dtype, copy=False)
        edges.append(engine._edge(out))
        arrays.append(g)
    return edges, arrays


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate the gradients of ``tensors`` into the ``.grad`` of every leaf that
    requires grad (``tensor.backward()`` for several outputs at once)."""
    if create_graph:
        raise NotImplementedError("backward: create_graph=True (higher-order gradients) is not supported")
    if inputs is not None:
        raise NotImplementedError("backward: inputs= is not supported; use autograd.grad")
    outputs = _as_list(tensors)
    edges, arrays = _root_grads(outputs, grad_tensors, "backward")
    engine.run_backward(edges, arrays, bool(retain_graph))
    engine.run_callbacks()


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=False):
    """The gradients of ``outputs`` with respect to ``inputs``, as a tuple of Tensors;
    no ``.grad`` is changed.

    Example:
        >>> x = fastnn.randn(3, requires_grad=True)
        >>> (dx,) = fastnn.autograd.grad((x * x).sum(), x)   # 2 * x
    """
    from ..tensor import Tensor, _wrap

    if create_graph:
        raise NotImplementedError("autograd.grad: create_graph=True (higher-order gradients) is not supported")
    outputs = _as_list(outputs)
    single_input = isinstance(inputs, Tensor)
    inputs = _as_list(inputs)
    keys = []
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"autograd.grad: inputs must be Tensors, got {type(t).__name__}")
        if not t.requires_grad:
            raise RuntimeError(f"autograd.grad: input {i} does not require grad")
        keys.append(id(t) if t.grad_fn is None else (t.grad_fn, t._output_nr))
    edges, arrays = _root_grads(outputs, grad_outputs, "autograd.grad")
    captures = {k: None for k in keys}
    state = engine._engine
    previous = state.capturing
    state.capturing = True
    try:
        engine.run_backward(edges, arrays, bool(retain_graph), captures)
    finally:
        state.capturing = previous
    result = []
    for i, (t, k) in enumerate(zip(inputs, keys)):
        g = captures[k]
        if g is None and not allow_unused:
            raise RuntimeError(f"autograd.grad: input {i} was not used in the graph; pass allow_unused=True")
        result.append(None if g is None else _wrap(np.array(g, dtype=t.dtype, copy=True).reshape(t.shape)))
    return tuple(result)
