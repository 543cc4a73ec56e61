"""Optimizers, schedulers and the gradient utilities against NumPy references of
PyTorch's formulas, against PyTorch itself (when installed), and across thread
counts. Gradients are Tensors (``p.grad``), parameters are updated in ``p.data``."""
import copy
import math

import numba
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fastnn
from fastnn.kernels._jit import SERIAL_BELOW
from fastnn.kernels.optim import sum_of_squares
from fastnn.nn.module import Parameter
from fastnn.nn.utils import clip_grad_norm_, clip_grad_value_, parameters_to_vector, vector_to_parameters
from fastnn.optim import SGD, Adam, AdamW, Optimizer, RMSprop, lr_scheduler

SHAPES = [(3, 4), (5,), (SERIAL_BELOW + 7,)]  # the last one runs the parallel path
STEPS = 5


def grad(array):
    """A gradient Tensor sharing ``array`` (its dtype, shape and layout)."""
    return fastnn.from_numpy(array)


# ------------------------------------------------------------------ references
def ref_sgd(p, grads, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False):
    buf = None
    for g in grads:
        d = g + weight_decay * p if weight_decay else g
        if momentum:
            buf = d.copy() if buf is None else momentum * buf + (1 - dampening) * d
            d = d + momentum * buf if nesterov else buf
        p = p - lr * d
    return p


def ref_adam(p, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, decoupled=False):
    beta1, beta2 = betas
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        if weight_decay and decoupled:
            p = p * (1 - lr * weight_decay)
        elif weight_decay:
            g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        denom = np.sqrt(v) / math.sqrt(1 - beta2 ** t) + eps
        p = p - lr / (1 - beta1 ** t) * m / denom
    return p


