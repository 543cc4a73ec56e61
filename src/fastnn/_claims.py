"""One compile of each kernel across the processes of a parallel first run.

``fastnn._precompile`` (a first ``fit``) and ``fastnn warmup --jobs N`` compile in
several processes into one kernel cache. Their work lists name the kernels Python
calls; the serial kernels those call compile inside them, in whichever process
needs one first, so two processes compiling callers of one callee at the same time
both compiled it (measured in the cold transformer demo: the attention's block
kernels, the packing copies and ``forward_block`` twice, 1.5 of its 24 compile CPU s).

While :func:`claiming` is active, a process's compile of a fastnn kernel for a
signature first claims it: a file in a folder the processes share, created
exclusively, holding the process id. The process that gets the claim compiles the
kernel (which saves it to the cache) and then marks it done; another process that
needs it waits for that mark and loads it from the cache. Waits never form a cycle:
a process waits only at the top level or inside the compile of a kernel that calls
the one it waits for, and no kernel calls its callers. A claim whose holder has
died, or a wait longer than ``WAIT_LIMIT``, and the process compiles the kernel itself.
"""
import contextlib
import hashlib
import os
import time

WAIT_LIMIT = 120.0  # seconds a process waits for another's compile before doing it itself


def _path(folder, dispatcher, args):
    func = dispatcher.py_func
    name = f"{func.__module__}.{func.__qualname__}:{', '.join(str(a) for a in args)}"
    return os.path.join(folder, "k-" + hashlib.blake2b(name.encode(), digest_size=12).hexdigest())


def _claim(path):
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return False
    except OSError:  # an unwritable folder: no coordination, compile here
        return True
    try:
        os.write(fd, str(os.getpid()).encode())
    finally:
        os.close(fd)
    return True


def _holder_alive(path):
    try:
        with open(path, "rb") as f:
            pid = int(f.read() or b"0")
    except (OSError, ValueError):
        return True  # being written: assume alive
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: it exists
        return True
    return True


def _wait(path):
    """Wait for ``path``'s done mark: True if it came, False if the holder died or the
    wait ran out (then the caller compiles the kernel itself)."""
    deadline, check = time.monotonic() + WAIT_LIMIT, time.monotonic() + 0.5
    while not os.path.exists(path + ".done"):
        now = time.monotonic()
        if now > deadline:
            return False
        if now > check:
            if not _holder_alive(path):
                return False
            check = now + 0.5
        time.sleep(0.005)
    return True


def _coordinated(dispatcher, folder):
    compile_here = dispatcher.compile  # the class's method, bound

    def compile(sig):
        from numba.core import sigutils

        args, _ = sigutils.normalize_signature(sig)
        if tuple(args) in dispatcher.overloads:
            return compile_here(sig)
        path = _path(folder, dispatcher, args)
        if _claim(path):
            try:
                return compile_here(sig)
            finally:
                with contextlib.suppress(OSError):
                    open(path + ".done", "wb").close()
        _wait(path)
        return compile_here(sig)  # from the cache, where the holder saved it

    return compile


def _dispatchers(kernels):
    if kernels is None:
        from ._warmup import all_kernels

        kernels = all_kernels(inline=True).values()
    return [getattr(kernel, "dispatcher", kernel) for kernel in kernels]


def install(folder, kernels=None):
    """Coordinate this process's compiles of ``kernels`` (default: every fastnn kernel)
    through ``folder`` until :func:`uninstall` (what :func:`claiming` does; for a worker
    process's initializer). Returns their dispatchers."""
    dispatchers = _dispatchers(kernels)
    for dispatcher in dispatchers:
        if "compile" not in vars(dispatcher):
            dispatcher.compile = _coordinated(dispatcher, folder)
    return dispatchers


def uninstall(kernels=None):
    for dispatcher in _dispatchers(kernels):
        vars(dispatcher).pop("compile", None)


@contextlib.contextmanager
def claiming(folder, kernels=None):
    """Within: this process's compiles of ``kernels`` (default: every fastnn kernel) claim
    them in ``folder`` first (see the module docstring)."""
    dispatchers = install(folder, kernels)
    try:
        yield
    finally:
        uninstall(dispatchers)
