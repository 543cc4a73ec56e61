"""Training checkpoints: model, optimizer, scheduler, epoch and random state in one file.

A checkpoint is the zip layout of ``fastnn.save`` (``fastnn.json`` header plus one
``arrays/<key>.npy`` per array, no pickle) with ``format: "fastnn-checkpoint"``.
The header holds ``epoch`` (epochs completed), ``model`` (the model description
of ``fastnn.save``; its arrays under ``arrays/model/``), ``optimizer`` and
``scheduler`` (class name and ``state_dict``, arrays under ``arrays/optimizer/``),
``random`` (the bit-generator states of ``fit``'s shuffling generator, of fastnn's
default generator, which Dropout uses, of generators held by modules, and of the
generators behind a ``DataLoader``'s shuffling order),
``history`` and ``extra`` (anything JSON-able). Files are written with
``atomic_write``: a process killed mid-write leaves the previous file intact.

Resuming ``fit`` from the checkpoint of epoch k gives bitwise the same weights as
the uninterrupted run with the same seed (at any thread count, see
``fastnn.set_num_threads``).
"""
import json
import os
import re

import numpy as np

from . import random as fastnn_random
from ._io import atomic_write
from .nn.module import Module
from .serialization import (
    HEADER, _FileError, _fastnn_version, describe_model, open_archive, read_array, read_header, rebuild_model, write_archive,
)
from .tensor import Tensor

FORMAT = "fastnn-checkpoint"
VERSION = 1
SUFFIX = ".ckpt"
_NAME = re.compile(r"^epoch-(\d+)\.ckpt$")


class Checkpoint:
    """What ``load_checkpoint`` read.

    Attributes:
        path: the file.
        epoch: epochs completed when it was written.
        model: the model (the one passed to ``load_checkpoint``, or rebuilt).
        history: a ``fastnn.History`` of the epochs so far.
        random: ``{"fit": state or None, "default": state, "modules": {...},
            "loader": DataLoader.state_dict() or None}``.
        extra: the ``extra`` dict given to ``save_checkpoint``.
    """

    def __init__(self, path, epoch, model, history, random, extra):
        self.path, self.epoch, self.model = path, epoch, model
        self.history, self.random, self.extra = history, random, extra

    def __repr__(self):
        return f"Checkpoint({self.path!r}, epoch={self.epoch})"


# ----------------------------------------------------------- JSON with arrays
def _pack(value, key, arrays):
    """``value`` as JSON data; arrays go to ``arrays`` (named ``key``) and are referenced."""
    if isinstance(value, Tensor):
        value = value.data
    if isinstance(value, np.ndarray):
        arrays[key] = value
        return {"__array__": key}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {"__tuple__": [_pack(v, f"{key}/{i}", arrays) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_pack(v, f"{key}/{i}", arrays) for i, v in enumerate(value)]
    if isinstance(value, dict):
        items = [[k, _pack(v, f"{key}/{k}", arrays)] for k, v in value.items()]
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return dict(items)
        return {"__items__": items}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"fastnn.save_checkpoint: cannot store {type(value).__name__} at {key!r}")


def _unpack(value, archive):
    if isinstance(value, list):
        return [_unpack(v, archive) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"__array__"}:
        return read_array(archive, value["__array__"])
    if set(value) == {"__tuple__"}:
        return tuple(_unpack(v, archive) for v in value["__tuple__"])
    if set(value) == {"__items__"}:
        return {k: _unpack(v, archive) for k, v in value["__items__"]}
    return {k: _unpack(v, archive) for k, v in value.items()}


# ----------------------------------------------------------- random state
def _module_generators(model):
    """``{module path: {attribute: bit-generator state}}`` of generators modules hold."""
    found = {}
    for path, module in model.named_modules():
        for attr, value in vars(module).items():
            if isinstance(value, np.random.Generator):
                found.setdefault(path, {})[attr] = value.bit_generator.state
    return found


def _generator_from(state):
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def restore_random_state(random, model=None):
    """Put fastnn's default generator (and ``model``'s generators) back as saved."""
    fastnn_random.default_generator().bit_generator.state = random["default"]
    if model is not None:
        modules = dict(model.named_modules())
        for path, attrs in random.get("modules", {}).items():
            if path in modules:
                for attr, state in attrs.items():
                    object.__setattr__(modules[path], attr, _generator_from(state))


