"""``fastnn demo``: train a small model on the bundled digits and report accuracy."""
import time

import numpy as np

from . import datasets, nn, optim
from .training import evaluate, fit


def _mlp():
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    return model, dict(flatten=True), dict(lr=3e-3, epochs=30, batch_size=32)


DEMOS = {"mlp": _mlp}


def run_demo(model_name="mlp", epochs=None, seed=0, progress=True, out=print):
    """Train the named demo model; returns ``(test_accuracy, samples_per_sec)``."""
    from .random import manual_seed

    manual_seed(seed)
    model, data_kwargs, hp = DEMOS[model_name]()
    x_train, y_train = datasets.load_digits("train", **data_kwargs)
    x_test, y_test = datasets.load_digits("test", **data_kwargs)
    epochs = hp["epochs"] if epochs is None else epochs
    optimizer = optim.Adam(model.parameters(), lr=hp["lr"])
    loss = nn.CrossEntropyLoss()
    out(f"fastnn demo: {model_name} on the bundled digits ({len(x_train)} train / {len(x_test)} test), "
        f"{epochs} epochs")
    start = time.perf_counter()
    history = fit(model, x_train, y_train, loss, optimizer, epochs=epochs, batch_size=hp["batch_size"],
                  seed=seed, progress=progress)
    total = time.perf_counter() - start
    result = evaluate(model, x_test, y_test, loss)
    rate = float(np.median(history["samples_per_sec"])) if epochs else 0.0
    out(f"test accuracy: {result['accuracy']:.4f}   test loss: {result['loss']:.4f}")
    out(f"training: {rate:,.0f} samples/s (median epoch), {total:.1f} s in all, including JIT compile")
    return result["accuracy"], rate
