"""Numba's threading layer: chosen once, before Numba starts its thread pool, and guarded.

The choice, unless ``NUMBA_THREADING_LAYER`` says otherwise:

* ``tbb`` when the ``tbb`` package is installed (``pip install "fastnn[tbb]"``):
  thread-safe, fork-safe, and a parallel launch costs about 1 us. Its wheel puts
  ``libtbb.so.12`` in the environment's ``lib/`` folder, where the dynamic loader
  does not look, so it is loaded here by path (``ctypes``) before Numba's TBB pool
  asks for it by name;
* otherwise ``workqueue`` (Numba's own pthread pool, shipped with every Numba):
  fork-safe, but a launch costs tens of microseconds (kernels run small work
  serially to avoid it) and it cannot run parallel regions launched from two
  Python threads at once (it aborts the process), so every parallel kernel call
  takes one process lock (``kernel_lock``).

GNU OpenMP (``omp``, Numba's own pick on Linux when TBB is absent) is never chosen
by default: a ``multiprocessing`` worker forked from a process that already ran
kernels is killed on its first parallel kernel, and its spin-waiting threads
collapse when cores are shared, as they are in process pools.

``NUMBA_THREADING_LAYER`` set by the user wins. The guards follow the layer
actually loaded: no lock under ``tbb``/``omp``; under ``omp``, a process forked
after the pool started gets a clear ``RuntimeError`` instead of being killed. A
fork handler holds the lock across ``fork()`` so a child never inherits it locked.

Thread count: ``fastnn.set_num_threads`` is process-wide (Numba's own setting is
per Python thread); each parallel call applies it to the calling thread if stale.
"""
import ctypes
import os
import threading

import numba
from numba.extending import typeof_impl
from numba.np.ufunc import parallel as _parallel

FALLBACK_LAYER = "workqueue"
_THREAD_SAFE = ("tbb", "omp")
_TBB_LIBRARIES = ("libtbb.so.12", "libtbb.12.dylib", "tbb12.dll")


def _load_tbb():
    """Load the ``tbb`` package's library so Numba's TBB pool finds it; True if usable."""
    try:
        from importlib import metadata

        files = metadata.files("tbb") or ()
    except Exception:  # not installed, or unreadable metadata
        return False
    for file in files:
        if file.name in _TBB_LIBRARIES:
            try:
                ctypes.CDLL(str(file.locate()), mode=getattr(ctypes, "RTLD_GLOBAL", 0))
                from numba.np.ufunc import tbbpool  # noqa: F401  (fails if TBB is too old)
            except (OSError, ImportError):
                return False
            return True
    return False


def _default_layer():
    return "tbb" if _load_tbb() else FALLBACK_LAYER


_user_layer = os.environ.get("NUMBA_THREADING_LAYER", "").strip()
if _user_layer in ("tbb", "default", "threadsafe", "forksafe"):
    _load_tbb()  # let an explicit or implicit TBB choice find the pip-installed library
if not _user_layer and not _parallel._is_initialized:
    DEFAULT_LAYER = _default_layer()
    # Numba re-reads NUMBA_* variables when any of them changes, so set both; child
    # processes inherit the choice.
    os.environ["NUMBA_THREADING_LAYER"] = DEFAULT_LAYER
    numba.config.THREADING_LAYER = DEFAULT_LAYER

kernel_lock = threading.Lock()


class _State:
    """Process-wide settings, read on every parallel kernel call (attributes: fast)."""

    threads = None  # fastnn.set_num_threads's value; None: Numba's default
    generation = 0  # bumped by every set_num_threads (and in a forked child)
    lock = True  # take kernel_lock around parallel calls
    forked_omp = False  # forked after the GNU OpenMP pool started


class _PerThread(threading.local):
    generation = 0  # the generation this Python thread has applied


_state = _State()
_local = _PerThread()


def configured_layer():
    """The layer Numba loads (or has loaded): ``workqueue`` unless the user chose one."""
    return _parallel._threading_layer if _parallel._is_initialized else numba.config.THREADING_LAYER


def active_layer():
    """The layer Numba loaded, or None before the first parallel kernel ran."""
    return _parallel._threading_layer if _parallel._is_initialized else None


def _decide_lock():
    # Selection names ('default', 'forksafe', ...) may load workqueue: lock to be safe.
    _state.lock = configured_layer() not in _THREAD_SAFE


def set_threads(n):
    """Set the process-wide thread count (None: Numba's default) and apply it here."""
    _state.threads = n
    _state.generation += 1
    _prepare_thread()


def get_threads():
    """The thread count kernels called from this Python thread use (synced first)."""
    if _local.generation != _state.generation:
        _prepare_thread()
    return numba.get_num_threads()


def _prepare_thread():
    """Slow path of a kernel call: fork check, then this thread's thread count."""
    if _state.forked_omp:
        raise RuntimeError(
            "fastnn: this process was forked from one that had already started the GNU OpenMP "
            "threading layer (NUMBA_THREADING_LAYER=omp), which cannot run in a forked child. "
            "Unset NUMBA_THREADING_LAYER (fastnn then uses the fork-safe 'workqueue'), use "
            "NUMBA_THREADING_LAYER=tbb, or start workers with multiprocessing's 'spawn'"
        )
    if _state.threads is not None:
        numba.set_num_threads(_state.threads)
    elif _local.generation != 0:  # a set_num_threads context ended: back to the default
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    _local.generation = _state.generation


class ParallelKernel:
    """A parallel Numba kernel behind the threading-layer guard.

    Calling it applies fastnn's thread count to the calling Python thread if it
    changed, then runs the compiled kernel, under ``kernel_lock`` when the layer
    needs it (about 0.5 us per call). Every other attribute (``overloads``,
    ``py_func``, ``signatures``...) is the Numba dispatcher's; jitted code may call
    it like the dispatcher (unguarded there).
    """

    def __init__(self, dispatcher):
        self.dispatcher = dispatcher
        self.__wrapped__ = dispatcher.py_func
        for name in ("__name__", "__qualname__", "__doc__", "__module__"):
            setattr(self, name, getattr(dispatcher.py_func, name, None))

    def __call__(self, *args):
        if _local.generation != _state.generation:
            _prepare_thread()
        if _state.lock:
            with kernel_lock:
                return self.dispatcher(*args)
        return self.dispatcher(*args)

    def __getattr__(self, name):
        return getattr(self.dispatcher, name)

    def __repr__(self):
        return f"<fastnn parallel kernel {self.__qualname__}>"


@typeof_impl.register(ParallelKernel)
def _typeof_parallel_kernel(value, context):
    return numba.typeof(value.dispatcher, context.purpose)


def _before_fork():
    kernel_lock.acquire()


def _after_fork_in_parent():
    kernel_lock.release()


def _after_fork_in_child():
    global kernel_lock
    kernel_lock = threading.Lock()
    if active_layer() == "omp":
        _state.forked_omp = True
        _state.generation += 1  # every thread takes the slow path, which raises


_decide_lock()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)
