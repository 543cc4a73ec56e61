"""``state_dict`` / ``load_state_dict`` for ``Module``: PyTorch's keys, order and checks."""
from collections import OrderedDict, namedtuple

import numpy as np

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class StateDict:
    """Mixin of ``Module``: parameters and buffers by dotted key (uses the module's
    ``_parameters``, ``_buffers``, ``named_children`` and ``named_modules``)."""

    def state_dict(self, prefix=""):
        """Parameters and persistent buffers as ``{dotted_key: ndarray copy}``, PyTorch's
        keys and order (a tied parameter appears under each of its names)."""
        out = OrderedDict()
        self._collect_state(out, prefix)
        return out

    def _collect_state(self, out, prefix):
        for name, p in self._parameters.items():
            if p is not None:
                out[prefix + name] = p.data.copy()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent:
                out[prefix + name] = np.array(b.data, copy=True)
        for name, m in self.named_children():
            m._collect_state(out, prefix + name + ".")

    def _state_slots(self, prefix=""):
        """``{key: (owner, name, kind)}`` for every parameter and buffer."""
        slots = OrderedDict()
        for module_prefix, module in self.named_modules():
            base = f"{prefix}{module_prefix}." if module_prefix else prefix
            for name, p in module._parameters.items():
                if p is not None:
                    slots[base + name] = (module, name, "param")
            for name, b in module._buffers.items():
                if b is not None and name not in module._non_persistent:
                    slots[base + name] = (module, name, "buffer")
        return slots

    def load_state_dict(self, state_dict, strict=True):
        """Copy values from ``state_dict`` (arrays or anything with ``.numpy()``).

        Shapes must match exactly; values are converted to each parameter's dtype.
        With ``strict`` (default) missing or unexpected keys raise ``KeyError``.
        Returns ``(missing_keys, unexpected_keys)``.
        """
        slots = self._state_slots()
        missing = [k for k in slots if k not in state_dict]
        unexpected = [k for k in state_dict if k not in slots]
        if strict and (missing or unexpected):
            raise KeyError(
                f"{type(self).__name__}.load_state_dict: missing keys {missing}, unexpected keys {unexpected}"
            )
        staged = []
        for key, (owner, name, kind) in slots.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            if hasattr(value, "detach"):
                value = value.detach()
            if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
                value = value.numpy()
            value = np.asarray(value)
            target = owner._parameters[name].data if kind == "param" else owner._buffers[name]
            target_shape = np.shape(target)
            if value.shape != target_shape:
                raise ValueError(
                    f"{type(self).__name__}.load_state_dict: '{key}' expected shape "
                    f"{target_shape}, got {value.shape}"
                )
            if value.dtype.kind not in "fiub":
                raise TypeError(
                    f"{type(self).__name__}.load_state_dict: '{key}' has dtype {value.dtype}, expected a number"
                )
            staged.append((owner, name, kind, value))
        for owner, name, kind, value in staged:
            tensor = owner._parameters[name] if kind == "param" else owner._buffers[name]
            if kind == "param" or tensor.data.ndim > 0:
                np.copyto(tensor.data, value, casting="unsafe")
            else:
                tensor.data = np.asarray(value, dtype=tensor.data.dtype).copy()
            tensor._version += 1  # an in-place write: inference plans built on the old values rebuild
        return IncompatibleKeys(missing, unexpected)
