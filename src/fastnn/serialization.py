"""``fastnn.save`` / ``fastnn.load``: architecture and weights in one file, no pickle.

A model file is a zip archive of ``fastnn.json`` (``format``, ``version``,
``fastnn_version``, ``dtype``, ``training``, ``arrays``: the ``state_dict`` keys, and
``architecture``: the recursive ``{"type": class name, "config": module._config(),
"training": bool, "children": {name: {...}}}``) and one ``arrays/<key>.npy`` per
``state_dict`` key. A module is rebuilt by looking its class up by name in
``Module._registry``, then calling ``cls._from_config(config, children)`` where the
class defines it (containers), else ``cls(**config)``. Arrays are read with
``allow_pickle=False``, so loading a file cannot run code.
"""
import contextlib
import itertools
import json
import os
import struct
import sys
import zipfile
import zlib
from collections import OrderedDict

import numpy as np

from ._io import atomic_write
from .nn.module import Module

FORMAT = "fastnn-model"
VERSION = 1
HEADER = "fastnn.json"
_MAX_HEADER_BYTES = 64 << 20
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError, struct.error)
_ADVICE = (
    "Give each custom Module a _config() returning its constructor arguments (and a _from_config("
    "config, children) classmethod for containers), or save the weights only: np.savez(path, **model.state_dict())"
)


class _FileError(ValueError):
    """A problem with a file's contents; ``load`` adds the file name to the message."""


def _join(where, name):
    return f"{where}.{name}" if where else name


def _json_default(value):
    if not isinstance(value, np.generic):
        raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
    return value.item()


# ------------------------------------------------------------------- save
def _describe(module, where):
    """The JSON architecture description of ``module`` (``where``: its dotted path)."""
    cls = type(module)
    label = f"{cls.__name__} at {where!r}" if where else cls.__name__
    if Module._registry.get(cls.__name__) is not cls:
        raise TypeError(
            f"fastnn.save: cannot save {label}: another Module subclass named {cls.__name__!r} "
            f"was defined first, so the class cannot be found by name when loading. Rename it. {_ADVICE}"
        )
    config = module._config()
    if not isinstance(config, dict):
        raise TypeError(f"fastnn.save: {label}._config() returned {type(config).__name__}, expected a dict")
    try:
        config = json.loads(json.dumps(config, default=_json_default))
    except (TypeError, ValueError) as err:
        raise TypeError(f"fastnn.save: {label}._config() {config!r} is not JSON-serialisable: {err}") from None
    children = OrderedDict((name, _describe(child, _join(where, name))) for name, child in module.named_children())
    return {"type": cls.__name__, "config": config, "training": bool(module.training), "children": children}


@contextlib.contextmanager
def _preserved_random_state():
    """Rebuilding initialises weights: leave fastnn's and NumPy's global generators as they were."""
    from . import random as fastnn_random
    generator = fastnn_random.default_generator()
    saved = generator.bit_generator.state, np.random.get_state()
    try:
        yield
    finally:
        generator.bit_generator.state = saved[0]
        np.random.set_state(saved[1])


def _description_mismatch(want, got, where):
    """Path of the first module whose rebuilt children differ in type or config, or None."""
    if list(want["children"]) != list(got["children"]):
        return where
    for name, mine in want["children"].items():
        rebuilt = got["children"][name]
        if (mine["type"], mine["config"]) != (rebuilt["type"], rebuilt["config"]):
            return where  # the constructor at ``where`` made this child differently
        found = _description_mismatch(mine, rebuilt, _join(where, name))
        if found is not None:
            return found
    return None


def _layout(model):
    """``(module paths, [(state key, shape)])``: what a rebuilt model must reproduce."""
    slots = [
        (key, (owner._parameters[name] if kind == "param" else owner._buffers[name]).data.shape)
        for key, (owner, name, kind) in model._state_slots().items()
    ]
    return [name for name, _ in model.named_modules()], slots


def _check_rebuildable(model, architecture):
    """Rebuild from the description and compare; TypeError naming the class that differs."""
    try:
        with _preserved_random_state():
            rebuilt = _build(architecture, "")
    except Exception as err:
        raise TypeError(f"fastnn.save: {type(model).__name__} cannot be rebuilt: {err}. {_ADVICE}") from err
    got = _describe(rebuilt, "")
    culprit = _description_mismatch(architecture, got, "")
    (want_modules, want_slots), (got_modules, got_slots) = _layout(model), _layout(rebuilt)
    if architecture["config"] != got["config"]:
        culprit, detail = "", "the rebuilt copy reports a different _config()"
    elif culprit is not None:
        detail = "its constructor, given this config, builds other children than the model has"
    elif want_modules != got_modules:
        culprit, detail = "", "it uses one module object in several places, which a file cannot describe"
    elif want_slots != got_slots:
        mine, other = next(pair for pair in itertools.zip_longest(want_slots, got_slots) if pair[0] != pair[1])
        culprit = (mine or other)[0].rpartition(".")[0]  # the module owning the array
        detail = f"the model has {mine} where the rebuilt one has {other} (state key, shape)"
    else:
        return
    owner = dict(model.named_modules()).get(culprit, model)
    at = f" at {culprit!r}" if culprit else ""
    raise TypeError(
        f"fastnn.save: {type(owner).__name__}{at} cannot be rebuilt from its _config() "
        f"{owner._config()!r}: {detail}. {_ADVICE}"
    )


