"""``fastnn.gradcheck``: compare a layer's backward with central differences.

Works for any module (``backward(grad_output)`` returning d/dx and accumulating
``param.grad``) and for losses (``forward(pred, target)`` returning a float and
``backward()`` returning d loss / d pred). Run it in float64: ``model.double()``.
"""
import numpy as np

from .nn.module import Module
backward_with = None  # (being ported)


def _scalar_objective(module, inputs, upstream):
    """sum(upstream * module(*inputs)) for layers, the loss value for losses."""
    out = module(*inputs)
    if isinstance(out, tuple):
        out = out[0]
    if upstream is None:
        return float(out)
    return float(np.sum(np.asarray(out, dtype=np.float64) * upstream))


def _sample(size, max_checks, rng):
    if size <= max_checks:
        return np.arange(size)
    return np.sort(rng.choice(size, max_checks, replace=False))


def gradcheck(module, *inputs, eps=1e-6, atol=1e-6, rtol=1e-4, max_checks=120, seed=0,
              check_params=True, raise_exception=True):
    """Check ``module``'s analytic gradients against float64 central differences.

    Args:
        module: a fastnn Module or loss, ideally in float64 (``module.double()``).
        *inputs: forward arguments; only the first is differentiated (the rest,
            e.g. targets or an initial state, are held fixed).
        eps: finite-difference step.
        atol, rtol: tolerance, ``|analytic - numeric| <= atol + rtol * |numeric|``.
        max_checks: at most this many randomly chosen entries per array.
        check_params: also check every parameter's ``.grad``.
        raise_exception: raise ``AssertionError`` with details on failure
            (otherwise return False).

    Returns True when every checked entry agrees.

    Example:
        >>> fastnn.gradcheck(fastnn.nn.Linear(3, 2).double(), np.random.rand(4, 3))
        True
    """
    if not isinstance(module, Module):
        raise TypeError(f"gradcheck: expected a fastnn Module, got {type(module).__name__}")
    rng = np.random.default_rng(seed)
    x = np.array(inputs[0], dtype=np.float64, copy=True)
    rest = inputs[1:]
    module.train()
    buffers = [(m, dict(m._buffers)) for m in module.modules()]
    saved = {id(m): {k: np.array(v, copy=True) for k, v in b.items() if v is not None} for m, b in buffers}

    def restore_buffers():
        for m, b in buffers:
            for k in b:
                if k in saved[id(m)]:
                    m._buffers[k] = np.array(saved[id(m)][k], copy=True)

    first = module(x, *rest)
    is_loss = np.isscalar(first) or isinstance(first, float)
    out = first[0] if isinstance(first, tuple) else first
    upstream = None if is_loss else rng.standard_normal(np.shape(out))
    restore_buffers()

    module.zero_grad()
    _scalar_objective(module, (x,) + rest, upstream)
    dx = module.backward() if is_loss else backward_with(module, upstream.astype(np.asarray(out).dtype), True)
    analytic = [("input", x, np.asarray(dx, dtype=np.float64).reshape(x.shape))]
    if check_params:
        for name, p in module.named_parameters():
            if p.requires_grad:
                grad = np.zeros(p.shape) if p.grad is None else np.array(p.grad, dtype=np.float64)
                analytic.append((name, p.data, grad))
    restore_buffers()

    failures = []
    for name, array, grad in analytic:
        flat = array.reshape(-1)
        for idx in _sample(flat.size, max_checks, rng):
            orig = flat[idx]
            flat[idx] = orig + eps
            plus = _scalar_objective(module, (x,) + rest, upstream)
            restore_buffers()
            flat[idx] = orig - eps
            minus = _scalar_objective(module, (x,) + rest, upstream)
            restore_buffers()
            flat[idx] = orig
            numeric = (plus - minus) / (2 * eps)
            got = grad.reshape(-1)[idx]
            if not abs(got - numeric) <= atol + rtol * abs(numeric):
                failures.append(f"{name}[{np.unravel_index(idx, array.shape)}]: analytic {got:.8g}, numeric {numeric:.8g}")
    if failures:
        if raise_exception:
            shown = "\n  ".join(failures[:10])
            raise AssertionError(f"gradcheck of {type(module).__name__} failed at {len(failures)} entries:\n  {shown}")
        return False
    return True
