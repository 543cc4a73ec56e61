"""The kernel cache fastnn trusts, and the notice shown while kernels compile.

Numba keys a cached kernel on its own bytecode and invalidates a file's cache when
that file changes, but a kernel's machine code also holds the helpers it calls and
the constants it imports from *other* kernel files (``microkernel.micro``,
``activations.softmax_row``, ``_jit.BLOCK``...): edit one of those and Numba would
load the stale code. :class:`KernelCache` therefore stamps each cache index with a
digest of the kernel's file *and every kernel file it imports, transitively*
(``from .x import``, ``from . import x``): an edit recompiles exactly the kernels
whose sources it changes (editing ``elementwise.py`` leaves ``conv.py``'s kernels
cached; editing ``_jit.py``, imported by all, recompiles all). The digest is
computed at the first cache lookup, once per file per process: importing fastnn
costs nothing more.

The cache is never fatal: an index or data file that cannot be read (truncated,
garbage, another user's unreadable file) or written (a folder that became
read-only) gives one ``RuntimeWarning`` per process, and the kernel is compiled;
a broken index is replaced by the next save.

Compiling notice: Numba fires its ``numba:compile`` event only on a cache miss.
While :func:`compiling` is active (``fit``'s progress bar) its callback runs when
a fastnn kernel starts compiling; otherwise the first compile of the process
prints one line, if stderr is a terminal (pipes and logs, which programs parse,
stay unchanged) and the process is no multiprocessing worker. ``compiling(lambda:
None)`` silences it (a tool that shows its own "compiling" bar).
"""
import contextlib
import hashlib
import os
import re
import sys
import threading
import warnings

import llvmlite.binding as llvm
import numba
from numba.core import event
from numba.core.caching import CompileResultCacheImpl, FunctionCache, IndexDataCacheFile
from numba.core.codegen import JITCodeLibrary
from numba.core.runtime import rtsys

_file_facts = {}  # path -> (sha256 of its bytes, paths of the kernel files it imports)
_digests = {}  # path -> digest of the file and everything it imports


# ``from .x import ...`` / ``from . import x, y``. A match inside a string or comment
# only adds a file to the digest: more recompiles, never a stale kernel. (A regex:
# ``ast.parse`` of the kernel files costs ~100 ms, this ~1 ms.)
_IMPORT = re.compile(rb"^[ \t]*from[ \t]+\.([\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)", re.M)


def _facts(path):
    """The hash of one kernel file and the sibling kernel files it imports."""
    facts = _file_facts.get(path)
    if facts is None:
        try:
            with open(path, "rb") as f:
                source = f.read()
        except OSError:
            _file_facts[path] = facts = ("unreadable", ())
            return facts
        names = set()
        for module, imported in _IMPORT.findall(source):
            if module:
                names.add(module.split(b".")[0].decode())
            else:  # from . import a, b as c
                listed = re.sub(rb"#[^\n]*", b"", imported).strip(b"() \t\r\n")
                names.update(part.split()[0].decode() for part in listed.split(b",") if part.split())
        folder = os.path.dirname(path)
        imports = tuple(p for p in (os.path.join(folder, n + ".py") for n in sorted(names)) if os.path.isfile(p))
        _file_facts[path] = facts = (hashlib.sha256(source).hexdigest(), imports)
    return facts


def sources_digest(path):
    """A digest of the kernel file ``path`` and of every kernel file it imports, transitively."""
    digest = _digests.get(path)
    if digest is None:
        seen, todo = {}, [path]
        while todo:
            current = todo.pop()
            if current not in seen:
                seen[current], imports = _facts(current)
                todo.extend(imports)
        text = "\n".join(f"{os.path.basename(p)} {h}" for p, h in sorted(seen.items()))
        _digests[path] = digest = hashlib.sha256(text.encode()).hexdigest()
    return digest


_warned = False


