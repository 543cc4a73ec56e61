"""Training curves as a PNG picture (``History.plot``), drawn with matplotlib.

matplotlib is an optional extra (``pip install "fastnn[plot]"``). The picture is
drawn on a ``matplotlib.figure.Figure`` with the Agg canvas directly, so the
global backend (``pyplot``) of an interactive session is never touched, and the
file is written atomically (a temporary file, then a rename), so a job that
replots every epoch never leaves a half-written picture behind.
"""
import os

from ._io import atomic_write

INSTALL_HINT = 'pip install "fastnn[plot]"'


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(f"fastnn: drawing training curves needs matplotlib; install it with: {INSTALL_HINT}") from err
    return Figure, FigureCanvasAgg


def available():
    """True when matplotlib can be imported (training curves can be drawn)."""
    try:
        _matplotlib()
    except ImportError:
        return False
    return True


def _metric_names(history, metrics):
    """The metrics to draw: given names (with or without ``val_``), or loss and accuracy."""
    names = [k for k in history.history if not k.startswith("val_") and k != "samples_per_sec"]
    names += [k[4:] for k in history.history if k.startswith("val_") and k[4:] not in names]
    if metrics is None:
        chosen = [m for m in ("loss", "accuracy") if m in names] or names[:1]
    else:
        chosen = [metrics] if isinstance(metrics, str) else list(metrics)
        chosen = [m[4:] if m.startswith("val_") else m for m in chosen]
        unknown = [m for m in chosen if m not in names]
        if unknown:
            raise ValueError(f"History.plot: no metric {unknown[0]!r} in this history (it has: {', '.join(names)})")
    if not chosen:
        raise ValueError("History.plot: the history has no metric to draw")
    return list(dict.fromkeys(chosen))


def plot_history(history, path, metrics=None, title=None, dpi=100):
    """Draw ``history`` (a ``fastnn.History``) as a PNG at ``path``: one panel per
    metric, training and validation curves per epoch. Returns ``path``.

    Args:
        history: the ``History`` of ``fit`` (or of a checkpoint).
        path: the PNG file to write (its folder must exist).
        metrics: names to draw (default: ``loss``, and ``accuracy`` when recorded);
            ``'val_x'`` and ``'x'`` both draw ``x`` with its validation curve.
        title: a title over the panels (optional).
        dpi: resolution (default 100: about 500 x 350 pixels per panel).

    Raises ``ImportError`` (saying ``pip install "fastnn[plot]"``) without
    matplotlib, ``ValueError`` for an empty history or an unknown metric.
    """
    if not history.epoch:
        raise ValueError("History.plot: the history has no epochs yet")
    names = _metric_names(history, metrics)
    Figure, FigureCanvasAgg = _matplotlib()
    fig = Figure(figsize=(5.0 * len(names), 3.5), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    epochs = [e + 1 for e in history.epoch]
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1)
        for key, label, style in ((name, "training", "-o"), (f"val_{name}", "validation", "-s")):
            values = history.history.get(key)
            if values:
                ax.plot(epochs[:len(values)], values, style, markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
        ax.legend()
        if len(epochs) < 12:
            ax.set_xticks(epochs)
    if title:
        fig.suptitle(title)
    _save(fig, os.fspath(path), dpi)
    return path


def _save(fig, path, dpi):
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=dpi)
