"""Learning-rate schedulers: PyTorch's learning rates (and momenta) step by step over 20
steps with two parameter groups, state_dict through a checkpoint, argument checks."""
import json

import numpy as np
import pytest
from numpy.testing import assert_allclose

import fastnn
from fastnn import nn
import fastnn.optim
from fastnn.optim import SGD, Adagrad, Adam, lr_scheduler as ls

STEPS = 20
LRS = (0.1, 0.5)
LOSSES = [1.0, 0.9, 0.95, 0.96, 0.97, 0.8, 0.8, 0.81, 0.82, 0.83, 0.84, 0.5, 0.49, 0.4999, 0.6, 0.7, 0.8, 0.9,
          0.9, 0.9, 0.9]


def make_optimizer(lib, kind="sgd", params=None):
    if params is None:
        params = ([nn.Parameter(np.ones(2)), nn.Parameter(np.ones(3))] if lib is ls else
                  [lib.nn.Parameter(lib.ones(2, dtype=lib.float64)), lib.nn.Parameter(lib.ones(3, dtype=lib.float64))])
    optim = fastnn.optim if lib is ls else lib.optim
    groups = [{"params": [params[0]], "lr": LRS[0]}, {"params": [params[1]], "lr": LRS[1]}]
    if kind == "adam":
        return optim.Adam(groups, betas=(0.9, 0.99))
    return optim.SGD(groups, lr=0.1, momentum=0.9)


# name -> (optimizer kind, builder(schedulers module, optimizer)); both libraries take the same calls
CASES = {
    "StepLR": ("sgd", lambda m, o: m.StepLR(o, step_size=3, gamma=0.5)),
    "MultiStepLR": ("sgd", lambda m, o: m.MultiStepLR(o, milestones=[2, 5, 5, 9], gamma=0.5)),
    "ExponentialLR": ("sgd", lambda m, o: m.ExponentialLR(o, gamma=0.9)),
    "CosineAnnealingLR": ("sgd", lambda m, o: m.CosineAnnealingLR(o, T_max=7, eta_min=0.001)),
    "LinearLR": ("sgd", lambda m, o: m.LinearLR(o, start_factor=0.2, end_factor=0.9, total_iters=6)),
    "LambdaLR": ("sgd", lambda m, o: m.LambdaLR(o, [lambda e: 0.9 ** e, lambda e: 1 / (e + 1)])),
    "OneCycleLR-cos": ("sgd", lambda m, o: m.OneCycleLR(o, max_lr=[0.5, 1.0], total_steps=STEPS)),
    "OneCycleLR-linear-3phase-adam": ("adam", lambda m, o: m.OneCycleLR(
        o, max_lr=0.3, total_steps=25, anneal_strategy="linear", three_phase=True, pct_start=0.25)),
    "OneCycleLR-no-momentum": ("sgd", lambda m, o: m.OneCycleLR(
        o, max_lr=0.2, epochs=4, steps_per_epoch=5, cycle_momentum=False, div_factor=10.0)),
    "SequentialLR-warmup-cosine": ("sgd", lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.1, total_iters=4), m.CosineAnnealingLR(o, T_max=16)], milestones=[4])),
    "SequentialLR-three": ("adam", lambda m, o: m.SequentialLR(
        o, [m.ExponentialLR(o, gamma=0.8), m.LinearLR(o, start_factor=0.5, total_iters=3),
            m.MultiStepLR(o, milestones=[3, 6])], milestones=[5, 11])),
}
PLATEAU = {
    "min-rel": dict(factor=0.5, patience=2),
    "min-abs-cooldown-minlr": dict(factor=0.3, patience=1, threshold=0.05, threshold_mode="abs", cooldown=2,
                                   min_lr=[0.02, 0.1]),
    "max-rel": dict(mode="max", factor=0.5, patience=1, threshold=0.01, eps=1e-3),
}


def group_values(opt):
    return [(g["lr"], g.get("momentum"), tuple(g["betas"]) if "betas" in g else None) for g in opt.param_groups]


def trajectory(lib, opt, sched, steps=STEPS, losses=None):
    seen = [(list(sched.get_last_lr()), group_values(opt))]
    for i in range(steps):
        opt.step()
        if losses is None:
            sched.step()
        else:
            sched.step(losses[i])
        seen.append((list(sched.get_last_lr()), group_values(opt)))
    return seen


def assert_same(mine, theirs):
    for step, ((lrs, groups), (tlrs, tgroups)) in enumerate(zip(mine, theirs)):
        assert_allclose(lrs, [float(v) for v in tlrs], rtol=1e-6, atol=1e-12, err_msg=f"step {step}")
        for g, tg in zip(groups, tgroups):
            for a, b in zip(g, tg):
                if b is None:
                    assert a is None
                else:
                    assert_allclose(a, b, rtol=1e-6, atol=1e-12, err_msg=f"step {step}")


@pytest.mark.parametrize("name", list(CASES))
def test_scheduler_matches_pytorch(name):
    torch = pytest.importorskip("torch")
    kind, build = CASES[name]
    opt = make_optimizer(ls, kind)
    mine = trajectory(ls, opt, build(ls, opt))
    topt = make_optimizer(torch, kind)
    theirs = trajectory(torch, topt, build(torch.optim.lr_scheduler, topt))
    assert_same(mine, theirs)


@pytest.mark.parametrize("name", list(PLATEAU))
def test_reduce_on_plateau_matches_pytorch(name):
    torch = pytest.importorskip("torch")
    opt = make_optimizer(ls)
    sched = ls.ReduceLROnPlateau(opt, **PLATEAU[name])
    mine = trajectory(ls, opt, sched, losses=LOSSES)
    topt = make_optimizer(torch)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **PLATEAU[name])
    theirs = trajectory(torch, topt, tsched, losses=LOSSES)
    assert_same(mine, theirs)
    assert mine[-1][0] != mine[0][0], "the sequence reduced the learning rate"
    for key in ("best", "num_bad_epochs", "cooldown_counter", "last_epoch"):
        assert getattr(sched, key) == getattr(tsched, key)