def _cache_problem(folder, what, exc):
    global _warned
    if not _warned:
        _warned = True
        then = ("the kernels it cannot load are recompiled" if what == "read" else
                "kernels compiled in this process are not saved for later runs")
        warnings.warn(f"fastnn: the kernel cache in {folder} could not be {what} ({type(exc).__name__}: {exc}); "
                      f"{then} (this warning is shown once per process)", RuntimeWarning)


class _IndexFile(IndexDataCacheFile):
    """Numba's index file, stamped with the sources digest; an unreadable index reads as empty
    (so the next save replaces it)."""

    def __init__(self, cache_path, filename_base, source_stamp, source_file):
        self._source_file = source_file
        super().__init__(cache_path, filename_base, source_stamp)

    @property
    def _source_stamp(self):  # read when the index is loaded or saved: the digest is lazy
        return self._file_stamp, sources_digest(self._source_file)

    @_source_stamp.setter
    def _source_stamp(self, stamp):  # Numba's (mtime, size) of the kernel's own file
        self._file_stamp = stamp

    def _load_index(self):
        try:
            return super()._load_index()
        except Exception as exc:  # truncated, garbage, unreadable: any error means "no usable index"
            _cache_problem(self._cache_path, "read", exc)
            return {}


# A cached kernel's code library, as KernelCache saves it: Numba's ("object" kind) holds the
# object code and, for linking into other kernels, the kernel's whole optimised IR as bitcode,
# which Numba's loader parses and walks (for the names it defines) at every load: 40% of
# loading a kernel. This kind adds those names, and the bitcode is parsed only when a compile
# links the kernel (rarely: callers of serial kernels call them by symbol).
_LAZY_KIND = "fastnn-lazy-bitcode"


class _LazyLinkingLibrary(JITCodeLibrary):
    """A loaded kernel's library whose module for linking is parsed on first use."""
    _bitcode = None

    def _get_module_for_linking(self):
        if self._shared_module is None and self._bitcode is not None:
            self._shared_module = llvm.parse_bitcode(self._bitcode)
            self._bitcode = None
        return super()._get_module_for_linking()


def _unserialize_lazy(codegen, state):
    """Numba's ``CPUCodeLibrary._unserialize`` of the "object" kind, the bitcode left unparsed."""
    name, _, (object_code, bitcode, names) = state
    library = _LazyLinkingLibrary(codegen, name)
    library.enable_object_caching()
    library._set_compiled_object(object_code)
    library._bitcode = bitcode
    library._finalize_final_module()
    codegen._engine._defined_symbols.update(names)
    return library


def _read_lazy_kind(codegen):
    """Teach the CPU codegen (one per process) to load libraries of the lazy kind."""
    if getattr(codegen, "_fastnn_lazy", False):
        return
    plain = codegen.unserialize_library

    def unserialize_library(serialized):
        return _unserialize_lazy(codegen, serialized) if serialized[1] == _LAZY_KIND else plain(serialized)

    codegen.unserialize_library = unserialize_library
    codegen._fastnn_lazy = True


class _CacheImpl(CompileResultCacheImpl):
    """Saves a kernel's library in the lazy kind (see ``_LAZY_KIND``)."""

    def reduce(self, cres):
        libdata, *rest = super().reduce(cres)
        name, kind, data = libdata
        if kind == "object":
            module = cres.library._get_module_for_linking()
            names = tuple(value.name for values in (module.functions, module.global_variables)
                          for value in values if not value.is_declaration)
            libdata = (name, _LAZY_KIND, (*data, names))
        return (libdata, *rest)


