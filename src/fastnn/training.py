"""Training and inference loops: ``fit``, ``evaluate``, ``predict``.

Plain Python around the model: mini-batches, shuffling from a seed, epochs,
validation, a progress bar, and per-epoch metrics in a ``History``. Each step is
PyTorch's loop (``zero_grad``, forward, loss, ``loss.backward()``, ``step``);
evaluation and prediction run in eval mode under ``fastnn.no_grad()``.
"""
import contextlib
import math
import os
import time

import numpy as np

from . import _config
from . import inference
from .autograd.grad_mode import no_grad
from .data import DataLoader, Dataset, IterableDataset
from .data.batches import ArrayBatches, LoaderBatches, Outputs, inference_loader, is_data
from .data.collate import stack_samples
from .nn.loss import BCEWithLogitsLoss, CrossEntropyLoss
from .progress import CompileNotice, progress_bar
from .tensor import Tensor, _wrap


class History:
    """Per-epoch metrics of a ``fit`` run.

    ``history`` maps a metric name (``loss``, ``accuracy``, ``samples_per_sec``,
    and ``val_loss``/``val_accuracy`` with validation data) to a list with one
    value per epoch; ``epoch`` lists the epoch numbers (starting at 0).
    """

    def __init__(self):
        self.epoch = []
        self.history = {}

    def _append(self, epoch, metrics):
        self.epoch.append(epoch)
        for k, v in metrics.items():
            self.history.setdefault(k, []).append(v)

    def __getitem__(self, key):
        return self.history[key]

    def __repr__(self):
        last = {k: round(v[-1], 4) for k, v in self.history.items()}
        return f"History(epochs={len(self.epoch)}, last={last})"

    def plot(self, path, metrics=None):
        """Write the training curves as a PNG at ``path``: one panel per metric
        (default: loss, and accuracy when recorded), training and validation per epoch.

        Needs matplotlib (``pip install "fastnn[plot]"``; an ``ImportError`` says so);
        draws with the Agg canvas, never touching pyplot's global backend. Returns ``path``.

        Example:
            >>> history = fastnn.fit(model, x, y, loss, opt, epochs=5, validation_data=(xv, yv))
            >>> history.plot("training.png")  # doctest: +SKIP
        """
        from .plot import plot_history

        return plot_history(self, path, metrics)


def _check_data(x, y, batch_size, where):
    """``(x, y, n, batch_size)`` checked; Tensors given as data become their arrays."""
    x, y = (x.data if isinstance(x, Tensor) else x), (y.data if isinstance(y, Tensor) else y)
    n = len(x)
    if y is not None and len(y) != n:
        raise ValueError(f"{where}: x has {n} samples but y has {len(y)}")
    if n == 0:
        raise ValueError(f"{where}: no samples")
    return x, y, n, _check_batch_size(batch_size, where)


def _check_batch_size(batch_size, where):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"{where}: batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)


def _check_no_targets(x, y, where):
    if y is not None:
        raise ValueError(f"{where}: y must be None when x is a {type(x).__name__} (its samples hold the targets)")


