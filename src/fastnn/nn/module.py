"""``Module``, the base of every layer (``Parameter`` lives in ``parameter``; the
state_dict methods in ``_state_dict``).

Modules hold parameters, buffers and submodules and write ``forward`` only: the
operations they call record what backward needs on the autograd graph, never on
the module, so one module may run any number of times in one forward pass.
"""
from collections import OrderedDict

import numpy as np

from .. import _config
from .._planstate import plan_state  # noqa: F401 (containers import it from here)
from ..tensor import Tensor, _wrap
from ._state_dict import StateDict
from .parameter import Parameter  # noqa: F401 (re-exported: layers import it from here)

# Values of these exact types are never registered by assignment (only Parameter and
# Module instances are), so Module.__setattr__ stores them with a short check.
_PLAIN_TYPES = frozenset({np.ndarray, tuple, list, dict, type(None), bool, int, float, str,
                          np.float32, np.float64, np.int32, np.int64, np.bool_})
_object_setattr = object.__setattr__


_mode_changes = [0]  # bumped when train()/eval() changes a module's mode: plans built before are stale


def mode_generation():
    """A number that changes whenever any module's training mode changes."""
    return _mode_changes[0]


def _run_planned(module, inputs):
    """``module(*inputs)`` in ``inference_mode`` and eval mode: on its inference plan
    (``fastnn.inference.run``, which plans a shape from its second call). What it calls
    inside runs as usual: only the outermost call plans."""
    global _inference_run
    if _inference_run is None:  # (inference sits above the modules: imported on first use)
        from ..inference import run as _inference_run
    state = plan_state
    state.auto = False
    try:
        return _inference_run(module, inputs, auto=True)
    finally:
        state.auto = True


_inference_run = None