class KernelCache(FunctionCache):
    """Numba's per-function cache, keyed on the sources of the kernel files a kernel
    imports, and never fatal (see the module docstring)."""

    _impl_class = _CacheImpl

    def __init__(self, py_func):
        super().__init__(py_func)
        plain = self._cache_file
        self._cache_file = _IndexFile(plain._cache_path, self._impl.filename_base, plain._source_stamp,
                                      os.path.abspath(py_func.__code__.co_filename))

    def load_overload(self, sig, target_context):
        # Numba's own ``load_overload`` first calls ``target_context.refresh()``: on the first
        # load of a process that imports and installs every lowering registry Numba has
        # (``numba.np.arraymath``, and SciPy for its BLAS check), which only a compile needs,
        # and every compile does it first (``CompilerBase.__init__``). Cached machine code needs
        # only the symbols it calls bound: the NRT's (bound here), Numba's C helpers (bound
        # when ``numba.core.base`` is imported), the math library's (when the target context
        # is made), the threading layer's and fastnn's callees (the kernel's ``reload_init``).
        rtsys.initialize(target_context)
        _read_lazy_kind(target_context.codegen())
        try:
            with self._guard_against_spurious_io_errors():
                return self._load_overload(sig, target_context)
        except Exception as exc:  # a data file that does not unpickle or rebuild
            _cache_problem(self._cache_path, "read", exc)
            return None

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        except Exception as exc:  # e.g. the folder became read-only
            _cache_problem(self._cache_path, "written", exc)


_making = threading.Lock()


class _Deferred:
    """A kernel's :class:`KernelCache`, made at its first use (a kernel's first call):
    making the ~216 caches at import (source paths, cache folders, index names) was a
    tenth of ``import fastnn``.

    The cache goes in the folder chosen when the kernel was defined (``_jit``'s choice,
    ``numba.config.CACHE_DIR``), not whatever that setting says at the first call:
    Numba resets its settings from the environment before a compile whenever a
    ``NUMBA_`` variable changed (fastnn exports ``NUMBA_THREADING_LAYER``), which
    drops the folder ``_jit`` chose (a bounds-checked build's own ``boundscheck``
    folder, a fallback folder). Made then, a bounds-checked run's caches loaded the
    unchecked kernels."""

    def __init__(self, py_func):
        self._py_func = py_func
        self._folder = numba.config.CACHE_DIR

    def __getattr__(self, name):
        cache = self.__dict__.get("_made")
        if cache is None:
            with _making:
                cache = self.__dict__.get("_made")
                if cache is None:
                    now = numba.config.CACHE_DIR
                    numba.config.CACHE_DIR = self._folder
                    try:
                        cache = self.__dict__["_made"] = KernelCache(self._py_func)
                    finally:
                        numba.config.CACHE_DIR = now
        return getattr(cache, name)


def with_kernel_cache(dispatcher):
    """Give a Numba dispatcher a :class:`KernelCache` (what ``cache=True`` would do, trusted)."""
    dispatcher._cache = _Deferred(dispatcher.py_func)
    return dispatcher


_callbacks = []  # the active ``compiling`` callbacks, innermost last
_announced = False
compiles = 0  # fastnn kernel compiles started in this process


@contextlib.contextmanager
def compiling(callback):
    """While active, ``callback()`` runs each time a fastnn kernel starts compiling
    (a cache miss), in place of the one-line terminal notice."""
    _callbacks.append(callback)
    try:
        yield
    finally:
        _callbacks.remove(callback)


def _announce():
    global _announced
    _announced = True
    import multiprocessing

    # workers (DataLoader, warmup's pool) share their parent's terminal: the parent speaks
    if getattr(sys.stderr, "isatty", lambda: False)() and multiprocessing.parent_process() is None:
        from ._jit import CACHE

        later = "cached for later runs" if CACHE else "the kernel cache is off: every run compiles"
        print(f"fastnn: compiling kernels on first use ({later})", file=sys.stderr, flush=True)


class _CompileListener(event.Listener):
    def on_start(self, ev):
        func = getattr(ev.data.get("dispatcher"), "py_func", None)
        if not (getattr(func, "__module__", None) or "").startswith(__package__ + "."):
            return  # not a fastnn kernel
        global compiles
        compiles += 1
        if _callbacks:
            _callbacks[-1]()
        elif not _announced:
            _announce()

    def on_end(self, ev):
        pass


event.register("numba:compile", _CompileListener())
