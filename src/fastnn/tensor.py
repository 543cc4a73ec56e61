"""``fastnn.Tensor``: one NumPy array plus what autograd needs.

A Tensor wraps ``data`` (an ndarray, shared, never copied on wrapping) with
``requires_grad``, ``grad`` (a Tensor or None), ``grad_fn`` (the node that made it,
None for leaves) and a version counter that in-place writes bump. Operations live
in ``fastnn.ops``; the methods here are thin forwards to them, so ``x.sum(1)`` and
``fastnn.sum(x, 1)`` are the same call.
"""
import numpy as np

from . import _config
from .autograd import engine as _engine
from .autograd.grad_mode import _state

_new = object.__new__


def _wrap(array):
    """A Tensor around ``array`` (no copy, no checks): the constructor operations use."""
    t = _new(Tensor)
    t.data = array
    t.requires_grad = False
    t.grad = None
    t.grad_fn = None
    t._version = 0
    t._output_nr = 0
    return t


def _data_of(value, dtype=None):
    """The ndarray behind a Tensor, array, number or nested list (lists of Tensors too)."""
    if isinstance(value, Tensor):
        return value.data
    if isinstance(value, (list, tuple)) and value and any(isinstance(v, Tensor) for v in value):
        value = [_data_of(v) for v in value]
    array = np.asarray(value, dtype=dtype)
    if array.dtype.kind in "OSUV":
        raise TypeError(f"tensor: expected numeric data, got {type(value).__name__} of dtype {array.dtype}")
    return array


def _default_dtype_for(array):
    """PyTorch's inference: Python floats become the default dtype, ints int64."""
    if array.dtype == np.float64:
        return _config.get_default_dtype()
    return None


