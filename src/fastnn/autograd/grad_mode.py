"""Grad mode: whether operations record a graph. Thread-local, as in PyTorch."""
import functools
import threading

from .._planstate import plan_state


class _GradState(threading.local):
    enabled = True  # each thread starts with grad enabled


_state = _GradState()


def is_grad_enabled():
    """True when operations on tensors that require grad record a graph."""
    return _state.enabled


class _GradMode:
    """Base of ``no_grad``/``enable_grad``/``set_grad_enabled``: a context manager and
    a decorator that sets the mode on entry and restores the previous one on exit."""

    mode = True

    def __enter__(self):
        self._previous = is_grad_enabled()
        _state.enabled = self.mode

    def __exit__(self, *exc):
        _state.enabled = self._previous
        return False

    def __call__(self, fn):
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            previous = is_grad_enabled()
            _state.enabled = mode
            try:
                return fn(*args, **kwargs)
            finally:
                _state.enabled = previous

        return wrapper


class no_grad(_GradMode):
    """Nothing is recorded and nothing is kept for backward inside this block.

    Example:
        >>> with fastnn.no_grad():
        ...     logits = model(x)
    """

    mode = False


class enable_grad(_GradMode):
    """Turns recording back on inside a ``no_grad`` block."""

    mode = True


class set_grad_enabled(_GradMode):
    """``set_grad_enabled(False)`` is ``no_grad()``; it also takes effect when called
    as a plain function, as in PyTorch."""

    def __init__(self, mode):
        self.mode = bool(mode)
        self._previous = is_grad_enabled()
        _state.enabled = self.mode

    def __enter__(self):
        pass  # already set by __init__

    def __exit__(self, *exc):
        _state.enabled = self._previous
        return False


class inference_mode(no_grad):
    """``torch.inference_mode``: ``no_grad``, and a module called in eval mode (the
    outermost call, not the layers it calls) runs on an inference plan from the second
    call at an input shape on, as ``fastnn.compile`` does: batch-norm folded, epilogues
    fused, weights packed once (results within float32 rounding of the plain forward).
    A shape seen once runs as it is, so varying shapes never pay for plans they do not
    reuse. ``inference_mode(False)`` turns grad back on, and plans off.

    Example:
        >>> model.eval()
        >>> with fastnn.inference_mode():
        ...     scores = model(x)
    """

    def __new__(cls, mode=True):
        if callable(mode):  # ``@inference_mode`` without parentheses, as PyTorch allows
            return cls()(mode)
        return super().__new__(cls)

    def __init__(self, mode=True):
        self.mode = not mode

    def __enter__(self):
        self._previous, _state.enabled = _state.enabled, self.mode
        self._auto, plan_state.auto = plan_state.auto, not self.mode

    def __exit__(self, *exc):
        _state.enabled, plan_state.auto = self._previous, self._auto
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with inference_mode(not self.mode):
                return fn(*args, **kwargs)

        return wrapper
