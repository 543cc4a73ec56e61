"""Compiling the kernels of a model's first step in several processes at once.

With a cold kernel cache the first training step compiles its kernels one after
another, on one core: 15-40 s for the demos on a 2-core machine. Which kernels,
for which argument types, follows from the model, the batch's shape and dtype, the
loss, the optimizer and the thread settings, not from the numbers, so it can be
found without compiling anything:

1. **Discovery**, in a child process (nothing it does can touch this one): a
   pickled copy of the model, optimizer and loss runs one training step and up to
   two inference calls (the plan's trace and its run) with every fastnn kernel
   replaced by a recorder. A kernel call records the kernel and its argument types and does
   nothing; a handle (``_fnptr.handle``) records its serial kernel and gives a dummy
   that only recorded kernels ever receive. No machine code runs there, so the
   arrays the kernels would have filled hold garbage, which only Python-side checks
   read: one that raises ends the discovery early, and the kernels it did not reach
   compile in the first step as before.
2. **Compiling**: the child, ``jobs - 2`` more worker processes and this process
   take the recorded kernels in turn (a claim is a file created exclusively) and
   compile them into the shared on-disk cache; this process keeps what it compiled.
3. The real first step then loads the rest from the cache (about 8 ms a kernel).

On Linux, from a process with one thread that has run no kernel (a first run), the
children are forks: no interpreter start, no import, no pickling (about 0.6 s sooner),
each ending in ``os._exit`` so it never returns into the caller's code. Otherwise
they are plain ``python -c`` subprocesses: they never import the caller's main
module (``multiprocessing``'s spawn would re-run an unguarded script), and the
payload is pickled with Numba's bundled cloudpickle, so a model class defined in
``__main__`` or a notebook travels by value. A model that does not pickle, or that the child
cannot rebuild, is not discovered, and the first step compiles as before; so does
any other failure (no subprocesses allowed, a worker killed, a timeout).
"""
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ITEMS = "items.pkl"  # the recorded kernels, written by the discovery child
MAX_JOBS = 8  # more processes than this add more import and memory than they save
MAX_BYTES = 1 << 29  # a model with more parameter and buffer bytes is not copied to the child
ENV_JOBS = "FASTNN_COMPILE_JOBS"


def default_jobs():
    """Processes for a first run's compile: ``FASTNN_COMPILE_JOBS`` if set, else the
    CPUs this process may use, at most ``MAX_JOBS``."""
    from ._warmup import usable_cpus

    value = os.environ.get(ENV_JOBS, "").strip()
    if value:
        try:
            return max(int(value), 1)
        except ValueError:
            raise ValueError(f"{ENV_JOBS} must be a positive int, got {value!r}") from None
    return min(usable_cpus(), MAX_JOBS)


_first_run = {"tried": False}  # fit's automatic precompile runs at most once per process
_first_run_lock = threading.Lock()


def first_run_due(jobs):
    """For ``fit``: True once per process, when ``jobs`` > 1 and the kernel cache is empty."""
    with _first_run_lock:
        if _first_run["tried"] or jobs < 2 or not cache_is_empty():
            return False
        _first_run["tried"] = True
        return True


def _kernels_ran():
    """True once any fastnn kernel has machine code in this process (compiled or loaded)."""
    from ._warmup import all_kernels

    return any(len(getattr(k, "dispatcher", k).overloads) for k in all_kernels().values())


def cache_is_empty():
    """True when the kernel cache is on and holds no kernel of this fastnn yet (a first run)."""
    from .kernels import _jit
    from .kernels.matmul import gemm

    if not _jit.CACHE:
        return False
    try:
        folder = gemm.dispatcher._cache._cache_path  # every kernel file shares this folder
    except AttributeError:  # pragma: no cover - another Numba's cache layout: never guess "empty"
        return False
    try:
        return not any(name.endswith(".nbi") for name in os.listdir(folder))
    except OSError:
        return True


# ------------------------------------------------------------------ discovery (child side)

