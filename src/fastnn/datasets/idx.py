"""Reader and writer for the IDX format of the MNIST files (plain or gzipped).

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian int32 per dimension, then the values, big-endian,
in C order. Files whose name ends in ``.gz`` are gunzipped transparently.
"""
import gzip
import math
import os
import struct
import zlib

import numpy as np

from .. import _config
from .._io import atomic_write

# type code -> big-endian dtype of the stored values
_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# (dtype kind, itemsize) -> type code
_CODES = {(dt.kind, dt.itemsize): code for code, dt in _DTYPES.items()}
_CHUNK = 1 << 24  # bytes per read/write call


def _is_gzip(name):
    return name.lower().endswith(".gz")


def _read_exact(f, size):
    data = f.read(size)
    while len(data) < size:
        more = f.read(size - len(data))
        if not more:
            break
        data += more
    return data


def _read_header(f, name):
    """Parse the magic number and dimensions; returns (dtype, shape, header bytes)."""
    magic = _read_exact(f, 4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0:
        raise ValueError(f"read_idx: {name!r} is not an IDX file (bad magic number 0x{magic.hex()})")
    code, ndim = magic[2], magic[3]
    if code not in _DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _DTYPES)
        raise ValueError(f"read_idx: {name!r} has unknown IDX type code 0x{code:02X} (known: {known})")
    raw_dims = _read_exact(f, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise ValueError(f"read_idx: {name!r} is truncated: its header promises {ndim} dimensions")
    shape = struct.unpack(f">{ndim}i", raw_dims)
    if any(d < 0 for d in shape):
        raise ValueError(f"read_idx: {name!r} has negative dimensions {shape} in its header")
    return _DTYPES[code], shape, 4 + 4 * ndim


def _size_error(name, shape, dtype, expected, got):
    what = "truncated" if got < expected else "longer than its header says"
    return ValueError(
        f"read_idx: {name!r} is {what}: header says shape {shape} of {dtype.itemsize}-byte "
        f"values ({expected} data bytes), found {got} bytes"
    )


def _read_body(f, name, dtype, shape):
    """Read exactly the values the header promises into a native-endian array."""
    nbytes = math.prod(shape) * dtype.itemsize
    buf = bytearray()
    while len(buf) <= nbytes:  # read one byte past the end to detect trailing data
        chunk = f.read(min(_CHUNK, nbytes + 1 - len(buf)))
        if not chunk:
            break
        buf += chunk
    if len(buf) != nbytes:
        raise _size_error(name, shape, dtype, nbytes, len(buf))
    values = np.frombuffer(buf, dtype=dtype)  # writable: it views a bytearray
    if not dtype.isnative:
        values.byteswap(inplace=True)
        values = values.view(dtype.newbyteorder("="))
    return values.reshape(shape)


def read_idx(path, mmap=False):
    """Read an IDX file (``.gz`` files are gunzipped) into a NumPy array.

    Args:
        path: file name (str or ``os.PathLike``).
        mmap: if True and the file is not gzipped, return a read-only ``np.memmap``
            instead of loading the data (for files larger than memory). Its dtype
            keeps the file's big-endian byte order; values are the same.

    Returns:
        ndarray of the header's shape and dtype (uint8, int8, int16, int32,
        float32 or float64; native byte order unless memory-mapped).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: bad magic number, unknown type code, or a size that does not
            match the header (truncated file), naming the file.

    Example:
        >>> images = read_idx("train-images-idx3-ubyte.gz")  # doctest: +SKIP
        >>> images.shape, images.dtype  # doctest: +SKIP
        ((60000, 28, 28), dtype('uint8'))
    """
    name = os.fspath(path)
    if not os.path.exists(name):
        raise FileNotFoundError(f"read_idx: no such file: {name!r}")
    if _is_gzip(name):
        try:
            with gzip.open(name, "rb") as f:
                dtype, shape, _ = _read_header(f, name)
                return _read_body(f, name, dtype, shape)
        except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
            raise ValueError(f"read_idx: {name!r} is not a valid gzip file or is truncated ({err})") from err
    with open(name, "rb") as f:
        dtype, shape, offset = _read_header(f, name)
        nbytes = math.prod(shape) * dtype.itemsize
        found = os.fstat(f.fileno()).st_size - offset
        if found != nbytes:
            raise _size_error(name, shape, dtype, nbytes, found)
        if mmap and nbytes > 0 and shape:
            return np.memmap(name, dtype=dtype, mode="r", offset=offset, shape=shape)
        return _read_body(f, name, dtype, shape)


def write_idx(path, array):
    """Write ``array`` as an IDX file, gzipped when ``path`` ends in ``.gz``.

    The file is written atomically (temporary file, then rename).

    Args:
        path: file name (str or ``os.PathLike``).
        array: array-like of dtype uint8, int8, int16, int32, float32 or float64
            with at most 255 dimensions, each below 2**31.

    Example:
        >>> write_idx("labels-idx1-ubyte.gz", np.array([3, 1, 4], dtype=np.uint8))  # doctest: +SKIP
    """
    name = os.fspath(path)
    array = np.asarray(array)
    code = _CODES.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise TypeError(
            f"write_idx: cannot store dtype {array.dtype} in IDX; convert to one of "
            "uint8, int8, int16, int32, float32, float64"
        )
    if array.ndim > 255 or any(d >= 2**31 for d in array.shape):
        raise ValueError(f"write_idx: shape {array.shape} does not fit an IDX header")
    header = bytes((0, 0, code, array.ndim)) + struct.pack(f">{array.ndim}i", *array.shape)
    raw = np.ascontiguousarray(array, dtype=_DTYPES[code]).reshape(-1).view(np.uint8)
    with atomic_write(name) as out:
        f = gzip.GzipFile(filename=os.path.basename(name), mode="wb", fileobj=out, mtime=0) if _is_gzip(name) else out
        f.write(header)
        for start in range(0, raw.size, _CHUNK):
            f.write(raw[start : start + _CHUNK])
        if f is not out:
            f.close()


def _find(folder, candidates):
    for candidate in candidates:
        for name in (candidate, candidate + ".gz"):
            full = os.path.join(folder, name)
            if os.path.isfile(full):
                return full
    tried = ", ".join(f"{c}[.gz]" for c in candidates)
    raise FileNotFoundError(f"load_mnist: none of {tried} found in {folder!r}")


def load_mnist(folder, split="train", dtype=None):
    """Load MNIST (or a drop-in like Fashion-MNIST) from the standard IDX files.

    Looks in ``folder`` for ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte``
    (split ``"train"``) or ``t10k-images-idx3-ubyte`` / ``t10k-labels-idx1-ubyte``
    (split ``"test"``), each optionally gzipped (``.gz``); the ``images.idx3-ubyte``
    spelling is accepted too.

    Args:
        folder: folder holding the files.
        split: ``"train"`` or ``"test"`` (``"t10k"`` is accepted as well).
        dtype: float dtype of the images; default ``fastnn.get_default_dtype()``.

    Returns:
        ``(x, y)``: x of shape (N, 1, H, W) scaled to [0, 1], y int64 of shape (N,).

    Example:
        >>> x, y = load_mnist("data/mnist", "test")  # doctest: +SKIP
        >>> x.shape, y.dtype  # doctest: +SKIP
        ((10000, 1, 28, 28), dtype('int64'))
    """
    prefixes = {"train": "train", "test": "t10k", "t10k": "t10k"}
    if split not in prefixes:
        raise ValueError(f"load_mnist: split must be 'train' or 'test', got {split!r}")
    dtype = np.dtype(_config.get_default_dtype() if dtype is None else dtype)
    if dtype.kind != "f":
        raise TypeError(f"load_mnist: dtype must be a float dtype, got {dtype}")
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"load_mnist: no such folder: {folder!r}")
    prefix = prefixes[split]
    images_path = _find(folder, [f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"])
    labels_path = _find(folder, [f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"])
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"load_mnist: {images_path!r} should hold uint8 images (N, H, W), "
            f"got {images.dtype} of shape {images.shape}"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"load_mnist: {labels_path!r} holds labels of shape {labels.shape}, "
            f"expected ({images.shape[0]},) to match {images_path!r}"
        )
    x = images.reshape(images.shape[0], 1, *images.shape[1:]).astype(dtype)
    x /= 255
    return x, labels.astype(np.int64)