class Tensor:
    """An n-d array with autograd, backed by one NumPy array.

    ``Tensor(data)`` makes a float tensor of the default dtype (``Tensor(2, 3)``: an
    uninitialised 2x3 one); prefer ``fastnn.tensor(data)``, which keeps integer and
    boolean dtypes.
    """

    __slots__ = ("data", "requires_grad", "grad", "grad_fn", "_version", "_output_nr", "__weakref__")
    __array_ufunc__ = None  # ndarray + Tensor -> Tensor.__radd__, not an object array
    __array_priority__ = 1000

    def __init__(self, *args, requires_grad=False):
        dt = _config.get_default_dtype()
        if args and all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in args):
            data = np.empty(tuple(int(a) for a in args), dt)
        elif len(args) == 1:
            data = np.array(_data_of(args[0]), dtype=dt)
        elif not args:
            data = np.empty((0,), dt)
        else:
            raise TypeError(f"Tensor: expected sizes or one array-like, got {args!r}")
        self.data = data
        self.requires_grad = False
        self.grad = None
        self.grad_fn = None
        self._version = 0
        self._output_nr = 0
        if requires_grad:
            self.requires_grad_(True)

    # ------------------------------------------------------------ attributes
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def T(self):  # noqa: N802 (PyTorch's name)
        return _ops.permute(self, tuple(range(self.data.ndim - 1, -1, -1)))

    @property
    def mT(self):  # noqa: N802
        return _ops.transpose(self, -2, -1)

    @property
    def device(self):
        return "cpu"

    @property
    def is_cuda(self):
        return False

    def size(self, dim=None):
        if dim is None:
            return self.data.shape
        return self.data.shape[_ops.check_dim(dim, self.data.ndim, "size")]

    def dim(self):
        return self.data.ndim

    def ndimension(self):
        return self.data.ndim

    def numel(self):
        return self.data.size

    def nelement(self):
        return self.data.size

    def element_size(self):
        return self.data.itemsize

    def is_floating_point(self):
        return self.data.dtype.kind == "f"

    def is_contiguous(self):
        return self.data.flags.c_contiguous

    def stride(self, dim=None):
        strides = tuple(s // self.data.itemsize for s in self.data.strides)
        return strides if dim is None else strides[dim]

    def data_ptr(self):
        return self.data.__array_interface__["data"][0]

    def __len__(self):
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __iter__(self):
        if self.data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        if not self.requires_grad:
            return (_wrap(row) for row in self.data)
        return iter(_ops.unbind(self, 0))

    def __hash__(self):
        return id(self)

    def __repr__(self):
        body = np.array2string(self.data, separator=", ", prefix="tensor(")
        extra = ""
        if self.data.dtype != _config.get_default_dtype() and self.data.dtype not in (np.int64, np.bool_):
            extra += f", dtype=fastnn.{self.data.dtype}"
        if self.grad_fn is not None:
            extra += f", grad_fn=<{self.grad_fn.name()}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    __str__ = __repr__

    def __array__(self, dtype=None, copy=None):
        if dtype is not None and dtype != self.data.dtype:
            return self.data.astype(dtype)
        return self.data

    def __bool__(self):
        if self.data.size != 1:
            raise RuntimeError(f"Boolean value of Tensor with {self.data.size} values is ambiguous")
        return bool(self.data)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.data.dtype.kind not in "iu" or self.data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.data.reshape(-1)[0])

    def __format__(self, spec):
        if self.data.size == 1 and spec:
            return format(self.item(), spec)
        return format(repr(self), spec)

    def __getstate__(self):
        return {"data": self.data, "requires_grad": self.requires_grad}

    def __setstate__(self, state):
        self.data = state["data"]
        self.requires_grad = state["requires_grad"]
        self.grad = self.grad_fn = None
        self._version = self._output_nr = 0

    def __reduce_ex__(self, protocol):
        return (_rebuild, (type(self), self.data, self.requires_grad))

    def __deepcopy__(self, memo):
        if not self.is_leaf:
            raise RuntimeError("Only Tensors created explicitly by the user (graph leaves) support the "
                               "deepcopy protocol")
        t = _new(type(self))
        t.data = self.data.copy()
        t.requires_grad = self.requires_grad
        t.grad = None if self.grad is None else _wrap(self.grad.data.copy())
        t.grad_fn = None
        t._version = 0
        t._output_nr = 0
        if hasattr(type(self), "_spare"):
            t._spare = None
        memo[id(self)] = t
        return t

    # ------------------------------------------------------------ conversion
    def item(self):
        if self.data.size != 1:
            raise RuntimeError(f"item: a Tensor with {self.data.size} elements cannot be converted to a Python number")
        return self.data.reshape(-1)[0].item()

    def tolist(self):
        return self.data.tolist()

    def numpy(self, force=False):
        if self.requires_grad and not force:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead.")
        return self.data

    def detach(self):
        """A new leaf sharing this tensor's data, outside the graph."""
        return _wrap(self.data)

    def detach_(self):
        self.grad_fn = None
        self.requires_grad = False
        return self

    def clone(self, memory_format=None):
        return _ops.clone(self)

    def requires_grad_(self, requires_grad=True):
        if not self.is_leaf and not requires_grad:
            raise RuntimeError("requires_grad_: you can only change requires_grad flags of leaf variables")
        if requires_grad and self.data.dtype.kind != "f":
            raise RuntimeError(f"requires_grad_: only floating point tensors can require gradients, got {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        return self

    def retain_grad(self):
        raise NotImplementedError("retain_grad: not supported; use fastnn.autograd.grad(output, tensor)")

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        """Accumulate d self / d leaf into ``leaf.grad`` for every leaf that requires grad.

        ``gradient`` is needed unless self has one element. The graph is freed unless
        ``retain_graph=True``."""
        from .autograd import backward

        backward(self, gradient, retain_graph, create_graph, inputs)

    def to(self, *args, **kwargs):
        dtype = kwargs.get("dtype")
        for a in args:
            if isinstance(a, Tensor):
                dtype = a.dtype
            elif not isinstance(a, str) and a is not None:
                dtype = a
        if dtype is None:
            return self
        return _ops.to_dtype(self, dtype)

    def type(self, dtype=None):
        if dtype is None:
            return f"fastnn.{self.data.dtype}"
        return self.to(dtype)

    def type_as(self, other):
        return self.to(other.dtype)

    def float(self):
        return _ops.to_dtype(self, np.float32)

    def double(self):
        return _ops.to_dtype(self, np.float64)

    def half(self):
        raise TypeError("half: fastnn computes in float32 and float64 only")

    def long(self):
        return _ops.to_dtype(self, np.int64)

    def int(self):
        return _ops.to_dtype(self, np.int32)

    def bool(self):
        return _ops.to_dtype(self, np.bool_)

    def cpu(self):
        return self

    def cuda(self, *args, **kwargs):
        raise RuntimeError("fastnn runs on the CPU only")

    def new_zeros(self, *size, dtype=None, requires_grad=False):
        return _ops.zeros(*size, dtype=dtype or self.dtype, requires_grad=requires_grad)

    def new_ones(self, *size, dtype=None, requires_grad=False):
        return _ops.ones(*size, dtype=dtype or self.dtype, requires_grad=requires_grad)

    def new_full(self, size, fill_value, dtype=None, requires_grad=False):
        return _ops.full(size, fill_value, dtype=dtype or self.dtype, requires_grad=requires_grad)

    def new_empty(self, *size, dtype=None, requires_grad=False):
        return _ops.empty(*size, dtype=dtype or self.dtype, requires_grad=requires_grad)

    def new_tensor(self, data, dtype=None, requires_grad=False):
        return _ops.tensor(data, dtype=dtype or self.dtype, requires_grad=requires_grad)

    # ------------------------------------------------------------ in place (no grad)
    def _check_inplace(self, what):
        if self.requires_grad and _state.enabled:
            if self.grad_fn is None:
                raise RuntimeError(f"{what}: a leaf Variable that requires grad is being used in an in-place "
                                   "operation (wrap it in fastnn.no_grad(), or use an out-of-place operation)")
            raise RuntimeError(f"{what}: in-place operations on tensors that require grad are not supported; "
                               "use the out-of-place form")
        self._version += 1

    def __setitem__(self, index, value):
        self._check_inplace("__setitem__")
        self.data[_ops.index_of(index)] = _data_of(value)

    def zero_(self):
        self._check_inplace("zero_")
        self.data.fill(0)
        return self

    def fill_(self, value):
        self._check_inplace("fill_")
        self.data.fill(_data_of(value))
        return self

    def copy_(self, src):
        self._check_inplace("copy_")
        np.copyto(self.data, np.broadcast_to(_data_of(src), self.data.shape), casting="unsafe")
        return self

    def add_(self, other, alpha=1):
        self._check_inplace("add_")
        other = _data_of(other)
        self.data += other if alpha == 1 else alpha * other
        return self

    def sub_(self, other, alpha=1):
        return self.add_(other, -alpha)

    def mul_(self, other):
        self._check_inplace("mul_")
        self.data *= _data_of(other)
        return self

    def div_(self, other):
        self._check_inplace("div_")
        self.data /= _data_of(other)
        return self

    def clamp_(self, min=None, max=None):
        self._check_inplace("clamp_")
        np.clip(self.data, min, max, out=self.data)
        return self

    def masked_fill_(self, mask, value):
        self._check_inplace("masked_fill_")
        self.data[np.broadcast_to(_data_of(mask), self.data.shape).astype(bool)] = _data_of(value)
        return self

    def normal_(self, mean=0.0, std=1.0, generator=None):
        from .nn import init

        self._check_inplace("normal_")
        init.normal_(self.data, mean, std, generator)
        return self

    def uniform_(self, a=0.0, b=1.0, generator=None):
        from .nn import init

        self._check_inplace("uniform_")
        init.uniform_(self.data, a, b, generator)
        return self

    # ------------------------------------------------------------ operators
    def __add__(self, other):
        return _ops.add(self, other)

    def __radd__(self, other):
        return _ops.add(other, self)

    def __sub__(self, other):
        return _ops.sub(self, other)

    def __rsub__(self, other):
        return _ops.sub(other, self)

    def __mul__(self, other):
        return _ops.mul(self, other)

    def __rmul__(self, other):
        return _ops.mul(other, self)

    def __truediv__(self, other):
        return _ops.div(self, other)

    def __rtruediv__(self, other):
        return _ops.div(other, self)

    def __floordiv__(self, other):
        return _ops.floor_divide(self, other)

    def __rfloordiv__(self, other):
        return _ops.floor_divide(other, self)

    def __mod__(self, other):
        return _ops.remainder(self, other)

    def __pow__(self, other):
        return _ops.pow(self, other)

    def __rpow__(self, other):
        return _ops.pow(other, self)

    def __matmul__(self, other):
        return _ops.matmul(self, other)

    def __rmatmul__(self, other):
        return _ops.matmul(other, self)

    def __neg__(self):
        return _ops.neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _ops.abs(self)

    def __invert__(self):
        return _ops.bitwise_not(self)

    def __and__(self, other):
        return _ops.bitwise_and(self, other)

    def __rand__(self, other):
        return _ops.bitwise_and(other, self)

    def __or__(self, other):
        return _ops.bitwise_or(self, other)

    def __ror__(self, other):
        return _ops.bitwise_or(other, self)

    def __xor__(self, other):
        return _ops.bitwise_xor(self, other)

    def __getitem__(self, index):
        return _ops.getitem(self, index)

    def where(self, condition, other):
        """``fastnn.where(condition, self, other)``."""
        return _ops.where(condition, self, other)

    def __eq__(self, other):
        return _ops.eq(self, other)

    def __ne__(self, other):
        return _ops.ne(self, other)

    def __lt__(self, other):
        return _ops.lt(self, other)

    def __le__(self, other):
        return _ops.le(self, other)

    def __gt__(self, other):
        return _ops.gt(self, other)

    def __ge__(self, other):
        return _ops.ge(self, other)



def _rebuild(cls, data, requires_grad):
    t = _new(cls)
    t.data = data
    t.requires_grad = requires_grad
    t.grad = t.grad_fn = None
    t._version = t._output_nr = 0
    if hasattr(cls, "_spare"):
        t._spare = None
    return t


# Methods that forward to the operation of the same name: x.exp() is ops.exp(x).
_FORWARDED = (
    "abs", "exp", "log", "log1p", "log2", "log10", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid", "relu",
    "square", "sign", "floor", "ceil", "round", "reciprocal", "neg", "pow", "clamp", "clip", "maximum",
    "minimum", "masked_fill", "softmax", "log_softmax", "logsumexp", "sum", "mean", "var", "std", "max", "min",
    "amax", "amin", "norm", "matmul", "mm", "bmm", "reshape", "view", "flatten", "unsqueeze", "squeeze",
    "permute", "transpose", "t", "expand", "expand_as", "repeat", "contiguous", "split", "chunk", "unbind",
    "gather", "index_select", "argmax", "argmin", "sort", "argsort", "topk", "isnan", "isinf", "isfinite",
    "all", "any", "eq", "ne", "lt", "le", "gt", "ge", "add", "sub", "mul", "div", "where", "prod", "cumsum",
    "view_as", "reshape_as", "flip", "roll", "tril", "triu", "addmm", "outer", "dot", "logical_not",
    "nonzero", "unique", "allclose", "equal", "narrow", "diagonal", "trace", "movedim", "moveaxis",
    "swapaxes", "swapdims", "unflatten",
)


def _forwarder(name):
    def method(self, *args, **kwargs):
        return getattr(_ops, name)(self, *args, **kwargs)

    method.__name__ = name
    method.__qualname__ = f"Tensor.{name}"
    return method


for _name in _FORWARDED:
    if not hasattr(Tensor, _name):
        setattr(Tensor, _name, _forwarder(_name))
Tensor.absolute = Tensor.abs
Tensor.multiply = Tensor.mul
Tensor.subtract = Tensor.sub
Tensor.divide = Tensor.div
Tensor.greater = Tensor.gt
Tensor.less = Tensor.lt

_engine._wrap = _wrap

from . import ops as _ops  # noqa: E402  (ops import Tensor from here)
