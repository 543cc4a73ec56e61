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
  folder is writable, kernels are compiled without a cache and a warning says so;
  an unreadable, corrupted or unwritable cache warns once and recompiles
  (``_cache.KernelCache``, which also keys each kernel on the sources of the
  kernel files it imports, so an edited callee in another file never runs stale);
* an honest first run: a compile (a cache miss) tells the progress bar of
  ``fit``, or prints one line on a terminal (``_cache.compiling``);
* ``nogil=True`` so kernels can run from several Python threads at once;
* serial kernels are called by symbol from the kernels that call them
  (``_fnptr.by_symbol``): their machine code is compiled once, not again inside
  every caller; ``linked_kernel`` is the exception, for elementwise blocks;
* the threading layer (``workqueue``, fork-safe) and the guards it needs are set in
  ``_threading`` before any kernel runs: :func:`kernel` returns a
  ``ParallelKernel`` that takes the process lock around each call.
"""
import os
import tempfile
import warnings

import numba

from ._cache import with_kernel_cache
from ._fnptr import by_symbol
from ._threading import ParallelKernel

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

# Work below this many scalar operations runs in a plain serial loop: a parallel
# launch costs a few microseconds, more than the work itself.
SERIAL_BELOW = 1 << 17

# Elementwise kernels split their work into blocks of this many elements, a number
# that never depends on the thread count: each element then runs the same code
# (vector body or scalar tail, with the same FMA contraction) whatever the split,
# so results are bitwise the same at any thread count.
BLOCK = 4096

# A parallel shell over a serial kernel calls it for at most this many runs of its
# units (rows, planes, blocks), not once per unit: each call passes 30-40 arguments,
# and a call per unit cost 4-20% on thousands of small units (measured on the pools,
# sum_slots and cross-entropy).
RUNS = 64


def _writable_dir(path, private=False):
    """True if ``path`` exists (or can be created) and a file can be written in it.

    ``private``: a folder in a shared place (the temp directory) must be created
    by this user with mode 0o700, or already be owned by this user and writable
    by no one else: the cache holds pickles that Numba loads, so a folder another
    user controls could make this process run their code.
    """
    try:
        os.makedirs(path, mode=0o700 if private else 0o777, exist_ok=True)
        if private and hasattr(os, "getuid"):
            info = os.stat(path)
            if info.st_uid != os.getuid() or info.st_mode & 0o022:
                return False
        fd, probe = tempfile.mkstemp(dir=path, prefix=".fastnn-probe-")
        os.close(fd)
        os.remove(probe)
        return True
    except OSError:
        return False


IN_TREE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__pycache__")


def _choose_cache():
    """Decide whether and where Numba caches compiled kernels; never raises.

    Order: ``NUMBA_CACHE_DIR`` if set; the package's own ``__pycache__`` (next to
    the kernel sources, Numba's default); ``$XDG_CACHE_HOME/fastnn``;
    ``~/.cache/fastnn``; a private per-user folder in the temp directory. The
    first writable one wins (Numba is pointed at it); with none, kernels compile
    uncached in every process and a ``RuntimeWarning`` says so.
    ``FASTNN_DISABLE_CACHE=1`` turns the cache off.

    Returns ``(folder or None, caching on, how it was chosen)``.
    """
    if os.environ.get("FASTNN_DISABLE_CACHE", "") not in ("", "0"):
        return None, False, "disabled by FASTNN_DISABLE_CACHE"
    configured = numba.config.CACHE_DIR
    tried = []
    if configured:
        if _writable_dir(configured):
            return configured, True, "NUMBA_CACHE_DIR"
        tried.append(f"NUMBA_CACHE_DIR={configured}")
    elif _writable_dir(IN_TREE):
        return IN_TREE, True, "package folder"
    else:
        tried.append(IN_TREE)
    candidates = []
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        candidates.append((os.path.join(xdg, "fastnn"), False))
    home = os.path.expanduser("~")
    if home and home != "~":
        candidates.append((os.path.join(home, ".cache", "fastnn"), False))
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    candidates.append((os.path.join(tempfile.gettempdir(), f"fastnn-cache-{uid}"), True))
    for folder, private in candidates:
        if _writable_dir(folder, private=private):
            numba.config.CACHE_DIR = folder
            return folder, True, f"fallback ({', '.join(tried)} not writable)"
        tried.append(folder)
    warnings.warn(
        f"fastnn: no writable folder for the kernel cache (tried {', '.join(tried)}); kernels "
        "will be compiled in every process. Set NUMBA_CACHE_DIR to a writable folder",
        RuntimeWarning,
        stacklevel=2,
    )
    return None, False, f"off: none writable ({', '.join(tried)})"


def _apart_if_bounds_checked(folder, on, reason):
    """Numba's cache key ignores ``NUMBA_BOUNDSCHECK``: a bounds-checked run would load
    kernels compiled without checks (and leave slow checked ones for later runs).
    Bounds-checked builds therefore get their own ``boundscheck`` subfolder."""
    if not (on and numba.config.BOUNDSCHECK):
        return folder, on, reason
    checked = os.path.join(folder or IN_TREE, "boundscheck")
    if _writable_dir(checked):
        numba.config.CACHE_DIR = checked
        return checked, True, f"{reason}, bounds-checked builds apart"
    return None, False, f"off: {checked} (bounds-checked builds) not writable"


CACHE_DIR, CACHE, CACHE_REASON = _apart_if_bounds_checked(*_choose_cache())

_OPTIONS = dict(fastmath=set(FASTMATH), nogil=True, error_model="numpy")


def _jit(func, **options):
    """``numba.njit`` with ``_OPTIONS`` and, when caching is on, fastnn's ``KernelCache``."""
    dispatcher = numba.njit(**{**_OPTIONS, **options})(func)
    return with_kernel_cache(dispatcher) if CACHE else dispatcher


