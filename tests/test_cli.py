"""The command line end to end on small files: train, predict, warmup, info, errors."""
import json
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import fastnn
from fastnn import cli, datasets, nn

CONFIG = """
seed = 0
epochs = {epochs}
batch_size = 32
validation = 0.2
progress = false

[data]
{data}

[[layers]]
{first}

[[layers]]
type = "ReLU"

[[layers]]
type = "Residual"
block = [{{type = "Linear", in_features = 16, out_features = 16}}, {{type = "Tanh"}}]

[[layers]]
type = "Linear"
in_features = 16
out_features = 10

[loss]
type = "CrossEntropyLoss"

[optimizer]
type = "SGD"
lr = 0.1
momentum = 0.9

[scheduler]
type = "StepLR"
step_size = 1
gamma = 0.9
"""
LINEAR = 'type = "Linear"\nin_features = 64\nout_features = 16'


def write_config(folder, name="run.toml", epochs=2, data='path = "digits.npz"', first=LINEAR, extra=""):
    x, y = datasets.load_digits("train", flatten=True)
    np.savez(folder / "digits.npz", x=x[:160], y=y[:160])
    path = folder / name
    path.write_text(extra + CONFIG.format(epochs=epochs, data=data, first=first))
    return path


def run(argv, capsys):
    # (in this process: ``--threads`` would set the count for every test after this one)
    with fastnn.set_num_threads(fastnn.get_num_threads()):
        code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_writes_checkpoints_and_model_and_resume_auto_matches(tmp_path, capsys):
    config = write_config(tmp_path, epochs=3)
    code, out, err = run(["train", config], capsys)
    assert code == 0, err
    assert "epoch 3/3" in out and "val_accuracy" in out
    assert sorted(p.name for p in (tmp_path / "run-checkpoints").iterdir()) == [
        "epoch-0001.ckpt", "epoch-0002.ckpt", "epoch-0003.ckpt"]
    full = fastnn.load(tmp_path / "run.fnn")

    other = tmp_path / "again"
    other.mkdir()
    config2 = write_config(other, epochs=3)
    assert run(["train", config2, "--epochs", "1"], capsys)[0] == 0  # a scheduled job: one epoch...
    code, out, _ = run(["train", config2, "--resume", "auto"], capsys)  # ...then the rest, later
    assert code == 0 and "resuming from" in out and "epoch 1/3" not in out
    resumed = fastnn.load(other / "run.fnn")
    for key, value in full.state_dict().items():
        np.testing.assert_array_equal(value, resumed.state_dict()[key], err_msg=key)


def test_train_on_mnist_idx_files(tmp_path, capsys):
    rng = np.random.default_rng(0)
    folder = tmp_path / "mnist"
    folder.mkdir()
    datasets.write_idx(folder / "train-images-idx3-ubyte", rng.integers(0, 256, (40, 4, 4), dtype=np.uint8))
    datasets.write_idx(folder / "train-labels-idx1-ubyte", rng.integers(0, 10, 40, dtype=np.uint8))
    first = 'type = "Flatten"\n\n[[layers]]\ntype = "Linear"\nin_features = 16\nout_features = 16'
    config = write_config(tmp_path, data='path = "mnist"', first=first, epochs=1)
    code, out, err = run(["train", config, "--threads", "1"], capsys)
    assert code == 0, err
    assert "32 samples (+8 validation)" in out


def test_predict_npy_and_npz_in_chunks_matches_fastnn_predict(tmp_path, capsys):
    fastnn.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    fastnn.save(model, tmp_path / "m.fnn")
    x, _ = datasets.load_digits("test", flatten=True)
    np.save(tmp_path / "x.npy", x)
    np.savez_compressed(tmp_path / "xc.npz", other=x[:3], x=x)
    np.savez(tmp_path / "xs.npz", features=x.astype(np.float64))
    expected = fastnn.predict(model, x)
    for source, args in (("x.npy", []), ("xc.npz", []), ("xs.npz", ["--key", "features"])):
        for target in ("out.npy", "out.npz"):
            code, out, err = run(["predict", tmp_path / "m.fnn", tmp_path / source, tmp_path / target,
                                  "--batch-size", "7", "--no-progress", *args], capsys)
            assert code == 0, err
            got = np.load(tmp_path / target)
            got = got["y"] if target.endswith(".npz") else got
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert "360 rows" in out