# ----------------------------------------------------------- save / load
def save_checkpoint(path, model, optimizer=None, scheduler=None, epoch=0, history=None, fit_rng=None,
                    extra=None, check=True, data_loader=None):
    """Write a training checkpoint atomically (temp file in the same folder, fsync, rename).

    Args:
        path: file to write; the folder must exist.
        model: the ``Module`` being trained.
        optimizer, scheduler: their ``state_dict`` is stored (optional).
        epoch: epochs completed.
        history: a ``fastnn.History`` (optional).
        fit_rng: the ``numpy.random.Generator`` that shuffles the data (optional).
        extra: a JSON-able dict stored as is.
        check: rebuild the model from its description first (once per run is enough).
        data_loader: a ``fastnn.data.DataLoader`` whose shuffling state is stored
            (``load_checkpoint(..., data_loader=)`` restores it).

    Models whose classes cannot be rebuilt by name are stored weights-only:
    ``load_checkpoint`` then needs the ``model`` argument.

    Example:
        >>> fastnn.save_checkpoint("run/epoch-0003.ckpt", model, opt, epoch=3)  # doctest: +SKIP
    """
    if not isinstance(model, Module):
        raise TypeError(f"fastnn.save_checkpoint: expected a fastnn.nn.Module, got {type(model).__name__}")
    try:
        description, state = describe_model(model, check=check)
    except TypeError:  # a custom class that fastnn.load could not rebuild: weights only
        state = model.state_dict()
        description = {"dtype": np.dtype(model.dtype).name, "training": bool(model.training),
                       "architecture": None, "arrays": list(state)}
    arrays = {f"model/{k}": v for k, v in state.items()}
    header = {
        "format": FORMAT, "version": VERSION, "fastnn_version": _fastnn_version(), "epoch": int(epoch),
        "model": description,
        "optimizer": None if optimizer is None else {
            "type": type(optimizer).__name__, "state": _pack(optimizer.state_dict(), "optimizer", arrays)},
        "scheduler": None if scheduler is None else {
            "type": type(scheduler).__name__, "state": _pack(scheduler.state_dict(), "scheduler", arrays)},
        "random": {
            "fit": None if fit_rng is None else fit_rng.bit_generator.state,
            "default": fastnn_random.default_generator().bit_generator.state,
            "modules": _module_generators(model),
            "loader": None if data_loader is None else _pack(data_loader.state_dict(), "random/loader", arrays),
        },
        "history": None if history is None else {"epoch": list(history.epoch), "history": history.history},
        "extra": _pack(extra or {}, "extra", arrays),
    }
    header["arrays"] = list(arrays)
    with atomic_write(path) as f:
        write_archive(f, header, arrays, "fastnn.save_checkpoint")


