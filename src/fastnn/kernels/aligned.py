"""Arrays whose data starts on a 64-byte boundary: a cache line, one AVX-512 vector.

The micro-kernels load and store whole 64-byte vectors: a packed panel of B, a
row of an output tile. NumPy's allocator (and Numba's, inside a kernel) places
data 16 or 32 bytes past a line as often as not, and then every one of those
vectors spans two lines. The products' packing buffers, pre-packed weights and an
inference plan's buffers are therefore allocated here. Measured in one process on
a 2-vCPU Intel Xeon (family 6, model 207), products of a Transformer layer's shapes
ran 3-5% faster on one thread and 6-15% faster on two with their operands, packs
and output aligned than with all of them 16 bytes off.
"""
import numpy as np

from ._jit import inline, serial_kernel

ALIGN = 64


def empty(shape, dtype):
    """``np.empty(shape, dtype)`` with its data on an ``ALIGN``-byte boundary (C-contiguous,
    writable; about 1 us more than ``np.empty``: for buffers allocated once)."""
    dtype = dtype if isinstance(dtype, np.dtype) else np.dtype(dtype)
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(shape)
    nbytes = dtype.itemsize
    for n in shape:
        nbytes *= n
    return _aligned_bytes(nbytes).view(dtype).reshape(shape)


def bytes_view(nbytes):
    """An ``ALIGN``-aligned uint8 array of ``nbytes`` (at least one) to carve arrays from."""
    return _aligned_bytes(max(int(nbytes), 1))


@inline
def empty_like_row(n, like):
    """Inside a kernel: a 1-D array of ``n`` elements of ``like``'s dtype, its data on
    an ``ALIGN``-byte boundary."""
    size = like.itemsize
    block = np.empty(n + ALIGN // size, like.dtype)
    start = (ALIGN - np.int64(block.ctypes.data) % ALIGN) % ALIGN // size
    return block[start:start + n]


_BYTE = np.zeros(1, np.uint8)  # the dtype ``_aligned_bytes`` allocates


@serial_kernel
def _aligned_bytes(nbytes):
    # (in a kernel: reading an address from Python (``.ctypes.data``) costs more)
    return empty_like_row(nbytes, _BYTE)


# what ``fastnn._precompile``'s discovery runs in its place (it runs no kernel: this
# one's result is used in Python, to carve arrays from)
_aligned_bytes.py_func.discovery_stand_in = lambda nbytes: np.empty(nbytes, np.uint8)
