"""A small CNN trained with ``fit`` on the bundled digits reaches 98% test accuracy."""
import numpy as np

import fastnn
from fastnn import datasets, nn, optim


def digits_cnn():
    """Conv(1->16, 3x3, pad 1) ReLU, Conv(16->32, 3x3, pad 1) BatchNorm ReLU, MaxPool 2,
    Flatten, Linear(512 -> 10): about 10k parameters on the 8x8 digits."""
    fastnn.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
    )


def test_cnn_on_digits_reaches_98_percent():
    x, y = datasets.load_digits("train")
    xt, yt = datasets.load_digits("test")
    assert x.shape[1:] == (1, 8, 8)
    model = digits_cnn()
    loss = nn.CrossEntropyLoss()
    history = fastnn.fit(model, x, y, loss, optim.Adam(model.parameters(), lr=3e-3), epochs=12,
                         batch_size=32, seed=0, progress=False)
    assert history["loss"][-1] < 0.2 * history["loss"][0]
    result = fastnn.evaluate(model, xt, yt, loss)
    assert result["accuracy"] >= 0.98, result
    # eval mode uses the running statistics and gives the same predictions batched or not
    model.eval()
    with fastnn.no_grad():
        direct = model(xt[:7])
    assert direct.grad_fn is None
    np.testing.assert_allclose(direct.numpy(), fastnn.predict(model, xt)[:7], rtol=1e-5, atol=1e-5)