def test_reduce_on_plateau_accepts_tensor_metrics():
    opt = make_optimizer(ls)
    sched = ls.ReduceLROnPlateau(opt, patience=0)
    sched.step(fastnn.tensor(1.0))
    sched.step(fastnn.tensor(2.0))
    assert sched.get_last_lr() == [pytest.approx(0.01), pytest.approx(0.05)]


ALL = [(name, CASES[name][0], CASES[name][1], None) for name in CASES] + [
    (f"ReduceLROnPlateau-{k}", "sgd", lambda m, o, kw=kw: m.ReduceLROnPlateau(o, **kw), LOSSES)
    for k, kw in PLATEAU.items()]


@pytest.mark.parametrize("name,kind,build,losses", ALL, ids=[a[0] for a in ALL])
def test_state_dict_through_a_checkpoint_resumes_exactly(tmp_path, name, kind, build, losses):
    model = nn.Linear(2, 1, dtype="float64")
    params = list(model.parameters())
    opt = make_optimizer(ls, kind, params)
    sched = build(ls, opt)
    full = trajectory(ls, opt, sched, losses=losses)
    opt = make_optimizer(ls, kind, params)
    sched = build(ls, opt)
    first = trajectory(ls, opt, sched, steps=7, losses=losses)
    state = sched.state_dict()
    assert "optimizer" not in state
    json.dumps(state, default=lambda v: pytest.fail(f"not plain data: {v!r}"))  # no objects to pickle
    fastnn.save_checkpoint(tmp_path / "c.ckpt", model, opt, sched, epoch=7)
    opt2 = make_optimizer(ls, kind, params)
    sched2 = build(ls, opt2)
    fastnn.load_checkpoint(tmp_path / "c.ckpt", model, opt2, sched2)
    rest = trajectory(ls, opt2, sched2, steps=STEPS - 7, losses=None if losses is None else losses[7:])
    assert_same(first[:-1] + rest, full)


def test_lambda_lr_saves_no_functions():
    opt = make_optimizer(ls)
    sched = ls.LambdaLR(opt, lambda e: 0.5 ** e)
    assert sched.state_dict()["lr_lambdas"] == [None, None]


def test_one_cycle_rejects_stepping_past_the_cycle():
    opt = make_optimizer(ls)
    sched = ls.OneCycleLR(opt, max_lr=1.0, total_steps=3)
    for _ in range(3):
        sched.step()
    with pytest.raises(ValueError, match="OneCycleLR"):
        sched.step()


def test_bad_arguments_raise():
    opt = make_optimizer(ls)
    other = make_optimizer(ls)
    bad = [
        (ValueError, lambda: ls.LinearLR(opt, start_factor=0)),
        (ValueError, lambda: ls.LinearLR(opt, start_factor=1.5)),
        (ValueError, lambda: ls.LinearLR(opt, end_factor=-0.1)),
        (ValueError, lambda: ls.LinearLR(opt, total_iters=0)),
        (ValueError, lambda: ls.MultiStepLR(opt, milestones=[-1])),
        (ValueError, lambda: ls.LambdaLR(opt, [lambda e: 1.0])),
        (TypeError, lambda: ls.LambdaLR(opt, 0.5)),
        (ValueError, lambda: ls.OneCycleLR(opt, max_lr=1.0)),
        (ValueError, lambda: ls.OneCycleLR(opt, max_lr=1.0, total_steps=0)),
        (ValueError, lambda: ls.OneCycleLR(opt, max_lr=1.0, total_steps=10, pct_start=1.5)),
        (ValueError, lambda: ls.OneCycleLR(opt, max_lr=1.0, total_steps=10, anneal_strategy="exp")),
        (ValueError, lambda: ls.OneCycleLR(opt, max_lr=[1.0], total_steps=10)),
        (ValueError, lambda: ls.OneCycleLR(Adagrad([nn.Parameter(np.ones(1))]), max_lr=1.0, total_steps=10)),
        (ValueError, lambda: ls.ReduceLROnPlateau(opt, factor=1.0)),
        (ValueError, lambda: ls.ReduceLROnPlateau(opt, mode="avg")),
        (ValueError, lambda: ls.ReduceLROnPlateau(opt, threshold_mode="pct")),
        (ValueError, lambda: ls.ReduceLROnPlateau(opt, patience=-1)),
        (ValueError, lambda: ls.ReduceLROnPlateau(opt, min_lr=[0.1])),
        (ValueError, lambda: ls.SequentialLR(opt, [ls.ExponentialLR(opt, 0.9)], milestones=[3])),
        (ValueError, lambda: ls.SequentialLR(opt, [ls.ExponentialLR(opt, 0.9), ls.ReduceLROnPlateau(opt)], [2])),
        (ValueError, lambda: ls.SequentialLR(opt, [ls.ExponentialLR(opt, 0.9), ls.ExponentialLR(other, 0.9)], [2])),
        (ValueError, lambda: ls.SequentialLR(opt, [], [])),
        (TypeError, lambda: ls.ExponentialLR(SGD, 0.9)),
    ]
    for error, make in bad:
        with pytest.raises(error):
            make()
    with pytest.raises(TypeError, match="ReduceLROnPlateau"):
        ls.ReduceLROnPlateau(opt).step("low")
    assert isinstance(Adam([nn.Parameter(np.ones(1))]), fastnn.optim.Optimizer)
