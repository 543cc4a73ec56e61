"""``fastnn demo``: train a small model on the bundled digits (or, for ``conv1d``, the
generated 1-D signals of ``datasets.load_signals``) and report accuracy."""
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


class DigitsTransformer(nn.Module):
    """Each 8x8 image read as a sequence of 8 rows of 8 pixels: a Linear embedding
    plus a learned positional embedding, a ``TransformerEncoder``, the mean over
    the rows, a Linear classifier; written PyTorch's way (``forward`` only).

    Args:
        d_model (int): embedding width. nhead (int): attention heads.
        dim_feedforward (int): hidden width of each feed-forward block.
        num_layers (int): encoder layers. dropout (float): dropout in the layers.

    Shape: (N, 8, 8) -> (N, 10) logits.

    Example:
        >>> model = DigitsTransformer()
        >>> model(fastnn.randn(2, 8, 8)).shape
        (2, 10)
    """

    def __init__(self, d_model=32, nhead=4, dim_feedforward=64, num_layers=2, dropout=0.0):
        super().__init__()
        self._args = dict(d_model=d_model, nhead=nhead, dim_feedforward=dim_feedforward, num_layers=num_layers,
                         dropout=float(dropout))
        self.embed = nn.Linear(8, d_model)
        self.pos = nn.Parameter(np.zeros((1, 8, d_model), self.embed.weight.dtype))  # one vector per row
        nn.init.normal_(self.pos, std=0.1)
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers)
        self.head = nn.Linear(d_model, 10)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x) + self.pos).mean(1))

    def _config(self):
        return dict(self._args)


def _transformer():
    """Each image as 8 rows of 8 pixels, a 2-layer Transformer encoder (d_model 32, 4 heads)."""
    return DigitsTransformer(), lambda x: x.reshape(len(x), 8, 8), dict(lr=3e-3, epochs=12, batch_size=32,
                                                                        cosine=True)


def _conv1d():
    """The MNIST-1D CNN on ``datasets.load_signals``: three strided Conv1d-ReLU, Linear."""
    model = nn.Sequential(nn.Conv1d(1, 32, 5, stride=2, padding=1), nn.ReLU(),
                          nn.Conv1d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv1d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(32 * 5, 10))
    return model, lambda x: x, dict(lr=3e-3, epochs=10, batch_size=32, data="signals")


DEMOS = {"mlp": _mlp, "cnn": _cnn, "lstm": _lstm, "transformer": _transformer, "conv1d": _conv1d}
_DATA = {"digits": (datasets.load_digits, "the bundled digits"),
         "signals": (datasets.load_signals, "the generated 1-D signals")}


def run_demo(model_name="mlp", epochs=None, seed=0, progress=True, out=print):
    """Train the named demo model; returns ``(test_accuracy, samples_per_sec)``."""
    from .random import manual_seed

    manual_seed(seed)
    model, shape, hp = DEMOS[model_name]()
    load, data_name = _DATA[hp.get("data", "digits")]
    x_train, y_train = load("train")
    x_test, y_test = load("test")
    x_train, x_test = shape(x_train), shape(x_test)
    epochs = hp["epochs"] if epochs is None else epochs
    optimizer = optim.Adam(model.parameters(), lr=hp["lr"])
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1)) if hp.get("cosine") else None
    loss = nn.CrossEntropyLoss()
    out(f"fastnn demo: {model_name} on {data_name} ({len(x_train)} train / {len(x_test)} test), "
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