@contextlib.contextmanager
def _inference(model):
    """Eval mode and ``no_grad`` in the block (yields the model's dtype); the mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            yield np.dtype(model.dtype)
    finally:
        model.train(was_training)


def _batch(rows, dtype, where="fit"):
    """A batch as a Tensor; float data in the model's dtype. A list of samples (what a
    custom ``collate_fn`` may return) is stacked; ragged samples raise naming their shapes."""
    if isinstance(rows, (list, tuple)):
        rows = stack_samples([np.asarray(r) for r in rows], where) if rows else np.asarray(rows)
    rows = np.asarray(rows)
    if rows.dtype.kind == "f" and rows.dtype != dtype:
        rows = rows.astype(dtype)
    return _wrap(rows)


def _accuracy_kind(loss):
    """'class' for cross-entropy, 'binary' for BCE with logits, None for other losses."""
    if isinstance(loss, CrossEntropyLoss):
        return "class"
    if isinstance(loss, BCEWithLogitsLoss):
        return "binary"
    from .nn import functional

    if loss is getattr(functional, "cross_entropy", None):
        return "class"
    if loss is getattr(functional, "binary_cross_entropy_with_logits", None):
        return "binary"
    return None


def _correct(kind, out, target):
    """Correct predictions in a batch, per sample (the mean over a sample's positions), or None."""
    if kind is None or isinstance(out, tuple):
        return None
    out = out.data if isinstance(out, Tensor) else np.asarray(out)
    target = target.data if isinstance(target, Tensor) else np.asarray(target)
    if kind == "binary":
        hits = (out > 0) == (target > 0.5)
    elif target.ndim == out.ndim:  # class probabilities
        hits = np.argmax(out, axis=1) == np.argmax(target, axis=1)
    else:
        hits = np.argmax(out, axis=1) == target
    correct = int(np.count_nonzero(hits))
    n = len(target) if target.ndim else 1
    return correct if hits.size == n else correct * n / hits.size


def _loss_item(value, where):
    """The float of a loss value (a one-element Tensor)."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{where}: the loss must return a Tensor, got {type(value).__name__}")
    if value.data.size != 1:
        raise ValueError(f"{where}: the loss must return one value (reduction 'mean' or 'sum'), "
                         f"got a Tensor of shape {value.shape}")
    return float(value.item())


def fit(model, x, y, loss, optimizer, epochs=1, batch_size=32, shuffle=True,
        validation_data=None, seed=None, progress=True, scheduler=None, callbacks=(),
        checkpoint_dir=None, keep_checkpoints=None, resume=None, deterministic=None, distributed=False,
        compile_jobs=None):
    """Train ``model`` on ``(x, y)`` with mini-batch gradient descent.

    Args:
        model: a fastnn Module.
        x, y: training inputs and targets (first axis = samples; NumPy arrays,
            memory-mapped arrays or Tensors). Each batch reaches the model and the
            loss as a Tensor; float inputs are converted to the model's dtype.
            ``x`` may instead be a ``fastnn.data.Dataset`` of ``(input, target)``
            samples (batched by ``batch_size``, shuffled from ``seed``) or a
            ``fastnn.data.DataLoader`` of ``(inputs, targets)`` batches (its own
            batch size, order and workers); ``y`` is then None.
        loss: a loss module (``CrossEntropyLoss()``, ``MSELoss()``, ...) or any
            callable ``loss(output, target)`` returning a 0-d Tensor (e.g.
            ``F.cross_entropy``). Accuracy is reported for cross-entropy and
            BCE-with-logits losses.
        optimizer: a ``fastnn.optim`` optimizer over ``model.parameters()``.
        epochs: passes over the data.
        batch_size: samples per step (the last batch may be smaller).
        shuffle: reshuffle every epoch, from ``seed``.
        validation_data: optional ``(x_val, y_val)``, ``Dataset`` or ``DataLoader``
            evaluated after each epoch.
        seed: seed of the shuffling order (None: fresh entropy).
        progress: show a progress bar (tqdm when installed).
        scheduler: optional learning-rate scheduler stepped after each epoch.
        callbacks: callables ``f(epoch, metrics)`` run after each epoch.
        checkpoint_dir: after each epoch write ``checkpoint_dir/epoch-NNNN.ckpt``
            (model, optimizer, scheduler, epoch, random state, the DataLoader's
            shuffling state, history; atomically), creating the folder if needed.
        keep_checkpoints: keep only this many newest checkpoints (default: all).
        resume: a checkpoint file, a folder (its newest checkpoint) or a loaded
            ``Checkpoint``: restore model, optimizer, scheduler and random state and
            continue after its epoch, up to ``epochs`` in all. The final weights are
            bitwise those of the uninterrupted run with the same seed.
        deterministic: True requires a ``seed`` (or ``resume``, or a DataLoader) so
            that training is bitwise reproducible, at any thread count; None follows
            ``fastnn.use_deterministic_algorithms``, which is on during the call.
        distributed: train data-parallel over the MPI ranks this process is one of
            (``mpirun -n N``; arrays only): see ``fastnn.distributed.fit``.
        compile_jobs: on a first run (an empty kernel cache; data not an
            ``IterableDataset``), the kernels of the first step (and of ``evaluate``) compile
            in this many processes at once before it (``fastnn.precompile``). None:
            ``FASTNN_COMPILE_JOBS``, else the CPUs this process may use (at most 8);
            1: each kernel compiles in this process when first called.

    Returns a ``History`` (with ``resume``: including the epochs before it). Raises ``FloatingPointError`` naming the epoch and the
    batch when the loss stops being finite.

    Example:
        >>> history = fastnn.fit(model, x, y, nn.CrossEntropyLoss(),
        ...                      optim.Adam(model.parameters()), epochs=5, seed=0)
        >>> loader = fastnn.data.DataLoader(dataset, batch_size=64, shuffle=True, num_workers=2)
        >>> history = fastnn.fit(model, loader, None, nn.CrossEntropyLoss(), optim.Adam(model.parameters()))
    """
    if distributed:
        if is_data(x):
            raise ValueError(f"fit: distributed=True takes arrays, not a {type(x).__name__}")
        from .distributed import fit as distributed_fit

        return distributed_fit(model, x, y, loss, optimizer, epochs=epochs, batch_size=batch_size, shuffle=shuffle,
                               validation_data=validation_data, seed=seed, progress=progress, scheduler=scheduler,
                               callbacks=callbacks, checkpoint_dir=checkpoint_dir, keep_checkpoints=keep_checkpoints,
                               resume=resume, deterministic=deterministic)
    if is_data(x):
        _check_no_targets(x, y, "fit")
        batch_size = _check_batch_size(batch_size, "fit")
    else:
        x, y, _, batch_size = _check_data(x, y, batch_size, "fit")
    if int(epochs) < 0:
        raise ValueError(f"fit: epochs must be >= 0, got {epochs}")
    if keep_checkpoints is not None and (isinstance(keep_checkpoints, bool) or int(keep_checkpoints) < 1):
        raise ValueError(f"fit: keep_checkpoints must be a positive int or None, got {keep_checkpoints!r}")
    if compile_jobs is not None and (isinstance(compile_jobs, bool) or not isinstance(compile_jobs, (int, np.integer))
                                     or compile_jobs < 1):
        raise ValueError(f"fit: compile_jobs must be a positive int or None, got {compile_jobs!r}")
    deterministic = _config.are_deterministic_algorithms_enabled() if deterministic is None else bool(deterministic)
    if deterministic and seed is None and resume is None and not isinstance(x, DataLoader):
        raise ValueError("fit: deterministic=True needs a seed (the shuffling order and nothing else is random here; "
                         "seed the model's initialisation and Dropout with fastnn.manual_seed)")
    rng = np.random.default_rng(seed)
    loader = x if isinstance(x, DataLoader) else None
    if isinstance(x, Dataset):  # shuffled from fit's generator, so checkpoints hold its order
        loader = DataLoader(x, batch_size=batch_size, shuffle=None if isinstance(x, IterableDataset) else shuffle,
                            generator=rng)
    history = History()
    start = 0
    if resume is not None:
        from .checkpoint import Checkpoint, load_checkpoint

        checkpoint = resume if isinstance(resume, Checkpoint) else load_checkpoint(resume, model, optimizer, scheduler)
        if checkpoint.random.get("fit") is not None:
            rng.bit_generator.state = checkpoint.random["fit"]
        if loader is not None and checkpoint.random.get("loader") is not None:
            loader.load_state_dict(checkpoint.random["loader"])
        history, start = checkpoint.history, checkpoint.epoch
    if checkpoint_dir is not None:
        os.makedirs(checkpoint_dir, exist_ok=True)
    batches = ArrayBatches(x, y, batch_size, shuffle, rng) if loader is None else LoaderBatches(loader, "fit")
    was_deterministic = _config.are_deterministic_algorithms_enabled()
    _config.use_deterministic_algorithms(deterministic)
    try:
        if start < int(epochs):
            _first_run_compile(model, x, y, loss, optimizer, batch_size, compile_jobs, validation_data, progress,
                               loader)
        _fit_epochs(model, batches, loss, optimizer, range(start, int(epochs)), epochs, batch_size, validation_data,
                    progress, scheduler, callbacks, rng, loader, history, checkpoint_dir, keep_checkpoints)
    finally:
        _config.use_deterministic_algorithms(was_deterministic)
    return history


def _first_run_compile(model, x, y, loss, optimizer, batch_size, jobs, validation_data, progress, loader):
    """On a first run (an empty kernel cache; once per process), compile the first
    step's kernels in ``jobs`` processes at once (see ``fastnn._precompile``). With a
    DataLoader (or a Dataset), its first batch made apart from its iterator: the
    dataset's first samples through its ``collate_fn``; an IterableDataset: nothing."""
    from ._precompile import default_jobs, first_run_due, precompile

    jobs = default_jobs() if jobs is None else int(jobs)
    if loader is not None and (loader._iterable or not loader._auto_collation):
        return None
    if not first_run_due(jobs):
        return None
    inference_calls = 2 if validation_data is not None else 1
    if loader is not None:
        try:
            n = min(loader.batch_size, len(loader.dataset))
            xb, yb = loader.collate_fn([loader.dataset[i] for i in range(n)])
        except Exception:  # noqa: BLE001 - a dataset this cannot sample: the first step compiles
            return None
        return precompile(model, xb, yb, loss, optimizer, jobs, inference_calls=inference_calls, progress=progress)

    def rows(a, n):
        return None if a is None else np.asarray(a[:n])

    n, m = min(batch_size, len(x)), min(max(batch_size, 256), len(x))  # a step's batch; evaluate's
    last = len(x) % n  # an epoch's last, smaller batch
    more = [(np.asarray(x[-last:]), None if y is None else np.asarray(y[-last:]))] if last else []
    return precompile(model, rows(x, n), rows(y, n), loss, optimizer, jobs, inference_calls=inference_calls,
                      eval_x=rows(x, m), eval_y=rows(y, m), more=more, progress=progress)


def _first_run_compile_inference(model, x, batch_size, progress, repeated=None):
    """``predict``'s first run (arrays): the plan's kernels for a batch, as ``fit``'s;
    ``repeated``: whether batches of this shape follow (default: more rows than a batch)."""
    from ._precompile import default_jobs, first_run_due, precompile

    if first_run_due(default_jobs()):
        n = min(batch_size, len(x))
        repeated = len(x) > n if repeated is None else repeated
        precompile(model, np.asarray(x[:n]), train=False, inference_calls=2 if repeated else 1, progress=progress)


def _fit_epochs(model, batches, loss, optimizer, epoch_range, epochs, batch_size, validation_data, progress,
                scheduler, callbacks, rng, loader, history, checkpoint_dir, keep_checkpoints):
    checked = False
    kind = _accuracy_kind(loss)
    dtype = np.dtype(model.dtype)
    of_steps = "" if batches.steps is None else f" of {batches.steps}"
    for epoch in epoch_range:
        model.train()
        total_loss, total_correct, has_acc, n = 0.0, 0, True, 0
        start = time.perf_counter()
        bar = progress_bar(total=batches.total, desc=f"epoch {epoch + 1}/{epochs}", enabled=progress, unit="sample")
        with CompileNotice(bar) as notice:  # a first run says it compiles; the rate starts after
            for b, (xb, yb) in enumerate(batches):
                optimizer.zero_grad()
                out = model(_batch(xb, dtype))
                target = _batch(yb, out.dtype if isinstance(out, Tensor) else dtype)
                loss_value = loss(out, target)
                value = _loss_item(loss_value, "fit")
                if not math.isfinite(value):
                    bar.close()
                    raise FloatingPointError(f"fit: loss became {value} at epoch {epoch + 1}, batch {b + 1}{of_steps}")
                loss_value.backward()
                optimizer.step()
                loss_value = None  # the graph is freed; drop the last reference before the next batch
                count = len(target)
                n += count
                total_loss += value * count
                correct = _correct(kind, out, yb if isinstance(yb, np.ndarray) else target)
                out = None
                if correct is None:
                    has_acc = False
                else:
                    total_correct += correct
                notice.update(count)
                bar.set_postfix(loss=f"{value:.4f}", refresh=False)
        elapsed = time.perf_counter() - start
        bar.close()
        if n == 0:
            raise ValueError(f"fit: epoch {epoch + 1} had no batches (an empty dataset, or drop_last with fewer "
                             f"samples than a batch)")
        metrics = {"loss": total_loss / n}
        if has_acc:
            metrics["accuracy"] = total_correct / n
        metrics["samples_per_sec"] = n / elapsed if elapsed > 0 else float("inf")
        if validation_data is not None:
            vx, vy = (validation_data, None) if is_data(validation_data) else validation_data
            val = evaluate(model, vx, vy, loss, batch_size=max(batch_size, 256))
            metrics.update({f"val_{k}": v for k, v in val.items()})
        if scheduler is not None:  # ReduceLROnPlateau steps on val_loss (the training loss without validation)
            from .optim.lr_scheduler import ReduceLROnPlateau

            if isinstance(scheduler, ReduceLROnPlateau):
                scheduler.step(metrics.get("val_loss", metrics["loss"]))
            else:
                scheduler.step()
        history._append(epoch, metrics)
        if checkpoint_dir is not None:
            from .checkpoint import checkpoint_path, prune_checkpoints, save_checkpoint

            save_checkpoint(checkpoint_path(checkpoint_dir, epoch + 1), model, optimizer, scheduler, epoch + 1,
                            history, rng, check=not checked, data_loader=loader)
            checked = True
            if keep_checkpoints is not None:
                prune_checkpoints(checkpoint_dir, int(keep_checkpoints))
        for callback in callbacks:
            callback(epoch, metrics)


def evaluate(model, x, y, loss, batch_size=256):
    """Mean loss (and accuracy for classification losses) over ``(x, y)`` in eval
    mode, without recording gradients (``fastnn.no_grad()``).

    ``x`` may be a ``fastnn.data.Dataset`` of ``(input, target)`` samples or a
    ``DataLoader`` of such batches (``y`` None). Returns a dict
    ``{"loss": ..., "accuracy": ...}``; the model's mode is restored.
    """
    if is_data(x):
        _check_no_targets(x, y, "evaluate")
        batches = LoaderBatches(inference_loader(x, _check_batch_size(batch_size, "evaluate")), "evaluate")
    else:
        x, y, _, batch_size = _check_data(x, y, batch_size, "evaluate")
        batches = ArrayBatches(x, y, batch_size)
    kind = _accuracy_kind(loss)
    total_loss, total_correct, has_acc, n = 0.0, 0, True, 0
    with _inference(model) as dtype:
        for xb, yb in batches:
            out = inference.run(model, (_batch(xb, dtype, "evaluate"),), copy=False)
            yb = _batch(yb, out.dtype if isinstance(out, Tensor) else dtype, "evaluate")
            total_loss += _loss_item(loss(out, yb), "evaluate") * len(yb)
            n += len(yb)
            correct = _correct(kind, out, yb)
            if correct is None:
                has_acc = False
            else:
                total_correct += correct
    if n == 0:
        raise ValueError("evaluate: no samples")
    result = {"loss": total_loss / n}
    if has_acc:
        result["accuracy"] = total_correct / n
    return result


def predict(model, x, batch_size=256, out=None, progress=False):
    """Model outputs for ``x`` as a NumPy array, in eval mode and without recording
    gradients, computed ``batch_size`` rows at a time.

    Memory stays bounded by one batch plus the result: ``x`` may be a memory-mapped
    array larger than RAM (or a ``fastnn.data.Dataset``/``DataLoader`` over one,
    whose samples are inputs or ``(input, target)`` tuples: the first element is
    the input), and ``out`` may be a preallocated (or memory-mapped) array to
    write into. A model returning a tuple gives its first element.
    Returns the outputs; the model's mode is restored.
    """
    if is_data(x):
        loader = inference_loader(x, _check_batch_size(batch_size, "predict"))
        batches = LoaderBatches(loader, "predict", inputs_only=True)
    else:
        x, _, _, batch_size = _check_data(x, None, batch_size, "predict")
        batches = ArrayBatches(x, None, batch_size)
    if not is_data(x):
        _first_run_compile_inference(model, x, batch_size, progress)
    outputs = Outputs(batches.total, out, "predict")
    bar = progress_bar(total=batches.total, desc="predict", enabled=progress, unit="sample")
    try:
        with _inference(model) as dtype:
            for xb, _ in batches:
                y = inference.run(model, (_batch(xb, dtype, "predict"),), copy=False)
                if isinstance(y, tuple):
                    y = y[0]
                outputs.add(y.data if isinstance(y, Tensor) else np.asarray(y))
                bar.update(len(y))
    finally:
        bar.close()
    return outputs.result()
