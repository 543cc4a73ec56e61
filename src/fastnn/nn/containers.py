"""Containers: Sequential and Residual (skip connections)."""
from collections import OrderedDict

import numpy as np

from ..kernels.elementwise import add
from .module import Module, backward_with


class Sequential(Module):
    """Runs modules in order; ``backward`` runs their backward passes in reverse.

    Args:
        *modules: the layers, or one ``OrderedDict`` of name -> module.

    Supports ``len``, iteration, indexing (``seq[0]``, ``seq[-1]``), slicing (a new
    ``Sequential`` sharing the layers) and ``append``. Children are named "0",
    "1", ... so ``state_dict`` keys match PyTorch (``0.weight``, ``2.bias``).
    Recurrent layers pass on only their ``output``.

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

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
            if isinstance(x, tuple):  # recurrent layers return (output, state)
                x = x[0]
        return x

    def backward(self, grad_output):
        g = grad_output
        modules = list(self._modules.values())
        for m in reversed(modules[1:]):
            g = m.backward(g)
        # the first layer computes d/d input only if someone reads it
        return backward_with(modules[0], g, self.needs_input_grad) if modules else g

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
