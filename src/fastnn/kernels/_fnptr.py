"""Calling a compiled serial kernel without linking its body into the caller.

Numba links the machine code of every kernel a kernel calls into the caller and
optimises and compiles all of it again, once for a ``prange`` body and once more
for the function around it: a thin parallel shell over a large serial kernel pays
for the large body several times over. A call through an address links nothing:
the shell compiles in a fraction of a second, and the call costs a few nanoseconds,
nothing next to a per-slot unit of work (conv2d_slots: 13.1 -> 1.2 compile CPU s).
Two ways here:

**By symbol** (:func:`by_symbol`, what ``_jit.serial_kernel`` does to every serial
kernel). A kernel's call to a serial kernel becomes a call to an external symbol
named after the callee and its argument types, the same in every process
(``fastnn.<module>.<name>.<digest>``); each process binds that name to the callee's
machine code (``llvmlite.binding.add_symbol``) when it compiles the callee or loads it
from the cache. Before Numba loads a cached caller, the caller's ``reload_init`` (which
Numba runs first, and which a caller inherits from the kernels it links) compiles or
loads each callee it names, so the name is always bound before the loader looks for it.
The caller's cached code depends on the callee only through its argument types, which
are part of its cache key; an edited callee is recompiled (its own cache) and every
caller then calls the new code. Measured: a kernel that only calls ``gemm_serial``
compiled in 0.82 CPU s with the product linked in, 0.05 s by symbol; the compile
of every kernel, 122.3 -> 95.6 CPU s (``bench/compile_times.py``, side by side). A
call by symbol costs a few nanoseconds and keeps LLVM from inlining the callee:
serial kernels do at least a row's work per call; per-element helpers are ``inline``
(Numba inlines them) or plain ``_jit`` functions, and ``_jit.linked_kernel`` keeps
the elementwise blocks linked (see there).

**By address** (:func:`handle` and :func:`call`), for a shell that picks its callee
at run time.

Python side: ``handle(dispatcher, args)`` compiles (or loads from the cache) the
serial kernel ``dispatcher`` for the types of ``args`` and returns its handle, a
pair of int64: the native entry point and a tag of the argument types. The handle
is an *argument* of the shell, never a constant in its code, so the shell's cached
machine code is valid in every process (each process computes its own address).

Kernel side: ``call(fn, (a, b, ...))`` calls the handle ``fn`` with the tuple of
arguments, in Numba's own calling convention; an exception the callee raises
(bounds checks, a failed allocation) propagates as if it had been called directly
(from a ``prange`` body, Numba raises ``SystemError`` with it as the cause, as for
any exception there).
The tuple's types must be the types ``handle`` was given (the Python side builds
``args`` by the same slicing as the shell): the shell compares the handle's tag
with the tag of its own argument types before the call and raises ``TypeError``
on a mismatch instead of calling with the wrong layout. The callee returns nothing.

Cache safety (``_cache.KernelCache``): the shell's code depends on the callee only
through the argument types, which are part of its cache key; the tag is a digest
of their names, the same in every process, and the sources digest of a shell's file
covers this file (it imports it). The callee is cached on its own, so an edited
callee is recompiled while the shell loads from the cache, and still calls the
new code. Addresses live only in this process (``_HANDLES``), held as long as the
dispatcher keeps the compiled code (Numba never unloads it).
"""
import hashlib
import importlib

import llvmlite.binding as llvm
from numba import typeof, types
from numba.core import cgutils, imputils
from numba.core.base import OverloadSelector
from numba.extending import intrinsic

try:  # the dispatcher's own fast type key (what it looks compiled code up by)
    from numba._dispatcher import compute_fingerprint as _fingerprint
except ImportError:  # pragma: no cover - other Numba builds: slower, same answers
    _fingerprint = typeof

_HANDLES = {}  # (py_func, argument fingerprints) -> handle
_recording = None  # while ``fastnn._precompile`` discovers a step's kernels: records instead


def _tag(argtypes):
    """A non-negative int64 digest of the argument types, the same in every process."""
    digest = hashlib.blake2b(", ".join(str(t) for t in argtypes).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def handle(dispatcher, args):
    """``(address, tag)`` of the serial kernel ``dispatcher`` compiled for the types of
    ``args``, for :func:`call`. Compiles on first use; a typing error, or a kernel
    that returns a value, raises here in Python, before any shell runs."""
    if _recording is not None:
        return _recording(dispatcher, args)
    try:
        key = (dispatcher.py_func, tuple(map(_fingerprint, args)))  # ~0.3 us an argument
    except (NotImplementedError, TypeError, ValueError):  # a value without a fingerprint: type it the slow way
        key = (dispatcher.py_func, tuple(typeof(a) for a in args))
    found = _HANDLES.get(key)
    if found is None:
        sig = tuple(typeof(a) for a in args)
        if sig not in dispatcher.overloads:
            dispatcher.compile(sig)
        cres = dispatcher.overloads[sig]
        if cres.signature.return_type != types.none:
            raise TypeError(f"{dispatcher.py_func.__qualname__}: a kernel called through its address must return "
                            f"nothing, it returns {cres.signature.return_type}")
        address = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)
        found = _HANDLES[key] = (address, _tag(sig))
    return found


