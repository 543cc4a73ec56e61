"""``fastnn train`` configuration files: a model and a training run in TOML.

Example (paths are relative to the config file)::

    seed = 0
    epochs = 20
    batch_size = 32
    validation = 0.1                 # a fraction held out, or a data file like [data]
    checkpoint_dir = "checkpoints"   # default: "<config name>-checkpoints"
    output = "digits.fnn"            # default: "<config name>.fnn"

    [data]
    path = "digits.npz"              # .npz with arrays x and y, or a folder of MNIST IDX files

    [[layers]]
    type = "Linear"
    in_features = 64
    out_features = 128

    [[layers]]
    type = "ReLU"

    [[layers]]
    type = "Linear"
    in_features = 128
    out_features = 10

    [loss]
    type = "CrossEntropyLoss"        # or loss = "CrossEntropyLoss"

    [optimizer]
    type = "Adam"
    lr = 0.003

    [[optimizer.param_groups]]       # optional: groups with their own hyperparameters
    layers = [0]                     # indices of [[layers]], and/or params = ["0.weight", ...]
    lr = 0.0003                      # (parameter names or name prefixes); the rest: one group

    [scheduler]                      # optional, stepped once per epoch
    type = "StepLR"
    step_size = 10

Schedulers: any of ``fastnn.optim.lr_scheduler`` but ``LambdaLR`` (it needs a
Python function). ``SequentialLR`` takes ``schedulers = [{type = "LinearLR", ...},
{type = "CosineAnnealingLR", ...}]`` and ``milestones``; ``OneCycleLR`` without
``total_steps`` spans the run's epochs; ``ReduceLROnPlateau`` is stepped on the
validation loss (the training loss without validation data).

``plot`` (default ``"<config name>-training.png"``, beside the checkpoint folder)
is the training-curve picture ``fastnn train`` rewrites after every epoch when
matplotlib is installed; ``plot = false`` turns it off.

A layer is any ``fastnn.nn`` Module class, by name, with its constructor
arguments; an argument that is a layer table (or a list of them: a Sequential)
is built the same way, e.g. ``{type = "Residual", block = [...]}``, and
``{type = "Sequential", layers = [...]}`` nests. Every problem is reported as a
``ConfigError`` (a ``ValueError``) naming the file and the key.
"""
import os

import numpy as np

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from . import datasets
from .nn.module import Module

_KEYS = {
    "seed": "int", "threads": "int", "epochs": "int", "batch_size": "int", "shuffle": "bool",
    "deterministic": "bool", "dtype": "'float32' or 'float64'", "checkpoint_dir": "path",
    "keep_checkpoints": "int", "output": "path", "validation": "fraction or data", "progress": "bool",
    "data": "data", "layers": "list of layer tables", "loss": "loss", "optimizer": "table", "scheduler": "table",
    "plot": "a file name or false",
}
_DATA_KEYS = {"path", "x", "y", "split", "images", "labels"}


class ConfigError(ValueError):
    """A problem in a ``fastnn train`` config file."""


