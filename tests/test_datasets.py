"""fastnn.datasets: the bundled digits, the generated 1-D signals and the MNIST IDX
reader/writer."""
import gzip
import os

import numpy as np
import pytest

from fastnn.datasets import load_digits, load_mnist, load_signals, make_signals, read_idx, write_idx
from fastnn.datasets import idx as idx_module

# ------------------------------------------------------------------ digits


@pytest.mark.parametrize("split, n", [("train", 1437), ("test", 360)])
def test_digits_shapes_dtypes_ranges(split, n):
    x, y = load_digits(split)
    assert x.shape == (n, 1, 8, 8) and x.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    assert set(np.unique(y)) == set(range(10))
    assert np.all(np.isin(x * 16, np.arange(17)))  # integer grey levels 0..16, scaled


@pytest.mark.parametrize("split", ["train", "test"])
def test_digits_classes_roughly_balanced(split):
    counts = np.bincount(load_digits(split)[1], minlength=10)
    assert counts.min() >= 0.7 * counts.mean() and counts.max() <= 1.3 * counts.mean()


def test_digits_no_image_in_both_splits():
    train = load_digits("train", flatten=True, normalize=False)[0]
    test = load_digits("test", flatten=True, normalize=False)[0]
    rows = {row.tobytes() for row in train}
    assert not any(row.tobytes() in rows for row in test)


def test_digits_flatten_normalize_dtype_options():
    x_img, y_img = load_digits("test")
    x_flat, y_flat = load_digits("test", flatten=True)
    assert x_flat.shape == (360, 64)
    np.testing.assert_array_equal(x_flat, x_img.reshape(360, 64))
    np.testing.assert_array_equal(y_flat, y_img)
    raw = load_digits("test", normalize=False, dtype=np.float64)[0]
    assert raw.dtype == np.float64 and raw.max() == 16.0
    np.testing.assert_allclose(raw / 16, x_img)


def test_digits_returns_fresh_arrays():
    x, y = load_digits("train")
    x[:] = -1
    y[:] = -1
    x2, y2 = load_digits("train")
    assert x2.min() == 0.0 and y2.min() == 0


def test_digits_follows_default_dtype():
    import fastnn

    previous = fastnn.get_default_dtype()
    fastnn.set_default_dtype(np.float64)
    try:
        assert load_digits("test")[0].dtype == np.float64
    finally:
        fastnn.set_default_dtype(previous)


def test_digits_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        load_digits("validation")
    with pytest.raises(TypeError, match="float"):
        load_digits(dtype=np.int32)


# ------------------------------------------------------------------ IDX

IDX_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def _sample(dtype, shape=(3, 4, 5)):
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


@pytest.mark.parametrize("dtype", IDX_DTYPES)
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip_every_type_code(tmp_path, dtype, suffix):
    array = _sample(dtype)
    path = tmp_path / f"data-idx3{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)
    back[0] = 0  # writable


@pytest.mark.parametrize("shape", [(7,), (2, 3), (1, 2, 3, 4), (0, 5), ()])
def test_idx_round_trip_shapes(tmp_path, shape):
    array = _sample(np.int32, shape)
    write_idx(tmp_path / "a", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), array)
    assert read_idx(tmp_path / "a").shape == shape


def test_idx_header_layout_is_big_endian(tmp_path):
    write_idx(tmp_path / "a", np.array([[1, 2, 3]], dtype=np.int16))
    data = (tmp_path / "a").read_bytes()
    assert data == bytes([0, 0, 0x0B, 2, 0, 0, 0, 1, 0, 0, 0, 3, 0, 1, 0, 2, 0, 3])


def test_idx_gz_is_really_gzipped(tmp_path):
    array = _sample(np.uint8, (50, 28, 28))
    write_idx(tmp_path / "a.gz", array)
    raw = gzip.decompress((tmp_path / "a.gz").read_bytes())
    assert raw[:4] == bytes([0, 0, 8, 3]) and len(raw) == 16 + array.size


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_idx_mmap(tmp_path, dtype):
    array = _sample(dtype)
    write_idx(tmp_path / "a", array)
    mapped = read_idx(tmp_path / "a", mmap=True)
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    np.testing.assert_array_equal(mapped, array)
    write_idx(tmp_path / "a.gz", array)  # gzip cannot be mapped: read into memory
    assert not isinstance(read_idx(tmp_path / "a.gz", mmap=True), np.memmap)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_truncated_file_raises(tmp_path, suffix):
    write_idx(tmp_path / "full", _sample(np.float32))
    data = (tmp_path / "full").read_bytes()
    for cut in (2, 9, len(data) - 1):
        path = tmp_path / f"cut{suffix}"
        path.write_bytes(gzip.compress(data[:cut]) if suffix else data[:cut])
        with pytest.raises(ValueError, match="cut"):
            read_idx(path)


def test_idx_truncated_gzip_stream_raises(tmp_path):
    write_idx(tmp_path / "a.gz", _sample(np.float64, (40, 40)))
    data = (tmp_path / "a.gz").read_bytes()
    (tmp_path / "b.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="b.gz"):
        read_idx(tmp_path / "b.gz")


def test_idx_trailing_bytes_raise(tmp_path):
    write_idx(tmp_path / "a", _sample(np.uint8))
    with open(tmp_path / "a", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="longer than its header"):
        read_idx(tmp_path / "a")


def test_idx_bad_magic_and_unknown_type_code(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x1f\x8b\x08\x00" + bytes(20))
    with pytest.raises(ValueError, match="bad.*magic"):
        read_idx(tmp_path / "bad")
    (tmp_path / "code").write_bytes(bytes([0, 0, 0x0A, 1, 0, 0, 0, 1, 7]))
    with pytest.raises(ValueError, match="code.*type code 0x0A"):
        read_idx(tmp_path / "code")
    (tmp_path / "plain.gz").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 1, 7]))  # not gzipped
    with pytest.raises(ValueError, match="plain.gz.*gzip"):
        read_idx(tmp_path / "plain.gz")


