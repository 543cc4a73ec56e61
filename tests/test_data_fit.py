"""fit / evaluate / predict on fastnn.data Datasets and DataLoaders; exact resume of shuffling."""
import os

import numpy as np
import pytest

import fastnn
from fastnn import checkpoint, nn, optim
from fastnn.data import DataLoader, Dataset, IterableDataset, TensorDataset


def _data(n=96):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
    return x, y


def _model(seed=0, dropout=0.0):
    fastnn.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 3))


def _train(data, model=None, y=None, **kwargs):
    model = _model() if model is None else model
    kwargs.setdefault("epochs", 2)
    history = fastnn.fit(model, data, y, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                         progress=False, **kwargs)
    return model, history


def _assert_same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    for key in sa:
        np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)


def test_a_loader_in_order_trains_exactly_like_the_arrays():
    x, y = _data()
    arrays, h1 = _train(x, y=y, batch_size=16, shuffle=False)
    loader, h2 = _train(DataLoader(TensorDataset(x, y), batch_size=16))
    _assert_same(arrays, loader)
    assert h1["loss"] == h2["loss"] and h1["accuracy"] == h2["accuracy"]


def test_a_dataset_is_batched_and_shuffled_from_the_seed():
    x, y = _data()
    ds = TensorDataset(x, y)
    from_dataset, _ = _train(ds, batch_size=16, seed=4)
    again, _ = _train(ds, batch_size=16, seed=4)
    loader = DataLoader(ds, batch_size=16, shuffle=True, generator=np.random.default_rng(4))
    from_loader, history = _train(loader)
    _assert_same(from_dataset, again)
    _assert_same(from_dataset, from_loader)
    assert len(history.epoch) == 2 and history["loss"][1] < history["loss"][0]


def test_workers_train_bitwise_like_the_main_process():
    x, y = _data(48)
    ds = TensorDataset(x, y)
    plain, _ = _train(DataLoader(ds, batch_size=8, shuffle=True, generator=np.random.default_rng(1)))
    workers, _ = _train(DataLoader(ds, batch_size=8, shuffle=True, generator=np.random.default_rng(1),
                                   num_workers=2))
    _assert_same(plain, workers)


def test_evaluate_and_predict_take_datasets_and_loaders():
    x, y = _data()
    model, _ = _train(x, y=y, epochs=1, seed=0)
    want = fastnn.evaluate(model, x, y, nn.CrossEntropyLoss(), batch_size=32)
    ds = TensorDataset(x, y)
    for data in (ds, DataLoader(ds, batch_size=32)):
        got = fastnn.evaluate(model, data, None, nn.CrossEntropyLoss(), batch_size=32)
        assert got == pytest.approx(want, rel=1e-6)
    pred = fastnn.predict(model, x, batch_size=32)
    for data in (ds, TensorDataset(x), DataLoader(ds, batch_size=10), _Inputs(x)):
        got = fastnn.predict(model, data, batch_size=32)
        assert type(got) is np.ndarray
        np.testing.assert_allclose(got, pred, rtol=1e-6, atol=1e-6)
    history = fastnn.fit(model, ds, None, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.01), seed=0,
                         progress=True, validation_data=ds)
    assert "val_accuracy" in history.history


class _Inputs(IterableDataset):
    """A stream of unknown length: predict joins the pieces."""

    def __init__(self, x):
        self.x = x

    def __iter__(self):
        return iter(self.x)


def test_fit_input_errors():
    x, y = _data(8)
    ds = TensorDataset(x, y)
    with pytest.raises(ValueError, match="y must be None when x is a TensorDataset"):
        _train(ds, y=y)
    with pytest.raises(TypeError, match=r"must be \(inputs, targets\), got a list of 1"):
        _train(TensorDataset(x))
    with pytest.raises(ValueError, match="distributed=True takes arrays"):
        _train(ds, distributed=True)

    def ragged(samples):  # a collate_fn that leaves ragged inputs
        return [np.zeros(3 + i, np.float32) for i in range(len(samples))], np.zeros(len(samples), np.int64)

    with pytest.raises(RuntimeError, match=r"shape \(3,\) at entry 0 and \(4,\) at entry 1"):
        _train(DataLoader(ds, batch_size=2, collate_fn=ragged))


