"""``fastnn train CONFIG``: train the model and run described in a TOML file."""
import os
import time

import numpy as np

from ._common import _say, _threads


def _check_fits(model, loss, x, y, what):
    """Run one sample through the model and the loss; a clear error if they do not fit."""
    from ..autograd.grad_mode import no_grad
    from ..config_file import ConfigError

    model.eval()
    try:
        with no_grad():
            out = model(x[:1])
    except (ValueError, TypeError, IndexError, RuntimeError) as err:
        raise ConfigError(f"the model does not fit the {what} inputs (x has shape {x.shape}): {err}") from None
    finally:
        model.train()
    out = out[0] if isinstance(out, tuple) else out
    if type(loss).__name__ == "CrossEntropyLoss" and out.ndim == 2 and len(y) and (y.min() < 0 or y.max() >= out.shape[1]):
        raise ConfigError(f"the {what} labels run from {y.min()} to {y.max()} but the model outputs "
                          f"{out.shape[1]} classes")
    try:
        with no_grad():
            loss(out, y[:1])
    except (ValueError, TypeError, IndexError, RuntimeError) as err:
        raise ConfigError(f"the model's output (shape {tuple(out.shape[1:])} per sample) does not fit the {what} "
                          f"targets (y has shape {y.shape}) for {type(loss).__name__}: {err}") from None


def _resume_path(resume, checkpoint_dir):
    from ..checkpoint import list_checkpoints

    if resume is None:
        return None
    if resume == "auto":  # the newest checkpoint of this config, if any: for jobs run on a schedule
        if os.path.isdir(checkpoint_dir) and list_checkpoints(checkpoint_dir):
            return checkpoint_dir
        return None
    if not os.path.exists(resume):
        raise FileNotFoundError(f"no such checkpoint: {resume!r}")
    return resume


def _saved_history(resume):
    """The ``History`` stored in the checkpoint a run resumes from (header only)."""
    from ..checkpoint import FORMAT, VERSION, latest_checkpoint
    from ..serialization import open_archive, read_header
    from ..training import History

    history = History()
    if resume is None:
        return history
    path = latest_checkpoint(resume) if os.path.isdir(resume) else resume
    with open_archive(path, "fastnn train", kind="fastnn checkpoint") as archive:
        saved = read_header(archive, FORMAT, VERSION, kind="fastnn checkpoint").get("history") or {}
    history.epoch = list(saved.get("epoch", []))
    history.history = {k: list(v) for k, v in saved.get("history", {}).items()}
    return history


def _curves(path, resume, say, title):
    """A callback ``f(epoch, metrics)`` that redraws the training curves at ``path`` after
    every epoch, or None (no path, or no matplotlib: then a one-line note says so)."""
    from .. import plot

    if path is None:
        return None
    if not plot.available():
        say(f"training curves: matplotlib is not installed, no picture ({plot.INSTALL_HINT} to get one)")
        return None
    history = _saved_history(resume)
    say(f"training curves -> {os.path.relpath(path)} (after every epoch)")

    def draw(epoch, metrics):
        if history.epoch and history.epoch[-1] >= epoch:  # resumed: drop epochs that are run again
            keep = sum(e < epoch for e in history.epoch)
            history.epoch = history.epoch[:keep]
            history.history = {k: v[:keep] for k, v in history.history.items()}
        history._append(epoch, metrics)
        try:
            plot.plot_history(history, path, title=title)
        except (OSError, ValueError, RuntimeError) as err:  # a picture never stops a training run
            say(f"training curves: could not write {path}: {err}")

    return draw


def _distributed(args):
    """Whether ``train`` runs data-parallel: ``--distributed``, or started by an MPI launcher."""
    if args.distributed is None:
        from ..distributed import launched

        args.distributed = launched()
    return args.distributed


def _train(args):
    from .. import config_file as cf
    from ..checkpoint import latest_checkpoint
    from .._config import set_default_dtype
    from ..random import manual_seed
    from ..serialization import save
    from ..training import fit

    distributed, lead = _distributed(args), True
    if distributed:  # rank 0 alone prints and saves; fit lets it alone write checkpoints and the progress bar
        from ..distributed import rank

        lead = rank() == 0
    say = _say if lead else (lambda *parts: None)
    cfg = cf.read_config(args.config)
    epochs = cfg.epochs if args.epochs is None else args.epochs
    _threads(args.threads if args.threads is not None else cfg.threads)
    set_default_dtype(cfg.dtype)
    dtype = np.dtype(cfg.dtype)
    manual_seed(cfg.seed)
    model = cf.build_sequential(cfg.layers)
    loss = cf.build_loss(cfg.loss)
    optimizer = cf.build_optimizer(cfg.optimizer, model)
    scheduler = None if cfg.scheduler is None else cf.build_scheduler(cfg.scheduler, optimizer, epochs)
    x, y = cf.prepare_targets(*cf.load_data(cfg, cfg.data, "data"), loss, dtype)
    if len(x) != len(y):
        raise cf.ConfigError(f"data: x has {len(x)} samples but y has {len(y)}")
    validation = None
    if isinstance(cfg.validation, float):
        order = np.random.default_rng(cfg.seed).permutation(len(x))
        n_val = max(1, int(round(len(x) * cfg.validation)))
        if n_val >= len(x):
            raise cf.ConfigError(f"validation = {cfg.validation} leaves no training samples out of {len(x)}")
        val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
        validation, x, y = (x[val_idx], y[val_idx]), x[train_idx], y[train_idx]
    elif cfg.validation is not None:
        validation = cf.prepare_targets(*cf.load_data(cfg, cfg.validation, "validation"), loss, dtype)
    _check_fits(model, loss, x, y, "training")
    if validation is not None:
        _check_fits(model, loss, *validation, "validation")
    resume = _resume_path(args.resume, cfg.checkpoint_dir)
    n_params = sum(p.numel() for p in model.parameters())
    say(f"fastnn train: {os.path.basename(cfg.path)}: {len(x)} samples"
        + (f" (+{len(validation[0])} validation)" if validation is not None else "")
        + f", {n_params:,} parameters, {epochs} epochs, batch size {cfg.batch_size}")
    if resume is not None:
        say(f"resuming from {latest_checkpoint(resume) if os.path.isdir(resume) else resume}")

    curves = _curves(cfg.plot if lead else None, resume, say, os.path.basename(cfg.path))

    def log(epoch, metrics):
        shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "samples_per_sec")
        say(f"epoch {epoch + 1}/{epochs}  {shown}  {metrics['samples_per_sec']:,.0f} samples/s  "
            f"-> {os.path.relpath(os.path.join(cfg.checkpoint_dir, f'epoch-{epoch + 1:04d}.ckpt'))}")
        if curves is not None:
            curves(epoch, metrics)

    start = time.perf_counter()
    fit(model, x, y, loss, optimizer, epochs=epochs, batch_size=cfg.batch_size, shuffle=cfg.shuffle,
        validation_data=validation, seed=cfg.seed, progress=cfg.progress and not args.no_progress,
        scheduler=scheduler, callbacks=[log], checkpoint_dir=cfg.checkpoint_dir,
        keep_checkpoints=cfg.keep_checkpoints, resume=resume, deterministic=cfg.deterministic or None,
        distributed=distributed)
    if lead:
        save(model, cfg.output)
    say(f"saved {os.path.relpath(cfg.output)} ({time.perf_counter() - start:.1f} s)")
    return 0
