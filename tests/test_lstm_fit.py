"""An LSTM trained with fit on the bundled digits, read row by row as 8 steps of
8 features, reaches at least 95% test accuracy (the `demo --model lstm` recipe)."""
import numpy as np

import fastnn
from fastnn import datasets, nn, optim

EPOCHS = 15


def lstm_classifier(hidden=64):
    """Digits as sequences: LSTM(8, hidden) -> last step -> Linear(hidden, 10)."""
    return nn.Sequential(nn.LSTM(8, hidden, batch_first=True), nn.LastStep(batch_first=True),
                         nn.Linear(hidden, 10))


def test_lstm_on_digits_reaches_95_percent():
    x, y = datasets.load_digits("train")
    xt, yt = datasets.load_digits("test")
    x, xt = x.reshape(-1, 8, 8), xt.reshape(-1, 8, 8)  # (N, T=8 rows, 8 pixels)
    fastnn.manual_seed(0)
    model = lstm_classifier()
    opt = optim.Adam(model.parameters(), lr=1e-2)
    history = fastnn.fit(model, x, y, nn.CrossEntropyLoss(), opt, epochs=EPOCHS, batch_size=32, seed=0,
                         progress=False, scheduler=optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS))
    assert history["loss"][-1] < 0.2 * history["loss"][0]
    result = fastnn.evaluate(model, xt, yt, nn.CrossEntropyLoss())
    assert result["accuracy"] >= 0.95
    pred = fastnn.predict(model, xt).argmax(axis=1)
    assert np.mean(pred == yt) == result["accuracy"]