class TrainConfig:
    """A parsed config: plain attributes, paths already made absolute."""

    def __init__(self, path, raw):
        self.path = os.path.abspath(path)
        self.folder = os.path.dirname(self.path)
        stem = os.path.splitext(os.path.basename(path))[0]
        self.raw = raw
        self.seed = _get(raw, "seed", int, 0, path)
        self.threads = _get(raw, "threads", int, None, path)
        self.epochs = _get(raw, "epochs", int, 10, path)
        self.batch_size = _get(raw, "batch_size", int, 32, path)
        self.shuffle = _get(raw, "shuffle", bool, True, path)
        self.deterministic = _get(raw, "deterministic", bool, False, path)
        self.progress = _get(raw, "progress", bool, True, path)
        self.dtype = _get(raw, "dtype", str, "float32", path)
        self.keep_checkpoints = _get(raw, "keep_checkpoints", int, None, path)
        self.checkpoint_dir = self.resolve(_get(raw, "checkpoint_dir", str, f"{stem}-checkpoints", path))
        self.output = self.resolve(_get(raw, "output", str, f"{stem}.fnn", path))
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"{path}: dtype must be 'float32' or 'float64', got {self.dtype!r}")
        for key in ("epochs", "batch_size", "threads", "keep_checkpoints"):
            value = getattr(self, key)
            if value is not None and value < (0 if key == "epochs" else 1):
                raise ConfigError(f"{path}: {key} must be {'>= 0' if key == 'epochs' else '>= 1'}, got {value}")
        for key in ("data", "layers", "loss", "optimizer"):
            if key not in raw:
                raise ConfigError(f"{path}: missing key {key!r}")
        self.data = _data_spec(raw["data"], "data", path)
        validation = raw.get("validation")
        if validation is None or isinstance(validation, bool):
            if isinstance(validation, bool):
                raise ConfigError(f"{path}: validation must be a fraction in (0, 1) or a data file, got {validation}")
            self.validation = None
        elif isinstance(validation, (int, float)):
            if not 0 < validation < 1:
                raise ConfigError(f"{path}: validation must be a fraction in (0, 1) or a data file, got {validation}")
            self.validation = float(validation)
        else:
            self.validation = _data_spec(validation, "validation", path)
        if not isinstance(raw["layers"], list) or not raw["layers"]:
            raise ConfigError(f"{path}: layers must be a non-empty list of [[layers]] tables")
        self.layers = raw["layers"]
        self.loss = _named_table(raw["loss"], "loss", path)
        self.optimizer = _named_table(raw["optimizer"], "optimizer", path)
        self.scheduler = None if raw.get("scheduler") is None else _named_table(raw["scheduler"], "scheduler", path)
        self.plot = _plot_path(self, raw.get("plot", True), stem, path)

    def resolve(self, relative):
        return os.path.normpath(os.path.join(self.folder, os.path.expanduser(relative)))


def _get(raw, key, kind, default, path):
    value = raw.get(key, default)
    if value is None:
        return None
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if not ok:
        raise ConfigError(f"{path}: {key} must be {_KEYS[key]}, got {value!r}")
    return value


def _data_spec(value, key, path):
    if isinstance(value, str):
        value = {"path": value}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {key} must be a file name or a table with 'path', got {value!r}")
    unknown = sorted(set(value) - _DATA_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} in [{key}] (expected: {', '.join(sorted(_DATA_KEYS))})")
    if "path" not in value and not {"images", "labels"} <= set(value):
        raise ConfigError(f"{path}: [{key}] needs 'path' (an .npz file or an MNIST folder) or 'images' and 'labels'")
    return dict(value)


def _plot_path(cfg, value, stem, path):
    """The training-curve picture's path, or None (``plot = false``)."""
    if value is True:
        return os.path.join(os.path.dirname(cfg.checkpoint_dir), f"{stem}-training.png")
    if value is False:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}: plot must be {_KEYS['plot']}, got {value!r}")
    return cfg.resolve(value)


def _named_table(value, key, path):
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise ConfigError(f"{path}: [{key}] needs a 'type' (a class name), got {value!r}")
    return dict(value)


