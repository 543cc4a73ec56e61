"""A first run compiles the first step's kernels in several processes at once
(``fastnn.precompile``, and ``fit`` on an empty kernel cache).

Cases that compile run a fresh interpreter on an empty cache folder of their own,
with small kernels (an Embedding model, MSE and SGD) or none at all.
"""
import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import fastnn
from fastnn import _precompile, nn, optim


def _env(cache, jobs="1"):
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "FASTNN_DISABLE_CACHE")}
    return dict(env, NUMBA_CACHE_DIR=str(cache), PYTHONDONTWRITEBYTECODE="1", FASTNN_COMPILE_JOBS=jobs)


def _run(script, cache, jobs="1", timeout=300):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=_env(cache, jobs),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


# a listener that notes each fastnn kernel compiled in this process
LISTEN = """
    from numba.core import event
    compiled = []
    class Listener(event.Listener):
        def on_start(self, ev):
            func = ev.data["dispatcher"].py_func
            if func.__module__.startswith("fastnn."):
                compiled.append(func.__qualname__)
        def on_end(self, ev):
            pass
    event.register("numba:compile", Listener())
"""

EMBEDDING = """
    import numpy as np
    import fastnn
    from fastnn import nn, optim
    fastnn.manual_seed(0)
    model = nn.Sequential(nn.Embedding(5, 2))
    x = np.arange(64).reshape(64, 1) % 5
    y = np.ones((64, 1, 2), np.float32)
    loss, opt = nn.MSELoss(), optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
"""


def test_discovery_records_a_steps_kernels_and_compiles_none(tmp_path):
    proc = _run(LISTEN + """
    import json
    import numpy as np
    import fastnn
    from fastnn import nn, optim
    from fastnn._precompile import discover
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    y = np.array([0, 1, 2, 0])
    items, complete = discover(model, optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                               nn.CrossEntropyLoss(), x, y, 1)
    found = {"complete": complete, "names": [name for (module, name), sig in items], "compiled": list(compiled)}
    a = np.ones(3, np.float32)
    fastnn.kernels.elementwise.add(a, a, a)  # a kernel has run: discovering here is refused
    try:
        discover(model, None, None, x, None, 0)
    except RuntimeError as err:
        found["refused"] = str(err)
    print(json.dumps(found))
    """, tmp_path)
    found = json.loads(proc.stdout.splitlines()[-1])
    assert found["complete"]
    assert found["compiled"] == []  # discovery compiles nothing
    names = set(found["names"])
    assert {"cross_entropy_forward", "cross_entropy_backward", "sgd_update"} <= names, names
    assert names & {"linear_serial", "gemm", "gemm_serial"}, names  # the Linear products
    assert "no fastnn kernel" in found["refused"]


def test_precompile_leaves_the_first_step_nothing_to_compile(tmp_path):
    proc = _run(EMBEDDING + """
    import json
    before = [p.data.copy() for p in model.parameters()]
    import sys
    import fastnn._precompile
    forked = fastnn._precompile._can_fork()  # a fresh interpreter on Linux: forked children
    report = fastnn.precompile(model, x[:8], y[:8], loss, opt, jobs=2, inference_calls=2)
    unchanged = all(np.array_equal(b, p.data) for b, p in zip(before, model.parameters()))
    untouched = not opt.state and model.training
    """ + LISTEN + """
    history = fastnn.fit(model, x, y, loss, opt, batch_size=8, epochs=1, progress=False, seed=0)
    fastnn.predict(model, x[:8], batch_size=8)
    fastnn.predict(model, x[:8], batch_size=8)
    report.pop("seconds")
    print(json.dumps({"report": report, "unchanged": unchanged, "untouched": untouched,
                      "compiled": compiled, "loss": history["loss"][0],
                      "forked": forked == sys.platform.startswith("linux")}))
    """, tmp_path)
    found = json.loads(proc.stdout.splitlines()[-1])
    report = found["report"]
    assert report["skipped"] is None and report["complete"] and report["jobs"] == 2, report
    assert report["kernels"] >= 4, report  # embedding forward/backward, MSE, SGD
    assert found["unchanged"] and found["untouched"]  # the step ran on copies, elsewhere
    assert found["compiled"] == [], found["compiled"]  # everything came from the cache or this process
    assert np.isfinite(found["loss"]) and found["forked"]


