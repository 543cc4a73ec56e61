"""``Parameter``: a trainable array and its gradient."""
import numpy as np

from .. import _config


class Parameter:
    """A trainable array: ``.data`` holds the values, ``.grad`` the gradient or None.

    Args:
        data: array-like; stored C-contiguous in its own dtype (float32/float64).
        requires_grad: if False, optimizers skip it and layers do not write ``.grad``.
    """

    __slots__ = ("data", "grad", "requires_grad", "_spare")

    def __init__(self, data, requires_grad=True):
        data = np.array(data, copy=True, order="C")
        if data.dtype.kind != "f":
            data = data.astype(_config.get_default_dtype())
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._spare = None

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def grad_for_write(self):
        """The gradient buffer for a backward kernel, and whether to accumulate.

        Returns ``(buffer, accumulate)``. When ``.grad`` is None the buffer is a
        reused spare (no allocation after the first step), made ``.grad`` here,
        and the kernel must overwrite it (accumulate False); otherwise it must add.
        """
        if self.grad is not None:
            return self.grad, True
        spare = self._spare
        if spare is None or spare.shape != self.data.shape or spare.dtype != self.data.dtype:
            spare = np.empty_like(self.data)
            self._spare = spare
        self.grad = spare
        return spare, False

    def zero_grad(self, set_to_none=True):
        if self.grad is None:
            return
        if set_to_none:
            self._spare = self.grad
            self.grad = None
        else:
            self.grad.fill(0)

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"
