"""The define-by-run graph and its backward pass.

Every differentiable operation that runs with grad enabled on an input that
requires grad attaches a :class:`Node` to its output (``output.grad_fn``). A node
holds the operation's backward function (a closure over what the forward saved)
and one *edge* per input:

* ``None``: the input needs no gradient (a constant, or it does not require grad);
* ``(node, output_nr)``: the input was made by another node;
* a leaf ``Tensor`` that requires grad: its gradient is accumulated into ``.grad``.

``backward`` counts each node's consumers with an iterative depth-first walk, then
runs every node once, after all its consumers have delivered their gradients
(summed). Each node's closure is dropped after it ran unless ``retain_graph``, which
frees the graph's saved arrays as the pass goes.

The protocol for operations (``fastnn.ops``):

* ``recording(*tensors)``: True when grad is enabled and one of them requires grad;
* ``attach(out, backward_fn, inputs, name, saved=())``: record ``out = op(*inputs)``.
  ``backward_fn(grad_out)`` returns a tuple with one gradient array (or None) per
  input, each of the input's shape and dtype. It must not write into ``grad_out``;
  it may return ``grad_out`` itself. ``saved``: tensors whose in-place modification
  before backward must raise (their version is checked);
* ``attach_multi(outputs, backward_fn, inputs, name)``: the same for an operation
  with several outputs; ``backward_fn`` gets a tuple with one array or None per output;
* ``direct_grad(t)``: for kernels that write a leaf's gradient themselves (the
  weight gradient of Linear, Conv2d, ...): ``(buffer, accumulate)`` when ``t`` is a
  leaf that requires grad and the pass accumulates into ``.grad``, else None. The
  backward function then returns None for that input.
"""
import sys
import threading

import numpy as np

from .grad_mode import _state

_RELEASED = ("Trying to backward through the graph a second time (or directly access saved tensors "
             "after they have already been freed). Saved intermediate values of the graph are freed "
             "when you call .backward() or autograd.grad(). Specify retain_graph=True if you need to "
             "backward through the graph a second time.")


class Node:
    """One recorded operation (``tensor.grad_fn``). ``name()`` is its PyTorch-style name."""

    __slots__ = ("fn", "edges", "n_outputs", "_name", "saved", "__weakref__")

    def __init__(self, fn, edges, n_outputs, name, saved):
        self.fn = fn
        self.edges = edges
        self.n_outputs = n_outputs
        self._name = name
        self.saved = saved

    def name(self):
        return self._name

    @property
    def next_functions(self):
        """``((node or None, output_nr), ...)`` per input, as PyTorch shows them."""
        return tuple((None, 0) if e is None else (e if type(e) is tuple else (AccumulateGrad(e), 0))
                     for e in self.edges)

    def __repr__(self):
        return f"<{self._name} object at {id(self):#x}>"


class AccumulateGrad:
    """What ``next_functions`` shows for a leaf: its ``variable``."""

    __slots__ = ("variable",)

    def __init__(self, variable):
        self.variable = variable

    def name(self):
        return "AccumulateGrad"

    def __repr__(self):
        return f"<AccumulateGrad object at {id(self):#x}>"


# --------------------------------------------------------------- recording
def _edge(t):
    if t is None or not getattr(t, "requires_grad", False):
        return None
    node = t.grad_fn
    return t if node is None else (node, t._output_nr)


def recording(*tensors):
    """True when grad mode is on and one of ``tensors`` (Tensors or None) requires grad."""
    if not _state.enabled:
        return False
    for t in tensors:
        if t is not None and getattr(t, "requires_grad", False):
            return True
    return False


def _versions(saved):
    return tuple((t, t._version) for t in saved if t is not None)


def attach(out, fn, inputs, name, saved=()):
    """Record ``out`` as made from ``inputs`` by an operation with backward ``fn``."""
    out.grad_fn = Node(fn, tuple(_edge(t) for t in inputs), 1, name, _versions(saved) if saved else ())
    out.requires_grad = True
    return out


def attach_multi(outputs, fn, inputs, name, saved=()):
    """Record several outputs of one operation (``fn`` gets a tuple of gradients)."""
    node = Node(fn, tuple(_edge(t) for t in inputs), len(outputs), name, _versions(saved) if saved else ())
    for i, out in enumerate(outputs):
        if out is not None:
            out.grad_fn = node
            out._output_nr = i
            out.requires_grad = True
    return outputs


def direct_grad(t):
    """``(gradient buffer, accumulate)`` for a kernel that writes the gradient of leaf
    ``t`` itself, or None (``t`` is no leaf needing grad, or ``autograd.grad`` is
    running and ``.grad`` must stay untouched: then return the gradient instead).

    With ``accumulate`` False the buffer is new (or a parameter's spare from
    ``zero_grad``) and already installed as ``t.grad``: the kernel overwrites it."""
    if t is None or not t.requires_grad or t.grad_fn is not None or _engine.capturing:
        return None
    g = t.grad
    if g is not None:
        return g.data, True
    buf = _spare_for(t)
    t.grad = _wrap(buf)
    return buf, False


