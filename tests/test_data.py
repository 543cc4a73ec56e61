"""fastnn.data: datasets, samplers, default_collate and DataLoader in the main process (no model,
no kernels; workers: test_data_workers.py). PyTorch cross-checks skip without torch."""
import collections

import numpy as np
import pytest

import fastnn
from fastnn.data import (
    BatchSampler, ConcatDataset, DataLoader, IterableDataset, RandomSampler, SequentialSampler, Subset,
    SubsetRandomSampler, TensorDataset, WeightedRandomSampler, default_collate, get_worker_info, random_split,
)


def _rows(batches, k=1):
    """The k-th field of every batch as lists (the sample ids)."""
    return [b[k].numpy().tolist() for b in batches]


def _ids(n=20):
    return TensorDataset(np.arange(2 * n, dtype=np.float32).reshape(n, 2), np.arange(n))


# ----------------------------------------------------------------- datasets
def test_tensor_dataset_rows_lengths_and_errors():
    x, y = np.arange(12.0).reshape(6, 2), np.arange(6)
    ds = TensorDataset(fastnn.tensor(x), y)
    assert len(ds) == 6 and isinstance(ds.tensors[1], fastnn.Tensor)
    xi, yi = ds[4]
    np.testing.assert_array_equal(xi.numpy(), x[4])
    assert yi.item() == 4 and isinstance(xi, fastnn.Tensor)
    assert ds[-1][1].item() == 5
    with pytest.raises(IndexError, match="index 6 is out of range for a dataset of 6 samples"):
        ds[6]
    with pytest.raises(IndexError, match="index -7"):
        ds[-7]
    with pytest.raises(ValueError, match=r"size mismatch.*\(6, 2\), \(5,\)"):
        TensorDataset(x, np.arange(5))


def test_subset_concat_and_add():
    a, b = _ids(5), _ids(3)
    both = a + b
    assert isinstance(both, ConcatDataset) and len(both) == 8 and both.cumulative_sizes == [5, 8]
    assert both[6][1].item() == 1 and both[-1][1].item() == 2
    sub = Subset(both, [7, 0, 5])
    assert [sub[i][1].item() for i in range(3)] == [2, 0, 0] and len(sub) == 3
    with pytest.raises(IndexError):
        sub[3]
    with pytest.raises(IndexError):
        both[8]
    with pytest.raises(ValueError, match="IterableDataset"):
        ConcatDataset([a, _Stream(4)])


def test_random_split_lengths_fractions_and_determinism():
    ds = _ids(11)
    parts = random_split(ds, [0.3, 0.3, 0.4], generator=np.random.default_rng(0))
    assert [len(p) for p in parts] == [4, 3, 4]  # floor: 3, 3, 4; the remainder 1 goes to the first
    seen = sorted(i for p in parts for i in p.indices)
    assert seen == list(range(11))
    again = random_split(ds, [4, 3, 4], generator=np.random.default_rng(0))
    assert [p.indices for p in again] == [p.indices for p in parts]
    fastnn.manual_seed(5)
    first = random_split(ds, [5, 6])[0].indices
    fastnn.manual_seed(5)
    assert random_split(ds, [5, 6])[0].indices == first  # the default generator
    with pytest.raises(ValueError, match="does not equal the length"):
        random_split(ds, [5, 5])
    with pytest.raises(ValueError, match="not between 0 and 1"):
        random_split(ds, [1.5, -0.5])


def test_random_split_lengths_match_pytorch():
    torch = pytest.importorskip("torch")
    for n, fractions in ((10, [0.5, 0.5]), (11, [0.3, 0.3, 0.4]), (7, [0.1, 0.2, 0.7]), (3, [0.25, 0.75])):
        want = [len(s) for s in torch.utils.data.random_split(range(n), fractions)]
        assert [len(s) for s in random_split(range(n), fractions)] == want


