"""``Parameter``: a leaf Tensor that a Module registers as trainable."""
import numpy as np

from .. import _config
from ..tensor import Tensor


class Parameter(Tensor):
    """A trainable leaf Tensor: ``.data`` holds the values, ``.grad`` the gradient (a
    Tensor) or None. Assigning one to a Module attribute registers it; assigning one
    module's parameter to another module ties them (one array, gradients summed).

    Args:
        data: a Tensor (its array is shared, as in PyTorch) or array-like (copied,
            C-contiguous); integer data becomes the default float dtype.
        requires_grad: if False, backward leaves ``.grad`` alone and optimizers skip it.

    Example:
        >>> self.scale = fastnn.nn.Parameter(fastnn.ones(16))
    """

    __slots__ = ("_spare",)  # the gradient buffer zero_grad(set_to_none=True) released

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            array = np.empty(0, _config.get_default_dtype())
        elif isinstance(data, Tensor):
            array = data.data
            if not array.flags.c_contiguous:
                array = np.ascontiguousarray(array)
        else:
            array = np.array(data, copy=True, order="C")
        if array.dtype.kind != "f":
            array = array.astype(_config.get_default_dtype())
        self.data = array
        self.grad = None
        self.grad_fn = None
        self._version = 0
        self._output_nr = 0
        self._spare = None
        self.requires_grad = bool(requires_grad)

    def zero_grad(self, set_to_none=True):
        """Drop the gradient (keeping its buffer for the next backward to overwrite),
        or fill it with zeros."""
        if self.grad is None:
            return
        if set_to_none:
            self._spare = self.grad.data
            self.grad = None
        else:
            self.grad.data.fill(0)

    @property
    def size_(self):
        return self.data.size

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


def add_weight_and_bias(module, weight_shape, bias_size, bias, dtype=None):
    """Register ``module.weight`` (uninitialised, ``weight_shape``) and ``module.bias``
    (``bias_size``, or None when ``bias`` is False) in ``dtype`` (default: the default
    dtype), the parameters of Linear, Bilinear and the convolutions."""
    dt = dtype or _config.get_default_dtype()
    module.weight = Parameter(np.empty(weight_shape, dt))
    if bias:
        module.bias = Parameter(np.empty(bias_size, dt))
    else:
        module.register_parameter("bias", None)
