"""``fastnn.gradcheck``: compare autograd's gradients with central differences.

Works for any function of tensors and any module, as ``torch.autograd.gradcheck``
does: the objective is ``sum(upstream * fn(*inputs))`` for a fixed random
``upstream`` per output, and every float input that requires grad (and, for a
module, every parameter that requires grad) is checked entry by entry. Run it in
float64 (``module.double()``, float64 inputs).
"""
import numpy as np

from .autograd import grad as autograd_grad
from .autograd.grad_mode import no_grad
from .nn.module import Module
from .tensor import Tensor, _wrap


def _outputs(result):
    items = result if isinstance(result, (tuple, list)) else (result,)
    flat = []
    for item in items:
        if isinstance(item, (tuple, list)):  # e.g. an LSTM's (h_n, c_n)
            flat.extend(_outputs(item))
        elif isinstance(item, Tensor):
            flat.append(item)
    return flat


def _sample(shape, max_checks, rng):
    size = int(np.prod(shape))
    if size <= max_checks:
        return range(size)
    return np.sort(rng.choice(size, max_checks, replace=False))


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, seed=0, max_checks=120,
              check_params=True):
    """Check ``fn``'s autograd gradients against float64 central differences.

    Args:
        fn: a function of tensors or a Module, returning a Tensor or a tuple of them.
        inputs: a Tensor, an array or a tuple of arguments. Tensors with
            ``requires_grad`` are checked, and so are float NumPy arrays (each becomes
            a Tensor that requires grad; pass a Tensor without grad for a float
            constant); everything else is passed as it is.
        eps: finite-difference step.
        atol, rtol: tolerance, ``|analytic - numeric| <= atol + rtol * |numeric|``.
        raise_exception: raise ``AssertionError`` naming the failing entries
            (otherwise return False).
        seed: seeds the random upstream gradients and the sampled entries.
        max_checks: at most this many entries of each array are checked.
        check_params: for a Module, also check every parameter that requires grad.

    Returns True when every checked entry agrees.

    Example:
        >>> x = fastnn.randn(4, 3, dtype=fastnn.float64, requires_grad=True)
        >>> fastnn.gradcheck(lambda t: (t * t).sum(1), (x,))
        True
    """
    if not callable(fn):
        raise TypeError(f"gradcheck: expected a function or Module, got {type(fn).__name__}")
    args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    args = tuple(_wrap(np.array(a, dtype=np.float64)).requires_grad_()
                 if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a for a in args)
    rng = np.random.default_rng(seed)
    checked = [(f"input {i}", a) for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad]
    buffers = []
    if isinstance(fn, Module):
        if check_params:
            checked += [(name, p) for name, p in fn.named_parameters() if p.requires_grad]
        buffers = [(b, b.data.copy()) for b in fn.buffers()]
    if not checked:
        raise ValueError("gradcheck: no input (or parameter) requires grad")

    def restore():
        for b, saved in buffers:
            b.data[...] = saved

    outputs = _outputs(fn(*args))
    float_outputs = [o for o in outputs if o.data.dtype.kind == "f"]
    upstream = [rng.standard_normal(o.shape) for o in float_outputs]
    live = [(o, u) for o, u in zip(float_outputs, upstream) if o.requires_grad]
    if not live:
        raise ValueError("gradcheck: no output requires grad")
    analytic = autograd_grad([o for o, _ in live], [t for _, t in checked],
                             [u.astype(o.dtype) for o, u in live], allow_unused=True)
    restore()

    def objective():
        with no_grad():
            outs = [o for o in _outputs(fn(*args)) if o.data.dtype.kind == "f"]
        restore()
        return sum(float(np.sum(np.asarray(o.data, np.float64) * u)) for o, u in zip(outs, upstream))

    failures = []
    for (name, tensor), grad in zip(checked, analytic):
        data = tensor.data
        grad = np.zeros(data.shape) if grad is None else np.asarray(grad.data, np.float64)
        for flat in _sample(data.shape, max_checks, rng):
            idx = np.unravel_index(flat, data.shape)
            orig = data[idx]
            data[idx] = orig + eps
            plus = objective()
            data[idx] = orig - eps
            minus = objective()
            data[idx] = orig
            numeric = (plus - minus) / (2 * eps)
            got = grad[idx]
            if not abs(got - numeric) <= atol + rtol * abs(numeric):
                failures.append(f"{name}[{tuple(int(i) for i in idx)}]: analytic {got:.8g}, numeric {numeric:.8g}")
    if failures:
        if raise_exception:
            shown = "\n  ".join(failures[:10])
            what = type(fn).__name__ if isinstance(fn, Module) else getattr(fn, "__name__", "function")
            raise AssertionError(f"gradcheck of {what} failed at {len(failures)} entries:\n  {shown}")
        return False
    return True
