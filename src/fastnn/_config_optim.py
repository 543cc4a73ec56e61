"""Optimizers and schedulers of ``fastnn train`` config files: ``[optimizer]`` (with
optional ``[[optimizer.param_groups]]``) and ``[scheduler]`` tables (see ``config_file``)."""
from . import optim
from .config_file import ConfigError, _build_from, _is_layer
from .nn.module import Module


def build_optimizer(spec, model):
    """The optimizer an ``[optimizer]`` table describes, over ``model``'s parameters
    (a Module; or an iterable of parameters when there are no ``param_groups``)."""
    spec = dict(spec)
    if spec["type"] == "LBFGS":
        raise ConfigError("optimizer: LBFGS needs a closure (step(closure)) that fit's loop does not give; use "
                          "it from Python, or a first-order optimizer (SGD, Adam, AdamW, RMSprop, Adagrad)")
    groups = spec.pop("param_groups", None)
    if groups is None:
        params = model.parameters() if isinstance(model, Module) else model
    elif not isinstance(model, Module):
        raise ConfigError("optimizer.param_groups: needs the model, not a list of parameters")
    else:
        params = _param_groups(groups, model)
    return _build_from(optim, optim.Optimizer, spec, "optimizer", params)


def _param_groups(groups, model):
    """``[[optimizer.param_groups]]`` tables as PyTorch's group dicts; parameters that no
    table selects form one last group with the optimizer's own hyperparameters."""
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise ConfigError("optimizer.param_groups must be a list of [[optimizer.param_groups]] tables")
    named = list(model.named_parameters())
    taken, result = set(), []
    for i, table in enumerate(groups):
        where = f"optimizer.param_groups[{i}]"
        table = dict(table)
        layers, names = table.pop("layers", []), table.pop("params", [])
        if not isinstance(layers, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in layers):
            raise ConfigError(f"{where}: layers must be a list of layer indices, got {layers!r}")
        if not isinstance(names, list) or not all(isinstance(v, str) for v in names):
            raise ConfigError(f"{where}: params must be a list of parameter names or prefixes, got {names!r}")
        if not layers and not names:
            raise ConfigError(f"{where}: select parameters with layers = [...] or params = [...]")
        prefixes = [f"{v}." for v in layers] + names
        chosen = [(n, p) for n, p in named if any(n == q or n.startswith(q if q.endswith(".") else q + ".")
                                                  for q in prefixes)]
        if not chosen:
            known = ", ".join(n for n, _ in named)
            raise ConfigError(f"{where}: selects no parameters (the model has: {known})")
        twice = [n for n, _ in chosen if n in taken]
        if twice:
            raise ConfigError(f"{where}: parameter {twice[0]!r} is already in an earlier group")
        taken.update(n for n, _ in chosen)
        if isinstance(table.get("betas"), list):
            table["betas"] = tuple(table["betas"])
        result.append({"params": [p for _, p in chosen], **table})
    rest = [p for n, p in named if n not in taken]
    if rest:
        result.append({"params": rest})
    return result


def build_scheduler(spec, optimizer, epochs=None, where="scheduler"):
    """The scheduler a ``[scheduler]`` table describes (``epochs``: the run's length,
    the default cycle of ``OneCycleLR``)."""
    spec = dict(spec)
    if not isinstance(spec.get("type"), str):
        raise ConfigError(f"{where}: a scheduler table needs a 'type' (a class name), got {spec!r}")
    if spec["type"] == "LambdaLR":
        raise ConfigError(f"{where}: LambdaLR needs a Python function and cannot be described in a config "
                          "file (use LinearLR, ExponentialLR, MultiStepLR, ... or SequentialLR of them)")
    if spec["type"] == "OneCycleLR" and epochs is not None and not {"total_steps", "epochs"} & set(spec):
        spec["total_steps"] = max(int(epochs), 1)
    if spec["type"] == "SequentialLR" and "schedulers" in spec:
        inner = spec["schedulers"]
        if not isinstance(inner, list) or not inner or not all(_is_layer(t) for t in inner):
            raise ConfigError(f"{where}: SequentialLR needs schedulers = [{{type = ...}}, ...], got {inner!r}")
        spec["schedulers"] = [build_scheduler(t, optimizer, epochs, f"{where}.schedulers[{i}]")
                              for i, t in enumerate(inner)]
    return _build_from(optim.lr_scheduler, optim.lr_scheduler.LRScheduler, spec, where, optimizer)
