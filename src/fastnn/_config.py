"""Global settings: default dtype and thread count."""
import numba
import numpy as np

_state = {"dtype": np.dtype(np.float32)}


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
    """Number of threads fastnn's parallel kernels use in the calling thread."""
    return numba.get_num_threads()


class set_num_threads:
    """Set how many threads parallel kernels use; also a context manager.

    ``fastnn.set_num_threads(2)`` sets it for the calling thread from now on;
    ``with fastnn.set_num_threads(1): ...`` restores the previous value on exit.
    The default is Numba's: ``NUMBA_NUM_THREADS`` or the CPUs this process may use.
    """

    def __init__(self, n):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"set_num_threads: expected an int, got {type(n).__name__}")
        limit = numba.config.NUMBA_NUM_THREADS
        if not 1 <= n <= limit:
            raise ValueError(f"set_num_threads: expected 1 <= n <= {limit}, got {n}")
        self._previous = numba.get_num_threads()
        numba.set_num_threads(int(n))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        numba.set_num_threads(self._previous)
        return False