# ----------------------------------------------------------------- samplers
def test_samplers():
    data = range(6)
    assert list(SequentialSampler(data)) == list(range(6))
    perm = list(RandomSampler(data, generator=np.random.default_rng(1)))
    assert sorted(perm) == list(range(6))
    assert perm == list(RandomSampler(data, generator=1))  # an int seed is a fresh generator
    sampler = RandomSampler(data, generator=2)
    assert list(sampler) != list(sampler)  # a new permutation each epoch (almost surely)
    long = list(RandomSampler(data, num_samples=14, generator=0))
    assert len(long) == 14 and sorted(long[:6]) == list(range(6)) and sorted(long[6:12]) == list(range(6))
    drawn = list(RandomSampler(data, replacement=True, num_samples=50, generator=0))
    assert len(drawn) == 50 and set(drawn) <= set(range(6))
    assert sorted(SubsetRandomSampler([9, 3, 5], generator=0)) == [3, 5, 9]
    weighted = list(WeightedRandomSampler([0, 1, 0, 3], 40, generator=0))
    assert set(weighted) <= {1, 3} and len(weighted) == 40
    batches = BatchSampler(SequentialSampler(range(7)), 3, drop_last=False)
    assert list(batches) == [[0, 1, 2], [3, 4, 5], [6]] and len(batches) == 3
    assert list(BatchSampler(range(7), 3, drop_last=True)) == [[0, 1, 2], [3, 4, 5]]
    assert len(BatchSampler(range(7), 3, drop_last=True)) == 2
    with pytest.raises(ValueError, match="batch_size should be a positive integer value"):
        BatchSampler(data, 0, False)
    with pytest.raises(ValueError, match="drop_last should be a boolean value"):
        BatchSampler(data, 2, 1)
    with pytest.raises(ValueError, match="num_samples should be a positive integer value"):
        RandomSampler(data, num_samples=0)
    with pytest.raises(ValueError, match="replacement should be a boolean value"):
        RandomSampler(data, replacement=1)


# ----------------------------------------------------------------- collate
Point = collections.namedtuple("Point", "x y")


def test_default_collate_types_and_nesting():
    batch = default_collate([(np.zeros(3, np.float32), 1, 2.0, {"a": np.ones(2)}, "s", Point(1, 2.5))] * 2)
    x, ints, floats, d, strings, point = batch
    assert isinstance(batch, list) and x.shape == (2, 3) and x.dtype == np.float32
    assert ints.dtype == np.int64 and floats.dtype == np.float64 and d["a"].shape == (2, 2)
    assert strings == ["s", "s"] and isinstance(point, Point) and point.y.dtype == np.float64
    stacked = default_collate([fastnn.tensor([1, 2]), np.array([3, 4])])
    np.testing.assert_array_equal(stacked.numpy(), [[1, 2], [3, 4]])
    assert default_collate([np.float32(1), np.float32(2)]).dtype == np.float32


def test_default_collate_ragged_names_the_shapes():
    with pytest.raises(RuntimeError, match=r"shape \(3,\) at entry 0 and \(4,\) at entry 1"):
        default_collate([np.zeros(3), np.zeros(4)])
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([(1, 2), (1, 2, 3)])
    loader = DataLoader([np.zeros((2, 2)), np.zeros((3, 2))], batch_size=2)
    with pytest.raises(RuntimeError, match=r"\(2, 2\) at entry 0 and \(3, 2\) at entry 1"):
        next(iter(loader))


def test_default_collate_matches_pytorch():
    pytest.importorskip("torch")
    from torch.utils.data import default_collate as torch_collate

    samples = [(np.full(3, i, np.float32), i, i / 2, {"k": np.full((2, 2), i)}) for i in range(4)]
    ours, theirs = default_collate(samples), torch_collate(samples)
    flat = [ours[0], ours[1], ours[2], ours[3]["k"]]
    flat_t = [theirs[0], theirs[1], theirs[2], theirs[3]["k"]]
    for a, b in zip(flat, flat_t):
        assert str(a.dtype) == str(b.dtype).replace("torch.", "")
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# ----------------------------------------------------------------- DataLoader
def test_loader_batches_len_and_drop_last():
    ds = _ids(10)
    loader = DataLoader(ds, batch_size=4)
    assert len(loader) == 3 and _rows(loader) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    xb, yb = next(iter(loader))
    assert xb.shape == (4, 2) and xb.dtype == np.float32 and yb.dtype == np.int64
    assert len(DataLoader(ds, batch_size=4, drop_last=True)) == 2
    assert _rows(DataLoader(ds, batch_size=4, drop_last=True)) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    single = list(DataLoader(ds, batch_size=None))  # no batching: samples converted to Tensors
    assert len(single) == 10 and single[3][1].item() == 3 and single[3][0].shape == (2,)
    arr = list(DataLoader(np.arange(5.0), batch_size=2))  # an array is a dataset of its rows
    assert [a.numpy().tolist() for a in arr] == [[0.0, 1.0], [2.0, 3.0], [4.0]]


