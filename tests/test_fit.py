"""fit / evaluate / predict end to end on the bundled digits."""
import numpy as np
import pytest

import fastnn
from fastnn import datasets, nn, optim


def digits_mlp():
    fastnn.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))


def test_mlp_on_digits_reaches_96_percent():
    x, y = datasets.load_digits("train", flatten=True)
    xt, yt = datasets.load_digits("test", flatten=True)
    model = digits_mlp()
    loss = nn.CrossEntropyLoss()
    history = fastnn.fit(model, x, y, loss, optim.Adam(model.parameters(), lr=3e-3), epochs=30,
                         batch_size=32, seed=0, progress=False, validation_data=(xt, yt))
    assert len(history.epoch) == 30
    assert history["loss"][-1] < history["loss"][0]
    assert all(v > 0 for v in history["samples_per_sec"])
    result = fastnn.evaluate(model, xt, yt, loss)
    assert result["accuracy"] >= 0.96
    assert history["val_accuracy"][-1] == pytest.approx(result["accuracy"])
    assert model.training  # evaluate restored the mode


def test_fit_is_reproducible_from_a_seed():
    x, y = datasets.load_digits("train", flatten=True)
    finals = []
    for _ in range(2):
        model = digits_mlp()
        fastnn.fit(model, x[:256], y[:256], nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                   epochs=2, batch_size=32, seed=5, progress=False)
        finals.append(model.state_dict())
    for k in finals[0]:
        np.testing.assert_array_equal(finals[0][k], finals[1][k])


def test_fit_stops_on_non_finite_loss():
    x = np.ones((64, 4), np.float32)
    y = np.zeros((64, 1), np.float32)
    model = nn.Sequential(nn.Linear(4, 1))
    model[0].weight.data[...] = np.inf
    with pytest.raises(FloatingPointError, match="epoch 1, batch 1"):
        fastnn.fit(model, x, y, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.1), progress=False)


def test_fit_regression_with_mse_and_progress_bar():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.3).astype(np.float32)
    model = nn.Sequential(nn.Linear(3, 1))
    history = fastnn.fit(model, x, y, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.1), epochs=40,
                         batch_size=32, seed=0, progress=True)
    assert "accuracy" not in history.history
    assert history["loss"][-1] < 1e-3


def test_predict_batches_match_single_call_and_restore_mode(tmp_path):
    model = digits_mlp()
    x, _ = datasets.load_digits("test", flatten=True)
    path = tmp_path / "x.npy"
    np.save(path, x)
    mm = np.load(path, mmap_mode="r")
    full = fastnn.predict(model, x, batch_size=1000)
    chunked = fastnn.predict(model, mm, batch_size=7)
    np.testing.assert_allclose(full, chunked, rtol=1e-6, atol=1e-6)
    assert model.training
    out = np.lib.format.open_memmap(tmp_path / "out.npy", mode="w+", dtype=np.float32, shape=full.shape)
    fastnn.predict(model, mm, batch_size=50, out=out)
    np.testing.assert_allclose(np.asarray(out), full, rtol=1e-6, atol=1e-6)


def test_fit_input_errors():
    model = nn.Sequential(nn.Linear(2, 2))
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="fit: x has 3 samples but y has 2"):
        fastnn.fit(model, np.zeros((3, 2)), np.zeros(2, int), nn.CrossEntropyLoss(), opt)
    with pytest.raises(ValueError, match="batch_size"):
        fastnn.fit(model, np.zeros((3, 2)), np.zeros(3, int), nn.CrossEntropyLoss(), opt, batch_size=0)