def _kernel_names():
    """``{id(dispatcher): (module, attribute)}`` for every kernel in ``fastnn.kernels``."""
    from ._warmup import all_kernels

    names = {}
    for key, value in all_kernels(inline=True).items():
        module, name = key.split(".")
        names[id(getattr(value, "dispatcher", value))] = (f"fastnn.kernels.{module}", name)
    return names


class _Recorder:
    """Stands in for every fastnn kernel's compilation while active: see the module docstring."""

    def __init__(self):
        self.items, self.seen = [], set()
        self.names = _kernel_names()

    def record(self, dispatcher, sig):
        name = self.names.get(id(dispatcher))
        if name is None:  # not a module-level kernel: nothing a worker could find by name
            return
        key = (name, sig)
        if key not in self.seen:
            self.seen.add(key)
            self.items.append(key)

    def __enter__(self):
        from numba.core.dispatcher import Dispatcher
        from numba import typeof

        from .kernels import _fnptr

        recorder, original = self, Dispatcher._compile_for_args
        self._restore = original

        def compile_for_args(dispatcher, *args, **kws):
            module = getattr(dispatcher.py_func, "__module__", "") or ""
            if not module.startswith("fastnn.kernels.") or kws:
                return original(dispatcher, *args, **kws)
            recorder.record(dispatcher, tuple(dispatcher.typeof_pyval(a) for a in args))
            if dispatcher.targetoptions.get("inline") == "always":
                return dispatcher.py_func  # a small helper Python calls too (sizes...): run as Python
            return getattr(dispatcher.py_func, "discovery_stand_in", _nothing)

        def handle(dispatcher, args):
            recorder.record(dispatcher, tuple(typeof(a) for a in args))
            return (0, 0)

        Dispatcher._compile_for_args = compile_for_args
        _fnptr._recording = handle
        return self

    def __exit__(self, *exc):
        from numba.core.dispatcher import Dispatcher

        from .kernels import _fnptr

        Dispatcher._compile_for_args = self._restore
        _fnptr._recording = None


def _nothing(*args, **kwargs):
    return None


def _callees(dispatcher):
    """The fastnn kernels ``dispatcher``'s function names (calls, unless through a handle)."""
    func = dispatcher.py_func
    found = []
    for name in func.__code__.co_names:
        value = getattr(func, "__globals__", {}).get(name)
        callee = getattr(value, "dispatcher", value)
        if callee is not dispatcher and hasattr(callee, "py_func") and hasattr(callee, "overloads") \
                and (getattr(callee.py_func, "__module__", "") or "").startswith("fastnn.kernels."):
            found.append(callee)
    return found


def _closure(dispatcher, memo):
    """``(cost, kernels)`` of compiling ``dispatcher``: a rough measure, the bytecode of
    its function and of every fastnn kernel it calls (Numba links and optimises them
    all again in the caller), doubled for a parallel kernel (its loop body compiles
    apart); and the ids of those kernels, transitively."""
    found = memo.get(id(dispatcher))
    if found is not None:
        return found
    memo[id(dispatcher)] = (0, frozenset())  # (recursion guard)
    cost, kernels = len(dispatcher.py_func.__code__.co_code), set()
    for callee in _callees(dispatcher):
        callee_cost, callee_kernels = _closure(callee, memo)
        cost += callee_cost
        kernels |= callee_kernels | {id(callee)}
    if getattr(dispatcher, "targetoptions", {}).get("parallel"):
        cost *= 2
    memo[id(dispatcher)] = found = (cost, frozenset(kernels))
    return found


