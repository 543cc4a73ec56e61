"""Adam/AdamW amsgrad, Adagrad, LBFGS and parameter groups: PyTorch's trajectories step
by step (float64, 20 steps), argument checks, state and the kernels' parallel path."""
import numpy as np
import pytest
from numpy.testing import assert_allclose

import fastnn
from fastnn.kernels._jit import SERIAL_BELOW
from fastnn.nn.module import Parameter
from fastnn.optim import LBFGS, SGD, Adagrad, Adam, AdamW, RMSprop

STEPS = 20
RTOL, ATOL = 1e-7, 1e-10
SHAPES = [(3, 2), (4,)]

_rng = np.random.default_rng(3)
A = _rng.standard_normal((12, 10))
B = _rng.standard_normal(12)
P0 = [0.5 * _rng.standard_normal(s) for s in SHAPES]


def objective(arrays):
    """f(p) = 0.5 * |A p - b|^2 + 0.05 * sum(p^4) over the parameters as one vector, and its
    gradient per parameter (NumPy: the same numbers feed fastnn and PyTorch)."""
    p = np.concatenate([a.reshape(-1) for a in arrays])
    r = A @ p - B
    g = A.T @ r + 0.2 * p ** 3
    loss = 0.5 * r @ r + 0.05 * np.sum(p ** 4)
    grads, offset = [], 0
    for a in arrays:
        grads.append(g[offset:offset + a.size].reshape(a.shape))
        offset += a.size
    return loss, grads


def fastnn_params():
    return [Parameter(p.copy()) for p in P0]


def set_fastnn_grads(params):
    loss, grads = objective([p.data for p in params])
    for p, g in zip(params, grads):
        p.grad = fastnn.from_numpy(g.copy())
    return loss


def set_torch_grads(torch, params):
    loss, grads = objective([p.detach().numpy() for p in params])
    for p, g in zip(params, grads):
        p.grad = torch.from_numpy(g.copy())
    return loss


def groups(params, second):
    return [{"params": [params[0]]}, {"params": [params[1]], **second}]


# name, class, constructor kwargs, overrides of the second parameter group
CASES = [
    ("sgd", SGD, dict(lr=0.01), dict(lr=0.003)),
    ("sgd-nesterov", SGD, dict(lr=0.01, momentum=0.9, nesterov=True), dict(lr=0.02, momentum=0.5)),
    ("sgd-damp-wd", SGD, dict(lr=0.01, momentum=0.8, dampening=0.3, weight_decay=0.1), dict(lr=0.005)),
    ("adam", Adam, dict(lr=0.05), dict(lr=0.01, betas=(0.8, 0.99))),
    ("adam-amsgrad", Adam, dict(lr=0.05, amsgrad=True, weight_decay=0.1), dict(lr=0.02)),
    ("adamw", AdamW, dict(lr=0.05), dict(lr=0.01, weight_decay=0.5)),
    ("adamw-amsgrad", AdamW, dict(lr=0.05, amsgrad=True), dict(lr=0.1, amsgrad=False)),
    ("rmsprop", RMSprop, dict(lr=0.01), dict(lr=0.003)),
    ("rmsprop-centered", RMSprop, dict(lr=0.01, centered=True, momentum=0.5, weight_decay=0.1), dict(lr=0.002)),
    ("adagrad", Adagrad, dict(lr=0.1), dict(lr=0.05)),
    ("adagrad-decay", Adagrad, dict(lr=0.1, lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.2),
     dict(lr=0.3, eps=1e-6)),
]


@pytest.mark.parametrize("name,cls,kwargs,second", CASES, ids=[c[0] for c in CASES])
def test_trajectory_and_param_groups_match_pytorch(name, cls, kwargs, second):
    torch = pytest.importorskip("torch")
    params = fastnn_params()
    opt = cls(groups(params, second), **kwargs)
    tparams = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in P0]
    topt = getattr(torch.optim, cls.__name__)(groups(tparams, second), foreach=False, **kwargs)
    for group, tgroup in zip(opt.param_groups, topt.param_groups):
        for key in ("lr", "betas", "momentum", "weight_decay", "eps", "amsgrad"):
            if key in tgroup:
                assert group[key] == tgroup[key], key
    for step in range(STEPS):
        set_fastnn_grads(params)
        set_torch_grads(torch, tparams)
        opt.step()
        topt.step()
        for p, tp in zip(params, tparams):
            assert_allclose(p.data, tp.detach().numpy(), rtol=RTOL, atol=ATOL, err_msg=f"step {step + 1}")
    # the state continues PyTorch's when loaded from PyTorch's state_dict
    state = topt.state_dict()
    mine = cls(groups([Parameter(tp.detach().numpy().copy()) for tp in tparams], second), **kwargs)
    mine.load_state_dict(state)
    for key, values in mine.state_dict()["state"].items():
        assert set(values) == set(state["state"][key]), "state keys as PyTorch's"


