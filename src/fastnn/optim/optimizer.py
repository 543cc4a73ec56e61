"""``Optimizer``: the base class that owns parameters, groups, state and ``step``.

Subclasses validate their hyperparameters in ``_check_group`` and write only the
per-parameter update in ``_update``; the loop over groups and parameters, the
checks on gradients, ``zero_grad`` and ``state_dict`` live here. Updates write
``p.data`` in place (Numba kernels, no autograd) from ``p.grad.data``. State is
kept as plain numpy arrays, numbers and bools so checkpoints need no pickle.
"""
import copy
import numbers

import numpy as np

from ..autograd.grad_mode import enable_grad
from ..nn._validate import FLOAT_DTYPES
from ..nn.parameter import Parameter
from ..tensor import Tensor

_EMPTY = {dt: np.empty(0, dtype=dt) for dt in FLOAT_DTYPES}


def unused_buffer(dtype):
    """A zero-length array that stands in for a state buffer a kernel will not touch."""
    return _EMPTY[np.dtype(dtype)]


def check_number(owner, name, value, low=0.0, high=None):
    """Raise unless ``value`` is a real number with ``low <= value`` (and ``< high``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a real number, got {value!r}")
    if not (low <= value and (high is None or value < high)):
        expected = f"in [{low}, {high})" if high is not None else f">= {low}"
        raise ValueError(f"{owner}: invalid {name} {value!r}, expected a value {expected}")


class Optimizer:
    """Base class of all optimizers (PyTorch's ``torch.optim.Optimizer`` layout).

    Args:
        params: an iterable of ``Parameter`` s (or leaf Tensors), or of dicts with a
            ``'params'`` list and per-group hyperparameters that override ``defaults``.
        defaults: the hyperparameters every group starts from.

    Attributes:
        param_groups: list of dicts; ``group['lr']`` may be changed between steps
            (learning-rate schedulers do).
        state: per-parameter dicts of arrays and counters, created on first step.

    Example:
        >>> opt = fastnn.optim.SGD([{'params': model[0].parameters()},
        ...                         {'params': model[2].parameters(), 'lr': 1e-3}],
        ...                        lr=1e-2, momentum=0.9)
        >>> opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
    """

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = {}
        self.param_groups = []
        name = type(self).__name__
        if isinstance(params, (Tensor, np.ndarray)):
            raise TypeError(f"{name}: params must be an iterable of Parameters or dicts, "
                            f"got a single {type(params).__name__}; wrap it in a list")
        try:
            params = list(params)
        except TypeError:
            raise TypeError(f"{name}: params must be an iterable of Parameters or dicts, "
                            f"got {type(params).__name__}") from None
        if not params:
            raise ValueError(f"{name}: got an empty parameter list")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        for group in params:
            self.add_param_group(group)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {key}: {group[key]}" for key in sorted(group) if key != "params")
        return "\n".join(lines) + "\n)"

    # ------------------------------------------------------------ groups
    def _check_group(self, group):
        """Raise ``ValueError``/``TypeError`` for bad hyperparameters. Subclasses override."""

    def _validate(self, group):
        for flag in ("maximize", "amsgrad", "capturable", "differentiable"):
            if group.get(flag):
                raise ValueError(f"{type(self).__name__}: {flag}=True is not supported")
        self._check_group(group)

    def add_param_group(self, param_group):
        """Add a dict with ``'params'`` (and optional hyperparameters) as a new group."""
        name = type(self).__name__
        if not isinstance(param_group, dict) or "params" not in param_group:
            raise TypeError(f"{name}: a parameter group must be a dict with a 'params' entry")
        group = dict(param_group)
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: can only optimize Parameters (Tensors), got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"{name}: can't optimize a non-leaf Tensor (one made by an operation)")
            if p.data.dtype not in FLOAT_DTYPES:
                raise TypeError(f"{name}: parameters must be float32 or float64, got {p.data.dtype}")
        if len({id(p) for p in params}) != len(params):
            raise ValueError(f"{name}: a parameter group contains the same parameter twice")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError(f"{name}: some parameters appear in more than one parameter group")
        group["params"] = params
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._validate(group)
        self.param_groups.append(group)

    # ------------------------------------------------------------ stepping
    def zero_grad(self, set_to_none=True):
        """Reset the gradients of all parameters (to None by default, like PyTorch)."""
        for group in self.param_groups:
            for p in group["params"]:
                if isinstance(p, Parameter):
                    p.zero_grad(set_to_none)
                elif p.grad is not None:
                    if set_to_none:
                        p.grad = None
                    else:
                        p.grad.data.fill(0)

    def step(self, closure=None):
        """Update every parameter that has a gradient and ``requires_grad``.

        ``closure``, if given, is called first with grad enabled (it should zero the
        gradients, recompute the loss and call ``backward``); its return value is
        returned.
        """
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None or not p.requires_grad:
                    continue
                data, grad = self._flat_views(p)
                self._update(p, data, grad, self.state.setdefault(p, {}), group)
                p._version += 1  # an in-place write: a graph that saved p must not backward through it
        return loss

    def _update(self, param, data, grad, state, group):
        """Update one parameter in place. ``data``/``grad`` are flat views (n,)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _update")

    def _views(self, p):
        """This parameter's cache of checked flat views: ``'data'``: (data array, its
        flat view); a state key: (state array, data array, its flat view). An entry is
        used while the arrays it came from are the very ones in place (``is``), so a
        step checks and flattens each parameter's data and state once, not every time."""
        cache = self.__dict__.setdefault("_flat", {})
        entry = cache.get(id(p))
        if entry is None or entry["param"] is not p:
            entry = cache[id(p)] = {"param": p}
        return entry

    def _flat_views(self, p):
        """Flat views of ``p.data`` (updated in place) and of its gradient, checked."""
        name = type(self).__name__
        data, grad = p.data, p.grad
        if not isinstance(grad, Tensor):
            raise TypeError(f"{name}.step: a parameter's .grad must be a Tensor or None, got {type(grad).__name__}")
        grad = grad.data
        views = self._views(p)
        hit = views.get("data")
        if hit is not None and hit[0] is data:
            flat = hit[1]
        else:
            if data.dtype not in FLOAT_DTYPES or not data.flags.c_contiguous or not data.flags.writeable:
                raise ValueError(f"{name}.step: parameter data must be a writeable C-contiguous float32/"
                                 f"float64 array, got dtype {data.dtype} with flags {data.flags}")
            flat = data.reshape(-1)
            views["data"] = (data, flat)
        if np.shape(grad) != data.shape:
            raise ValueError(f"{name}.step: gradient of shape {np.shape(grad)} does not match "
                             f"its parameter of shape {data.shape}")
        if type(grad) is not np.ndarray or grad.dtype != data.dtype or not grad.flags.c_contiguous:
            grad = np.ascontiguousarray(grad, dtype=data.dtype)
        return flat, grad.reshape(-1)

    def _buffer(self, state, key, param, fill=0.0):
        """The state array ``state[key]`` as a flat view, created as ``fill`` if missing."""
        buf = state.get(key)
        data = param.data
        views = self._views(param)
        hit = views.get(key)
        if hit is not None and hit[0] is buf and hit[1] is data:
            return hit[2]
        if buf is None:
            buf = np.full_like(data, fill) if fill is not None else np.empty_like(data)
            state[key] = buf
        elif buf.shape != data.shape or buf.dtype != data.dtype or not buf.flags.c_contiguous:
            raise ValueError(
                f"{type(self).__name__}.step: state '{key}' has shape {buf.shape} and dtype "
                f"{buf.dtype} but its parameter has {data.shape} and {data.dtype}; create a new "
                "optimizer after changing a model's dtype"
            )
        flat = buf.reshape(-1)
        views[key] = (buf, data, flat)
        return flat

    # ------------------------------------------------------------ state
    def state_dict(self):
        """A copy of the state in PyTorch's layout.

        ``{'state': {index: {name: array or number}}, 'param_groups': [{hyper..., 'params':
        [index, ...]}]}``: parameters are numbered in group order, from 0.
        """
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {index[id(p)]: copy.deepcopy(s) for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Load a ``state_dict()`` (this optimizer's or PyTorch's: arrays, fastnn Tensors
        or torch tensors).

        Groups must match in number and size. Arrays are copied and cast to each
        parameter's dtype; hyperparameters come from the saved groups.
        """
        name = type(self).__name__
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: {len(saved_groups)} parameter groups saved, "
                             f"the optimizer has {len(self.param_groups)}")
        by_index = {}
        new_groups = []
        for group, saved in zip(self.param_groups, saved_groups):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{name}.load_state_dict: a saved group has {len(saved['params'])} "
                                 f"parameters, the optimizer's has {len(group['params'])}")
            by_index.update({int(i): p for i, p in zip(saved["params"], group["params"])})
            new_group = dict(group)
            new_group.update({k: copy.deepcopy(v) for k, v in saved.items() if k != "params"})
            new_group["params"] = group["params"]
            self._validate(new_group)
            new_groups.append(new_group)
        new_state = {}
        for key, values in state_dict["state"].items():
            if int(key) not in by_index:
                raise ValueError(f"{name}.load_state_dict: state for unknown parameter index {key}")
            p = by_index[int(key)]
            new_state[p] = {k: self._loaded_value(p, k, v) for k, v in values.items()}
        for group, new_group in zip(self.param_groups, new_groups):
            group.update(new_group)
        self.state = new_state

    def _loaded_value(self, p, key, value):
        """A saved state entry, converted: arrays to ``p``'s dtype and shape, 'step' to int."""
        if isinstance(value, Tensor):
            value = value.data
        elif hasattr(value, "detach"):  # a torch tensor
            value = value.detach().cpu().numpy()
        if key == "step":
            return int(np.asarray(value).item())
        if isinstance(value, np.ndarray):
            if value.shape != p.data.shape:
                raise ValueError(f"{type(self).__name__}.load_state_dict: state '{key}' has shape "
                                 f"{value.shape}, its parameter has {p.data.shape}")
            return np.array(value, dtype=p.data.dtype, order="C", copy=True)
        return copy.deepcopy(value)
