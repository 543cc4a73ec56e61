"""Containers: Sequential and Residual (skip connections)."""
from collections import OrderedDict

import numpy as np

from ..kernels import activations as act_k
from ..kernels.elementwise import add
from .activation import fusable_kind
from .conv import Conv2d
from .linear import Linear
from .module import Module, backward_with

# how Sequential.forward runs a step
_FORWARD, _CALL, _FUSED_ARG, _FUSED_ATTR = 0, 1, 2, 3


class Sequential(Module):
    """Runs modules in order; ``backward`` runs their backward passes in reverse.

    Args:
        *modules: the layers, or one ``OrderedDict`` of name -> module.

    Supports ``len``, iteration, indexing (``seq[0]``, ``seq[-1]``), slicing (a new
    ``Sequential`` sharing the layers) and ``append``. Children are named "0",
    "1", ... so ``state_dict`` keys match PyTorch (``0.weight``, ``2.bias``).
    Recurrent layers pass on only their ``output``.

    A ``Linear`` or ``Conv2d`` followed by ``ReLU``, ``LeakyReLU`` (slope >= 0),
    ``Sigmoid`` or ``Tanh`` runs as one layer: the activation is applied in the
    same pass as the bias, and its derivative in the layer's backward. Results
    are the same; set ``fuse = False`` on the instance to run every layer apart.

    Example:
        >>> model = Sequential(Linear(784, 256), ReLU(), Linear(256, 10))
        >>> logits = model(x); dx = model.backward(dlogits)
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                if not isinstance(m, Module):
                    raise TypeError(f"Sequential: argument {i} is {type(m).__name__}, not a Module")
                self.add_module(str(i), m)

    fuse = True

    def _build_steps(self, key):
        """``[(layer, activation fused into it or None, (kind, slope) or None, call)]``
        for the children; ``forward`` rebuilds it only when ``key`` (``fuse`` and the
        children) changes. ``call``: how forward runs the step."""
        modules, steps, i = key[1:], [], 0
        while i < len(modules):
            layer = modules[i]
            act = None
            if (self.fuse and i + 1 < len(modules) and type(layer) in (Linear, Conv2d)
                    and layer._act_kind == act_k.IDENTITY):
                act = fusable_kind(modules[i + 1])
            if act is not None:
                # the activation goes in as an argument when the layer takes one
                call = _FUSED_ARG if hasattr(type(layer), "_forward_act") else _FUSED_ATTR
            else:
                # Module.__call__ only calls forward: skip its frame when not overridden
                call = _FORWARD if type(layer).__call__ is Module.__call__ else _CALL
            steps.append((layer, modules[i + 1] if act else None, act, call))
            i += 2 if act else 1
        self._steps_key, self._steps_list = key, steps
        return steps

    def forward(self, x):
        key = (self.fuse, *self._modules.values())
        d = self.__dict__
        steps = d["_steps_list"] if d.get("_steps_key") == key else self._build_steps(key)
        for layer, _, act, call in steps:
            if call == _FORWARD:
                x = layer.forward(x)
            elif call == _FUSED_ARG and "forward" not in layer.__dict__:
                x = layer._forward_act(x, act[0], act[1])
            elif call == _CALL:
                x = layer(x)
            else:  # the layer reads its activation from attributes (or its forward was replaced)
                layer._act_kind, layer._act_slope = act
                try:
                    x = layer(x)
                finally:
                    layer._act_kind, layer._act_slope = act_k.IDENTITY, 0.0
            if isinstance(x, tuple):  # recurrent layers return (output, state)
                x = x[0]
        if d.get("_ran") is not steps:
            self._ran = steps
        return x

    def backward(self, grad_output):
        steps = self._saved(self.__dict__.get("_ran"))
        g = grad_output
        for layer, *_ in reversed(steps[1:]):  # a fused activation's derivative is in its layer
            g = layer.backward(g)
        # the first layer computes d/d input only if someone reads it
        return backward_with(steps[0][0], g, self.needs_input_grad) if steps else g

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, idx):
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return Sequential(OrderedDict(items[idx]))
        if isinstance(idx, str):
            return self._modules[idx]
        return items[idx][1]

    def append(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"Sequential.append: expected a Module, got {type(module).__name__}")
        self.add_module(str(len(self._modules)), module)
        return self

    @classmethod
    def _from_config(cls, config, children):
        return cls(OrderedDict(children))


class Residual(Module):
    """``block(x) + shortcut(x)``: a skip connection (identity shortcut by default).

    The gradient w.r.t. x is the sum of both paths' gradients.

    Args:
        block: the main path; its output must have the shortcut's shape.
        shortcut: optional projection (e.g. a 1x1 Conv2d); None means identity.

    Example:
        >>> Residual(Sequential(Linear(64, 64), ReLU(), Linear(64, 64)))
    """

    def __init__(self, block, shortcut=None):
        super().__init__()
        self.block = block
        if shortcut is not None:
            self.shortcut = shortcut
        self._has_shortcut = shortcut is not None

    def forward(self, x):
        main = self.block(x)
        skip = self.shortcut(x) if self._has_shortcut else np.asarray(x, dtype=main.dtype)
        if main.shape != skip.shape:
            raise ValueError(f"Residual: block output shape {main.shape} does not match shortcut shape {skip.shape}")
        out = np.empty_like(main)
        add(out.reshape(-1), main.reshape(-1), np.ascontiguousarray(skip).reshape(-1))
        return out

    def backward(self, grad_output):
        g = np.ascontiguousarray(grad_output)
        d_main = backward_with(self.block, g, self.needs_input_grad)
        if self._has_shortcut:
            d_skip = backward_with(self.shortcut, g, self.needs_input_grad)
        else:
            d_skip = g
        if not self.needs_input_grad:
            return None
        dx = np.empty_like(d_main)
        add(dx.reshape(-1), d_main.reshape(-1), np.ascontiguousarray(d_skip, dtype=d_main.dtype).reshape(-1))
        return dx

    @classmethod
    def _from_config(cls, config, children):
        return cls(children["block"], children.get("shortcut"))