def test_fit_compiles_a_first_run_in_processes_and_says_so(tmp_path):
    pytest.importorskip("tqdm")
    script = """
    import functools
    import tqdm.auto
    tqdm.auto.tqdm = functools.partial(tqdm.auto.tqdm, mininterval=0)  # draw every step
    """ + EMBEDDING + """
    x, y = np.concatenate([x] * 12), np.concatenate([y] * 12)
    fastnn.fit(model, x, y, loss, opt, batch_size=8, seed=0)
    """
    cold = _run(script, tmp_path, jobs="2").stderr
    assert "compiling kernels in 2 processes (first run only)" in cold, cold[-2000:]
    assert "compiling kernels (first run only)" not in cold  # the epoch found them all compiled
    assert "epoch 1/1" in cold
    warm = _run(script, tmp_path, jobs="2").stderr
    assert "compiling" not in warm and "epoch 1/1" in warm


MAIN_MODEL = """
    import json
    import numpy as np
    import fastnn
    from fastnn import nn

    class Net(nn.Module):  # in __main__: it travels to the discovery process by value
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(5, 2)

        def forward(self, x):
            return self.emb(x)
    {extra}
    model = Net()
    x = np.arange(8).reshape(8, 1) % 5
    import fastnn._precompile
    fastnn._precompile.FORK = {fork}
    report = fastnn.precompile(model, x, jobs=2, inference_calls=0)
    out = model(x)  # the first step: compiled by then, or compiling as before
    print(json.dumps({{"skipped": report["skipped"], "kernels": report["kernels"], "shape": list(out.shape)}}))
"""


@pytest.mark.parametrize("fork", [False, True])
def test_a_model_class_from_main_is_discovered(tmp_path, fork):
    found = json.loads(_run(MAIN_MODEL.format(extra="", fork=fork), tmp_path).stdout.splitlines()[-1])
    assert found["skipped"] is None and found["kernels"] >= 1, found
    assert found["shape"] == [8, 1, 2]


def test_a_model_the_child_cannot_rebuild_falls_back(tmp_path):
    extra = """
    def broken(self, state):
        raise RuntimeError("not here")
    Net.__setstate__ = broken  # unpickling fails in the discovery process
    """
    found = json.loads(_run(MAIN_MODEL.format(extra=extra, fork=False), tmp_path).stdout.splitlines()[-1])
    assert "found nothing" in found["skipped"] and found["kernels"] == 0, found
    assert found["shape"] == [8, 1, 2]


def test_precompile_skips_without_workers_cache_or_pickling(monkeypatch):
    monkeypatch.setattr(_precompile, "FORK", False)  # started children: the payload is pickled
    model = nn.Linear(3, 2)
    x = np.zeros((2, 3), np.float32)
    assert "jobs < 2" in fastnn.precompile(model, x, jobs=1)["skipped"]
    model.lock = threading.Lock()  # does not pickle
    assert "does not pickle" in fastnn.precompile(model, x, jobs=2)["skipped"]
    del model.lock
    with monkeypatch.context() as patch:
        patch.setattr(_precompile, "MAX_BYTES", 16)  # the Linear holds 32 bytes
        assert "too much to copy" in fastnn.precompile(model, x, jobs=2)["skipped"]

    def no_folder(**kwargs):
        raise OSError("read-only")

    with monkeypatch.context() as patch:
        patch.setattr(_precompile.tempfile, "mkdtemp", no_folder)
        assert "no temporary folder" in fastnn.precompile(model, x, jobs=2)["skipped"]
    monkeypatch.setattr(fastnn.kernels._jit, "CACHE", False)
    assert "cache is off" in fastnn.precompile(model, x, jobs=2)["skipped"]