def schedule(items):
    """``(items, waits)``: the items in the order to compile them, and for each the
    indices of the items whose kernels it calls. Numba compiles a callee inside its
    caller unless it finds it in the cache, so a caller waits for those
    (:func:`compile_items`) rather than compile them a second time beside another
    process. The order is by the longest chain of waits an item starts, costs summed
    (:func:`_closure`): the callees a costly caller waits for come first, and the
    last items left for the processes are short."""
    memo = {}
    dispatchers = [_resolve(name) for name, _ in items]
    closures = [_closure(d, memo) for d in dispatchers]
    waits = [[j for j in range(len(items)) if j != i and id(dispatchers[j]) in closures[i][1]]
             for i in range(len(items))]
    waiters = [[i for i in range(len(items)) if j in waits[i]] for j in range(len(items))]
    rank = {}

    def chain(j):  # callees never call their callers: no cycles
        if j not in rank:
            rank[j] = closures[j][0] + max((chain(i) for i in waiters[j]), default=0)
        return rank[j]

    order = sorted(range(len(items)), key=lambda i: -chain(i))
    position = {i: k for k, i in enumerate(order)}
    return [items[i] for i in order], [sorted(position[j] for j in waits[i]) for i in order]


def _one_step(model, optimizer, loss, x, y, inference_calls, eval_x, eval_y, train=True, more=()):
    """A training step on ``(x, y)`` and on each further ``(x, y)`` of ``more`` (with
    ``train``), then ``inference_calls`` (0-2) calls on ``eval_x`` (and its loss against
    ``eval_y``) as ``evaluate`` makes them."""
    from . import inference as plans
    from .autograd.grad_mode import no_grad
    from .tensor import Tensor, _wrap

    for x, y in ((x, y), *more) if train else ():
        model.train()
        if optimizer is not None:
            optimizer.zero_grad()
        out = model(_wrap(x))
        if loss is not None and y is not None:
            target = _wrap(y if y.dtype.kind != "f" or not isinstance(out, Tensor) else y.astype(out.dtype))
            value = loss(out, target)
            value.backward()
            if optimizer is not None:
                optimizer.step()
    if inference_calls:
        model.eval()
        with no_grad():
            for _ in range(inference_calls):  # the first call traces the plan, the second runs it
                out = plans.run(model, (_wrap(eval_x),), copy=False)
            if loss is not None and eval_y is not None and isinstance(out, Tensor):
                loss(out, _wrap(eval_y if eval_y.dtype.kind != "f" else eval_y.astype(out.dtype)))


def discover(model, optimizer, loss, x, y, inference_calls=2, eval_x=None, eval_y=None, train=True, more=()):
    """``(items, complete)``: the kernels (``((module, name), argument types)``, in call
    order) one step would compile, and whether the step ran to its end. Only for a
    process that has run no fastnn kernel (see the module docstring): the child."""
    if _kernels_ran():
        raise RuntimeError("fastnn: discover() runs only in a process that has run no fastnn kernel "
                           "(it would run compiled kernels on arrays no kernel filled)")
    with _Recorder() as recorder:
        try:
            _one_step(model, optimizer, loss, x, y, inference_calls, x if eval_x is None else eval_x,
                      y if eval_x is None else eval_y, train, more)
            complete = True
        except Exception:  # a check that read what no kernel computed: what was found stands
            complete = False
    return recorder.items, complete


# ------------------------------------------------------------------ compiling (every process)

def _resolve(name):
    import importlib

    module, attr = name
    value = getattr(importlib.import_module(module), attr)
    return getattr(value, "dispatcher", value)


