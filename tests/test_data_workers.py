"""fastnn.data.DataLoader with worker processes (order, seeds, errors, clean shutdown) and
memory-mapped data read one batch at a time. Tiny datasets, at most two workers."""
import os
import signal
import threading
import time

import numpy as np
import pytest

import fastnn
from fastnn.data import DataLoader, Dataset, IterableDataset, TensorDataset, get_worker_info


def _rows(batches, k=1):
    return [b[k].numpy().tolist() for b in batches]


def _ids(n=20):
    return TensorDataset(np.arange(2 * n, dtype=np.float32).reshape(n, 2), np.arange(n))


def _alive(pid):
    """True while ``pid`` exists (a zombie, not yet reaped, counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class _Stream(IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        info = get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        return (np.int64(i) for i in range(start, self.n, step))


# ----------------------------------------------------------------- workers
def test_workers_give_the_same_batches_in_order():
    ds = _ids(23)
    plain = DataLoader(ds, batch_size=4, shuffle=True, generator=np.random.default_rng(9))
    workers = DataLoader(ds, batch_size=4, shuffle=True, generator=np.random.default_rng(9), num_workers=2)
    for _ in range(2):  # two epochs: the random streams stay in step
        want, got = list(plain), list(workers)
        assert len(got) == len(want) == 6
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g[0].numpy(), w[0].numpy())
            np.testing.assert_array_equal(g[1].numpy(), w[1].numpy())


class _WorkerProbe(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        info = get_worker_info()
        return np.array([i, info.id, info.seed % 1000, fastnn.get_num_threads(), np.random.randint(1 << 30),
                         os.getpid()])


def test_workers_are_seeded_single_threaded_and_initialised():
    ran = []
    loader = DataLoader(_WorkerProbe(), batch_size=2, num_workers=2, generator=np.random.default_rng(0),
                        worker_init_fn=lambda worker_id: ran.append(worker_id))
    rows = np.concatenate([b.numpy() for b in loader])
    assert rows[:, 0].tolist() == list(range(8))
    assert rows[:, 1].tolist() == [0, 0, 1, 1, 0, 0, 1, 1]  # batches go round-robin
    assert set(rows[:, 3]) == {1}  # one thread per worker
    seeds = {int(w): int(s) for w, s in zip(rows[:, 1], rows[:, 2])}
    assert (seeds[1] - seeds[0]) % 1000 == 1  # base_seed + worker id
    assert len(set(rows[:, 4])) == 8  # NumPy's global generator differs per worker
    assert os.getpid() not in set(rows[:, 5]) and not ran  # the init ran in the workers
    assert get_worker_info() is None


class _Fails(Dataset):
    def __len__(self):
        return 16

    def __getitem__(self, i):
        if i == 9:
            raise KeyError(f"no sample {i}")
        return np.float32(i)


def test_worker_exception_shows_its_traceback_and_stops_the_workers():
    iterator = iter(DataLoader(_Fails(), batch_size=2, num_workers=2))
    pids = [w.pid for w in iterator.workers]
    assert all(_alive(p) for p in pids)
    with pytest.raises(KeyError) as info:
        list(iterator)
    text = str(info.value)
    assert "Caught KeyError in DataLoader worker process 0" in text
    assert "Traceback (most recent call last)" in text and 'raise KeyError(f"no sample {i}")' in text
    assert not any(_alive(p) for p in pids)


def test_workers_stop_on_exhaustion_on_del_and_persist_when_asked():
    iterator = iter(DataLoader(_ids(8), batch_size=2, num_workers=2))
    pids = [w.pid for w in iterator.workers]
    assert len(list(iterator)) == 4 and not any(_alive(p) for p in pids)
    iterator = iter(DataLoader(_ids(8), batch_size=2, num_workers=2))
    next(iterator)
    pids = [w.pid for w in iterator.workers]
    del iterator
    assert not any(_alive(p) for p in pids)
    loader = DataLoader(_ids(8), batch_size=2, num_workers=2, persistent_workers=True, shuffle=True, generator=1)
    first = iter(loader)
    assert len(list(first)) == 4
    assert iter(loader) is first and all(_alive(w.pid) for w in first.workers)
    epoch = _rows(loader)  # a second epoch on the same workers, abandoned early below
    assert sorted(sum(epoch, [])) == list(range(8))
    it = iter(loader)
    next(it)
    assert sorted(sum(_rows(loader), [])) == list(range(8))  # the stale batches were dropped
    pids = [w.pid for w in first.workers]
    del loader, first, it
    assert not any(_alive(p) for p in pids)


class _Slow(Dataset):
    def __len__(self):
        return 400

    def __getitem__(self, i):
        time.sleep(0.02)
        return np.float32(i)


def test_keyboard_interrupt_stops_the_workers():
    # a process started in the background by a non-interactive shell inherits SIGINT
    # ignored (as CI may start this suite): Ctrl-C's handler is installed for the test
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    iterator = iter(DataLoader(_Slow(), batch_size=4, num_workers=2))
    pids = [w.pid for w in iterator.workers]
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            for _ in iterator:
                pass
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert iterator.closed and not any(_alive(p) for p in pids)


def test_worker_timeout_and_iterable_dataset_with_workers():
    with pytest.raises(RuntimeError, match="timed out after 0.1 seconds"):
        next(iter(DataLoader(_Slow(), batch_size=8, num_workers=1, timeout=0.1)))
    batches = [b.numpy().tolist() for b in DataLoader(_Stream(9), batch_size=2, num_workers=2)]
    assert sorted(sum(batches, [])) == list(range(9))  # each worker streams its own share
    assert batches[:2] == [[0, 2], [1, 3]]


def test_spawn_workers_give_the_same_batches(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.arange(40, dtype=np.float32).reshape(20, 2))
    ds = TensorDataset(np.load(path, mmap_mode="r"), np.arange(20))  # the memmap travels as its file name
    want = _rows(DataLoader(ds, batch_size=8, shuffle=True, generator=5), 0)
    got = _rows(DataLoader(ds, batch_size=8, shuffle=True, generator=5, num_workers=1,
                           multiprocessing_context="spawn"), 0)
    assert got == want


# ----------------------------------------------------------------- memory-mapped data
def _rss_anon():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return None


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_memory_mapped_data_is_read_one_batch_at_a_time(tmp_path):
    rows, cols = 4096, 2048  # 32 MiB on disk, 512 KiB per batch of 64
    path = tmp_path / "big.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, cols))
    out[:] = np.arange(rows, dtype=np.float32)[:, None]
    del out
    mm = np.load(path, mmap_mode="r")
    loader = DataLoader(TensorDataset(mm, np.arange(rows)), batch_size=64, shuffle=True, generator=0)
    base, peak, seen = _rss_anon(), 0, 0
    for xb, yb in loader:
        assert xb.shape == (len(yb), cols) and np.array_equal(xb.numpy()[:, 0], yb.numpy())  # order kept
        seen += len(yb)
        peak = max(peak, _rss_anon() - base)
    assert seen == rows
    assert peak < 8 << 20, f"anonymous memory grew by {peak >> 20} MiB reading a 32 MiB file"