def test_loader_len_matches_pytorch():
    torch = pytest.importorskip("torch")
    for n, size, drop in ((10, 3, False), (10, 3, True), (9, 3, True), (1, 4, False)):
        want = len(torch.utils.data.DataLoader(range(n), batch_size=size, drop_last=drop))
        assert len(DataLoader(range(n), batch_size=size, drop_last=drop)) == want


def test_shuffle_is_reproducible_from_a_generator_or_the_default_seed():
    ds = _ids(20)
    a = DataLoader(ds, batch_size=6, shuffle=True, generator=np.random.default_rng(3))
    b = DataLoader(ds, batch_size=6, shuffle=True, generator=np.random.default_rng(3))
    epochs_a, epochs_b = [_rows(a) for _ in range(2)], [_rows(b) for _ in range(2)]
    assert epochs_a == epochs_b and epochs_a[0] != epochs_a[1]
    assert sorted(sum(epochs_a[0], [])) == list(range(20))
    fastnn.manual_seed(4)
    first = _rows(DataLoader(ds, batch_size=6, shuffle=True))
    fastnn.manual_seed(4)
    assert _rows(DataLoader(ds, batch_size=6, shuffle=True)) == first


def test_fast_path_gathers_batches_without_per_sample_getitem(monkeypatch):
    ds = _ids(12)
    reference = [[t.numpy() for t in b] for b in DataLoader(ds, batch_size=5, shuffle=True, generator=0,
                                                             collate_fn=lambda s: default_collate(s))]
    calls = []
    original = TensorDataset.__getitem__
    monkeypatch.setattr(TensorDataset, "__getitem__", lambda self, i: calls.append(i) or original(self, i))
    fast = [[t.numpy() for t in b] for b in DataLoader(Subset(ds, list(range(12))), batch_size=5, shuffle=True,
                                                        generator=0)]
    assert not calls  # one fancy index per tensor, not sample by sample
    for got, want in zip(fast, reference):
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def test_samplers_batch_samplers_and_collate_fn():
    ds = _ids(6)
    loader = DataLoader(ds, batch_size=2, sampler=[5, 4, 3, 2, 1, 0])
    assert _rows(loader) == [[5, 4], [3, 2], [1, 0]]
    loader = DataLoader(ds, batch_sampler=[[0, 5], [1]])
    assert _rows(loader) == [[0, 5], [1]] and len(loader) == 2
    loader = DataLoader(ds, batch_size=3, collate_fn=lambda samples: [int(s[1]) for s in samples])
    assert list(loader) == [[0, 1, 2], [3, 4, 5]]


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_sampler=[[0]], batch_size=2), "mutually exclusive"),
    (dict(batch_sampler=[[0]], shuffle=True), "mutually exclusive"),
    (dict(batch_sampler=[[0]], sampler=[0]), "mutually exclusive"),
    (dict(batch_sampler=[[0]], drop_last=True), "mutually exclusive"),
    (dict(sampler=[0], shuffle=True), "sampler option is mutually exclusive with shuffle"),
    (dict(batch_size=None, drop_last=True), "batch_size=None"),
    (dict(num_workers=-1), "num_workers"),
    (dict(timeout=-1), "timeout"),
    (dict(prefetch_factor=2), "prefetch_factor"),
    (dict(persistent_workers=True), "persistent_workers"),
])
def test_argument_conflicts_raise_like_pytorch(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DataLoader(_ids(4), **kwargs)
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError):
        torch.utils.data.DataLoader(range(4), **kwargs)


class _Stream(IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        info = get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        return (np.int64(i) for i in range(start, self.n, step))


def test_iterable_dataset():
    loader = DataLoader(_Stream(7), batch_size=3)
    assert [b.numpy().tolist() for b in loader] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [b.numpy().tolist() for b in DataLoader(_Stream(7), batch_size=3, drop_last=True)] == [[0, 1, 2],
                                                                                                  [3, 4, 5]]
    with pytest.raises(ValueError, match="expected unspecified shuffle"):
        DataLoader(_Stream(3), shuffle=True)
    with pytest.raises(TypeError):
        len(DataLoader(_Stream(3)))
