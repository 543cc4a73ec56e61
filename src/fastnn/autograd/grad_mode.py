"""Grad mode: whether operations record a graph. Thread-local, as in PyTorch."""
import functools
import threading

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
    """``torch.inference_mode``: here the same as ``no_grad``."""

    def __init__(self, mode=True):
        self.mode = not mode
