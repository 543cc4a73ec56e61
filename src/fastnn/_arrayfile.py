"""Row-chunked reading and writing of ``.npy``/``.npz`` files, for ``fastnn predict``.

Inputs are never read whole: an ``.npy`` file, or an uncompressed member of an
``.npz`` (``np.savez``), is memory-mapped, so only the chunk being scored is
touched and the kernel may drop those pages again; a compressed member
(``np.savez_compressed``) is decompressed as a stream, one chunk at a time.
Outputs are written chunk by chunk into a temporary file that replaces the
target only when complete (``_io.atomic_write``).
"""
import contextlib
import os
import struct
import zipfile

import numpy as np

from ._io import atomic_write

_LOCAL_HEADER = struct.Struct("<4s5H3I2H")  # a zip member's local file header


class InputError(ValueError):
    """An input file that cannot be read as rows."""


def _read_npy_header(f, name):
    try:
        version = np.lib.format.read_magic(f)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = reader(f)
    except ValueError as err:
        raise InputError(f"{name} is not a valid .npy array ({err})") from None
    if dtype.hasobject:
        raise InputError(f"{name} holds Python objects; only numeric arrays can be scored")
    if not shape:
        raise InputError(f"{name} holds a scalar, expected rows (shape (N, ...))")
    return shape, fortran_order, dtype


class _Mapped:
    """Rows of a memory-mapped array."""

    def __init__(self, array):
        self.array = array
        self.shape, self.dtype = array.shape, array.dtype

    def chunks(self, rows):
        for lo in range(0, self.shape[0], rows):
            yield np.asarray(self.array[lo:lo + rows])

    def close(self):
        mm = getattr(self.array, "_mmap", None)
        self.array = None
        if mm is not None:
            with contextlib.suppress(BufferError, ValueError):
                mm.close()


class _Stream:
    """Rows of a compressed ``.npz`` member, decompressed in order."""

    def __init__(self, archive, member, name):
        self.archive = archive
        self.f = archive.open(member)
        self.shape, fortran_order, self.dtype = _read_npy_header(self.f, name)
        if fortran_order and len(self.shape) > 1:
            raise InputError(f"{name} is stored in Fortran order; save it C-ordered (np.ascontiguousarray) to stream it")

    def chunks(self, rows):
        row_shape = self.shape[1:]
        row_bytes = int(np.prod(row_shape, dtype=np.int64)) * self.dtype.itemsize
        for lo in range(0, self.shape[0], rows):
            count = min(rows, self.shape[0] - lo)
            data = self.f.read(count * row_bytes)
            if len(data) != count * row_bytes:
                raise InputError("the input array is truncated")
            yield np.frombuffer(data, dtype=self.dtype).reshape((count,) + row_shape)

    def close(self):
        self.f.close()
        self.archive.close()


def open_rows(path, key=None):
    """An object with ``shape``, ``dtype``, ``chunks(rows)`` and ``close()`` for ``path``.

    ``path``: an ``.npy`` file, or an ``.npz`` file with ``key`` (default: ``x`` if
    present, else its only array).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such input file: {path!r}")
    if path.endswith(".npy"):
        if key is not None:
            raise InputError("--key applies to .npz inputs only")
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as err:
            raise InputError(f"{path!r} is not a valid .npy array ({err})") from None
        if array.ndim == 0:
            raise InputError(f"{path!r} holds a scalar, expected rows (shape (N, ...))")
        return _Mapped(array)
    if not path.endswith(".npz"):
        raise InputError(f"{path!r}: expected an .npy or .npz input file")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise InputError(f"{path!r} is not a valid .npz file ({err})") from None
    try:
        names = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
        if key is None:
            key = "x" if "x" in names else (names[0] if len(names) == 1 else None)
            if key is None:
                raise InputError(f"{path!r} holds arrays {names}; choose one with --key")
        elif key not in names:
            raise InputError(f"{path!r} has no array {key!r} (it has: {', '.join(names)})")
        info = archive.getinfo(key + ".npy")
        name = f"{path!r}[{key!r}]"
        if info.compress_type != zipfile.ZIP_STORED:
            return _Stream(archive, info, name)
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            fields = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
            f.seek(info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1])
            shape, fortran_order, dtype = _read_npy_header(f, name)
            offset = f.tell()
        archive.close()
        array = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                          order="F" if fortran_order else "C")
        return _Mapped(array)
    except BaseException:
        archive.close()
        raise


@contextlib.contextmanager
def write_rows(path, shape, dtype, key="y"):
    """Yield ``write(chunk)`` that appends rows to a new ``.npy`` (or ``.npz`` member
    ``key``) file of the given ``shape``; the file appears atomically when complete."""
    path = os.fspath(path)
    if not path.endswith((".npy", ".npz")):
        raise InputError(f"{path!r}: the output must be an .npy or .npz file")
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)}
    expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    written = [0]

    def writer(out):
        def write(chunk):
            data = np.ascontiguousarray(chunk, dtype=dtype)
            out.write(memoryview(data).cast("B"))
            written[0] += data.nbytes
        return write

    with atomic_write(path) as f:
        if path.endswith(".npy"):
            np.lib.format.write_array_header_1_0(f, header)
            yield writer(f)
        else:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as archive, \
                    archive.open(key + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(member, header)
                yield writer(member)
        if written[0] != expected:
            raise RuntimeError(f"write_rows: wrote {written[0]} bytes of {expected}")
