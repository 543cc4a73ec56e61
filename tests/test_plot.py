"""History.plot: a PNG of the training curves, Agg only, and a clear message without matplotlib."""
import struct
import sys

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim
from fastnn.training import History

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_history(epochs=4, accuracy=True, validation=True):
    history = History()
    for e in range(epochs):
        metrics = {"loss": 1.0 / (e + 1)}
        if accuracy:
            metrics["accuracy"] = 0.5 + 0.1 * e
        metrics["samples_per_sec"] = 1000.0
        if validation:
            metrics["val_loss"] = 1.2 / (e + 1)
            if accuracy:
                metrics["val_accuracy"] = 0.45 + 0.1 * e
        history._append(e, metrics)
    return history


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    width, height = struct.unpack(">II", data[16:24])
    return width, height, len(data)


def test_plot_writes_a_png_of_loss_and_accuracy(tmp_path):
    pytest.importorskip("matplotlib")
    had_pyplot = "matplotlib.pyplot" in sys.modules
    out = make_history().plot(tmp_path / "curves.png")
    assert out == tmp_path / "curves.png"
    width, height, nbytes = png_size(out)
    assert (width, height) == (1000, 350)  # two panels of 5 x 3.5 inches at 100 dpi
    assert 5_000 < nbytes < 300_000
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]  # no temporary file left
    if not had_pyplot:
        assert "matplotlib.pyplot" not in sys.modules  # the global backend was never touched


def test_plot_one_metric_and_training_only(tmp_path):
    pytest.importorskip("matplotlib")
    make_history(accuracy=False, validation=False).plot(tmp_path / "a.png")
    assert png_size(tmp_path / "a.png")[:2] == (500, 350)
    make_history().plot(str(tmp_path / "b.png"), metrics="val_accuracy")
    assert png_size(tmp_path / "b.png")[:2] == (500, 350)


def test_plot_of_a_fit_history(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 4)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    fastnn.manual_seed(0)
    model = nn.Linear(4, 3)
    history = fastnn.fit(model, x, y, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), epochs=3,
                         batch_size=16, validation_data=(x[:10], y[:10]), seed=0, progress=False)
    history.plot(tmp_path / "fit.png")
    assert png_size(tmp_path / "fit.png")[2] > 5_000


def test_plot_bad_input(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match="no epochs"):
        History().plot(tmp_path / "x.png")
    with pytest.raises(ValueError, match="'f1'.*loss, accuracy"):
        make_history().plot(tmp_path / "x.png", metrics=["f1"])
    with pytest.raises(FileNotFoundError):
        make_history().plot(tmp_path / "missing-folder" / "x.png")


def test_without_matplotlib_the_message_says_how_to_install(tmp_path, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # "import matplotlib..." now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "fastnn\[plot\]"'):
        make_history().plot(tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
    from fastnn import plot

    assert plot.available() is False