def test_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        read_idx(tmp_path / "nothing-here")


def test_write_idx_rejects_unsupported_dtypes(tmp_path):
    for bad in (np.zeros(3, np.int64), np.zeros(3, bool), np.zeros(3, np.float16)):
        with pytest.raises(TypeError, match=str(bad.dtype)):
            write_idx(tmp_path / "a", bad)
    assert not os.listdir(tmp_path)


# ------------------------------------------------------------------ MNIST folder


def _write_mnist(folder, prefix, n, gz, rng):
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    suffix = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_tiny_folder(tmp_path, gz):
    rng = np.random.default_rng(1)
    train_images, train_labels = _write_mnist(tmp_path, "train", 12, gz, rng)
    test_images, test_labels = _write_mnist(tmp_path, "t10k", 5, gz, rng)
    x, y = load_mnist(tmp_path)
    assert x.shape == (12, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
    assert 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_allclose(x[:, 0] * 255, train_images, atol=1e-4)
    np.testing.assert_array_equal(y, train_labels)
    x, y = load_mnist(str(tmp_path), "test", dtype=np.float64)
    assert x.shape == (5, 1, 28, 28) and x.dtype == np.float64
    np.testing.assert_array_equal(x[:, 0] * 255, test_images)
    np.testing.assert_array_equal(y, test_labels)


def test_load_mnist_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_mnist(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_mnist(tmp_path, "valid")
    rng = np.random.default_rng(2)
    _write_mnist(tmp_path, "train", 4, False, rng)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="labels"):
        load_mnist(tmp_path)


def test_idx_large_chunked_io(tmp_path, monkeypatch):
    monkeypatch.setattr(idx_module, "_CHUNK", 1000)  # exercise the chunk loops on a small array
    array = _sample(np.float64, (37, 53))
    for name in ("a", "a.gz"):
        write_idx(tmp_path / name, array)
        np.testing.assert_array_equal(read_idx(tmp_path / name), array)


# ------------------------------------------------------------------ generated 1-D signals


@pytest.mark.parametrize("split, n", [("train", 4000), ("test", 1000)])
def test_signals_splits_shapes_dtypes(split, n):
    x, y = load_signals(split)
    assert x.shape == (n, 1, 40) and x.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64
    assert np.all(np.isfinite(x)) and set(np.unique(y)) == set(range(10))
    assert np.array_equal(np.bincount(y), np.full(10, n // 10))


def test_signals_splits_differ():
    train, test = load_signals("train")[0], load_signals("test")[0]
    rows = {row.tobytes() for row in train[:, 0]}
    assert not any(row.tobytes() in rows for row in test[:, 0])


def test_make_signals_deterministic_for_a_seed():
    x1, y1 = make_signals(50, seed=3)
    x2, y2 = make_signals(50, seed=3)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    x3, _ = make_signals(50, seed=4)
    assert not np.allclose(x1, x3)


@pytest.mark.parametrize("n", [1, 9, 23, 100])
def test_make_signals_classes_balanced(n):
    counts = np.bincount(make_signals(n, length=24)[1], minlength=10)
    assert counts.sum() == n and counts.max() - counts.min() <= 1


def test_make_signals_length_dtype_options():
    x, y = make_signals(12, length=64, dtype=np.float64)
    assert x.shape == (12, 1, 64) and x.dtype == np.float64 and y.dtype == np.int64
    np.testing.assert_allclose(make_signals(12, length=64)[0], x, rtol=1e-6, atol=1e-6)


def test_make_signals_noise_is_smooth_and_of_the_asked_level():
    clean, y_clean = make_signals(2000, noise=0.0, seed=5, dtype=np.float64)
    noisy, y_noisy = make_signals(2000, noise=0.4, seed=5, dtype=np.float64)
    np.testing.assert_array_equal(y_clean, y_noisy)
    residual = (noisy - clean)[:, 0]
    assert abs(residual.std() - 0.4 * np.sqrt(1.25)) < 0.05 * 0.4  # smooth std 0.4 + white std 0.2
    lag1 = np.corrcoef(residual[:, :-1].ravel(), residual[:, 1:].ravel())[0, 1]
    assert lag1 > 0.6  # correlated noise, not white


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(n=0), ValueError, "n must be an int >= 1"),
    (dict(n=2.5), ValueError, "n must be an int"),
    (dict(n=True), ValueError, "n must be an int"),
    (dict(n=10, length=23), ValueError, "length must be an int >= 24"),
    (dict(n=10, noise=-0.1), ValueError, "noise must be a finite number >= 0"),
    (dict(n=10, noise=float("nan")), ValueError, "noise must be a finite number"),
    (dict(n=10, noise="0.5"), ValueError, "noise must be a finite number"),
    (dict(n=10, seed=1.5), TypeError, "seed must be an int"),
    (dict(n=10, dtype=np.int32), TypeError, "dtype must be a float dtype"),
])
def test_make_signals_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match="make_signals: " + match):
        make_signals(**kwargs)


def test_load_signals_bad_split():
    with pytest.raises(ValueError, match="load_signals: split must be 'train' or 'test'"):
        load_signals("validation")