@intrinsic
def call(typingctx, fn, args):
    """Call the kernel of handle ``fn`` (see :func:`handle`) with the tuple ``args``;
    ``TypeError`` if the handle was made for other argument types."""
    if not (isinstance(fn, types.UniTuple) and fn.count == 2 and isinstance(fn.dtype, types.Integer)
            and isinstance(args, types.BaseTuple)):
        return None
    argtys = list(args.types)
    tag = _tag(argtys)
    message = f"fastnn: a kernel called through its address with other argument types than it was compiled for " \
              f"({', '.join(map(str, argtys))})"

    def codegen(context, builder, signature, llargs):
        handle_value, tup = llargs
        address, got = builder.extract_value(handle_value, 0), builder.extract_value(handle_value, 1)
        with cgutils.if_unlikely(builder, builder.icmp_unsigned("!=", got, got.type(tag))):
            context.call_conv.return_user_exc(builder, TypeError, (message,))
        values = [builder.extract_value(tup, i) for i in range(len(argtys))]
        fnty = context.call_conv.get_function_type(types.none, argtys)
        callee = builder.inttoptr(address, fnty.as_pointer())
        status, _ = context.call_conv.call_function(builder, callee, types.none, argtys, values)
        with cgutils.if_unlikely(builder, status.is_error):
            context.call_conv.return_status_propagate(builder, status)
        return context.get_dummy_value()

    return types.none(fn, args), codegen


# ------------------------------------------------------------------ by symbol
def _symbol(py_func, argtypes):
    """The callee's external name for these argument types, the same in every process."""
    digest = hashlib.blake2b(", ".join(map(str, argtypes)).encode(), digest_size=12).hexdigest()
    return f"fastnn.{py_func.__module__}.{py_func.__qualname__}.{digest}"


class _Bind:
    """A cached caller's ``reload_init`` entry: compile (or load) the callee for these
    argument types, which binds its symbol. Pickled with the caller: module, name, types."""

    def __init__(self, module, qualname, argtypes):
        self.key = (module, qualname, tuple(argtypes))

    def __eq__(self, other):
        return isinstance(other, _Bind) and other.key == self.key

    def __hash__(self):
        return hash(self.key)

    def __call__(self):
        module, qualname, argtypes = self.key
        getattr(importlib.import_module(module), qualname).compile(argtypes)


def _call_by_symbol(fndesc, symbol, bind):
    """Numba's lowering of a call to a compiled function (``imputils.user_function``),
    with the callee declared under ``symbol`` and nothing linked."""
    def lower(context, builder, sig, args):
        context.active_code_library._reload_init.add(bind)
        fnty = context.call_conv.get_function_type(fndesc.restype, fndesc.argtypes)
        callee = cgutils.get_or_insert_function(builder.module, fnty, symbol)
        status, value = context.call_conv.call_function(builder, callee, fndesc.restype, fndesc.argtypes, args)
        with cgutils.if_unlikely(builder, status.is_error):
            context.call_conv.return_status_propagate(builder, status)
        value = imputils.fix_returning_optional(context, builder, sig, status, value)
        return imputils.impl_ret_new_ref(context, builder, fndesc.restype, value)

    lower.signature = fndesc.argtypes
    lower.libs = ()
    return lower


def by_symbol(dispatcher):
    """Make jitted callers call ``dispatcher``'s compiled code by symbol (see above).

    Each overload the dispatcher gets (compiled, or loaded from the cache) binds its
    symbol and replaces Numba's lowering of calls to it, which links the callee."""
    func = dispatcher.py_func
    if "<locals>" in func.__qualname__:  # not importable by name in another process
        return dispatcher
    add = dispatcher.add_overload

    def add_overload(cres):
        add(cres)
        if cres.objectmode:
            return
        argtypes = tuple(cres.signature.args)
        symbol = _symbol(func, argtypes)
        llvm.add_symbol(symbol, cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name))
        lowering = OverloadSelector()
        lower = _call_by_symbol(cres.fndesc, symbol, _Bind(func.__module__, func.__qualname__, argtypes))
        lowering.append(lower, lower.signature)
        dispatcher.targetctx._defns[cres.entry_point] = lowering

    dispatcher.add_overload = add_overload
    return dispatcher