def save(model, path):
    """Save a model's architecture and weights to one file, without pickle.

    Written atomically: an existing file at ``path`` is replaced only once the new
    one is complete. Before writing, the model is rebuilt from its description to
    check that every class can be (all built-in layers and containers can).

    Args:
        model: a ``fastnn.nn.Module``.
        path: file name (str or ``os.PathLike``); any extension, e.g. ``.fnn``.

    Raises:
        TypeError: a module class cannot be rebuilt by name from its ``_config()``.

    Example:
        >>> model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))  # doctest: +SKIP
        >>> fastnn.save(model, "digits.fnn")  # doctest: +SKIP
        >>> same = fastnn.load("digits.fnn")  # doctest: +SKIP
    """
    if not isinstance(model, Module):
        raise TypeError(f"fastnn.save: expected a fastnn.nn.Module, got {type(model).__name__}")
    description, state = describe_model(model)
    header = {"format": FORMAT, "version": VERSION, "fastnn_version": _fastnn_version(), **description}
    with atomic_write(path) as f:
        write_archive(f, header, state, "fastnn.save")


def _fastnn_version():
    return str(getattr(sys.modules.get("fastnn"), "__version__", "unknown"))


def describe_model(model, check=True):
    """``(description, state)``: the header fields of a model (``dtype``, ``training``,
    ``architecture``, ``arrays``) and its ``state_dict``; ``check``: first make sure
    the architecture rebuilds into the same model (TypeError otherwise)."""
    architecture = _describe(model, "")
    if check:
        _check_rebuildable(model, architecture)
    state = model.state_dict()
    return {"dtype": np.dtype(model.dtype).name, "training": bool(model.training),
            "architecture": architecture, "arrays": list(state)}, state


def write_archive(f, header, arrays, where):
    """Write the zip layout shared by model files and checkpoints to the open file ``f``:
    ``header`` as JSON in ``fastnn.json``, then ``arrays/<key>.npy`` per array, no pickle."""
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(HEADER, json.dumps(header, indent=1, default=_json_default))
        for key, value in arrays.items():
            value = np.asarray(value)
            if value.dtype.hasobject:
                raise TypeError(f"{where}: state {key!r} has dtype {value.dtype}; only numeric arrays are saved")
            with archive.open(f"arrays/{key}.npy", "w", force_zip64=value.nbytes > 1 << 30) as member:
                np.lib.format.write_array(member, value, allow_pickle=False)


# ------------------------------------------------------------------- load
def _build(desc, where):
    """Rebuild the module described by ``desc`` (``where``: its dotted path)."""
    at = f" at {where!r}" if where else ""
    if (not isinstance(desc, dict) or not isinstance(desc.get("type"), str)
            or not isinstance(desc.get("config"), dict) or not isinstance(desc.get("children", {}), dict)):
        raise _FileError(f"invalid architecture description{at}")
    type_name, config, children_desc = desc["type"], desc["config"], desc.get("children", {})
    cls = Module._registry.get(type_name)
    if cls is None:
        raise _FileError(f"unknown layer type {type_name!r}{at}; import the module that defines it first")
    try:
        if hasattr(cls, "_from_config"):
            children = OrderedDict((name, _build(child, _join(where, name))) for name, child in children_desc.items())
            module = cls._from_config(config, children)
        else:
            module = cls(**config)
    except _FileError:
        raise
    except Exception as err:
        detail = f"{type(err).__name__}: {err}"
        raise _FileError(f"cannot rebuild {type_name}{at} from config {config!r} ({detail})") from err
    built = [name for name, _ in module.named_children()]
    if built != list(children_desc):
        raise _FileError(f"{type_name}{at} was rebuilt with children {built}, the file describes {list(children_desc)}")
    return module


def _apply_training(module, desc):
    """Restore the train/eval flags of ``module`` and its children from the description."""
    object.__setattr__(module, "training", bool(desc.get("training", True)))
    children = desc.get("children")
    for name, child in module.named_children():
        if isinstance(children, dict) and isinstance(children.get(name), dict):
            _apply_training(child, children[name])