def test_predict_memory_stays_bounded_on_inputs_larger_than_a_chunk(tmp_path, capsys):
    fastnn.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32))
    fastnn.save(model, tmp_path / "m.fnn")
    x = np.random.default_rng(0).standard_normal((40_000, 64)).astype(np.float32)  # 10 MB in, 5 MB out
    np.save(tmp_path / "big.npy", x)
    np.savez_compressed(tmp_path / "big.npz", x=x)
    del x
    for source in ("big.npy", "big.npz"):
        run(["predict", tmp_path / "m.fnn", tmp_path / source, tmp_path / "warm.npy", "--no-progress"], capsys)
        tracemalloc.start()
        try:
            code, _, err = run(["predict", tmp_path / "m.fnn", tmp_path / source, tmp_path / "out.npy",
                                "--batch-size", "1000", "--no-progress"], capsys)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert code == 0, err
        assert peak < 3_000_000, f"{source}: peak {peak} bytes for a 10 MB input"  # measured 0.4 MB (.npy), 1.5 MB (.npz)
        assert np.load(tmp_path / "out.npy", mmap_mode="r").shape == (40_000, 32)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.replace("seed = 0", "sede = 0"), "unknown key 'sede'"),
    (lambda c: c.replace("in_features = 64", "in_features = 60"), "does not fit the training inputs"),
    (lambda c: c.replace('type = "SGD"', 'type = "Adamax"'), "unknown type 'Adamax'"),
    (lambda c: c.replace("out_features = 10", "out_features = 10\nwidth = 3"), "unexpected keyword argument 'width'"),
    (lambda c: c.replace('path = "digits.npz"', 'path = "nothing.npz"'), "no such data file"),
    (lambda c: c.replace("out_features = 10", "out_features = 4"), "outputs 4 classes"),
    (lambda c: c.replace("epochs = 2", "epochs = [2]"), "epochs must be int"),
])
def test_train_errors_are_one_line_without_traceback(tmp_path, capsys, edit, message):
    config = write_config(tmp_path)
    config.write_text(edit(config.read_text()))
    code, out, err = run(["train", config], capsys)
    assert code == 2
    assert err.startswith("fastnn train: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_predict_errors_and_debug(tmp_path, capsys):
    fastnn.save(nn.Sequential(nn.Linear(64, 10)), tmp_path / "m.fnn")
    np.save(tmp_path / "x32.npy", np.zeros((5, 32), np.float32))
    cases = [
        (["predict", tmp_path / "nope.fnn", tmp_path / "x32.npy", tmp_path / "o.npy"], "no such file"),
        (["predict", tmp_path / "m.fnn", tmp_path / "x32.npy", tmp_path / "o.npy"], "does not accept"),
        (["predict", tmp_path / "m.fnn", tmp_path / "x32.npy", tmp_path / "o.csv"], "must be an .npy or .npz"),
        (["predict", tmp_path / "m.fnn", tmp_path / "none.npy", tmp_path / "o.npy"], "no such input file"),
        (["train", tmp_path / "missing.toml"], "no such config file"),
    ]
    for argv, message in cases:
        code, _, err = run(argv, capsys)
        assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "o.npy").exists()
    with pytest.raises(ValueError, match="does not accept"):
        cli.main(["--debug", "predict", str(tmp_path / "m.fnn"), str(tmp_path / "x32.npy"), str(tmp_path / "o.npy")])
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["predict", "only-one-argument"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_warmup_compiles_every_parallel_kernel():
    # in a fresh process: kernels other tests ran here must not count as reached; two
    # worker processes compile, then the parent loads and counts
    done = subprocess.run([sys.executable, "-m", "fastnn", "warmup", "--jobs", "2"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert "kernels ready" in done.stdout and "not reached" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert "compiled in 2 processes" in done.stdout, done.stdout


def test_warmup_runs_every_case_once_with_same_layers_apart():
    from fastnn._warmup import _cases, _spread

    labels = [label for label, _ in _cases()]
    order = _spread(labels)
    assert sorted(order) == list(range(len(labels)))
    first = [labels[i].split("(")[0] for i in order[:3]]
    assert len(set(first)) == 3, first  # three different layers first


def test_warmup_jobs_must_be_positive(capsys):
    assert cli.main(["warmup", "--jobs", "0"]) == 2
    assert "--jobs must be at least 1, got 0" in capsys.readouterr().err


def test_info_and_module_entry_point():
    done = subprocess.run([sys.executable, "-m", "fastnn", "info", "--json"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["fastnn"] == fastnn.__version__
    assert info["threading_layer"] in ("workqueue", "tbb", "omp") or info["threading_layer_source"] != "fastnn default"
    assert info["threads"] >= 1 and info["cache_dir"] and isinstance(info["cache_writable"], bool)
    assert "numba" in info and "cpu" in info
