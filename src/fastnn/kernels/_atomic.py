"""Atomic operations on int64 array elements, for threads of one parallel region that
hand work to each other (``recurrent.sequence_forward_split``).

Numba has no atomics on the CPU; these emit LLVM's. ``fetch_add`` and
``compare_swap`` are sequentially consistent read-modify-writes (on x86 a locked
instruction, a full barrier): every store the thread made before them is visible to
a thread that then reads the element. ``load_acquire`` orders the loads after it
behind it, so a thread that sees a counter move also sees what was written before
the move. ``pause`` hints a spin-wait to the CPU (x86's ``pause``; nothing
elsewhere). The index is not bounds-checked: callers index arrays they sized.
"""
import platform

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def _int64_array(arr):
    return isinstance(arr, types.Array) and arr.dtype == types.int64


def _pointer(context, builder, arrty, arr, idx):
    ary = context.make_array(arrty)(context, builder, arr)
    return cgutils.get_item_pointer(context, builder, arrty, ary, [idx])


@intrinsic
def fetch_add(typingctx, arr, idx, value):
    """arr[idx] += value atomically; returns the value before."""
    if not (_int64_array(arr) and isinstance(idx, types.Integer) and isinstance(value, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        ptr = _pointer(context, builder, signature.args[0], args[0], args[1])
        v = context.cast(builder, args[2], signature.args[2], types.int64)
        return builder.atomic_rmw("add", ptr, v, "seq_cst")

    return types.int64(arr, idx, value), codegen


@intrinsic
def compare_swap(typingctx, arr, idx, expected, value):
    """If arr[idx] == expected, set it to value; True when this call did, atomically."""
    if not (_int64_array(arr) and isinstance(idx, types.Integer) and isinstance(expected, types.Integer)
            and isinstance(value, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        ptr = _pointer(context, builder, signature.args[0], args[0], args[1])
        old = context.cast(builder, args[2], signature.args[2], types.int64)
        new = context.cast(builder, args[3], signature.args[3], types.int64)
        pair = builder.cmpxchg(ptr, old, new, "seq_cst", "seq_cst")
        return builder.extract_value(pair, 1)

    return types.boolean(arr, idx, expected, value), codegen


@intrinsic
def load_acquire(typingctx, arr, idx):
    """arr[idx], read atomically with acquire ordering."""
    if not (_int64_array(arr) and isinstance(idx, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        ptr = _pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "acquire", 8)

    return types.int64(arr, idx), codegen


@intrinsic
def pause(typingctx):
    """A spin-wait hint to the CPU."""
    def codegen(context, builder, signature, args):
        if _X86:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()

    return types.none(), codegen
