"""fastnn.distributed: data-parallel training over MPI, checked under ``mpirun -n 2``."""
import functools
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim

pytest.importorskip("mpi4py")
MPIRUN = shutil.which("mpirun") or shutil.which("mpiexec")
needs_mpirun = pytest.mark.skipif(MPIRUN is None, reason="no mpirun on PATH (install openmpi-bin)")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mpi_script  # noqa: E402


@functools.lru_cache(maxsize=None)
def mpirun_command(n=2):
    """``mpirun -n N`` for this machine: loopback only, allowed as root, one thread per rank."""
    cmd = [MPIRUN, "-n", str(n)]
    version = subprocess.run([MPIRUN, "--version"], capture_output=True, text=True).stdout
    if "Open MPI" in version or "OpenRTE" in version:
        cmd += ["--oversubscribe", "--mca", "btl", "self,tcp", "--mca", "btl_tcp_if_include", "lo",
                "--mca", "oob_tcp_if_include", "lo"]
    return tuple(cmd)


def mpirun(args, timeout=120, n=2):
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return subprocess.run(list(mpirun_command(n)) + args, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def equivalence_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mpi")
    run = mpirun([sys.executable, os.path.join(HERE, "mpi_script.py"), "equivalence", str(out)])
    assert run.returncode == 0, run.stdout + run.stderr
    return dict({name[:-4]: dict(np.load(out / name)) for name in os.listdir(out) if name.endswith(".npz")}, _dir=out)


def _close(got, want):
    assert list(got) == list(want)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=1e-14, err_msg=key)


@needs_mpirun
def test_two_ranks_equal_one_process_with_twice_the_batch(equivalence_run):
    b, steps = mpi_script.LOCAL_BATCH, mpi_script.STEPS
    x, y = mpi_script.make_data(2 * steps * b)
    (x0, y0), (x1, y1) = (x[:steps * b], y[:steps * b]), (x[steps * b:], y[steps * b:])
    model = mpi_script.build_model(seed=10)  # rank 0's weights, which DataParallel broadcast
    batches = [(np.concatenate([x0[s * b:(s + 1) * b], x1[s * b:(s + 1) * b]]),
                np.concatenate([y0[s * b:(s + 1) * b], y1[s * b:(s + 1) * b]])) for s in range(steps)]
    mpi_script.manual_steps(model, batches)
    for name in ("manual", "accumulate"):  # one backward per step, or two accumulated
        _close(equivalence_run[f"{name}_0"], model.state_dict())
        _close(equivalence_run[f"{name}_1"], model.state_dict())
    assert not np.allclose(model.state_dict()["0.weight"], mpi_script.build_model(seed=10).state_dict()["0.weight"])


@needs_mpirun
def test_distributed_fit_equals_fit(equivalence_run):
    model = mpi_script.build_model(seed=20)
    x, y, kwargs = mpi_script.fit_arguments()
    history = fastnn.fit(model, x, y, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-2), **kwargs)
    want = dict(model.state_dict(), **{f"history.{k}": np.array(v) for k, v in history.history.items()
                                      if k != "samples_per_sec"})
    _close(equivalence_run["fit_0"], want)
    _close(equivalence_run["fit_1"], want)


@needs_mpirun
def test_batchnorm_buffers_agree_across_ranks(equivalence_run):
    rank0, rank1 = equivalence_run["batchnorm_0"], equivalence_run["batchnorm_1"]
    for key in rank0:
        np.testing.assert_array_equal(rank0[key], rank1[key], err_msg=key)
    assert int(rank0["1.num_batches_tracked"]) == 3 * 4  # epochs x batches of rank 0's
    assert not np.allclose(rank0["1.running_mean"], 0)


@needs_mpirun
def test_distributed_fit_checkpoints_on_rank_0_and_resumes(equivalence_run):
    if "resumed_0" not in equivalence_run:
        pytest.skip("fastnn.fit has no checkpoint_dir/resume")
    out = equivalence_run["_dir"]
    assert sorted(os.listdir(out / "checkpoints_0")) == ["epoch-0001.ckpt", "epoch-0002.ckpt"]
    assert not (out / "checkpoints_1").exists()
    model = mpi_script.build_model(seed=30)
    x, y, kwargs = mpi_script.fit_arguments()
    kwargs.update(epochs=3, validation_data=None)
    fastnn.fit(model, x, y, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-2), **kwargs)
    _close(equivalence_run["resumed_0"], model.state_dict())
    _close(equivalence_run["resumed_1"], model.state_dict())


@needs_mpirun
def test_failing_rank_ends_the_job(tmp_path):
    start = time.perf_counter()
    run = mpirun([sys.executable, os.path.join(HERE, "mpi_script.py"), "fail", str(tmp_path)], timeout=90)
    assert run.returncode != 0
    assert "rank 1 of 2 failed" in run.stderr and "rank one fails on purpose" in run.stderr, run.stderr
    assert time.perf_counter() - start < 60


@needs_mpirun
def test_cli_train_under_mpirun_then_resume(tmp_path):
    from fastnn import cli
    from test_cli import write_config
    config = write_config(tmp_path, epochs=2)
    train = [sys.executable, "-m", "fastnn", "train", str(config), "--no-progress"]
    first = mpirun(train)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count("epoch 2/2") == 1 and first.stdout.count("saved") == 1, first.stdout
    assert sorted(p.name for p in (tmp_path / "run-checkpoints").iterdir()) == ["epoch-0001.ckpt", "epoch-0002.ckpt"]
    resumed = mpirun(train + ["--epochs", "3", "--resume", "auto"])
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.count("resuming from") == 1 and resumed.stdout.count("epoch 3/3") == 1, resumed.stdout
    single = tmp_path / "single"
    single.mkdir()
    assert cli.main(["train", str(write_config(single, epochs=3)), "--no-progress", "--no-distributed"]) == 0
    want = fastnn.load(single / "run.fnn").state_dict()
    got = fastnn.load(tmp_path / "run.fnn").state_dict()
    assert list(got) == list(want)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-6, err_msg=key)


def test_single_rank_data_parallel_is_plain_training():
    from fastnn import distributed as dist
    assert dist.size() == 1 and dist.rank() == 0
    x, y = mpi_script.make_data(24)
    assert dist.shard(x, y)[0] is not None and len(dist.shard(x)) == 24
    plain, wrapped = mpi_script.build_model(seed=3), dist.DataParallel(mpi_script.build_model(seed=3))
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 24, 8)]
    mpi_script.manual_steps(plain, batches)
    mpi_script.manual_steps(wrapped, batches)
    assert list(wrapped.state_dict()) == list(plain.state_dict())  # no "module." prefix
    for key, value in plain.state_dict().items():
        np.testing.assert_array_equal(wrapped.state_dict()[key], value)


def test_shard_splits_rows_evenly():
    from fastnn.distributed import _bounds
    assert _bounds(10, 3) == [0, 3, 6, 10]
    assert _bounds(2, 2) == [0, 1, 2]