class Module(StateDict):
    """Base class of all layers and models.

    Subclasses create parameters and submodules in ``__init__`` (after calling
    ``super().__init__()``) and implement ``forward``; ``loss.backward()`` computes
    the gradients. Attributes that are ``Parameter`` or ``Module`` instances are
    registered automatically, in assignment order, which fixes the ``state_dict``
    key order; ``register_buffer`` adds state that is saved but not trained.

    For ``fastnn.save``/``fastnn.load`` a subclass also returns its constructor
    arguments from ``_config()``; containers describe their children instead.
    """

    _registry = {}
    _auto_plan = True  # inference_mode may run it on a plan (not a wrapper that plans itself)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        Module._registry.setdefault(cls.__name__, cls)

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "training", True)

    # ----------------------------------------------------------- registration
    # Parameters and submodules live in their tables (which fix state_dict order) and
    # are mirrored in the instance __dict__, so reading ``self.weight`` in a hot
    # forward is a plain attribute lookup. Buffers are read through __getattr__.
    def __setattr__(self, name, value):
        if type(value) in _PLAIN_TYPES:  # the hot case: layers' cached state
            d = self.__dict__
            try:
                if name not in d["_parameters"] and name not in d["_buffers"] and name not in d["_modules"]:
                    _object_setattr(self, name, value)
                    return
            except KeyError:  # before super().__init__(): the slow path raises
                pass
        self._setattr_slow(name, value)

    def _setattr_slow(self, name, value):
        d = self.__dict__
        if "_parameters" not in d:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        if name in d["_buffers"] and not isinstance(value, (Parameter, Module)):
            if value is not None and not isinstance(value, Tensor):
                value = _wrap(np.asarray(value))
            d["_buffers"][name] = value  # assigning to a buffer replaces it
            return
        registered = name in d["_parameters"] or name in d["_buffers"] or name in d["_modules"]
        if not registered and not isinstance(value, (Parameter, Module)):
            object.__setattr__(self, name, value)  # the common case: plain state
            return
        for table in (d["_parameters"], d["_buffers"], d["_modules"]):
            table.pop(name, None)
        if isinstance(value, Parameter):
            d["_parameters"][name] = value
        elif isinstance(value, Module):
            d["_modules"][name] = value
        object.__setattr__(self, name, value)

    def __getattr__(self, name):
        d = self.__dict__
        if "_buffers" in d and name in d["_buffers"]:
            return d["_buffers"][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for table in (self._parameters, self._buffers, self._modules):
            if name in table:
                del table[name]
        self.__dict__.pop(name, None)

    def register_parameter(self, name, param):
        """Register ``param`` (a Parameter or None) under ``name``."""
        if param is None:
            self.__dict__["_buffers"].pop(name, None)
            self.__dict__["_modules"].pop(name, None)
            self._parameters[name] = None
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, param)

    def register_buffer(self, name, tensor, persistent=True):
        """Register non-trainable state (e.g. ``running_mean``): a Tensor (arrays are
        wrapped, sharing memory) read as ``self.name``, saved in ``state_dict`` unless
        ``persistent=False``, and converted by ``to``/``double``/``float``."""
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"register_buffer: buffer name must be a non-empty string without '.', got {name!r}")
        if name in self._parameters or name in self._modules:
            raise KeyError(f"register_buffer: attribute '{name}' already exists")
        if tensor is not None and not isinstance(tensor, Tensor):
            tensor = _wrap(np.asarray(tensor))
        self.__dict__.pop(name, None)
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def add_module(self, name, module):
        setattr(self, name, module)

    # ------------------------------------------------------------- computation
    def forward(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def __call__(self, *inputs, **kwargs):
        state = plan_state
        plan = state.plan
        if plan is not None:
            return plan.module_call(self, inputs, kwargs)
        if state.auto and not self.training and not kwargs and self._auto_plan:
            return _run_planned(self, inputs)
        return self.forward(*inputs, **kwargs)

    def get_submodule(self, target):
        module = self
        for part in target.split(".") if target else ():
            if part not in module._modules:
                raise AttributeError(f"{type(module).__name__} has no submodule '{part}'")
            module = module._modules[part]
        return module

    def get_parameter(self, target):
        owner, _, name = target.rpartition(".")
        module = self.get_submodule(owner)
        if name not in module._parameters:
            raise AttributeError(f"{type(module).__name__} has no parameter '{name}'")
        return module._parameters[name]

    def apply(self, fn):
        """Call ``fn(module)`` on every submodule (children first) and on self; returns self."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def requires_grad_(self, requires_grad=True):
        """Set ``requires_grad`` of every parameter (False freezes them); returns self."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    # ------------------------------------------------------------ traversal
    def named_parameters(self, prefix="", recurse=True):
        seen = set()
        for module_prefix, module in (self.named_modules(prefix=prefix) if recurse else [(prefix, self)]):
            for name, p in module._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{module_prefix}.{name}" if module_prefix else name), p

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True):
        for module_prefix, module in (self.named_modules(prefix=prefix) if recurse else [(prefix, self)]):
            for name, b in module._buffers.items():
                if b is not None:
                    yield (f"{module_prefix}.{name}" if module_prefix else name), b

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def named_children(self):
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        if isinstance(memo, str):  # named_modules(prefix) as fastnn took it before
            memo, prefix = None, memo
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        if remove_duplicate:
            memo.add(id(self))
        yield prefix, self
        for name, m in self.named_children():
            yield from m.named_modules(memo, f"{prefix}.{name}" if prefix else name, remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    # ------------------------------------------------------------ modes, dtype
    def train(self, mode=True):
        mode = bool(mode)
        for m in self.modules():
            if m.training != mode:
                object.__setattr__(m, "training", mode)
                _mode_changes[0] += 1
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            p.zero_grad(set_to_none)

    def to(self, dtype):
        """Convert every floating parameter and buffer to ``dtype`` in place; returns self."""
        dt = np.dtype(dtype)
        if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"{type(self).__name__}.to: expected float32 or float64, got {dt}")
        for m in self.modules():
            for p in m._parameters.values():
                if p is not None and p.data.dtype != dt:
                    p.data = p.data.astype(dt)
                    p.grad = None
                    p._spare = None
            for b in m._buffers.values():
                if b is not None and b.data.dtype.kind == "f" and b.data.dtype != dt:
                    b.data = b.data.astype(dt)
            m._dtype_changed()
        return self

    def _dtype_changed(self):
        """Hook for layers that keep dtype-specific work buffers."""

    def cpu(self):
        return self

    def double(self):
        return self.to(np.float64)

    def float(self):
        return self.to(np.float32)

    @property
    def dtype(self):
        """The dtype of this module's first parameter (the default dtype if it has none)."""
        for p in self.parameters():
            return p.data.dtype.type
        return _config.get_default_dtype()

    # ------------------------------------------------------------ save/load, repr
    def _config(self):
        """Constructor keyword arguments, for ``fastnn.save``. Layers override."""
        return {}

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = []
        for name, m in self.named_children():
            child = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {child}")
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"
