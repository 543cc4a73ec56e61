"""Batch inference on Dask: ``fastnn.dask.predict`` (extra ``[dask]``).

The model is shipped as bytes in fastnn's pickle-free file format inside a
:class:`SharedModel`. On Dask it is one key of the task graph that every block
depends on, so each worker receives it once and loads it once (a per-process
cache keyed by the bytes' SHA-256); blocks then run ``fastnn.predict`` with as
many fastnn threads as the worker has threads, one block at a time per worker
process. Kernels compute each row independently of the others, so the result
equals a local ``fastnn.predict`` whatever the chunking (see :func:`predict`).

The same :class:`SharedModel` serves ``dask.dataframe`` partitions and plain
process pools (``concurrent.futures``, ``multiprocessing``); see the README's
"Scaling out" section.
"""
import collections
import hashlib
import io
import os
import tempfile
import threading
import zipfile

import numba
import numpy as np

from ._config import get_num_threads, set_num_threads
from .serialization import load, save
from .training import _check_batch_size, predict as _local_predict

_CACHE_SIZE = 4  # models kept loaded per process
_models = collections.OrderedDict()  # digest -> model, most recently used last
_cache_lock = threading.Lock()
_run_lock = threading.Lock()  # one block at a time per process: threads come from the worker's budget
stats = {"loads": 0, "threads": None}  # per process: models loaded, threads of the last block


def model_to_bytes(model):
    """The bytes ``fastnn.save(model, path)`` would write."""
    with tempfile.TemporaryDirectory(prefix="fastnn-") as folder:
        path = os.path.join(folder, "model.fnn")
        save(model, path)
        with open(path, "rb") as f:
            return f.read()


def model_from_bytes(data):
    """The model in ``data`` (bytes from :func:`model_to_bytes`), loaded without pickle."""
    with tempfile.TemporaryDirectory(prefix="fastnn-") as folder:
        path = os.path.join(folder, "model.fnn")
        with open(path, "wb") as f:
            f.write(data)
        return load(path)


def _digest(data):
    """SHA-256 of a model file's members (names and contents: not the zip's timestamps)."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            digest.update(info.filename.encode() + b"\0" + archive.read(info) + b"\0")
    return digest.hexdigest()


def _worker_threads():
    """The thread budget of the Dask worker running this code, or None outside one."""
    try:
        from distributed import get_worker
        worker = get_worker()
    except (ImportError, ValueError):
        return None
    return getattr(getattr(worker, "state", worker), "nthreads", None)


class SharedModel:
    """A model to run in other processes: loaded once per process, called on blocks.

    Pickling a ``SharedModel`` sends the model's bytes (fastnn's file format, no
    pickled objects inside); :attr:`ref` is a copy without the bytes, for pools
    whose workers were given the model once by ``initializer=shared.install``.

    Args:
        model: a fastnn Module.
        batch_size: rows per forward pass inside a block.
        num_threads: fastnn threads per block; default: the Dask worker's thread
            count inside a Dask worker, else the process's current setting.

    Example:
        >>> shared = fastnn.dask.SharedModel(model, batch_size=512)  # doctest: +SKIP
        >>> with ProcessPoolExecutor(2, initializer=shared.install) as pool:  # doctest: +SKIP
        ...     out = np.concatenate(list(pool.map(shared.ref, np.array_split(x, 8))))
    """

    def __init__(self, model, batch_size=256, num_threads=None):
        self.batch_size = _check_batch_size(batch_size, "fastnn.dask.SharedModel")
        if num_threads is not None and (isinstance(num_threads, bool) or int(num_threads) < 1):
            raise ValueError(f"fastnn.dask.SharedModel: num_threads must be a positive int or None, got {num_threads!r}")
        self.num_threads = num_threads
        self.data = model_to_bytes(model)
        self.digest = _digest(self.data)

    @property
    def ref(self):
        """A copy that pickles without the model bytes (the model must be installed)."""
        light = object.__new__(SharedModel)
        light.__dict__.update(self.__dict__, data=None)
        return light

    def __dask_tokenize__(self):
        return ("fastnn.dask.SharedModel", self.digest, self.batch_size, self.num_threads)

    def install(self):
        """Load the model into this process's cache now (a pool ``initializer``)."""
        self.model()

    def model(self):
        """This process's loaded copy of the model (loaded on first use)."""
        with _cache_lock:
            model = _models.get(self.digest)
            if model is None:
                if self.data is None:
                    raise RuntimeError(
                        "fastnn.dask.SharedModel.ref: the model is not installed in this process; "
                        "pass initializer=shared.install to the pool, or call the SharedModel itself"
                    )
                model = model_from_bytes(self.data)
                stats["loads"] += 1
                _models[self.digest] = model
                while len(_models) > _CACHE_SIZE:
                    _models.popitem(last=False)
            _models.move_to_end(self.digest)
        return model

    def __call__(self, block):
        """``fastnn.predict(model, block)`` with this process's copy of the model."""
        model = self.model()
        threads = self.num_threads or _worker_threads()
        if threads:
            threads = max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS))
        with _run_lock, set_num_threads(threads or get_num_threads()):
            stats["threads"] = get_num_threads()
            return _local_predict(model, block, batch_size=self.batch_size)


def _predict_block(block, shared):
    return shared(block)


def predict(model, x, batch_size=256, num_threads=None):
    """Lazy model outputs for a ``dask.array`` ``x``, computed block by block.

    Args:
        model: a fastnn Module (saved to bytes now: later changes to it are not seen).
        x: a ``dask.array.Array`` whose first axis is the samples, chunked along it
            in any way (other axes are merged into one chunk).
        batch_size: rows per forward pass inside a block.
        num_threads: fastnn threads per block (default: each Dask worker's thread
            count).

    Returns:
        A ``dask.array.Array`` with ``x``'s row chunks; ``.compute()`` equals
        ``fastnn.predict(model, x.compute())`` bitwise, unless a batch on either
        side is tiny (a matrix product of under 4 rows or 8,192 multiply-adds takes
        an unpacked path that may round differently in the last bit).

    Example:
        >>> x = dask.array.from_zarr("features.zarr")  # doctest: +SKIP
        >>> fastnn.dask.predict(model, x, batch_size=1024).to_zarr("scores.zarr")  # doctest: +SKIP
    """
    import dask
    import dask.array as da

    if not isinstance(x, da.Array):
        raise TypeError(f"fastnn.dask.predict: expected a dask.array.Array, got {type(x).__name__}")
    if x.ndim == 0:
        raise ValueError("fastnn.dask.predict: x must have a samples axis, got a 0-d array")
    if any(np.isnan(s) for s in x.shape[1:]):
        raise ValueError(f"fastnn.dask.predict: the feature axes of x must have known sizes, got {x.shape}")
    x = x.rechunk({axis: -1 for axis in range(1, x.ndim)})
    # shape and dtype of one output row, from a zero row run here
    probe = _local_predict(model, np.zeros((1,) + x.shape[1:], x.dtype), batch_size=1)
    shared = dask.delayed(SharedModel(model, batch_size, num_threads), pure=True)
    chunks = (x.chunks[0],) + tuple((size,) for size in probe.shape[1:])
    new_axis = list(range(x.ndim, probe.ndim)) if probe.ndim > x.ndim else None
    drop_axis = list(range(probe.ndim, x.ndim)) if probe.ndim < x.ndim else []
    return x.map_blocks(_predict_block, shared, dtype=probe.dtype, chunks=chunks,
                        new_axis=new_axis, drop_axis=drop_axis, meta=np.empty((0,) * probe.ndim, probe.dtype))