def load_checkpoint(path, model=None, optimizer=None, scheduler=None, restore_random=True, data_loader=None):
    """Read a checkpoint into ``model``/``optimizer``/``scheduler`` (or rebuild the model).

    Args:
        path: a checkpoint file, or a folder: its latest ``epoch-NNNN.ckpt``.
        model: load the weights into this model (strict: same keys and shapes);
            None rebuilds the model from the file.
        optimizer, scheduler: load their saved state (the optimizer must be over
            ``model``'s parameters, as when the checkpoint was written).
        restore_random: restore fastnn's default generator and the model's
            generators (Dropout masks continue as in the uninterrupted run).
        data_loader: a ``fastnn.data.DataLoader`` to give the saved shuffling state
            (its next epochs are shuffled as in the uninterrupted run).

    Returns a ``Checkpoint``. Raises ``FileNotFoundError``, or ``ValueError``
    naming the file when it is not a checkpoint, is corrupt, or does not fit.

    Example:
        >>> ckpt = fastnn.load_checkpoint("run/", model, opt, sched)  # doctest: +SKIP
        >>> ckpt.epoch  # doctest: +SKIP
        3
    """
    from .training import History

    path = latest_checkpoint(path) if os.path.isdir(path) else os.fspath(path)
    with open_archive(path, "fastnn.load_checkpoint", kind="fastnn checkpoint") as archive:
        header = read_header(archive, FORMAT, VERSION, kind="fastnn checkpoint")
        description = header.get("model")
        if not isinstance(description, dict):
            raise _FileError("no model description in the header")
        if model is None:
            if description.get("architecture") is None:
                raise _FileError("it holds weights only (the model's classes cannot be rebuilt by name): "
                                 "pass the model to load them into")
            model = rebuild_model(description, archive, prefix="model/")
        else:
            _load_weights(model, description, archive)
        for obj, what in ((optimizer, "optimizer"), (scheduler, "scheduler")):
            if obj is None:
                continue
            saved = header.get(what)
            if saved is None:
                raise _FileError(f"no {what} state was saved")
            if saved["type"] != type(obj).__name__:
                raise _FileError(f"the {what} state is {saved['type']}'s, not {type(obj).__name__}'s")
            try:
                obj.load_state_dict(_unpack(saved["state"], archive))
            except (KeyError, ValueError, TypeError) as err:
                raise _FileError(f"the {what} state does not fit: {err}") from None
        random = dict(header.get("random") or {})
        if random.get("loader") is not None:
            random["loader"] = _unpack(random["loader"], archive)
        extra = _unpack(header.get("extra") or {}, archive)
        history = History()
        saved_history = header.get("history")
        if saved_history:
            history.epoch = list(saved_history["epoch"])
            history.history = {k: list(v) for k, v in saved_history["history"].items()}
        epoch = header.get("epoch")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise _FileError(f"invalid epoch {epoch!r}")
    if restore_random and "default" in random:
        restore_random_state(random, model)
    if data_loader is not None:
        if random.get("loader") is None:
            raise ValueError(f"fastnn.load_checkpoint: {path!r} holds no DataLoader state (it was saved "
                             f"without data_loader)")
        data_loader.load_state_dict(random["loader"])
    return Checkpoint(path, epoch, model, history, random, extra)


def _load_weights(model, description, archive):
    keys = description.get("arrays")
    if not isinstance(keys, list):
        raise _FileError("invalid 'arrays' list in the model description")
    state = {key: read_array(archive, "model/" + key) for key in keys}
    try:
        model.load_state_dict(state, strict=True)
    except (KeyError, ValueError, TypeError) as err:
        raise _FileError(f"the checkpoint's model does not fit the given model: {err}") from None


def load_model(path):
    """The model in a ``fastnn.save`` file or in a checkpoint (without touching random state)."""
    from .serialization import FORMAT as MODEL_FORMAT, load

    with open_archive(path, "fastnn.load") as archive:
        fmt = _format_of(archive)
    if fmt == FORMAT:
        return load_checkpoint(path, restore_random=False).model
    if fmt != MODEL_FORMAT:
        raise ValueError(f"fastnn.load: {os.fspath(path)!r} is neither a fastnn model file nor a checkpoint")
    return load(path)


def _format_of(archive):
    try:
        header = json.loads(archive.read(HEADER).decode("utf-8"))
    except (KeyError, ValueError):
        return None
    return header.get("format") if isinstance(header, dict) else None


# ----------------------------------------------------------- checkpoint folders
def checkpoint_path(folder, epoch):
    """``folder/epoch-NNNN.ckpt``: the file ``fit`` writes after ``epoch`` epochs."""
    return os.path.join(os.fspath(folder), f"epoch-{int(epoch):04d}{SUFFIX}")


def list_checkpoints(folder):
    """``[(epoch, path)]`` of the ``epoch-NNNN.ckpt`` files in ``folder``, oldest first."""
    folder = os.fspath(folder)
    found = []
    for name in os.listdir(folder):
        match = _NAME.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(folder, name)))
    return sorted(found)


def latest_checkpoint(folder):
    """The newest checkpoint in ``folder``; FileNotFoundError when there is none."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"no such checkpoint folder: {folder!r}")
    found = list_checkpoints(folder)
    if not found:
        raise FileNotFoundError(f"no epoch-NNNN{SUFFIX} checkpoint in {folder!r}")
    return found[-1][1]


def prune_checkpoints(folder, keep):
    """Delete all but the newest ``keep`` checkpoints in ``folder``."""
    for _, path in list_checkpoints(folder)[:-keep]:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