def test_fit_precompiles_once_on_an_empty_cache(monkeypatch):
    calls = []
    monkeypatch.setattr(_precompile, "cache_is_empty", lambda: True)
    monkeypatch.setattr(_precompile, "precompile", lambda *a, **k: calls.append((a, k)))
    monkeypatch.setitem(_precompile._first_run, "tried", False)
    model = nn.Linear(3, 2)
    x, y = np.zeros((10, 3), np.float32), np.zeros((10, 2), np.float32)

    def fit(**kwargs):
        opt = optim.SGD(model.parameters(), lr=0.1)
        fastnn.fit(model, x, y, nn.MSELoss(), opt, batch_size=4, progress=False, seed=0, **kwargs)

    fit(compile_jobs=1)  # one process: nothing to do
    assert calls == []
    fit(compile_jobs=2, validation_data=(x, y))
    (args, kwargs), = calls
    assert args[1].shape == (4, 3) and args[2].shape == (4, 2) and args[5] == 2
    assert kwargs["inference_calls"] == 2  # validation: evaluate runs the plan from the second epoch
    (last_x, last_y), = kwargs["more"]  # 10 rows in batches of 4: the last batch has 2
    assert last_x.shape == (2, 3) and last_y.shape == (2, 2)
    fit(compile_jobs=2)  # once per process
    assert len(calls) == 1
    monkeypatch.setitem(_precompile._first_run, "tried", False)
    fit(compile_jobs=2)
    assert calls[-1][1]["inference_calls"] == 1

    # a DataLoader: its dataset's first samples, collated, without touching its iterator
    loader = fastnn.data.DataLoader(fastnn.data.TensorDataset(x, y), batch_size=4, shuffle=True)
    monkeypatch.setitem(_precompile._first_run, "tried", False)
    fastnn.fit(model, loader, None, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.1), progress=False,
               compile_jobs=2)
    args, kwargs = calls[-1]
    assert len(calls) == 3 and args[1].shape == (4, 3) and args[2].shape == (4, 2)
    np.testing.assert_array_equal(np.asarray(args[1].data if hasattr(args[1], "data") else args[1]), x[:4])

    class Stream(fastnn.data.IterableDataset):  # no first batch to take apart: nothing
        def __iter__(self):
            return iter(zip(x, y))

    monkeypatch.setitem(_precompile._first_run, "tried", False)
    fastnn.fit(model, fastnn.data.DataLoader(Stream(), batch_size=4), None, nn.MSELoss(),
               optim.SGD(model.parameters(), lr=0.1), progress=False, compile_jobs=2)
    assert len(calls) == 3


def test_precompile_rejects_bad_arguments():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(TypeError, match="precompile: expected a fastnn Module"):
        fastnn.precompile(lambda a: a, x)
    for jobs in (0, True, 2.0):
        with pytest.raises(ValueError, match="precompile: jobs"):
            fastnn.precompile(nn.Linear(3, 2), x, jobs=jobs)
    with pytest.raises(ValueError, match="precompile: inference_calls"):
        fastnn.precompile(nn.Linear(3, 2), x, inference_calls=3)


@pytest.mark.parametrize("jobs", [0, -1, True, 1.5, "2"])
def test_fit_rejects_a_bad_compile_jobs(jobs):
    model = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="fit: compile_jobs"):
        fastnn.fit(model, np.zeros((4, 3), np.float32), np.zeros((4, 2), np.float32), nn.MSELoss(),
                   optim.SGD(model.parameters(), lr=0.1), compile_jobs=jobs, progress=False)


def test_compile_jobs_from_the_environment(monkeypatch):
    monkeypatch.setenv("FASTNN_COMPILE_JOBS", "3")
    assert _precompile.default_jobs() == 3
    monkeypatch.setenv("FASTNN_COMPILE_JOBS", "many")
    with pytest.raises(ValueError, match="FASTNN_COMPILE_JOBS"):
        _precompile.default_jobs()


def test_schedule_puts_callees_first_and_callers_wait_for_them():
    matmul = "fastnn.kernels.matmul"
    items = [((matmul, "linear_serial"), "a"), (("fastnn.kernels.optim", "sgd_update"), "b"),
             ((matmul, "gemm_serial"), "c")]
    ordered, waits = _precompile.schedule(items)
    names = [name for (module, name), sig in ordered]
    assert names.index("gemm_serial") < names.index("linear_serial")  # linear_serial calls gemm_serial
    assert waits[names.index("linear_serial")] == [names.index("gemm_serial")]
    assert waits[names.index("gemm_serial")] == [] and waits[names.index("sgd_update")] == []