def test_amsgrad_state_key_and_maximum():
    p = Parameter(np.array([1.0, -2.0]))
    opt = Adam([p], lr=0.1, amsgrad=True)
    big, small = np.array([3.0, 1.0]), np.array([0.01, 0.01])  # small*small < v: v decreases
    for g in (big, small):
        p.grad = fastnn.from_numpy(g.copy())
        opt.step()
    state = opt.state[p]
    assert set(state) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert np.all(state["max_exp_avg_sq"] >= state["exp_avg_sq"])
    assert np.all(state["max_exp_avg_sq"] > state["exp_avg_sq"])  # the small gradient lowered v, not v_max
    q = Parameter(np.ones(2))
    plain = Adam([q])
    q.grad = fastnn.from_numpy(np.ones(2))
    plain.step()
    assert "max_exp_avg_sq" not in plain.state[q]


def ref_adagrad(p, grads, lr, lr_decay, weight_decay, init, eps):
    s = np.full_like(p, init)
    for t, g in enumerate(grads, start=1):
        g = g + weight_decay * p
        s = s + g * g
        p = p - lr / (1 + (t - 1) * lr_decay) * g / (np.sqrt(s) + eps)
    return p


def test_adagrad_parallel_path_and_float32():
    rng = np.random.default_rng(0)
    n = SERIAL_BELOW + 5
    p0 = rng.standard_normal(n)
    grads = [rng.standard_normal(n) for _ in range(3)]
    kw = dict(lr=0.1, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.1, eps=1e-10)
    p = Parameter(p0.copy())
    opt = Adagrad([p], **kw)
    for g in grads:
        p.grad = fastnn.from_numpy(g)
        opt.step()
    expected = ref_adagrad(p0, grads, kw["lr"], kw["lr_decay"], kw["weight_decay"],
                           kw["initial_accumulator_value"], kw["eps"])
    assert_allclose(p.data, expected, rtol=1e-12)
    q = Parameter(p0[:7].astype(np.float32))
    opt = Adagrad([q], **kw)
    for g in grads:
        q.grad = fastnn.from_numpy(g[:7].astype(np.float32))
        opt.step()
    assert q.data.dtype == np.float32
    assert_allclose(q.data, expected[:7], rtol=1e-5)


def test_amsgrad_parallel_path():
    rng = np.random.default_rng(1)
    n = SERIAL_BELOW + 3
    p0 = rng.standard_normal(n)
    grads = [rng.standard_normal(n) * s for s in (2.0, 0.1, 1.0)]
    p = Parameter(p0.copy())
    opt = AdamW([p], lr=0.01, amsgrad=True)
    for g in grads:
        p.grad = fastnn.from_numpy(g)
        opt.step()
    m, v, vmax, ref = np.zeros(n), np.zeros(n), np.zeros(n), p0.copy()
    for t, g in enumerate(grads, start=1):
        ref = ref * (1 - 0.01 * 0.01)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        vmax = np.maximum(vmax, v)
        ref = ref - 0.01 / (1 - 0.9 ** t) * m / (np.sqrt(vmax) / np.sqrt(1 - 0.999 ** t) + 1e-8)
    assert_allclose(p.data, ref, rtol=1e-10)
    assert_allclose(opt.state[p]["max_exp_avg_sq"], vmax, rtol=1e-12)


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lbfgs_trajectory_matches_pytorch(line_search_fn):
    torch = pytest.importorskip("torch")
    kwargs = dict(lr=0.5 if line_search_fn is None else 1.0, max_iter=4, history_size=5,
                  line_search_fn=line_search_fn)
    params = fastnn_params()
    opt = LBFGS(params, **kwargs)
    tparams = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in P0]
    topt = torch.optim.LBFGS(tparams, **kwargs)
    evals = []

    def closure():
        evals.append(1)
        return fastnn.tensor(set_fastnn_grads(params), dtype=np.float64)

    def tclosure():
        return torch.tensor(set_torch_grads(torch, tparams))

    for step in range(STEPS):
        loss = opt.step(closure)
        tloss = topt.step(tclosure)
        assert float(loss) == pytest.approx(float(tloss), rel=1e-7, abs=1e-12)
        for p, tp in zip(params, tparams):
            assert_allclose(p.data, tp.detach().numpy(), rtol=1e-6, atol=1e-9, err_msg=f"step {step + 1}")
    tstate = topt.state[tparams[0]]
    state = opt.state[params[0]]
    assert state["func_evals"] == tstate["func_evals"] == len(evals)
    assert state["n_iter"] == tstate["n_iter"]
    assert objective([p.data for p in params])[0] < objective(P0)[0] * 0.5


