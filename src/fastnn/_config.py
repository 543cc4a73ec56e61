"""Global settings: default dtype, thread count, deterministic mode."""
import numba
import numpy as np

from .kernels import _threading

_state = {"dtype": np.dtype(np.float32), "deterministic": False}


def set_default_dtype(dtype):
    """Set the dtype new parameters and converted inputs use (float32 or float64)."""
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"set_default_dtype: expected float32 or float64, got {dt}")
    _state["dtype"] = dt


def get_default_dtype():
    """The dtype new parameters are created with (float32 unless changed)."""
    return _state["dtype"].type


def get_num_threads():
    """Number of threads fastnn's parallel kernels use (process-wide)."""
    return _threading.get_threads()


class set_num_threads:
    """Set how many threads parallel kernels use, process-wide; also a context manager.

    ``fastnn.set_num_threads(2)`` applies from now on to every Python thread that
    calls fastnn (Numba's own ``numba.set_num_threads`` is per thread);
    ``with fastnn.set_num_threads(1): ...`` restores the previous value on exit.
    The default is Numba's: ``NUMBA_NUM_THREADS`` if set, else the CPUs this
    process may run on (its CPU affinity mask, e.g. ``taskset`` or a container's
    cpuset). ``n`` may not exceed that number: Numba starts that many threads once.

    Results do not depend on the count: every kernel splits its work the same way
    whatever the number of threads, so training is bitwise reproducible across
    thread counts.

    Example:
        >>> with fastnn.set_num_threads(1):  # e.g. inside a multiprocessing worker
        ...     probs = fastnn.predict(model, x)
    """

    def __init__(self, n):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"set_num_threads: expected an int, got {type(n).__name__}")
        limit = numba.config.NUMBA_NUM_THREADS
        if not 1 <= n <= limit:
            raise ValueError(f"set_num_threads: expected 1 <= n <= {limit} (NUMBA_NUM_THREADS or the "
                             f"CPUs available to this process), got {n}")
        self._previous = _threading._state.threads
        _threading.set_threads(int(n))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _threading.set_threads(self._previous)
        return False


def use_deterministic_algorithms(mode):
    """Turn deterministic mode on or off for the whole process (PyTorch's name).

    In deterministic mode ``fastnn.fit`` requires a ``seed``, and the same seed
    gives bitwise-identical training at any thread count. fastnn's kernels are
    written so that their results never depend on the thread count (each parallel
    iteration owns its outputs, reductions use fixed chunks), so this costs no
    speed; a kernel that ever needs a thread-dependent split must check
    ``are_deterministic_algorithms_enabled()`` and take a fixed split instead.
    """
    _state["deterministic"] = bool(mode)


def are_deterministic_algorithms_enabled():
    """True when ``use_deterministic_algorithms(True)`` is in force."""
    return _state["deterministic"]