def test_an_item_waits_for_what_it_calls_then_gives_up(tmp_path, monkeypatch):
    missing = (("fastnn.kernels.no_such_module", "k"), None)  # fails to compile: still marked done
    items, waits = [missing, missing], [[1], []]
    open(tmp_path / "claim-1", "wb").close()  # item 1: another process is on it
    monkeypatch.setattr(_precompile, "WAIT_LIMIT", 30.0)
    threading.Timer(0.3, lambda: open(tmp_path / "done-1", "wb").close()).start()
    start = time.monotonic()
    assert _precompile.compile_items(str(tmp_path), items, waits) == 0
    assert 0.3 <= time.monotonic() - start < 10 and (tmp_path / "done-0").exists()

    other = tmp_path / "other"
    other.mkdir()
    open(other / "claim-1", "wb").close()  # ... and never finishes it
    monkeypatch.setattr(_precompile, "WAIT_LIMIT", 0.2)
    start = time.monotonic()
    _precompile.compile_items(str(other), items, waits)
    assert 0.2 <= time.monotonic() - start < 10 and (other / "done-0").exists()


def test_predict_compiles_a_first_run_in_processes(tmp_path):
    proc = _run(EMBEDDING + """
    import json
    model.train()
    """ + LISTEN + """
    from fastnn import _precompile
    reports = []
    original = _precompile.precompile
    _precompile.precompile = lambda *a, **k: (reports.append(original(*a, **k)), compiled.clear())
    out = fastnn.predict(model, x, batch_size=16)
    again = fastnn.predict(model, x, batch_size=16)  # once per process
    report = reports[0]
    report.pop("seconds")
    print(json.dumps({"reports": len(reports), "report": report, "compiled": compiled, "training": model.training,
                      "shape": list(out.shape)}))
    """, tmp_path, jobs="2")
    found = json.loads(proc.stdout.splitlines()[-1])
    report = found["report"]
    assert found["reports"] == 1 and report["skipped"] is None and report["complete"], report
    assert found["compiled"] == [], found["compiled"]  # after it, nothing: the plan's kernels are compiled
    assert found["training"] and found["shape"] == [64, 1, 2]


def test_the_predict_command_compiles_a_first_run_in_processes(tmp_path):
    pytest.importorskip("tqdm")
    fastnn.manual_seed(0)
    model = nn.Sequential(nn.Embedding(5, 2))
    fastnn.save(model, str(tmp_path / "model.fnn"))
    x = np.arange(40).reshape(40, 1) % 5
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run([sys.executable, "-m", "fastnn", "predict", str(tmp_path / "model.fnn"),
                           str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--batch-size", "16"],
                          env=_env(tmp_path / "cache", jobs="2"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "compiling kernels in 2 processes (first run only)" in proc.stderr, proc.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), fastnn.predict(model, x))


def test_info_shows_the_first_run_compile(tmp_path):
    def info(*args, **env):
        done = subprocess.run([sys.executable, "-m", "fastnn", "info", *args], capture_output=True, text=True,
                              timeout=120, env=dict(_env(tmp_path / "empty"), **env))
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    found = json.loads(info("--json", FASTNN_COMPILE_JOBS="3"))
    assert found["compile_jobs"] == 3 and found["cache_empty"] is True
    assert "compile jobs    3 on a first run (FASTNN_COMPILE_JOBS; the cache is empty" in info(FASTNN_COMPILE_JOBS="3")
    assert "compile jobs    FASTNN_COMPILE_JOBS must be a positive int" in info(FASTNN_COMPILE_JOBS="x")


def test_discovery_records_helpers_python_calls_and_a_last_batch(tmp_path):
    proc = _run("""
    import json
    import numpy as np
    from fastnn import nn, optim
    from fastnn._precompile import discover
    model = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    x = np.random.default_rng(0).standard_normal((64, 8, 16, 16)).astype(np.float32)
    found = {}
    for more in ([], [(x[:1], np.zeros(1))]):
        items, complete = discover(model, optim.SGD(model.parameters(), lr=0.1), lambda out, y: out.sum(), x,
                                   np.zeros(64), 0, more=more)
        found[len(more)] = [name for (module, name), sig in items]
    print(json.dumps(found))
    """, tmp_path)
    found = json.loads(proc.stdout.splitlines()[-1])
    assert "dw_budget" in found["0"]  # an inlined helper the conv's Python calls: compiled for it
    assert set(found["0"]) < set(found["1"])  # one image: the serial paths too (64: the parallel ones)