def _claim(folder, i):
    try:
        os.close(os.open(os.path.join(folder, f"claim-{i}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        return True
    except FileExistsError:
        return False


WAIT_LIMIT = 60.0  # seconds an item waits for the items whose kernels it calls


def compile_items(folder, items, waits=None, done=None):
    """Compile the items no other process has claimed, each as soon as the items it
    waits for are done (``schedule``), the first such in order; returns how many this
    process compiled. An item that fails to compile is left to the first step, which
    raises its error there."""
    from ._claims import claiming

    with claiming(folder):  # the kernels these call: each compiled by one process (see _claims)
        return _compile_items(folder, items, waits, done)


def _compile_items(folder, items, waits, done):
    def finished(j):
        return os.path.exists(os.path.join(folder, f"done-{j}"))

    count, pending, blocked_since = 0, list(range(len(items))), None
    while pending and not os.path.exists(os.path.join(folder, "stop")):
        patient = blocked_since is None or time.monotonic() - blocked_since < WAIT_LIMIT
        i = next((i for i in pending if not (waits and patient and not all(map(finished, waits[i])))), None)
        if i is None:
            blocked_since = blocked_since or time.monotonic()
            time.sleep(0.02)
            continue
        pending.remove(i)
        blocked_since = None
        if not _claim(folder, i):
            continue
        name, sig = items[i]
        try:
            dispatcher = _resolve(name)
            if sig not in dispatcher.overloads:
                dispatcher.compile(sig)
            count += 1
        except Exception:  # noqa: S110 - the first step compiles it again and raises there
            pass
        open(os.path.join(folder, f"done-{i}"), "wb").close()
        if done is not None:
            done()
    return count


def _child_setup():
    """Read the payload from stdin: sys.path and settings first, then the objects."""
    header = pickle.load(sys.stdin.buffer)
    for entry in reversed(header["path"]):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    import fastnn

    fastnn.set_num_threads(header["threads"])
    fastnn.set_default_dtype(header["dtype"])
    fastnn.use_deterministic_algorithms(header["deterministic"])
    return header, pickle.load(sys.stdin.buffer)


def _discovery_main():
    """Entry point of the spawned discovery child: discover, publish the items, then compile."""
    folder = sys.argv[1]
    header, payload = _child_setup()
    _discover_and_compile(folder, header, payload)


def _discover_and_compile(folder, settings, payload):
    model, optimizer, loss, x, y, eval_x, eval_y, more = payload
    items, complete = discover(model, optimizer, loss, x, y, settings["inference_calls"], eval_x, eval_y,
                               settings["train"], more)
    kept = []
    for item in items:  # an argument type that does not pickle: left to the first step
        try:
            pickle.dumps(item)
            kept.append(item)
        except Exception:  # noqa: S112
            continue
    kept, waits = schedule(kept)
    partial = os.path.join(folder, ITEMS + ".part")
    with open(partial, "wb") as f:
        pickle.dump({"items": kept, "waits": waits, "complete": complete}, f)
    os.replace(partial, os.path.join(folder, ITEMS))
    compile_items(folder, kept, waits)


def _wait_for_items(folder, alive, timeout):
    """The published items, or None if the discovery child died or ``timeout`` passed."""
    path, deadline = os.path.join(folder, ITEMS), time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path, "rb") as f:
                return pickle.load(f)
        if not alive() or os.path.exists(os.path.join(folder, "stop")):
            return None
        time.sleep(0.01)
    return None


def _worker_main(folder=None):
    """Entry point of a compile worker: wait for the items, then compile."""
    folder = sys.argv[1] if folder is None else folder
    parent = os.getppid()
    found = _wait_for_items(folder, lambda: os.getppid() == parent, 120.0)
    if found is not None:
        compile_items(folder, found["items"], found["waits"])


# ------------------------------------------------------------------ the caller's side

FORK = True  # fork the children where that is safe (see _can_fork); False: always start fresh ones


def _can_fork():
    """Fork the children instead of starting interpreters (no import, no pickling: about
    0.6 s sooner) on Linux, from a process with one thread (a fork copies no other
    thread, whatever locks it held) that has run no fastnn kernel (the discovery runs
    none, and would refuse)."""
    if not (FORK and hasattr(os, "fork") and sys.platform.startswith("linux")) or threading.active_count() != 1:
        return False
    return not _kernels_ran()


class _Forked:
    """A forked child, with the few ``subprocess.Popen`` methods ``precompile`` uses."""

    def __init__(self, pid):
        self.pid, self.returncode = pid, None

    def poll(self):
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere
                pid, status = self.pid, 0
            if pid:
                self.returncode = status
        return self.returncode

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"fastnn precompile child {self.pid}", timeout)
            time.sleep(0.01)
        return self.returncode

    def kill(self):
        try:
            os.kill(self.pid, 9)
        except OSError:
            pass


def _fork(work):
    """Run ``work()`` in a forked child that never returns into the caller's code."""
    pid = os.fork()
    if pid:
        return _Forked(pid)
    try:  # the child
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        work()
    finally:
        os._exit(0)


def _cache_root():
    """The folder to hand children as ``NUMBA_CACHE_DIR`` so that they choose this one's."""
    import numba

    from .kernels import _jit

    folder = _jit.CACHE_DIR
    if numba.config.BOUNDSCHECK and os.path.basename(folder) == "boundscheck":
        folder = os.path.dirname(folder)  # the children add it again
    return folder


def _dumps(obj):
    """Pickled by Numba's bundled cloudpickle where it has one: classes and functions
    defined in ``__main__`` (a script, a notebook) then travel by value, so the child
    can rebuild a model it could not import."""
    try:
        from numba import cloudpickle
    except ImportError:  # pragma: no cover - a Numba without it: classes travel by reference
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _spawn(entry, folder, stdin=None):
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = _cache_root()
    env.pop("FASTNN_DISABLE_CACHE", None)
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([package_parent] + [p for p in [env.get("PYTHONPATH")] if p])
    log = open(os.path.join(folder, f"{entry}-{time.monotonic_ns()}.log"), "wb")
    try:
        return subprocess.Popen([sys.executable, "-c", f"from fastnn._precompile import {entry}; {entry}()", folder],
                                stdin=stdin, stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=os.getcwd(), close_fds=True)
    finally:
        log.close()


def precompile(model, x, y=None, loss=None, optimizer=None, jobs=None, inference_calls=2, eval_x=None, eval_y=None,
               train=True, more=(), progress=False, timeout=600.0):
    """Compile the kernels a training step of ``model`` on a batch like ``x`` needs,
    and its inference on such a batch, in ``jobs`` processes at once, into the kernel
    cache; returns a report dict.

    ``fit`` calls this on its first run (an empty kernel cache); call it yourself
    before a first ``model(x)`` to get the same. ``x`` and ``y`` are one batch
    (arrays; only their shapes and dtypes matter), ``loss`` and ``optimizer`` as for
    ``fit`` (None: not part of the step). ``inference_calls``: 0, 1 (the first call
    at a batch shape, which traces the inference plan: what ``evaluate`` does once
    per shape) or 2 (the plan's run too: repeated calls, as ``predict`` makes over
    many batches), on ``eval_x`` and ``eval_y``: a batch as ``evaluate`` or ``predict``
    sees it (default: ``x`` and ``y``; their 256 rows can take other kernels than a
    training batch's 32). ``train=False``: inference alone (what ``predict`` needs).
    ``more``: further ``(x, y)`` batches the training step runs on too (an epoch's
    last, smaller batch can take other kernels: a serial path, say).
    ``jobs`` (default: ``default_jobs()``) counts this process.

    Changes none of its arguments: the step runs on copies in a child process (a fork,
    or pickled copies in a fresh interpreter), which calls ``forward`` there (whatever
    it prints is discarded). Never
    raises for a model it cannot discover: the report's ``skipped`` says why, and
    the first step compiles as usual.

    Report: ``kernels`` (found), ``complete`` (the discovery ran the whole step),
    ``compiled_here``, ``jobs``, ``seconds``, ``skipped`` (None, or the reason).

    Example:
        >>> fastnn.precompile(model, x[:64], y[:64], nn.CrossEntropyLoss(), opt)  # doctest: +SKIP
        {'kernels': 23, 'complete': True, ...}
    """
    from .kernels import _jit
    from .kernels._cache import compiling
    from .nn.module import Module
    from .progress import progress_bar
    from .tensor import Tensor

    if not isinstance(model, Module):
        raise TypeError(f"precompile: expected a fastnn Module, got {type(model).__name__}")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)) or jobs < 1):
        raise ValueError(f"precompile: jobs must be a positive int or None, got {jobs!r}")
    if inference_calls not in (0, 1, 2) or isinstance(inference_calls, bool):
        raise ValueError(f"precompile: inference_calls must be 0, 1 or 2, got {inference_calls!r}")
    start = time.perf_counter()
    report = {"kernels": 0, "complete": False, "compiled_here": 0, "jobs": 1, "seconds": 0.0, "skipped": None}
    jobs = default_jobs() if jobs is None else int(jobs)

    def target(a):
        return None if a is None else np.asarray(a.data if isinstance(a, Tensor) else a)

    def array(a):  # an input: float data in the model's dtype, as fit converts it
        a = target(a)
        return a.astype(model.dtype, copy=False) if a is not None and a.dtype.kind == "f" else a

    x, eval_x = array(x), array(eval_x)
    y, eval_y = target(y), target(eval_y)
    more = [(array(mx), target(my)) for mx, my in more]
    if jobs < 2:
        report["skipped"] = "one process (jobs < 2)"
    elif not _jit.CACHE:
        report["skipped"] = "the kernel cache is off: worker processes could not share what they compile"
    if report["skipped"]:
        return report
    import fastnn

    settings = {"path": list(sys.path), "threads": fastnn.get_num_threads(),
                "dtype": np.dtype(fastnn.get_default_dtype()).name,
                "deterministic": fastnn.are_deterministic_algorithms_enabled(),
                "inference_calls": int(inference_calls), "train": bool(train)}
    payload = (model, optimizer, loss, x, y, eval_x, eval_y, more)
    fork = _can_fork()
    if not fork:
        size = sum(a.data.nbytes for a in (*model.parameters(), *model.buffers()))
        if size > MAX_BYTES:
            report["skipped"] = f"the model holds {size / 2**20:.0f} MiB: too much to copy to the discovery process"
            return report
        try:
            header, body = pickle.dumps(settings), _dumps(payload)
        except Exception as err:
            report["skipped"] = f"the model, optimizer or loss does not pickle ({type(err).__name__}: {err})"
            return report
    try:
        folder = tempfile.mkdtemp(prefix="fastnn-precompile-")
    except OSError as err:
        report["skipped"] = f"no temporary folder ({err})"
        return report
    procs = []
    bar = None
    try:
        try:
            if fork:
                child = _fork(lambda: _discover_and_compile(folder, settings, payload))
                procs.append(child)
                for _ in range(jobs - 2):
                    procs.append(_fork(lambda: _worker_main(folder)))
            else:
                child = _spawn("_discovery_main", folder, stdin=subprocess.PIPE)
                procs.append(child)
                for _ in range(jobs - 2):
                    procs.append(_spawn("_worker_main", folder))
                child.stdin.write(header + body)
                child.stdin.close()
        except OSError as err:
            report["skipped"] = f"no worker processes ({err})"
            return report
        found = _wait_for_items(folder, lambda: child.poll() is None, min(timeout, 120.0))
        if found is None:
            report["skipped"] = "the discovery process found nothing (it could not rebuild the model, or died)"
            return report
        items = found["items"]
        report.update(kernels=len(items), complete=found["complete"], jobs=jobs)
        bar = progress_bar(len(items), f"compiling kernels in {jobs} processes (first run only)", progress, "kernel")
        counted = [0]

        def done():
            n = sum(name.startswith("done-") for name in os.listdir(folder))
            bar.update(n - counted[0])
            counted[0] = n

        with compiling(lambda: None):  # this bar says it: no one-line notice
            report["compiled_here"] = compile_items(folder, items, found["waits"], done)
        deadline = time.monotonic() + timeout
        for proc in procs:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        done()
    except subprocess.TimeoutExpired:
        report["skipped"] = f"timed out after {timeout:.0f} s"
    finally:
        open(os.path.join(folder, "stop"), "wb").close()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if bar is not None:
            bar.close()
        shutil.rmtree(folder, ignore_errors=True)
        report["seconds"] = time.perf_counter() - start
    return report