def test_fit_with_a_functional_loss_and_tensor_data():
    """Any callable returning a 0-d Tensor is a loss; F.cross_entropy still reports accuracy."""
    import fastnn.nn.functional as F

    x, y = datasets.load_digits("train", flatten=True)
    xt, yt = datasets.load_digits("test", flatten=True)
    model = digits_mlp()
    history = fastnn.fit(model, fastnn.tensor(x[:512]), fastnn.tensor(y[:512]), F.cross_entropy,
                         optim.SGD(model.parameters(), lr=0.1, momentum=0.9), epochs=3, seed=0, progress=False,
                         validation_data=(xt, yt))
    assert history["loss"][-1] < history["loss"][0]
    assert 0.5 < history["accuracy"][-1] <= 1.0
    result = fastnn.evaluate(model, xt, yt, F.cross_entropy)
    assert result["accuracy"] == pytest.approx(history["val_accuracy"][-1])
    pred = fastnn.predict(model, xt)
    assert type(pred) is np.ndarray and pred.shape == (len(xt), 10) and pred.dtype == np.float32
    assert np.mean(pred.argmax(axis=1) == yt) == pytest.approx(result["accuracy"])

    def mse_of_logits(out, target):  # a plain function of Tensors: no accuracy
        onehot = np.eye(10, dtype=np.float32)[target.numpy()]
        return ((out - onehot) ** 2).mean()

    history = fastnn.fit(model, x[:256], y[:256], mse_of_logits, optim.SGD(model.parameters(), lr=0.01),
                         epochs=1, seed=0, progress=False)
    assert "accuracy" not in history.history and np.isfinite(history["loss"][0])


def test_fit_trains_a_pytorch_style_module_on_tensor_batches():
    class TwoLayer(nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden = nn.Linear(3, 8)
            self.out = nn.Linear(8, 1)

        def forward(self, x):
            assert isinstance(x, fastnn.Tensor) and x.dtype == np.float32  # batches arrive as Tensors
            return self.out(fastnn.relu(self.hidden(x)))

    rng = np.random.default_rng(1)
    x = rng.standard_normal((128, 3))  # float64 data: converted to the model's dtype
    y = np.abs(x[:, :1]) + 0.5 * x[:, 1:2]
    fastnn.manual_seed(0)
    model = TwoLayer()
    history = fastnn.fit(model, x, y, nn.MSELoss(), optim.Adam(model.parameters(), lr=1e-2), epochs=30,
                         batch_size=16, seed=0, progress=False)
    assert history["loss"][-1] < 0.1 * history["loss"][0]
    assert all(p.dtype == np.float32 for p in model.parameters())


def test_evaluate_and_predict_record_no_graph_and_take_tuple_outputs():
    class WithExtra(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 3)
            self.seen = []

        def forward(self, x):
            out = self.linear(x)
            self.seen.append((self.training, fastnn.is_grad_enabled(), out.requires_grad))
            return out, out * 2

    model = WithExtra()
    x = np.random.default_rng(2).standard_normal((10, 4)).astype(np.float32)
    pred = fastnn.predict(model, x, batch_size=4)
    assert model.seen == [(False, False, False)] * 3 and model.training
    with fastnn.no_grad():
        np.testing.assert_allclose(pred, model.linear(x).numpy(), rtol=1e-6)
    model.seen.clear()
    first = lambda out, target: nn.MSELoss()(out[0], target)  # noqa: E731
    result = fastnn.evaluate(model, x, np.zeros((10, 3), np.float32), first, batch_size=4)
    assert model.seen == [(False, False, False)] * 3 and model.training
    assert result["loss"] == pytest.approx(float(np.mean(pred ** 2)), rel=1e-5)


def test_fit_rejects_a_loss_that_is_not_one_value():
    model = nn.Sequential(nn.Linear(2, 1))
    x, y = np.zeros((4, 2), np.float32), np.zeros((4, 1), np.float32)
    with pytest.raises(ValueError, match="fit: the loss must return one value"):
        fastnn.fit(model, x, y, nn.MSELoss(reduction="none"), optim.SGD(model.parameters(), lr=0.1), progress=False)
    with pytest.raises(TypeError, match="fit: the loss must return a Tensor"):
        fastnn.fit(model, x, y, lambda out, t: 0.5, optim.SGD(model.parameters(), lr=0.1), progress=False)
