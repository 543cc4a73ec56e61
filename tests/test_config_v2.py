"""``fastnn train`` config files with the new optimizers, schedulers and parameter groups,
and the training-curve picture written after every epoch."""
import numpy as np
import pytest

from fastnn import cli, config_file as cf, datasets, load_checkpoint, optim

BASE = """
seed = 0
epochs = {epochs}
batch_size = 32
validation = 0.2
progress = false
{top}
[data]
path = "digits.npz"

[[layers]]
type = "Linear"
in_features = 64
out_features = 16

[[layers]]
type = "ReLU"

[[layers]]
type = "Linear"
in_features = 16
out_features = 10

[loss]
type = "CrossEntropyLoss"

{optimizer}

{scheduler}
"""
GROUPS = """[optimizer]
type = "Adam"
lr = 0.01
amsgrad = true

[[optimizer.param_groups]]
layers = [0]
lr = 0.002
betas = [0.8, 0.99]
"""


def write(folder, optimizer=GROUPS, scheduler="", epochs=2, top=""):
    x, y = datasets.load_digits("train", flatten=True)
    np.savez(folder / "digits.npz", x=x[:120], y=y[:120])
    path = folder / "run.toml"
    path.write_text(BASE.format(epochs=epochs, top=top, optimizer=optimizer, scheduler=scheduler))
    return path


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def build(path):
    cfg = cf.read_config(path)
    model = cf.build_sequential(cfg.layers)
    opt = cf.build_optimizer(cfg.optimizer, model)
    sched = None if cfg.scheduler is None else cf.build_scheduler(cfg.scheduler, opt, cfg.epochs)
    return cfg, model, opt, sched


def test_parameter_groups_from_layers_and_names(tmp_path):
    _, model, opt, _ = build(write(tmp_path))
    assert isinstance(opt, optim.Adam) and len(opt.param_groups) == 2
    first, rest = opt.param_groups
    assert [id(p) for p in first["params"]] == [id(model[0].weight), id(model[0].bias)]
    assert first["lr"] == 0.002 and first["betas"] == (0.8, 0.99) and first["amsgrad"] is True
    assert [id(p) for p in rest["params"]] == [id(model[2].weight), id(model[2].bias)]
    assert rest["lr"] == 0.01 and rest["betas"] == (0.9, 0.999)
    by_name = GROUPS.replace("layers = [0]", 'params = ["2.weight"]')
    _, model, opt, _ = build(write(tmp_path, optimizer=by_name))
    assert [id(p) for p in opt.param_groups[0]["params"]] == [id(model[2].weight)]
    assert len(opt.param_groups[1]["params"]) == 3


@pytest.mark.parametrize("table,match", [
    ('layers = [7]', "selects no parameters"),
    ('layers = ["a"]', "layers must be a list"),
    ('lr = 0.1', "select parameters"),
    ('layers = [0]\nlr = -1.0', "invalid learning rate"),
])
def test_bad_parameter_groups(tmp_path, table, match):
    optimizer = f'[optimizer]\ntype = "SGD"\nlr = 0.1\n\n[[optimizer.param_groups]]\n{table}\n'
    with pytest.raises(cf.ConfigError, match=match):
        build(write(tmp_path, optimizer=optimizer))


def test_new_optimizers_and_schedulers_build(tmp_path):
    adagrad = '[optimizer]\ntype = "Adagrad"\nlr = 0.05\nlr_decay = 0.01'
    warmup = ('[scheduler]\ntype = "SequentialLR"\nmilestones = [2]\nschedulers = [\n'
              '  {type = "LinearLR", start_factor = 0.1, total_iters = 2},\n'
              '  {type = "CosineAnnealingLR", T_max = 8},\n]')
    _, _, opt, sched = build(write(tmp_path, optimizer=adagrad, scheduler=warmup))
    assert isinstance(opt, optim.Adagrad) and isinstance(sched, optim.lr_scheduler.SequentialLR)
    assert sched.get_last_lr() == [pytest.approx(0.005)]
    one_cycle = '[scheduler]\ntype = "OneCycleLR"\nmax_lr = 0.1'
    _, _, opt, sched = build(write(tmp_path, optimizer=GROUPS, scheduler=one_cycle, epochs=6))
    assert sched.total_steps == 6 and opt.param_groups[0]["betas"][0] == pytest.approx(0.95)
    for scheduler, match in [('[scheduler]\ntype = "LambdaLR"', "Python function"),
                             ('[scheduler]\ntype = "SequentialLR"\nmilestones = []\nschedulers = [1]', "schedulers"),
                             ('[scheduler]\ntype = "LinearLR"\nstart_factor = 2.0', "start_factor"),
                             ('[scheduler]\ntype = "Nope"', "ReduceLROnPlateau")]:
        with pytest.raises(cf.ConfigError, match=match):
            build(write(tmp_path, scheduler=scheduler))
    with pytest.raises(cf.ConfigError, match="closure"):
        build(write(tmp_path, optimizer='[optimizer]\ntype = "LBFGS"'))


def test_train_writes_the_training_curves_every_epoch(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    config = write(tmp_path, scheduler='[scheduler]\ntype = "ExponentialLR"\ngamma = 0.5', epochs=2)
    code, out, err = run(["train", config], capsys)
    assert code == 0, err
    picture = tmp_path / "run-training.png"
    assert "run-training.png" in out
    data = picture.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
    ckpt = load_checkpoint(tmp_path / "run-checkpoints")
    assert ckpt.epoch == 2 and len(ckpt.history["loss"]) == 2
    before = picture.stat().st_mtime_ns
    assert run(["train", config, "--epochs", "3", "--resume", "auto"], capsys)[0] == 0
    assert picture.stat().st_mtime_ns >= before and picture.read_bytes() != data  # three epochs now


def test_plot_false_and_no_matplotlib(tmp_path, capsys, monkeypatch):
    config = write(tmp_path, epochs=1, top="plot = false\n")
    assert run(["train", config], capsys)[0] == 0
    assert not (tmp_path / "run-training.png").exists()
    from fastnn import plot

    monkeypatch.setattr(plot, "available", lambda: False)
    config = write(tmp_path, epochs=1, top='plot = "curves.png"\n')
    code, out, _ = run(["train", config], capsys)
    assert code == 0 and 'pip install "fastnn[plot]"' in out
    assert not (tmp_path / "curves.png").exists()
    with pytest.raises(cf.ConfigError, match="plot"):
        cf.read_config(write(tmp_path, top="plot = 3\n"))


def test_reduce_lr_on_plateau_steps_on_the_validation_loss(tmp_path, capsys):
    scheduler = ('[scheduler]\ntype = "ReduceLROnPlateau"\npatience = 0\nfactor = 0.5\n'
                 'threshold = 10.0\nthreshold_mode = "abs"')
    config = write(tmp_path, scheduler=scheduler, epochs=3, top="plot = false\n")
    code, out, err = run(["train", config], capsys)
    assert code == 0, err
    _, model, opt, sched = build(config)
    load_checkpoint(tmp_path / "run-checkpoints", model, opt, sched)
    # an improvement of 10 is never met: every epoch after the first halves the lr
    assert sched.last_epoch == 3 and sched.num_bad_epochs == 0
    assert [g["lr"] for g in opt.param_groups] == [pytest.approx(0.002 / 4), pytest.approx(0.01 / 4)]