def ref_adamw(p, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    return ref_adam(p, grads, lr, betas, eps, weight_decay, decoupled=True)


def ref_rmsprop(p, grads, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False):
    square_avg, grad_avg, buf = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for g in grads:
        if weight_decay:
            g = g + weight_decay * p
        square_avg = alpha * square_avg + (1 - alpha) * g * g
        if centered:
            grad_avg = alpha * grad_avg + (1 - alpha) * g
            avg = np.sqrt(square_avg - grad_avg * grad_avg) + eps
        else:
            avg = np.sqrt(square_avg) + eps
        if momentum > 0:
            buf = momentum * buf + g / avg
            p = p - lr * buf
        else:
            p = p - lr * g / avg
    return p


CASES = [
    (SGD, ref_sgd, dict(lr=0.1)),
    (SGD, ref_sgd, dict(lr=0.1, momentum=0.9)),
    (SGD, ref_sgd, dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    (SGD, ref_sgd, dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    (Adam, ref_adam, dict()),
    (Adam, ref_adam, dict(lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)),
    (Adam, ref_adam, dict(lr=0.01, betas=(0.3, 0.4))),  # lerp weight > 0.5 branch
    (AdamW, ref_adamw, dict()),
    (AdamW, ref_adamw, dict(lr=0.02, weight_decay=0.5)),
    (RMSprop, ref_rmsprop, dict()),
    (RMSprop, ref_rmsprop, dict(lr=0.01, alpha=0.9, weight_decay=0.05, momentum=0.9)),
    (RMSprop, ref_rmsprop, dict(lr=0.01, alpha=0.3, centered=True)),
    (RMSprop, ref_rmsprop, dict(lr=0.001, momentum=0.5, centered=True, weight_decay=0.1)),
]
CASE_IDS = [f"{cls.__name__}-{kw}" for cls, _, kw in CASES]


def make_problem(shape, seed=0, steps=STEPS):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape), [rng.standard_normal(shape) for _ in range(steps)]


def run_fastnn(cls, kwargs, p0s, grad_seqs, dtype):
    """Run ``cls`` on Parameters made from ``p0s``, one gradient list per step."""
    params = [Parameter(p0.astype(dtype)) for p0 in p0s]
    opt = cls(params, **kwargs)
    for step_grads in grad_seqs:
        for p, g in zip(params, step_grads):
            p.grad = grad(g.astype(dtype))
        opt.step()
    return params, opt


def walk(value):
    """Yield every leaf of nested dicts/lists/tuples."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from walk(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from walk(v)
    else:
        yield value


# ------------------------------------------------------------------ update rules
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("cls,ref,kwargs", CASES, ids=CASE_IDS)
def test_matches_reference_float64(cls, ref, kwargs, shape):
    p0, grads = make_problem(shape)
    (param,), opt = run_fastnn(cls, kwargs, [p0], [[g] for g in grads], np.float64)
    assert_allclose(param.data, ref(p0, grads, **kwargs), rtol=1e-12, atol=1e-14)
    for value in opt.state[param].values():
        if isinstance(value, np.ndarray):
            assert value.shape == shape and value.dtype == np.float64


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("cls,ref,kwargs", CASES, ids=CASE_IDS)
def test_matches_reference_float32(cls, ref, kwargs, shape):
    p0, grads = make_problem(shape, seed=1)
    p0 = p0.astype(np.float32).astype(np.float64)
    grads = [g.astype(np.float32).astype(np.float64) for g in grads]
    (param,), opt = run_fastnn(cls, kwargs, [p0], [[g] for g in grads], np.float32)
    assert param.data.dtype == np.float32
    assert_allclose(param.data, ref(p0, grads, **kwargs), rtol=1e-5, atol=1e-6)
    for value in opt.state[param].values():
        if isinstance(value, np.ndarray):
            assert value.shape == shape and value.dtype == np.float32


def test_param_groups_use_their_own_lr():
    p0, grads = make_problem((4, 3))
    q0, qgrads = make_problem((6,), seed=2)
    a, b = Parameter(p0), Parameter(q0)
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 0.01}], lr=0.1, momentum=0.9)
    assert opt.param_groups[1]["momentum"] == 0.9
    for g, h in zip(grads, qgrads):
        a.grad, b.grad = grad(g.copy()), grad(h.copy())
        opt.step()
    assert_allclose(a.data, ref_sgd(p0, grads, 0.1, momentum=0.9), rtol=1e-12)
    assert_allclose(b.data, ref_sgd(q0, qgrads, 0.01, momentum=0.9), rtol=1e-12)


def test_parameters_without_grad_or_requires_grad_are_skipped():
    a, b, c = Parameter(np.ones(3)), Parameter(np.ones(3)), Parameter(np.ones(3), requires_grad=False)
    opt = Adam([a, b, c], lr=0.1)
    a.grad = grad(np.full(3, 0.5))
    c.grad = grad(np.full(3, 0.5))
    opt.step()
    assert_array_equal(b.data, np.ones(3))
    assert_array_equal(c.data, np.ones(3))
    assert b not in opt.state and c not in opt.state
    assert np.all(a.data < 1)


def test_zero_grad():
    a = Parameter(np.ones(3))
    opt = SGD([a], lr=0.1)
    a.grad = grad(np.ones(3))
    opt.zero_grad(set_to_none=False)
    assert_array_equal(a.grad.data, np.zeros(3))
    opt.zero_grad()
    assert a.grad is None
    # a plain leaf Tensor that requires grad is optimized too
    t = fastnn.tensor(np.ones(2), requires_grad=True)
    opt = SGD([t], lr=0.5)
    t.grad = grad(np.ones(2))
    opt.step()
    assert_array_equal(t.data, np.full(2, 0.5))
    opt.zero_grad()
    assert t.grad is None


def test_zero_grad_none_then_backward_and_step():
    """The PyTorch loop: zero_grad(set_to_none=True), loss.backward(), step()."""
    w = Parameter(np.array([1.0, -2.0, 3.0]))
    opt = SGD([w], lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        assert w.grad is None
        (w * w).sum().backward()  # d/dw = 2w
        before = w.data.copy()
        opt.step()
        assert_allclose(w.data, before - 0.1 * 2 * before, rtol=1e-15)


def test_step_with_closure_records_gradients():
    w = Parameter(np.array([3.0]))
    opt = SGD([w], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    with fastnn.no_grad():  # step(closure) enables grad for the closure, like PyTorch
        loss = opt.step(closure)
    assert loss.item() == 9.0
    assert_array_equal(w.data, [3.0 - 0.25 * 6.0])


def test_step_bumps_the_version_of_updated_parameters():
    w = Parameter(np.ones(2))
    opt = SGD([w], lr=0.1)
    w.grad = grad(np.ones(2))
    before = w._version
    opt.step()
    assert w._version == before + 1


def test_noncontiguous_grad_and_scalar_parameter():
    p0, grads = make_problem((4, 5))
    a = Parameter(p0)
    s = Parameter(np.array(2.0))
    opt = SGD([a, s], lr=0.1, momentum=0.9)
    for g in grads:
        a.grad = grad(np.asfortranarray(g))
        s.grad = grad(np.array(1.0))
        opt.step()
    assert_allclose(a.data, ref_sgd(p0, grads, 0.1, momentum=0.9), rtol=1e-12)
    assert_allclose(s.data, ref_sgd(np.array(2.0), [np.array(1.0)] * STEPS, 0.1, momentum=0.9))


@pytest.mark.parametrize("cls", [Adam, SGD, RMSprop])
def test_steps_follow_replaced_data_state_and_hyperparameters(cls):
    # a step reuses the flat views and scalars it made before only while the arrays
    # and numbers are the same ones: a new p.data, new state (load_state_dict), a new
    # lr or betas, another group's hyperparameters at the same step, a dtype change.
    # The twins step with a new optimizer every time (nothing kept but a state_dict).
    p0, grads = make_problem((4, 3))
    kwargs = {"lr": 0.01, "momentum": 0.9} if cls is SGD else {"lr": 0.01}
    other = {"lr": 0.03, "betas": (0.7, 0.9)} if cls is Adam else {"lr": 0.03}

    def make(a, b):
        return cls([{"params": [a]}, {"params": [b], **other}], **kwargs)

    a, b, ta, tb = (Parameter(p0.copy()) for _ in range(4))
    opt = make(a, b)
    saved = make(ta, tb).state_dict()
    for i, g in enumerate(grads):
        if i == 1:
            a.data = a.data.copy()  # a new array: updated from now on, not the old one
            old = a.data
        if i == 2:
            assert old is a.data
            opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # new state arrays
        if i == 3:
            opt.param_groups[0]["lr"] = 0.05
            if cls is Adam:
                opt.param_groups[0]["betas"] = [0.8, 0.99]  # a list: unhashable
        for p in (a, b, ta, tb):
            p.grad = grad(g.copy())
        opt.step()
        fresh = make(ta, tb)
        fresh.load_state_dict(copy.deepcopy(saved))
        for mine, theirs in zip(fresh.param_groups, opt.param_groups):
            mine.update({k: v for k, v in theirs.items() if k != "params"})
        fresh.step()
        saved = fresh.state_dict()
    assert_array_equal(a.data, ta.data)
    assert_array_equal(b.data, tb.data)
    assert not np.array_equal(a.data, b.data)
    a.data = a.data.astype(np.float32)  # another dtype: the state no longer fits
    a.grad = grad(grads[0].astype(np.float32))
    with pytest.raises(ValueError, match="state"):
        opt.step()


def test_gradient_with_wrong_shape_raises():
    a = Parameter(np.ones(3))
    opt = Adam([a])
    a.grad = grad(np.ones(4))
    with pytest.raises(ValueError, match="Adam.step"):
        opt.step()
    a.grad = np.ones(3)  # an array is no gradient Tensor
    with pytest.raises(TypeError, match="Adam.step.*Tensor"):
        opt.step()


@pytest.mark.parametrize("factory,match", [
    (lambda p: SGD(p, lr=-0.1), "SGD.*lr"),
    (lambda p: SGD(p, lr=0.1, momentum=-0.5), "SGD.*momentum"),
    (lambda p: SGD(p, lr=0.1, weight_decay=-1), "SGD.*weight_decay"),
    (lambda p: SGD(p, lr=0.1, nesterov=True), "SGD.*Nesterov"),
    (lambda p: SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "SGD.*Nesterov"),
    (lambda p: Adam(p, lr=-1e-3), "Adam.*lr"),
    (lambda p: Adam(p, betas=(1.0, 0.999)), "Adam.*index 0"),
    (lambda p: Adam(p, betas=(0.9, -0.1)), "Adam.*index 1"),
    (lambda p: Adam(p, eps=-1e-8), "Adam.*eps"),
    (lambda p: Adam(p, lr=float("nan")), "Adam.*lr"),
    (lambda p: AdamW(p, weight_decay=-0.1), "AdamW.*weight_decay"),
    (lambda p: RMSprop(p, alpha=-0.5), "RMSprop.*alpha"),
    (lambda p: RMSprop(p, momentum=-0.5), "RMSprop.*momentum"),
    (lambda p: RMSprop(p, eps=-1.0), "RMSprop.*eps"),
    (lambda p: SGD([], lr=0.1), "SGD.*empty"),
    (lambda p: Adam([{"params": p, "lr": -1.0}]), "Adam.*lr"),
    (lambda p: SGD([{"params": p}, {"params": p}], lr=0.1), "more than one"),
])
def test_bad_hyperparameters_raise(factory, match):
    with pytest.raises(ValueError, match=match):
        factory([Parameter(np.ones(2))])


def test_bad_params_raise_type_error():
    with pytest.raises(TypeError, match="SGD"):
        SGD(Parameter(np.ones(2)), lr=0.1)
    with pytest.raises(TypeError, match="Adam"):
        Adam([np.ones(2)])
    with pytest.raises(TypeError, match="Adam"):
        Adam([Parameter(np.ones(2))], lr="0.1")
    with pytest.raises(TypeError, match="SGD"):
        SGD(fastnn.tensor(np.ones(2), requires_grad=True), lr=0.1)
    with pytest.raises(ValueError, match="SGD.*non-leaf"):
        SGD([fastnn.tensor(np.ones(2), requires_grad=True) * 2], lr=0.1)


# ------------------------------------------------------------------ state_dict
@pytest.mark.parametrize("cls,ref,kwargs", CASES, ids=CASE_IDS)
def test_state_dict_round_trip(cls, ref, kwargs):
    p0s = [make_problem((3, 4), seed=3)[0], make_problem((SERIAL_BELOW + 3,), seed=4)[0]]
    grads = [[make_problem(p.shape, seed=10 * s + i)[0] for i, p in enumerate(p0s)] for s in range(5)]
    params, opt = run_fastnn(cls, kwargs, p0s, grads[:3], np.float64)
    saved = opt.state_dict()
    for leaf in walk(saved):
        assert isinstance(leaf, (np.ndarray, int, float, bool, str)), type(leaf)
    resumed_params = [Parameter(p.data) for p in params]
    resumed = cls(resumed_params, **kwargs)
    resumed.load_state_dict(saved)
    for step_grads in grads[3:]:
        for a, b, g in zip(params, resumed_params, step_grads):
            a.grad, b.grad = grad(g.copy()), grad(g.copy())
        opt.step()
        resumed.step()
    for a, b in zip(params, resumed_params):
        assert_array_equal(a.data, b.data)
    # the saved dict was a copy: continuing did not change it
    assert all(state["step"] == 3 for state in saved["state"].values() if "step" in state)


def test_load_state_dict_accepts_fastnn_tensors():
    p0s = [make_problem((3, 4), seed=3)[0]]
    grads = [[make_problem((3, 4), seed=s)[0]] for s in range(4)]
    params, opt = run_fastnn(Adam, {}, p0s, grads[:2], np.float64)
    saved = opt.state_dict()
    as_tensors = {"param_groups": saved["param_groups"],
                  "state": {k: {n: fastnn.tensor(v) for n, v in st.items()} for k, st in saved["state"].items()}}
    resumed = Adam([Parameter(params[0].data)])
    resumed.load_state_dict(as_tensors)
    state = resumed.state[resumed.param_groups[0]["params"][0]]
    assert state["step"] == 2 and isinstance(state["step"], int)
    assert type(state["exp_avg"]) is np.ndarray
    assert_array_equal(state["exp_avg"], saved["state"][0]["exp_avg"])


def test_state_dict_layout_and_group_hyperparameters():
    a, b, c = (Parameter(np.ones(2)) for _ in range(3))
    opt = Adam([{"params": [a, b]}, {"params": [c], "lr": 0.5}], lr=0.1)
    assert isinstance(opt, Optimizer) and "Parameter Group 1" in repr(opt)
    for p in (a, c):
        p.grad = grad(np.ones(2))
    opt.step()
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert sorted(sd["state"]) == [0, 2]
    assert sd["state"][0]["step"] == 1
    assert set(sd["state"][2]) == {"step", "exp_avg", "exp_avg_sq"}
    fresh = Adam([{"params": [a, b]}, {"params": [c]}], lr=0.3)
    fresh.load_state_dict(sd)
    assert [g["lr"] for g in fresh.param_groups] == [0.1, 0.5]
    with pytest.raises(ValueError, match="groups"):
        Adam([a, b, c]).load_state_dict(sd)


# ------------------------------------------------------------------ threads
def test_one_and_two_threads_agree():
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    p0, grads = make_problem((3 * SERIAL_BELOW + 11,), seed=5)

    def run_all():
        results = [run_fastnn(cls, kw, [p0], [[g] for g in grads], dt)[0][0].data
                   for cls, _, kw in CASES for dt in (np.float32, np.float64)]
        param = Parameter(p0)
        param.grad = grad(grads[0] * 10)
        results.append(np.array([clip_grad_norm_([param], 1.0).item()]))
        return results + [param.grad.data]

    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run_all()
        numba.set_num_threads(2)
        two = run_all()
    finally:
        numba.set_num_threads(previous)
    for x, y in zip(one, two):
        assert_array_equal(x, y)


# ------------------------------------------------------------------ schedulers
def test_step_lr_sequence():
    opt = SGD([{"params": [Parameter(np.ones(2))]}, {"params": [Parameter(np.ones(2))], "lr": 1.0}], lr=0.1)
    sched = lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    seen = []
    for _ in range(10):
        seen.append(sched.get_last_lr())
        opt.step()
        sched.step()
    for epoch, lrs in enumerate(seen):
        assert_allclose(lrs, [0.1 * 0.5 ** (epoch // 3), 1.0 * 0.5 ** (epoch // 3)], rtol=1e-14)
    assert opt.param_groups[0]["lr"] == sched.get_last_lr()[0]


def test_cosine_annealing_sequence():
    opt = Adam([Parameter(np.ones(2))], lr=0.1)
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=7, eta_min=0.001)
    for epoch in range(20):
        expected = 0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * epoch / 7)) / 2
        assert sched.get_last_lr() == [pytest.approx(expected, rel=1e-14)]
        assert opt.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-14)
        sched.step()


def test_scheduler_state_dict_round_trip():
    opt = SGD([Parameter(np.ones(2))], lr=0.1)
    sched = lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
    for _ in range(3):
        sched.step()
    saved = sched.state_dict()
    assert "optimizer" not in saved and saved["last_epoch"] == 3
    opt2 = SGD([Parameter(np.ones(2))], lr=0.1)
    opt2.load_state_dict(opt.state_dict())
    sched2 = lr_scheduler.StepLR(opt2, step_size=2, gamma=0.1)
    sched2.load_state_dict(saved)
    for _ in range(4):
        sched.step()
        sched2.step()
        assert sched.get_last_lr() == sched2.get_last_lr()


def test_scheduler_bad_arguments():
    opt = SGD([Parameter(np.ones(2))], lr=0.1)
    with pytest.raises(ValueError, match="StepLR"):
        lr_scheduler.StepLR(opt, step_size=0)
    with pytest.raises(ValueError, match="CosineAnnealingLR"):
        lr_scheduler.CosineAnnealingLR(opt, T_max=0)
    with pytest.raises(TypeError, match="StepLR"):
        lr_scheduler.StepLR(object(), step_size=1)


# ------------------------------------------------------------------ clip_grad_norm_
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm(dtype, norm_type, max_norm):
    rng = np.random.default_rng(6)
    params = [Parameter(np.zeros(s, dtype)) for s in [(3, 4), (SERIAL_BELOW + 5,), (7,)]]
    grads = [rng.standard_normal(p.shape).astype(dtype) for p in params]
    for p, g in zip(params, grads):
        p.grad = grad(g.copy())
    params.append(Parameter(np.zeros(2, dtype)))  # grad None: skipped
    total = clip_grad_norm_(params, max_norm, norm_type=norm_type)
    flat = np.concatenate([g.reshape(-1) for g in grads]).astype(np.float64)
    expected = np.linalg.norm(flat, ord=norm_type)
    # a 0-d Tensor of the gradients' dtype, like PyTorch; computed in float64 and rounded once
    assert isinstance(total, fastnn.Tensor) and total.shape == () and total.dtype == dtype
    assert total.item() == pytest.approx(float(dtype(expected)), rel=1e-12)
    assert float(dtype(expected)) == pytest.approx(expected, rel=1e-12 if dtype == np.float64 else 1e-7)
    coef = min(1.0, max_norm / (expected + 1e-6))
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    for p, g in zip(params, grads):
        assert p.grad.dtype == dtype
        assert_allclose(p.grad.data, g.astype(np.float64) * coef, rtol=rtol)
    assert params[-1].grad is None


def test_clip_grad_norm_edge_cases():
    none = clip_grad_norm_([Parameter(np.ones(2))], 1.0)
    assert isinstance(none, fastnn.Tensor) and none.shape == () and none.item() == 0.0
    p = Parameter(np.ones(3))
    p.grad = grad(np.array([3.0, 4.0, 0.0]))
    assert clip_grad_norm_(p, 1.0, norm_type="inf").item() == 4.0
    p.grad = grad(np.array([1.0, np.inf, 0.0]))
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    with pytest.raises(ValueError, match="norm_type"):
        clip_grad_norm_([p], 1.0, norm_type=0)


def test_sum_of_squares_kernel():
    for n in (0, 1, 63, 65, SERIAL_BELOW - 1, 2 * SERIAL_BELOW + 3):
        x = np.random.default_rng(n).standard_normal(n)
        out = np.zeros(1)
        sum_of_squares(out, x)
        assert out[0] == pytest.approx(float(np.dot(x, x)), rel=1e-12, abs=0.0)


def test_parameters_vector_round_trip():
    params = [Parameter(np.arange(6.0).reshape(2, 3)), Parameter(np.ones(2))]
    vec = parameters_to_vector(params)
    assert isinstance(vec, fastnn.Tensor) and vec.dtype == np.float64
    assert_array_equal(vec.data, [0, 1, 2, 3, 4, 5, 1, 1])
    vec.data[0] = 99.0  # a new array, not a view of the parameters
    assert params[0].data[0, 0] == 0.0
    vec.data[0] = 0.0
    vector_to_parameters(vec.detach() * 2, params)  # a Tensor
    assert_array_equal(params[0].data, np.arange(6.0).reshape(2, 3) * 2)
    vector_to_parameters(np.arange(8.0), params)  # or an array
    assert_array_equal(params[1].data, [6.0, 7.0])
    with pytest.raises(ValueError):
        vector_to_parameters(np.ones(3), params)
    with pytest.raises(TypeError):
        vector_to_parameters([1.0] * 8, params)


def test_parameters_to_vector_is_differentiable():
    params = [Parameter(np.arange(6.0).reshape(2, 3)), Parameter(np.ones(2))]
    weights = np.arange(8.0)
    (parameters_to_vector(params) * weights).sum().backward()
    assert_array_equal(params[0].grad.data, weights[:6].reshape(2, 3))
    assert_array_equal(params[1].grad.data, weights[6:])
    with fastnn.no_grad():
        assert parameters_to_vector(params).grad_fn is None


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_clip_grad_value(dtype):
    rng = np.random.default_rng(9)
    params = [Parameter(np.zeros(s, dtype)) for s in [(3, 4), (SERIAL_BELOW + 5,)]]
    grads = [rng.standard_normal(p.shape).astype(dtype) * 3 for p in params]
    for p, g in zip(params, grads):
        p.grad = grad(g.copy())
    params.append(Parameter(np.zeros(2, dtype)))  # grad None: skipped
    assert clip_grad_value_(params, 0.5) is None
    for p, g in zip(params, grads):
        assert p.grad.dtype == dtype
        assert_array_equal(p.grad.data, np.clip(g, dtype(-0.5), dtype(0.5)))
    assert params[-1].grad is None
    with pytest.raises(ValueError, match="clip_value"):
        clip_grad_value_(params, -1.0)
    with pytest.raises(TypeError, match="clip_grad_value_"):
        clip_grad_value_([np.ones(2)], 1.0)


# ------------------------------------------------------------------ PyTorch
TORCH_CASES = [(cls, kw) for cls, _, kw in CASES]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cls,kwargs", TORCH_CASES, ids=CASE_IDS)
def test_against_pytorch(cls, kwargs, dtype):
    torch = pytest.importorskip("torch")
    p0s = [make_problem(s, seed=7)[0].astype(dtype) for s in [(3, 4), (SERIAL_BELOW + 3,)]]
    grads = [[make_problem(p.shape, seed=20 * s + i)[0].astype(dtype) for i, p in enumerate(p0s)]
             for s in range(STEPS)]
    params, opt = run_fastnn(cls, kwargs, p0s, grads, dtype)
    tparams = [torch.nn.Parameter(torch.from_numpy(p0.copy())) for p0 in p0s]
    topt = getattr(torch.optim, cls.__name__)(tparams, foreach=False, **kwargs)
    for step_grads in grads:
        for tp, g in zip(tparams, step_grads):
            tp.grad = torch.from_numpy(g.copy())
        topt.step()
    rtol, atol = (1e-12, 1e-14) if dtype == np.float64 else (2e-6, 1e-6)
    for p, tp in zip(params, tparams):
        assert_allclose(p.data, tp.detach().numpy(), rtol=rtol, atol=atol)
    # PyTorch's state_dict loads into ours and continues the same trajectory
    torch_state = topt.state_dict()
    mine = cls([Parameter(tp.detach().numpy()) for tp in tparams], **kwargs)
    mine.load_state_dict(torch_state)
    for group, tgroup in zip(mine.param_groups, topt.param_groups):
        assert group["lr"] == tgroup["lr"]
    for key, state in mine.state_dict()["state"].items():
        for name, value in state.items():
            expected = torch_state["state"][key][name]
            assert_allclose(value, np.asarray(expected), rtol=0)


def test_schedulers_against_pytorch():
    torch = pytest.importorskip("torch")
    for make, make_torch in [
        (lambda o: lr_scheduler.StepLR(o, 3, gamma=0.3),
         lambda o: torch.optim.lr_scheduler.StepLR(o, 3, gamma=0.3)),
        (lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=5, eta_min=0.01),
         lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=5, eta_min=0.01)),
    ]:
        opt = SGD([Parameter(np.ones(2))], lr=0.2)
        topt = torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.2)
        sched, tsched = make(opt), make_torch(topt)
        for _ in range(13):
            assert sched.get_last_lr() == pytest.approx(tsched.get_last_lr(), rel=1e-12, abs=1e-15)
            opt.step()
            topt.step()
            sched.step()
            tsched.step()


@pytest.mark.parametrize("norm_type", [2.0, math.inf, 1.5])
def test_clip_grad_norm_against_pytorch(norm_type):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    grads = [rng.standard_normal(s) for s in [(4, 3), (SERIAL_BELOW + 1,)]]
    params = [Parameter(np.zeros_like(g)) for g in grads]
    tparams = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads]
    for p, tp, g in zip(params, tparams, grads):
        p.grad, tp.grad = grad(g.copy()), torch.from_numpy(g.copy())
    total = clip_grad_norm_(params, 2.0, norm_type=norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(tparams, 2.0, norm_type=norm_type)
    assert total.shape == tuple(ttotal.shape) and total.dtype == np.float64
    assert total.item() == pytest.approx(float(ttotal), rel=1e-12)
    for p, tp in zip(params, tparams):
        assert_allclose(p.grad.data, tp.grad.numpy(), rtol=1e-12)


def test_clip_grad_value_against_pytorch():
    torch = pytest.importorskip("torch")
    g = np.random.default_rng(10).standard_normal((5, 7))
    p, tp = Parameter(np.zeros_like(g)), torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64))
    p.grad, tp.grad = grad(g.copy()), torch.from_numpy(g.copy())
    clip_grad_value_(p, 0.3)
    torch.nn.utils.clip_grad_value_(tp, 0.3)
    assert_array_equal(p.grad.data, tp.grad.numpy())