def read_config(path):
    """Parse and check a TOML config file; returns a ``TrainConfig``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such config file: {path!r}")
    with open(path, "rb") as f:
        try:
            raw = tomllib.load(f)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: invalid TOML: {err}") from None
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} (expected: {', '.join(sorted(_KEYS))})")
    return TrainConfig(path, raw)


# ------------------------------------------------------------------ building
def _layer_class(name, where):
    cls = Module._registry.get(name)
    if cls is None or name.startswith("_"):
        known = ", ".join(sorted(k for k in Module._registry if not k.startswith("_")))
        raise ConfigError(f"{where}: unknown layer type {name!r} (known: {known})")
    return cls


def _is_layer(value):
    return isinstance(value, dict) and "type" in value


def build_module(spec, where):
    """The Module a layer table describes (``where``: its place, for messages)."""
    if not _is_layer(spec):
        raise ConfigError(f"{where}: a layer must be a table with a 'type', got {spec!r}")
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    cls = _layer_class(spec["type"], where)
    for key, value in kwargs.items():
        if _is_layer(value):
            kwargs[key] = build_module(value, f"{where}.{key}")
        elif isinstance(value, list) and value and all(_is_layer(v) for v in value):
            kwargs[key] = build_sequential(value, f"{where}.{key}")
    try:
        if cls.__name__ == "Sequential":
            layers = kwargs.pop("layers", None)
            if kwargs or layers is None:
                raise TypeError("Sequential takes one argument, 'layers' (a list of layer tables)")
            return layers if isinstance(layers, Module) else cls()
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where} ({spec['type']}): {err}") from None


def build_sequential(specs, where="layers"):
    from .nn import Sequential

    return Sequential(*[build_module(spec, f"{where}[{i}]") for i, spec in enumerate(specs)])


def build_loss(spec, where="loss"):
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    cls = _layer_class(spec["type"], where)
    if not cls.__name__.endswith("Loss"):
        raise ConfigError(f"{where}: {spec['type']!r} is not a loss (e.g. CrossEntropyLoss, MSELoss, BCEWithLogitsLoss)")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where} ({spec['type']}): {err}") from None


def _build_from(namespace, base, spec, where, *args):
    cls = getattr(namespace, spec["type"], None)
    if not (isinstance(cls, type) and issubclass(cls, base)) or cls is base:
        known = ", ".join(sorted(n for n, c in vars(namespace).items()
                                 if isinstance(c, type) and issubclass(c, base) and c is not base))
        raise ConfigError(f"{where}: unknown type {spec['type']!r} (known: {known})")
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    try:
        return cls(*args, **kwargs)
    except (TypeError, ValueError, KeyError) as err:
        raise ConfigError(f"{where} ({spec['type']}): {err}") from None


# ------------------------------------------------------------------ data
def load_data(cfg, spec, where):
    """``(x, y)`` of a data spec: an .npz file (arrays ``x``/``y`` or as named), a folder
    of MNIST IDX files (``split``: train/test), or IDX ``images``/``labels`` files."""
    if "path" in spec:
        path = cfg.resolve(spec["path"])
        if os.path.isdir(path):
            return datasets.load_mnist(path, spec.get("split", "train"))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{where}: no such data file: {path!r}")
        if not path.endswith(".npz"):
            raise ConfigError(f"{where}: {path!r} should be an .npz file with x and y arrays, or an MNIST folder")
        x_key, y_key = spec.get("x", "x"), spec.get("y", "y")
        with np.load(path, allow_pickle=False) as data:
            for key in (x_key, y_key):
                if key not in data.files:
                    raise ConfigError(f"{where}: {path!r} has no array {key!r} (it has: {', '.join(data.files)})")
            return data[x_key], data[y_key]
    images = datasets.read_idx(cfg.resolve(spec["images"]))
    labels = datasets.read_idx(cfg.resolve(spec["labels"]))
    x = images.reshape(len(images), 1, *images.shape[1:]).astype(np.float32) / 255 if images.ndim == 3 else images
    return x, labels.astype(np.int64)


def prepare_targets(x, y, loss, dtype):
    """Inputs as ``dtype`` (C order); class targets as int64 for CrossEntropyLoss, else ``dtype``."""
    x = np.ascontiguousarray(x, dtype=dtype) if x.dtype != dtype else x
    if type(loss).__name__ == "CrossEntropyLoss":
        if y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0):
            raise ConfigError("CrossEntropyLoss needs integer class labels in y, got non-integer values")
        y = y.astype(np.int64)
    elif y.dtype != dtype:
        y = y.astype(dtype)
    return x, y


from ._config_optim import build_optimizer, build_scheduler  # noqa: E402  (they use the helpers above)