def _spare_for(t):
    spare = getattr(t, "_spare", None)
    data = t.data
    if spare is not None and spare.shape == data.shape and spare.dtype == data.dtype:
        t._spare = None
        return spare
    return np.empty_like(data, order="C")


# --------------------------------------------------------------- the pass
class _EngineState(threading.local):
    capturing = False  # inside autograd.grad: leave every .grad alone
    callbacks = None  # {key: fn} to run once when the next backward pass ends


def queue_callback(key, fn):
    """Run ``fn()`` once when this thread's next ``backward`` finishes (after every
    gradient is accumulated); a second call with the same ``key`` before then
    replaces the first. ``DataParallel`` averages gradients across processes so."""
    if _engine.callbacks is None:
        _engine.callbacks = {}
    _engine.callbacks[key] = fn


def run_callbacks():
    callbacks = _engine.callbacks
    if callbacks:
        _engine.callbacks = None
        for fn in callbacks.values():
            fn()


_engine = _EngineState()
_wrap = None  # set by fastnn.tensor (Tensor's fast constructor)


def _refs(g):
    return sys.getrefcount(g)


def _probe(leaf, g):
    return _refs(g)


def _calibrate():
    # the references an unshared gradient has inside _accumulate, called as the pass
    # calls it: one from the results tuple, one from the loop variable
    results = (np.empty(2),)
    count = 0
    for i in range(1):
        g = results[i]
        count = _probe(None, g)
    return count


_UNSHARED_REFS = _calibrate()


def _accumulate(leaf, g):
    """leaf.grad += g, installing g itself when nothing else can see it."""
    data = leaf.data
    if g.shape != data.shape:
        g = np.broadcast_to(g, data.shape) if g.size == 1 else g.reshape(data.shape)
    if g.dtype != data.dtype:
        g = g.astype(data.dtype)
    current = leaf.grad
    if current is not None:
        np.add(current.data, g, out=current.data)
        return
    if g.flags.owndata and g.flags.c_contiguous and g.flags.writeable and _refs(g) <= _UNSHARED_REFS:
        leaf.grad = _wrap(g)
        return
    buf = _spare_for(leaf)
    np.copyto(buf, g)
    leaf.grad = _wrap(buf)


def _check_saved(node):
    for t, version in node.saved:
        if t._version != version:
            raise RuntimeError(
                f"one of the variables needed for gradient computation has been modified by an inplace "
                f"operation: [{t.dtype} {list(t.shape)}] is at version {t._version}; expected version "
                f"{version} instead ({node._name}).")


def run_backward(roots, root_grads, retain_graph, captures=None):
    """Propagate ``root_grads`` (arrays) from ``roots`` (edges) through the graph.

    ``captures``: for ``autograd.grad``, a dict ``{edge key: None}`` whose values are
    filled with the total gradient reaching each key (a leaf tensor's id, or a
    ``(node, output_nr)`` pair) instead of accumulating into ``.grad``."""
    deps = {}
    stack = []
    grads = {}
    for edge, g in zip(roots, root_grads):
        if type(edge) is tuple:
            node, nr = edge
            if node not in deps:
                deps[node] = 0
                stack.append(node)
            buf = grads.get(node)
            if buf is None:
                buf = grads[node] = [None] * node.n_outputs
            buf[nr] = g if buf[nr] is None else buf[nr] + g
        elif captures is not None:
            key = id(edge)
            if key in captures:
                captures[key] = g if captures[key] is None else captures[key] + g
        else:
            _accumulate(edge, g)
    ready = list(stack)
    while stack:
        node = stack.pop()
        for e in node.edges:
            if type(e) is tuple:
                child = e[0]
                if child in deps:
                    deps[child] += 1
                else:
                    deps[child] = 1
                    stack.append(child)
    ready = [n for n in ready if deps[n] == 0]
    while ready:
        node = ready.pop()
        buf = grads.pop(node, None)
        if captures is not None and buf is not None:
            for nr, g in enumerate(buf):
                key = (node, nr)
                if key in captures and g is not None:
                    captures[key] = g
        fn = node.fn
        if fn is None:
            raise RuntimeError(_RELEASED)
        results = None
        if buf is not None:
            if node.saved:
                _check_saved(node)
            if node.n_outputs == 1:
                results = fn(buf[0])
            else:
                results = fn(tuple(buf))
            del buf
        if not retain_graph:
            node.fn = None
            node.saved = ()
        edges = node.edges
        for i in range(len(edges)):
            e = edges[i]
            if e is None:
                continue
            g = None if results is None else results[i]
            if type(e) is tuple:
                child, nr = e
                if g is not None:
                    cbuf = grads.get(child)
                    if cbuf is None:
                        cbuf = grads[child] = [None] * child.n_outputs
                    prev = cbuf[nr]
                    cbuf[nr] = g if prev is None else prev + g
                left = deps[child] - 1
                deps[child] = left
                if left == 0:
                    ready.append(child)
            elif g is not None:
                if captures is None:
                    _accumulate(e, g)
                else:
                    key = id(e)
                    if key in captures:
                        prev = captures[key]
                        captures[key] = g if prev is None else prev + g
            g = None
        results = None
