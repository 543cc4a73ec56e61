"""``fastnn demo``: train a small model on the bundled digits and report accuracy."""
import time

import numpy as np

from . import datasets, nn, optim
from .nn import functional as F
from .training import evaluate, fit


def _mlp():
    """Images flattened to 64 features: Linear-ReLU-Linear-ReLU-Linear."""
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    return model, lambda x: x.reshape(len(x), 64), dict(lr=3e-3, epochs=30, batch_size=32)


class DigitsResidualBlock(nn.Module):
    """``relu(x + bn2(conv2(relu(bn1(conv1(x))))))``: two 3x3 Conv-BatchNorm with an
    identity shortcut, written PyTorch's way (``forward`` only).

    Args:
        channels (int): input and output channels.

    Shape: (N, channels, H, W) -> (N, channels, H, W).

    Example:
        >>> block = DigitsResidualBlock(16)
        >>> block(fastnn.randn(2, 16, 8, 8)).shape
        (2, 16, 8, 8)
    """

    def __init__(self, channels):
        super().__init__()
        self.channels = channels
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(out)))

    def _config(self):
        return {"channels": self.channels}


def _cnn():
    """1x8x8 images: Conv-BN-ReLU, a residual block of two Conv-BN, MaxPool, Linear."""
    block = DigitsResidualBlock(16)  # built first: the same initial weights as before
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                          block, nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 4 * 4, 10))
    return model, lambda x: x, dict(lr=3e-3, epochs=12, batch_size=32)


def _lstm():
    """Each image read row by row: 8 steps of 8 features, LSTM(8, 64), last step, Linear."""
    model = nn.Sequential(nn.LSTM(8, 64, batch_first=True), nn.LastStep(batch_first=True), nn.Linear(64, 10))
    return model, lambda x: x.reshape(len(x), 8, 8), dict(lr=1e-2, epochs=15, batch_size=32, cosine=True)


DEMOS = {"mlp": _mlp, "cnn": _cnn, "lstm": _lstm}


def run_demo(model_name="mlp", epochs=None, seed=0, progress=True, out=print):
    """Train the named demo model; returns ``(test_accuracy, samples_per_sec)``."""
    from .random import manual_seed

    manual_seed(seed)
    model, shape, hp = DEMOS[model_name]()
    x_train, y_train = datasets.load_digits("train")
    x_test, y_test = datasets.load_digits("test")
    x_train, x_test = shape(x_train), shape(x_test)
    epochs = hp["epochs"] if epochs is None else epochs
    optimizer = optim.Adam(model.parameters(), lr=hp["lr"])
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1)) if hp.get("cosine") else None
    loss = nn.CrossEntropyLoss()
    out(f"fastnn demo: {model_name} on the bundled digits ({len(x_train)} train / {len(x_test)} test), "
        f"{epochs} epochs")
    start = time.perf_counter()
    history = fit(model, x_train, y_train, loss, optimizer, epochs=epochs, batch_size=hp["batch_size"],
                  seed=seed, progress=progress, scheduler=scheduler)
    total = time.perf_counter() - start
    result = evaluate(model, x_test, y_test, loss)
    rate = float(np.median(history["samples_per_sec"])) if epochs else 0.0
    out(f"test accuracy: {result['accuracy']:.4f}   test loss: {result['loss']:.4f}")
    out(f"training: {rate:,.0f} samples/s (median epoch), {total:.1f} s in all, including JIT compile")
    return result["accuracy"], rate