def read_header(archive, fmt=FORMAT, max_version=VERSION, kind="fastnn model file"):
    """The JSON header of an open archive, checked for format ``fmt`` and version."""
    if HEADER not in archive.namelist():
        raise _FileError(f"no {HEADER} header: not a {kind}")
    if archive.getinfo(HEADER).file_size > _MAX_HEADER_BYTES:
        raise _FileError(f"the {HEADER} header is implausibly large")
    try:
        header = json.loads(archive.read(HEADER).decode("utf-8"))
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError, JSONDecodeError are ValueErrors
        raise _FileError(f"invalid {HEADER} header ({err})") from None
    if not isinstance(header, dict) or header.get("format") != fmt:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise _FileError(f"not a {kind} (format {found!r}, expected {fmt!r})")
    version = header.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _FileError(f"invalid format version {version!r}")
    if version > max_version:
        raise _FileError(
            f"file format version {version} (written by fastnn {header.get('fastnn_version', '?')}) "
            f"is newer than this fastnn reads (up to {max_version}): upgrade fastnn"
        )
    return header


def _check_model_fields(header):
    arrays = header.get("arrays")
    if header.get("dtype") not in ("float32", "float64"):
        raise _FileError(f"invalid dtype {header.get('dtype')!r} in the header")
    if not isinstance(arrays, list) or not all(isinstance(k, str) for k in arrays):
        raise _FileError(f"invalid 'arrays' list {arrays!r} in the header")


def read_array(archive, key):
    """The numeric array stored as ``arrays/<key>.npy``, read without pickle."""
    member = f"arrays/{key}.npy"
    try:
        with archive.open(member) as f:
            value = np.lib.format.read_array(f, allow_pickle=False)
            trailing = f.read(1)
    except KeyError:
        raise _FileError(f"the array {member!r} is missing") from None
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise _FileError(f"{member!r} holds a pickled object array; fastnn files never use pickle") from None
        raise _FileError(f"{member!r} is not a valid .npy array ({err})") from None
    if trailing or value.dtype.kind not in "fiub":
        raise _FileError(f"{member!r} is not a valid numeric .npy array")
    return value


def load(path):
    """Load a model written by ``fastnn.save``: rebuilt architecture, weights, mode.

    Args:
        path: file name (str or ``os.PathLike``).

    Returns:
        The model, with the saved dtype, weights, buffers and train/eval flags.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: naming the file, when it is not a fastnn model file, is truncated
            or corrupt, has a newer format version, names an unknown layer type
            (import the module defining it first), lacks arrays, or needs pickle.

    Example:
        >>> model = fastnn.load("digits.fnn")  # doctest: +SKIP
        >>> predictions = fastnn.predict(model, x_test)  # doctest: +SKIP
    """
    with open_archive(path, "fastnn.load") as archive:
        return rebuild_model(read_header(archive), archive)


def rebuild_model(description, archive, prefix=""):
    """The model described by ``description`` (fields of ``describe_model``), with its
    arrays read from ``archive`` members ``arrays/<prefix><key>.npy``."""
    _check_model_fields(description)
    model = _build(description.get("architecture"), "")
    _apply_training(model, description["architecture"])
    state = OrderedDict((key, read_array(archive, prefix + key)) for key in description["arrays"])
    model.to(description["dtype"])
    try:
        model.load_state_dict(state, strict=True)
    except (KeyError, ValueError, TypeError) as err:
        raise _FileError(f"the stored arrays do not fit the architecture: {err}") from None
    return model


@contextlib.contextmanager
def open_archive(path, where, kind="fastnn model file"):
    """Open a fastnn zip file for reading; problems become one ``ValueError`` naming it.

    ``FileNotFoundError`` if it is missing; inside the ``with`` block, ``_FileError``
    and the errors of a truncated or corrupt zip are re-raised as ``ValueError``
    (``"<where>: '<file>': <problem>"``).
    """
    filename = os.fspath(path)
    if not os.path.exists(filename):
        raise FileNotFoundError(f"{where}: no such file: {filename!r}")
    try:
        archive = zipfile.ZipFile(filename, "r")
    except (zipfile.BadZipFile, EOFError, ValueError, struct.error) as err:
        raise ValueError(f"{where}: {filename!r} is not a {kind} (not a zip archive: {err})") from None
    try:
        with archive:
            yield archive
    except _FileError as err:
        raise ValueError(f"{where}: {filename!r}: {err}") from None
    except _CORRUPT as err:
        raise ValueError(f"{where}: {filename!r} is truncated or corrupt ({type(err).__name__}: {err})") from None
