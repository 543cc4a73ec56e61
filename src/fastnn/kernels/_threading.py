"""Numba's threading layer: chosen once, before Numba starts its thread pool, and guarded.

The choice is ``workqueue`` (Numba's own pthread pool, shipped with every Numba):

* it is fork-safe: a ``multiprocessing`` worker forked from a process that already
  ran kernels starts a fresh pool. GNU OpenMP (``omp``, Numba's pick on Linux when
  TBB is absent) is not: the child is killed with SIGTERM on its first parallel
  kernel. OpenMP's spin-waiting threads also collapse when cores are shared, as
  they are in process pools (measured: 1,000-16,000 samples/s against workqueue's
  ~50,000 on the digits demo under load);
* it needs no extra library. TBB is thread- and fork-safe too, but its pip wheel
  puts ``libtbb.so.12`` where the dynamic loader does not look, so it only works
  with ``LD_LIBRARY_PATH`` set.

What workqueue cannot do is run parallel regions launched from two Python threads
at once (it aborts the process). So every parallel kernel call takes one process
lock (``kernel_lock``); serial kernels do not. Kernels from different Python
threads therefore run one at a time, each on all of fastnn's threads. A fork
handler holds the lock across ``fork()`` so a child never inherits it locked.

``NUMBA_THREADING_LAYER`` set by the user wins (e.g. ``tbb``). The guards follow
the layer actually loaded: no lock under ``tbb``/``omp``; under ``omp``, a process
forked after the pool started gets a clear ``RuntimeError`` instead of SIGTERM.

Thread count: ``fastnn.set_num_threads`` is process-wide (Numba's own setting is
per Python thread); each parallel call applies it to the calling thread if stale.
"""
import os
import threading

import numba
from numba.extending import typeof_impl
from numba.np.ufunc import parallel as _parallel

DEFAULT_LAYER = "workqueue"
_THREAD_SAFE = ("tbb", "omp")

_user_layer = os.environ.get("NUMBA_THREADING_LAYER", "").strip()
if not _user_layer and not _parallel._is_initialized:
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