class _Bad(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == 5:
            raise ValueError("corrupt record 5")
        return np.zeros(4, np.float32), np.int64(0)


def test_a_worker_error_in_fit_shows_the_traceback_and_stops_the_workers(monkeypatch):
    from fastnn.data._multiprocess import MultiProcessIter

    seen = []
    original = MultiProcessIter.__init__

    def spy(self, *args):
        original(self, *args)
        seen.extend(w.pid for w in self.workers)

    monkeypatch.setattr(MultiProcessIter, "__init__", spy)
    with pytest.raises(ValueError, match="(?s)in DataLoader worker process 0.*corrupt record 5"):
        _train(DataLoader(_Bad(), batch_size=2, num_workers=2))
    assert seen and not any(os.path.exists(f"/proc/{p}") for p in seen)


# ----------------------------------------------------------------- checkpoints
def _loader_run(tmp_path, make_loader, resume_epoch=None, drop_loader_state=False):
    """Four epochs with Dropout; or resumed from epoch ``resume_epoch``'s checkpoint with a fresh
    model (another init), a fresh loader and another default-generator state."""
    model = _model(seed=0 if resume_epoch is None else 7, dropout=0.2)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    resume = None
    if resume_epoch is not None:
        fastnn.manual_seed(1234)
        resume = checkpoint.load_checkpoint(checkpoint.checkpoint_path(tmp_path, resume_epoch), model, opt)
        if drop_loader_state:
            resume.random["loader"] = None
    fastnn.fit(model, make_loader(), None, nn.CrossEntropyLoss(), opt, epochs=4, progress=False,
               checkpoint_dir=tmp_path if resume is None else None, resume=resume, seed=0)
    return model


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_continues_the_loaders_shuffling_exactly(tmp_path, workers):
    x, y = _data(40)
    ds = TensorDataset(x, y)

    def make_loader():
        return DataLoader(ds, batch_size=8, shuffle=True, generator=np.random.default_rng(3), num_workers=workers)

    full = _loader_run(tmp_path, make_loader)
    resumed = _loader_run(tmp_path, make_loader, resume_epoch=2)
    _assert_same(full, resumed)
    if workers == 0:  # without the saved state the fresh loader would replay epoch 1's order
        other = _loader_run(tmp_path, make_loader, resume_epoch=2, drop_loader_state=True)
        assert not np.array_equal(other[0].weight.data, full[0].weight.data)


def test_resume_with_the_default_generator_and_with_a_dataset(tmp_path):
    x, y = _data(40)
    ds = TensorDataset(x, y)
    full = _loader_run(tmp_path / "a", lambda: DataLoader(ds, batch_size=8, shuffle=True))
    _assert_same(full, _loader_run(tmp_path / "a", lambda: DataLoader(ds, batch_size=8, shuffle=True), 3))
    full = _loader_run(tmp_path / "b", lambda: ds)  # fit batches and shuffles the Dataset from its seed
    _assert_same(full, _loader_run(tmp_path / "b", lambda: ds, 1))


def test_checkpoint_stores_and_restores_a_loaders_state(tmp_path):
    model = _model()
    loader = DataLoader(TensorDataset(*_data(16)), batch_size=4, shuffle=True, generator=np.random.default_rng(0))
    list(loader)
    path = tmp_path / "c.ckpt"
    fastnn.save_checkpoint(path, model, data_loader=loader)
    want = [b[1].numpy().tolist() for b in loader]
    fresh = DataLoader(loader.dataset, batch_size=4, shuffle=True, generator=np.random.default_rng(0))
    fastnn.load_checkpoint(path, model, data_loader=fresh)
    assert [b[1].numpy().tolist() for b in fresh] == want
    fastnn.save_checkpoint(path, model)
    with pytest.raises(ValueError, match="no DataLoader state"):
        fastnn.load_checkpoint(path, model, data_loader=fresh)


# ----------------------------------------------------------------- memory-mapped data
def _rss_anon():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return None


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_fit_and_predict_keep_bounded_memory_on_memory_mapped_data(tmp_path):
    rows, cols = 4096, 2048  # 32 MiB of inputs on disk
    path = tmp_path / "x.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, cols))
    out[:] = 0.001
    del out
    ds = TensorDataset(np.load(path, mmap_mode="r"), np.zeros(rows, np.int64))
    peak, base = [0], None

    def watch(*_):
        if base is not None:
            peak[0] = max(peak[0], _rss_anon() - base)

    class Watch(nn.Module):  # measures inside the loop, with a batch in memory
        def forward(self, x):
            watch()
            return x

    fastnn.manual_seed(0)
    model = nn.Sequential(Watch(), nn.Linear(cols, 2))
    opt = optim.SGD(model.parameters(), lr=0.1)
    warm = np.zeros((128, cols), np.float32)  # compile (or load) the kernels before measuring
    fastnn.fit(model, warm, np.zeros(128, np.int64), nn.CrossEntropyLoss(), opt, batch_size=128, progress=False)
    fastnn.predict(model, warm, batch_size=128)
    base = _rss_anon()
    fastnn.fit(model, ds, None, nn.CrossEntropyLoss(), opt, batch_size=128, seed=0, progress=False)
    pred = fastnn.predict(model, ds, batch_size=128)
    watch()
    assert pred.shape == (rows, 2)
    assert peak[0] < 10 << 20, f"anonymous memory grew by {peak[0] >> 20} MiB on a 32 MiB file"
