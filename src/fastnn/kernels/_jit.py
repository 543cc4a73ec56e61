"""The one place where fastnn decides how kernels are compiled.

Every number-crunching loop in ``fastnn.kernels`` is decorated with :func:`kernel`
(parallel) or :func:`serial_kernel`. Decorating compiles nothing: Numba compiles a
kernel on its first call for the argument types it sees, then keeps the machine
code in its on-disk cache so later processes start fast.

Choices made here, once:

* fast-math flags: ``nsz, arcp, contract, afn, reassoc`` let LLVM vectorise
  reductions and fuse multiply-adds, but keep ``nnan``/``ninf`` off so NaN and inf
  propagate and ``np.isfinite`` checks still work;
* ``error_model="numpy"``: division by zero gives inf/NaN instead of raising,
  which keeps the hot loops free of Python exception checks;
* caching that is never fatal: if neither the package folder nor a user cache
  folder is writable, kernels are compiled without a cache and a warning says so.
* ``nogil=True`` so kernels can run from several Python threads at once.
"""
import os
import tempfile
import warnings

import numba

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

# Work below this many scalar operations runs in a plain serial loop: a parallel
# launch costs a few microseconds, more than the work itself.
SERIAL_BELOW = 32768


def _writable_dir(path):
    """True if ``path`` exists (or can be created) and a file can be written in it."""
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".fastnn-probe-")
        os.close(fd)
        os.remove(probe)
        return True
    except OSError:
        return False


def _choose_cache():
    """Decide whether and where Numba caches compiled kernels.

    Order: ``NUMBA_CACHE_DIR`` if set; the package's own ``__pycache__``; a user
    cache folder; a per-user folder in the temp directory. Returns the folder used
    (or None for the in-tree default) and whether caching is on.
    """
    if os.environ.get("FASTNN_DISABLE_CACHE", "") not in ("", "0"):
        return None, False
    configured = numba.config.CACHE_DIR
    if configured:
        if _writable_dir(configured):
            return configured, True
    elif _writable_dir(os.path.join(os.path.dirname(__file__), "__pycache__")):
        return None, True
    candidates = []
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        candidates.append(os.path.join(xdg, "fastnn"))
    home = os.path.expanduser("~")
    if home and home != "~":
        candidates.append(os.path.join(home, ".cache", "fastnn"))
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    candidates.append(os.path.join(tempfile.gettempdir(), f"fastnn-cache-{uid}"))
    for folder in candidates:
        if _writable_dir(folder):
            numba.config.CACHE_DIR = folder
            return folder, True
    warnings.warn(
        "fastnn: no writable folder for the kernel cache (tried the package folder, "
        f"NUMBA_CACHE_DIR and {candidates}); kernels will be compiled in every process",
        RuntimeWarning,
        stacklevel=2,
    )
    return None, False


CACHE_DIR, CACHE = _choose_cache()

_OPTIONS = dict(cache=CACHE, fastmath=set(FASTMATH), nogil=True, error_model="numpy")


def kernel(func):
    """Compile ``func`` as a parallel kernel (``prange`` loops run on Numba's pool)."""
    return numba.njit(parallel=True, **_OPTIONS)(func)


def serial_kernel(func):
    """Compile ``func`` as a serial kernel, for work that never pays for threads."""
    return numba.njit(parallel=False, **_OPTIONS)(func)


def inline(func):
    """A small helper that is inlined into the kernels that call it."""
    return numba.njit(inline="always", **_OPTIONS)(func)
