"""Threads and processes: 4 Python threads at once, fork and spawn pools, thread knob,
determinism across 1 and 2 threads."""
import multiprocessing
import subprocess
import sys
import textwrap
import threading

import numba
import numpy as np
import pytest

import fastnn
from fastnn import datasets, nn, optim


def _model(seed):
    fastnn.manual_seed(seed)  # initialisation; Dropout gets its own generator: threads share no random state
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Dropout(0.2, generator=seed), nn.Linear(256, 10))


def job(seed, model=None):
    """Train a few steps and score: exercises forward, backward, losses and the optimizer."""
    x, y = datasets.load_digits("train", flatten=True)
    model = _model(seed) if model is None else model
    fastnn.fit(model, x[:256], y[:256], nn.CrossEntropyLoss(), optim.Adam(model.parameters()), epochs=1,
               batch_size=128, seed=seed, progress=False)
    return fastnn.predict(model, x[:300], batch_size=300)


def _threads_job(seed):
    with fastnn.set_num_threads(1):
        return job(seed)


def test_four_python_threads_at_once_match_serial_results():
    serial = [job(seed) for seed in range(4)]
    models = [[_model(seed) for _ in range(3)] for seed in range(4)]  # built here: manual_seed is global
    results, errors = [None] * 4, []
    barrier = threading.Barrier(4)

    def work(i):
        try:
            barrier.wait()
            for model in models[i]:
                results[i] = job(i, model)
        except BaseException as err:  # reported below
            errors.append(err)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors
    for got, want in zip(results, serial):
        np.testing.assert_array_equal(got, want)


def test_set_num_threads_is_process_wide_and_a_context_manager():
    limit = numba.config.NUMBA_NUM_THREADS
    before = fastnn.get_num_threads()
    seen = []
    with fastnn.set_num_threads(1):
        assert fastnn.get_num_threads() == 1
        thread = threading.Thread(target=lambda: (job(0), seen.append(numba.get_num_threads())))
        thread.start()
        thread.join()
    assert seen == [1]  # a fresh Python thread ran its kernels with the process-wide setting
    assert fastnn.get_num_threads() == before
    with pytest.raises(ValueError, match="NUMBA_NUM_THREADS"):
        fastnn.set_num_threads(limit + 1)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_process_pools_match_serial_results(method):
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} on this platform")
    serial = [job(seed) for seed in range(4)]  # the parent has run kernels before forking
    with multiprocessing.get_context(method).Pool(2) as pool:
        results = pool.map(_threads_job, range(4))
    for got, want in zip(results, serial):
        np.testing.assert_array_equal(got, want)


def _short_training(threads):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((512, 96)).astype(np.float32)
    y = rng.integers(0, 10, 512)
    fastnn.manual_seed(0)
    model = nn.Sequential(nn.Linear(96, 512), nn.ReLU(), nn.Dropout(0.1), nn.Linear(512, 256), nn.Tanh(),
                          nn.Linear(256, 10))
    with fastnn.set_num_threads(threads):
        fastnn.fit(model, x, y, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-3), epochs=2,
                   batch_size=128, seed=0, progress=False, deterministic=True)
    return model.state_dict()


def _short_cnn_training(threads):
    x, y = datasets.load_digits("train")
    fastnn.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(128, 10))
    with fastnn.set_num_threads(threads):
        fastnn.fit(model, x[:256], y[:256], nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.05,
                   momentum=0.9), epochs=1, batch_size=128, seed=0, progress=False, deterministic=True)
    return model.state_dict()


def _short_lstm_training(threads):
    x, y = datasets.load_digits("train")
    fastnn.manual_seed(0)
    model = nn.Sequential(nn.LSTM(8, 32, batch_first=True), nn.LastStep(batch_first=True), nn.Linear(32, 10))
    with fastnn.set_num_threads(threads):
        fastnn.fit(model, x[:256].reshape(256, 8, 8), y[:256], nn.CrossEntropyLoss(),
                   optim.Adam(model.parameters(), lr=3e-3), epochs=1, batch_size=128, seed=0, progress=False,
                   deterministic=True)
    return model.state_dict()


@pytest.mark.parametrize("train", [_short_training, _short_cnn_training, _short_lstm_training],
                         ids=["mlp", "cnn", "lstm"])
def test_deterministic_training_is_bitwise_equal_at_1_and_2_threads(train):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs NUMBA_NUM_THREADS >= 2")
    one, two = train(1), train(2)
    for key in one:
        np.testing.assert_array_equal(one[key], two[key], err_msg=key)


def test_forked_child_of_an_openmp_parent_gets_a_clear_error():
    code = textwrap.dedent("""
        import os, numpy as np
        import fastnn
        from fastnn.kernels.elementwise import add
        a = np.ones(100000, np.float32)
        out = np.empty_like(a)
        add(out, a, a)
        pid = os.fork()
        if pid == 0:
            try:
                add(out, a, a)
                os._exit(3)
            except RuntimeError as err:
                os._exit(0 if "GNU OpenMP" in str(err) else 4)
        print(os.waitpid(pid, 0)[1] >> 8)
    """)
    import os
    env = dict(os.environ, NUMBA_THREADING_LAYER="omp")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    if done.returncode != 0 and "No threading layer could be loaded" in done.stderr:
        pytest.skip("no OpenMP threading layer here")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"


_FALLBACK_SCRIPT = textwrap.dedent("""
    import multiprocessing, threading
    import numba, numpy as np
    import fastnn
    from fastnn import nn

    def build(seed):  # in the main thread: manual_seed is process-wide
        fastnn.manual_seed(seed)
        return nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 10))

    def score(seed, model=None):
        model = build(seed) if model is None else model
        x = np.random.default_rng(seed).standard_normal((600, 64)).astype(np.float32)
        return fastnn.predict(model, x, batch_size=600)

    if __name__ == "__main__":
        serial = [score(s) for s in range(4)]  # runs parallel kernels before the fork
        assert numba.threading_layer() == "workqueue", numba.threading_layer()
        models = [build(s) for s in range(4)]
        results = [None] * 4
        workers = [threading.Thread(target=lambda i=i: results.__setitem__(i, score(i, models[i])))
                   for i in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        with multiprocessing.get_context("fork").Pool(2) as pool:
            forked = pool.map(score, range(4))
        for a, b, c in zip(serial, results, forked):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(a, c)
        print("fallback ok")
""")


def test_workqueue_fallback_handles_python_threads_and_fork(tmp_path):
    """Without TBB, fastnn falls back to the guarded workqueue layer: still thread- and fork-safe."""
    script = tmp_path / "fallback.py"
    script.write_text(_FALLBACK_SCRIPT)
    env = dict(__import__("os").environ, NUMBA_THREADING_LAYER="workqueue")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "fallback ok" in done.stdout


def test_default_layer_is_tbb_when_the_tbb_package_is_installed():
    from importlib import metadata

    try:
        metadata.version("tbb")
    except metadata.PackageNotFoundError:
        pytest.skip("the tbb package is not installed")
    code = "import fastnn, numba, numpy as np; fastnn.nn.Linear(512, 512)(np.ones((512, 512))); print(numba.threading_layer())"
    env = {k: v for k, v in __import__("os").environ.items() if k != "NUMBA_THREADING_LAYER"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "tbb"
