"""Checkpoints: exact resume, round trips, atomicity under SIGKILL, folder helpers."""
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastnn
from fastnn import checkpoint, datasets, nn, optim


def _data(n=192):
    x, y = datasets.load_digits("train", flatten=True)
    return x[:n], y[:n]


def _setup(seed=0):
    fastnn.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 10))
    opt = optim.Adam(model.parameters(), lr=3e-3)
    sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    return model, opt, sched


def _fit(model, opt, sched, **kwargs):
    x, y = _data()
    return fastnn.fit(model, x, y, nn.CrossEntropyLoss(), opt, epochs=5, batch_size=32, seed=3, progress=False,
                      scheduler=sched, **kwargs)


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)


def test_resume_from_epoch_k_equals_uninterrupted_run(tmp_path):
    model, opt, sched = _setup()
    full = _fit(model, opt, sched, checkpoint_dir=tmp_path)
    assert [e for e, _ in checkpoint.list_checkpoints(tmp_path)] == [1, 2, 3, 4, 5]
    for k in (1, 3):
        resumed_model, resumed_opt, resumed_sched = _setup(seed=99)  # other init: all must come from the file
        fastnn.manual_seed(1234)  # and another Dropout stream
        history = _fit(resumed_model, resumed_opt, resumed_sched, resume=checkpoint.checkpoint_path(tmp_path, k))
        _assert_same_weights(model, resumed_model)
        assert history.epoch == full.epoch
        assert history["loss"] == full["loss"]
        assert resumed_sched.get_last_lr() == sched.get_last_lr()
        assert resumed_opt.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]


def test_resume_from_a_folder_takes_the_newest_and_keep_prunes(tmp_path):
    model, opt, sched = _setup()
    x, y = _data(64)
    fastnn.fit(model, x, y, nn.CrossEntropyLoss(), opt, epochs=3, seed=0, progress=False, scheduler=sched,
               checkpoint_dir=tmp_path / "run", keep_checkpoints=2)
    assert [e for e, _ in checkpoint.list_checkpoints(tmp_path / "run")] == [2, 3]
    assert checkpoint.latest_checkpoint(tmp_path / "run").endswith("epoch-0003.ckpt")
    again, opt2, sched2 = _setup()
    history = fastnn.fit(again, x, y, nn.CrossEntropyLoss(), opt2, epochs=3, seed=0, progress=False,
                         scheduler=sched2, resume=tmp_path / "run")
    assert len(history.epoch) == 3  # nothing left to do: the history comes from the file
    _assert_same_weights(model, again)


def test_checkpoint_round_trip_rebuilds_model_and_state(tmp_path):
    model, opt, sched = _setup()
    _fit(model, opt, sched)
    path = tmp_path / "c.ckpt"
    fastnn.save_checkpoint(path, model, opt, sched, epoch=5, extra={"note": "hi", "arr": np.arange(3)})
    ckpt = fastnn.load_checkpoint(path)
    assert ckpt.epoch == 5 and ckpt.extra["note"] == "hi"
    np.testing.assert_array_equal(ckpt.extra["arr"], np.arange(3))
    _assert_same_weights(model, ckpt.model)
    opt2 = optim.Adam(ckpt.model.parameters(), lr=1.0)
    sched2 = optim.lr_scheduler.StepLR(opt2, step_size=7)
    fastnn.load_checkpoint(path, ckpt.model, opt2, sched2)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert opt2.param_groups[0]["betas"] == (0.9, 0.999)
    for a, b in zip(opt.state.values(), opt2.state.values()):
        np.testing.assert_array_equal(a["exp_avg_sq"], b["exp_avg_sq"])
    assert sched2.state_dict() == sched.state_dict()
    assert checkpoint.load_model(path).state_dict().keys() == model.state_dict().keys()


def test_checkpoint_errors_name_the_file(tmp_path):
    model, opt, _ = _setup()
    path = tmp_path / "c.ckpt"
    fastnn.save_checkpoint(path, model, opt)
    with pytest.raises(ValueError, match="c.ckpt.*does not fit"):
        fastnn.load_checkpoint(path, nn.Sequential(nn.Linear(64, 10)))
    with pytest.raises(ValueError, match="SGD"):
        fastnn.load_checkpoint(path, model, optim.SGD(model.parameters(), lr=0.1))
    fastnn.save(model, tmp_path / "m.fnn")
    with pytest.raises(ValueError, match="not a fastnn checkpoint"):
        fastnn.load_checkpoint(tmp_path / "m.fnn")
    (tmp_path / "cut.ckpt").write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match="cut.ckpt"):
        fastnn.load_checkpoint(tmp_path / "cut.ckpt")
    with pytest.raises(FileNotFoundError):
        fastnn.load_checkpoint(tmp_path / "missing.ckpt")
    with pytest.raises(FileNotFoundError, match="no epoch-NNNN"):
        checkpoint.latest_checkpoint(tmp_path)


def test_deterministic_fit_needs_a_seed():
    model, opt, _ = _setup()
    x, y = _data(32)
    with pytest.raises(ValueError, match="deterministic=True needs a seed"):
        fastnn.fit(model, x, y, nn.CrossEntropyLoss(), opt, deterministic=True, progress=False)
    fastnn.use_deterministic_algorithms(True)
    try:
        with pytest.raises(ValueError, match="needs a seed"):
            fastnn.fit(model, x, y, nn.CrossEntropyLoss(), opt, progress=False)
    finally:
        fastnn.use_deterministic_algorithms(False)
    fastnn.fit(model, x, y, nn.CrossEntropyLoss(), opt, deterministic=True, seed=0, progress=False)
    assert not fastnn.are_deterministic_algorithms_enabled()


_SLOW_WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    import fastnn
    from fastnn import nn, optim, serialization
    path = sys.argv[1]
    fastnn.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    fastnn.save_checkpoint(path, model, opt, epoch=1)
    write_array = np.lib.format.write_array
    def slow_write_array(f, array, **kwargs):  # half an array, then hang: killed mid-write
        raw = np.ascontiguousarray(array).tobytes()
        f.write(raw[: len(raw) // 2])
        print("writing", flush=True)
        time.sleep(60)
    np.lib.format.write_array = slow_write_array
    model[0].weight.data[...] = 0
    fastnn.save_checkpoint(path, model, opt, epoch=2)
""")


def test_kill_during_checkpoint_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "epoch.ckpt"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "epoch.ckpt"]
    assert all(name.startswith(".epoch.ckpt.") and name.endswith(".tmp") for name in leftovers)
    ckpt = fastnn.load_checkpoint(path)  # the complete first file, untouched
    assert ckpt.epoch == 1
    assert np.any(ckpt.model[0].weight.data != 0)
