"""Containers: Sequential and Residual (skip connections)."""
from collections import OrderedDict

from ..ops import add as _add
from . import functional as F
from .module import Module, plan_state

# how Sequential.forward runs a step
_FORWARD, _CALL, _FUSED = 0, 1, 2


def _apply_activation(x, act):
    """The activation ``act = (name, negative_slope)`` that a fused step applies."""
    return getattr(F, act[0])(x, act[1]) if act[0] == "leaky_relu" else getattr(F, act[0])(x)


def _first(x):
    return x[0] if isinstance(x, tuple) else x  # recurrent layers return (output, state)


class Sequential(Module):
    """Runs modules in order, like ``torch.nn.Sequential``.

    Args:
        *modules: the layers, or one ``OrderedDict`` of name -> module.

    Supports ``len``, iteration, indexing (``seq[0]``, ``seq[-1]``), slicing (a new
    ``Sequential`` sharing the layers) and ``append``. Children are named "0",
    "1", ... so ``state_dict`` keys match PyTorch (``0.weight``, ``2.bias``).
    Recurrent layers pass on only their ``output``.

    A layer that ``accepts_epilogue`` (``Linear``, ``Conv2d``) followed by an
    activation with an ``epilogue`` (``ReLU``, ``LeakyReLU`` with slope >= 0,
    ``Sigmoid``, ``Tanh``) runs as one operation: the activation is applied in the
    same pass as the bias, and its derivative in the layer's backward. Results
    are the same; set ``fuse = False`` on the instance to run every layer apart.

    Example:
        >>> model = Sequential(Linear(784, 256), ReLU(), Linear(256, 10))
        >>> loss_fn(model(x), y).backward()
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
        """``[(layer, (activation, slope) fused into it or None, call)]`` for the
        children; ``forward`` rebuilds it only when ``key`` (``fuse`` and the
        children) changes. ``call``: how forward runs the step."""
        modules, steps, i = key[1:], [], 0
        while i < len(modules):
            layer = modules[i]
            act = None
            if self.fuse and i + 1 < len(modules) and getattr(layer, "accepts_epilogue", False):
                act = getattr(modules[i + 1], "epilogue", None)
            if act is not None:
                call = _FUSED
            else:
                # Module.__call__ only calls forward: skip its frame when not overridden
                call = _FORWARD if type(layer).__call__ is Module.__call__ else _CALL
            steps.append((layer, act, call))
            i += 2 if act else 1
        self._steps_key, self._steps_list = key, steps
        return steps

    def forward(self, input):  # noqa: A002
        x = input
        if plan_state.plan is not None:  # an inference plan fuses on its own: call every layer,
            # passing each output on with no name bound to it (the plan's tracer counts the
            # references to a layer's input to see that nothing else reads it)
            box = [x]
            del x, input
            for layer in self._modules.values():
                box.append(_first(layer(box.pop())))
            return box.pop()
        key = (self.fuse, *self._modules.values())
        d = self.__dict__
        steps = d["_steps_list"] if d.get("_steps_key") == key else self._build_steps(key)
        for layer, act, call in steps:
            if call == _FORWARD:
                x = layer.forward(x)
            elif call == _FUSED and "forward" not in layer.__dict__:
                x = layer.forward_fused(x, act[0], act[1])
            elif call == _FUSED:  # the layer's forward was replaced on the instance: run it, then act
                x = _apply_activation(layer(x), act)
            else:
                x = layer(x)
            if isinstance(x, tuple):  # recurrent layers return (output, state)
                x = x[0]
        return x

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

    def forward(self, input):  # noqa: A002
        main = self.block(input)
        skip = self.shortcut(input) if self._has_shortcut else input
        if tuple(main.shape) != tuple(skip.shape):
            raise ValueError(f"Residual: block output shape {tuple(main.shape)} does not match shortcut "
                             f"shape {tuple(skip.shape)}")
        return _add(main, skip)

    @classmethod
    def _from_config(cls, config, children):
        return cls(children["block"], children.get("shortcut"))


class ModuleList(Module):
    """A list of modules registered as children "0", "1", ..., like
    ``torch.nn.ModuleList``: indexing, slicing, ``len``, iteration, ``append``,
    ``extend``, ``insert``. It has no ``forward``: the owner iterates over it.

    Example:
        >>> self.layers = nn.ModuleList([nn.Linear(8, 8) for _ in range(3)])
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _check(self, module, where):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList.{where}: expected a Module, got {type(module).__name__}")
        return module

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, idx):
        items = list(self._modules.values())
        if isinstance(idx, slice):
            return ModuleList(items[idx])
        return items[idx]

    def __setitem__(self, idx, module):
        key = list(self._modules)[idx]
        setattr(self, key, self._check(module, "__setitem__"))

    def append(self, module):
        self.add_module(str(len(self._modules)), self._check(module, "append"))
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def insert(self, index, module):
        items = list(self._modules.values())
        items.insert(index, self._check(module, "insert"))
        for name in list(self._modules):
            delattr(self, name)
        self.extend(items)

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList has no forward: iterate over it in the owner's forward")

    @classmethod
    def _from_config(cls, config, children):
        return cls(list(children.values()))


class ModuleDict(Module):
    """An ordered dict of named child modules, like ``torch.nn.ModuleDict``.

    Example:
        >>> self.heads = nn.ModuleDict({"cls": nn.Linear(8, 3), "reg": nn.Linear(8, 1)})
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key):
        return key in self._modules

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleDict: expected a Module for {key!r}, got {type(module).__name__}")
        self.add_module(key, module)

    def __delitem__(self, key):
        delattr(self, key)

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def update(self, modules):
        items = modules.items() if hasattr(modules, "items") else modules
        for key, module in items:
            self[key] = module

    def pop(self, key):
        module = self._modules[key]
        del self[key]
        return module

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleDict has no forward: index it in the owner's forward")

    @classmethod
    def _from_config(cls, config, children):
        return cls(children)