def kernel(func):
    """Compile ``func`` as a parallel kernel (``prange`` loops run on Numba's pool).

    Returns a ``ParallelKernel``: the Numba dispatcher behind the threading-layer
    guard (see ``_threading``); its attributes are the dispatcher's.
    """
    return ParallelKernel(_jit(func, parallel=True))


def serial_kernel(func):
    """Compile ``func`` as a serial kernel, for work that never pays for threads.

    Kernels that call it call its compiled code by symbol (``_fnptr.by_symbol``):
    its body is compiled once, not again inside every caller."""
    return by_symbol(_jit(func, parallel=False))


def _noalias_flags(flags):
    flags.noalias = True
    return flags


def noalias_kernel(func):
    """A serial kernel (called by symbol, as ``serial_kernel``) compiled with Numba's
    ``noalias`` flag: LLVM may assume that its array arguments never overlap, so a loop
    over several arrays vectorises with no run-time overlap checks, as it does inside a
    parallel loop's body (where Numba sets that flag itself when it finds no aliasing).
    Only for kernels whose callers never pass overlapping arrays (never in place)."""
    dispatcher = _jit(func, parallel=False)
    dispatcher._compiler._customize_flags = _noalias_flags  # (Numba's hook for a dispatcher's flags)
    return by_symbol(dispatcher)


def linked_kernel(func):
    """A serial kernel whose callers link its code (Numba's own way), so LLVM may inline
    it: for the elementwise loops over several arrays that parallel shells call per
    block. Compiled on its own, such a loop is not vectorised (the overlap checks of four
    written arrays are too many for LLVM): called by symbol, Adam's update ran 2x and the
    activations' backward 1.7x slower, measured; their bodies are small to link."""
    return _jit(func, parallel=False)


def typed(dispatcher):
    """Make jitted callers call ``dispatcher`` with plain argument types, not literals.

    Numba types a constant argument (``False``, ``0``, a global such as ``MR``) as a
    literal and compiles one specialisation per value: ``gemm_serial(out, a, b, False,
    True, False)`` and ``(..., True, False, False)`` were two full compiles of the
    whole product. For kernels whose flags and offsets only pick loops outside the
    hot paths, one compile per dtype and layout serves every caller as fast.
    """
    resolve = dispatcher.get_call_template

    def get_call_template(args, kws):
        return resolve(tuple(map(numba.types.unliteral, args)),
                       {k: numba.types.unliteral(v) for k, v in kws.items()})

    dispatcher.get_call_template = get_call_template
    dispatcher.typed = True  # (tests check that such a kernel has no literal specialisation)
    return dispatcher


def unfused(func):
    """A scalar helper compiled without the ``contract`` flag, so ``a - b * c`` rounds
    the product before subtracting, as PyTorch's unfused kernels do. For expressions
    that cancel (e.g. a variance ``E[g^2] - E[g]^2``), where a fused multiply-add
    would drift from PyTorch's float32 results. Flags are per LLVM instruction, so
    this holds even after LLVM inlines the call."""
    return _jit(func, fastmath=set(FASTMATH) - {"contract"})


def inline(func):
    """A small helper that is inlined into the kernels that call it."""
    return _jit(func, inline="always")