def test_lbfgs_state_dict_round_trip_continues_identically():
    params = fastnn_params()
    opt = LBFGS(params, max_iter=3, history_size=4, line_search_fn="strong_wolfe")

    def closure_for(ps):
        return lambda: fastnn.tensor(set_fastnn_grads(ps), dtype=np.float64)

    for _ in range(2):
        opt.step(closure_for(params))
    clone = [Parameter(p.data.copy()) for p in params]
    opt2 = LBFGS(clone, max_iter=3, history_size=4, line_search_fn="strong_wolfe")
    opt2.load_state_dict(opt.state_dict())
    for _ in range(2):
        opt.step(closure_for(params))
        opt2.step(closure_for(clone))
    for p, q in zip(params, clone):
        assert_allclose(p.data, q.data, rtol=0, atol=0)


def test_lbfgs_stops_at_a_minimum_and_accepts_plain_float_losses():
    p = Parameter(np.array([3.0]))
    opt = LBFGS([p], line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = ((fastnn.from_numpy(np.array([1.0])) - p) ** 2).sum()
        loss.backward()
        return float(loss.item())

    opt.step(closure)
    assert_allclose(p.data, [1.0], atol=1e-6)
    assert opt.step(closure) == pytest.approx(0.0, abs=1e-10)


def test_bad_arguments_raise_value_error():
    p = [Parameter(np.ones(2))]
    for kwargs in (dict(lr=-1), dict(lr_decay=-0.1), dict(weight_decay=-1), dict(initial_accumulator_value=-1),
                   dict(eps=-1e-3)):
        with pytest.raises(ValueError, match="Adagrad"):
            Adagrad(p, **kwargs)
    for kwargs in (dict(lr=-1), dict(max_iter=0), dict(history_size=0), dict(line_search_fn="armijo")):
        with pytest.raises(ValueError, match="LBFGS"):
            LBFGS(p, **kwargs)
    with pytest.raises(ValueError, match="parameter groups"):
        LBFGS([{"params": [Parameter(np.ones(2))]}, {"params": [Parameter(np.ones(2))], "lr": 0.1}])
    with pytest.raises(TypeError, match="closure"):
        LBFGS(p).step()
    with pytest.raises(ValueError, match="Adam"):
        Adam(p, betas=(1.0, 0.999), amsgrad=True)
    with pytest.raises(TypeError, match="amsgrad"):
        AdamW(p, amsgrad="yes")
    with pytest.raises(ValueError, match="amsgrad"):  # still refused where PyTorch has no amsgrad
        SGD([{"params": p, "amsgrad": True}])


def test_add_param_group_takes_its_own_hyperparameters():
    a, b = Parameter(np.ones(2)), Parameter(np.ones(2))
    opt = Adagrad([a], lr=0.1)
    opt.add_param_group({"params": [b], "lr": 0.01})
    assert opt.param_groups[1]["lr"] == 0.01 and opt.param_groups[1]["eps"] == 1e-10
    for p in (a, b):
        p.grad = fastnn.from_numpy(np.ones(2))
    opt.step()
    assert_allclose(a.data, 1 - 0.1 / (1 + 1e-10))
    assert_allclose(b.data, 1 - 0.01 / (1 + 1e-10))
    with pytest.raises(ValueError, match="more than one"):
        opt.add_param_group({"params": [a]})
