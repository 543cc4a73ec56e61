"""Inference plans (``fastnn.compile``, ``predict``): equal to the eager eval forward
for every layer kind, rebuilt on weight and mode changes, eager where they must be,
and allocating no layer outputs on a repeated call."""
import copy
import threading
import tracemalloc

import numpy as np
import pytest

import fastnn
from fastnn import _warmup, inference, nn
from fastnn.nn import functional as F

from _recurrent_models import States


def _randomise_norms(model, rng):
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            C = m.num_features
            m.running_mean.data[...] = rng.standard_normal(C)
            m.running_var.data[...] = rng.uniform(0.5, 2.0, C)
            if m.affine:
                m.weight.data[...] = rng.standard_normal(C)
                m.bias.data[...] = rng.standard_normal(C)
    return model


def _steps(model):
    plans = inference._PLANS.get(model)
    plan = list(plans.values())[-1]
    return [type(s).__name__ for s in plan.steps] if isinstance(plan, inference.Plan) else plan


class Block(nn.Module):
    """A residual block with a custom forward (functional relu and a skip add)."""

    def __init__(self, c, dtype=None):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False, dtype=dtype)
        self.bn1 = nn.BatchNorm2d(c, dtype=dtype)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False, dtype=dtype)
        self.bn2 = nn.BatchNorm2d(c, dtype=dtype)

    def forward(self, x):
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class Shared(nn.Module):
    """A convolution whose output feeds its BatchNorm and also the result (no fold)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU()

    def forward(self, x):
        y = self.conv(x)
        return self.act(self.bn(y)) + y


class Branchy(nn.Module):
    """Calls different layers depending on the data: the plan must notice."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(4, 3)

    def forward(self, x):
        return self.a(x) if float(x.sum()) > 0 else self.b(x)


def _models(dtype):
    d = {"dtype": dtype}
    return {
        "mlp": (nn.Sequential(nn.Linear(12, 16, **d), nn.ReLU(), nn.Linear(16, 8, **d), nn.BatchNorm1d(8, **d),
                              nn.LeakyReLU(0.1), nn.Linear(8, 5, **d), nn.Sigmoid()), (6, 12)),
        "packed": (nn.Sequential(nn.Linear(64, 48, **d), nn.ReLU(), nn.Linear(48, 40, bias=False, **d)), (9, 64)),
        "packed_parallel": (nn.Sequential(nn.Linear(64, 48, **d), nn.GELU(), nn.Linear(48, 2100, **d)), (300, 64)),
        "linear3d": (nn.Sequential(nn.Linear(7, 9, **d), nn.Tanh(), nn.Linear(9, 3, **d)), (2, 5, 7)),
        "cnn": (nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, **d), nn.BatchNorm2d(8, **d), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Conv2d(8, 6, 3, stride=2, dilation=1, groups=2, **d),
                              nn.BatchNorm2d(6, affine=False, **d), nn.GELU(), nn.AvgPool2d(2, ceil_mode=True),
                              nn.Flatten(), nn.Dropout(0.5), nn.Linear(6, 4, **d)), (3, 3, 12, 12)),
        "resnet": (nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False, **d), nn.BatchNorm2d(8, **d),
                                 nn.ReLU(), Block(8, dtype), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(8, 3, **d)), (2, 3, 8, 8)),
        "conv1d": (nn.Sequential(nn.Conv1d(2, 6, 5, stride=2, padding=1, **d), nn.BatchNorm1d(6, **d), nn.ReLU(),
                                 nn.Conv1d(6, 4, 3, **d), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 29, 3, **d)),
                   (3, 2, 64)),
        "conv1d_long": (nn.Sequential(nn.Conv1d(2, 5, 3, padding=1, **d), nn.BatchNorm1d(5, **d), nn.Sigmoid()),
                        (2, 2, 80)),
        "standalone": (nn.Sequential(nn.BatchNorm2d(3, **d), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1),
                                     nn.BatchNorm2d(3, **d), nn.Sigmoid()), (2, 3, 9, 9)),
        "lstm": (nn.Sequential(nn.LSTM(5, 7, batch_first=True, dtype=dtype), nn.Linear(7, 2, **d)), (3, 4, 5)),
        "lstm_stack_last": (nn.Sequential(nn.LSTM(6, 9, num_layers=2, batch_first=True, dtype=dtype),
                                          nn.LastStep(batch_first=True), nn.Linear(9, 3, **d)), (1, 7, 6)),
        "lstm_panels": (nn.Sequential(nn.LSTM(4, 40, dtype=dtype), nn.Tanh()), (3, 11, 4)),
        "gru_bidirectional": (nn.Sequential(nn.GRU(4, 6, num_layers=2, bidirectional=True, dtype=dtype),
                                            nn.Linear(12, 2, **d)), (5, 2, 4)),
        "rnn_relu": (nn.Sequential(nn.RNN(3, 33, nonlinearity="relu", batch_first=True, dtype=dtype),
                                   nn.Linear(33, 2, **d)), (2, 6, 3)),
        "attention": (nn.Sequential(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True,
                                                               dtype=dtype), nn.Linear(8, 2, **d)), (2, 5, 8)),
        "shared": (Shared().to(dtype), (2, 3, 6, 6)),
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(_models(np.float32)))
def test_plan_equals_eager_eval_forward(name, dtype):
    rng = np.random.default_rng(0)
    fastnn.manual_seed(0)
    model, shape = _models(dtype)[name]
    model = _randomise_norms(model, rng).eval()
    x = fastnn.from_numpy(rng.standard_normal(shape).astype(dtype))
    compiled = fastnn.compile(model)
    with fastnn.no_grad():
        want = model(x).data
        traced = compiled(x).data  # the first call at a shape runs eagerly, recording the layers
        first = compiled(x).data  # then the plan
        second = compiled(x).data
    tol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_array_equal(traced, want)
    np.testing.assert_allclose(first, want, rtol=tol, atol=tol)
    np.testing.assert_array_equal(second, first)
    assert first is not second  # results are the caller's, not the plan's buffers
    assert isinstance(inference._PLANS[model][next(iter(inference._PLANS[model]))], inference.Plan)


def test_folding_and_fusion_are_planned():
    model, _ = _models(np.float32)["resnet"]
    model.eval()
    with fastnn.no_grad():
        fastnn.compile(model)(np.ones((2, 3, 8, 8), np.float32))
    # conv+bn+relu; in the block conv1+bn1+F.relu, then conv2+bn2 with the residual add and
    # the F.relu after it; pool, (flatten,) linear
    assert _steps(model) == ["LayerStep", "Passed", "Passed", "LayerStep", "Passed", "Passed", "LayerStep",
                             "Passed", "ResidualStep", "Passed", "PoolStep", "LayerStep"]
    packed, shape = _models(np.float32)["packed"]
    with fastnn.no_grad():
        for _ in range(2):
            fastnn.compile(packed.eval())(np.ones(shape, np.float32))
    plan = list(inference._PLANS[packed].values())[0]
    assert [hasattr(s, "packed") for s in plan.steps] == [True, False, True]  # both weights pre-packed
    shared = Shared().eval()
    with fastnn.no_grad():
        fastnn.compile(shared)(np.ones((1, 3, 6, 6), np.float32))
    assert _steps(shared) == ["LayerStep", "NormStep", "ActivationStep", "Step"]  # conv output used twice: no fold


def _cnn(seed, batch=None):
    """The "cnn" model in eval mode with random norm statistics, compiled, and an input."""
    rng = np.random.default_rng(seed)
    model, shape = _models(np.float32)["cnn"]
    model = _randomise_norms(model, rng).eval()
    x = rng.standard_normal(shape if batch is None else (batch,) + shape[1:]).astype(np.float32)
    return model, fastnn.compile(model), x


def test_plan_rebuilds_after_weight_and_mode_changes():
    model, compiled, x = _cnn(1)

    def check():
        with fastnn.no_grad():
            np.testing.assert_allclose(compiled(x).data, model(x).data, rtol=2e-5, atol=2e-5)

    check()
    opt = fastnn.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    F.mse_loss(model(x), fastnn.zeros(x.shape[0], 4)).backward()
    opt.step()  # updates weights and (in training) the running statistics
    model.eval()
    check()
    state = {k: v * 0.5 for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    check()
    with fastnn.no_grad():
        model[0].weight.mul_(2.0)  # an in-place op
    check()
    model[0].weight.data = model[0].weight.data * 3  # a new array
    check()
    with fastnn.no_grad():
        model[0].weight[...] = 0.5  # Tensor item assignment counts as a change
    check()
    model[0].bias.data[...] = 7.0  # a raw NumPy write: unseen until reset
    inference.reset(compiled)
    check()


def test_plan_is_not_used_in_training_mode_or_with_grad():
    model, shape = _models(np.float32)["mlp"]
    compiled = fastnn.compile(model)
    x = fastnn.randn(*shape)
    out = compiled(x)  # training mode: the model itself, recording
    assert out.requires_grad
    out.sum().backward()
    assert model[0].weight.grad is not None
    compiled.eval()
    assert not model.training
    y = compiled(x)  # eval, grad enabled: eager, recording
    assert y.requires_grad and model not in inference._PLANS
    with fastnn.no_grad():
        assert not compiled(x).requires_grad
    assert model in inference._PLANS


def test_data_dependent_forward_falls_back_to_eager():
    model = Branchy().eval()
    compiled = fastnn.compile(model)
    pos, neg = fastnn.ones(2, 4), -fastnn.ones(2, 4)
    with fastnn.no_grad():
        np.testing.assert_allclose(compiled(pos).data, model(pos).data)
        np.testing.assert_allclose(compiled(neg).data, model(neg).data)  # another layer than traced
        np.testing.assert_allclose(compiled(pos).data, model(pos).data)
    assert isinstance(inference._PLANS[model][next(iter(inference._PLANS[model]))], inference._Dynamic)


def test_compile_api():
    model = nn.Sequential(nn.Linear(3, 2))
    assert fastnn.compile(model, disable=True) is model
    compiled = fastnn.compile(model, mode="max-autotune", dynamic=False, fullgraph=True)
    assert list(compiled.state_dict()) == ["_orig_mod.0.weight", "_orig_mod.0.bias"]
    assert compiled._orig_mod is model and compiled.fuse is model.fuse  # attribute reads fall through
    with pytest.raises(TypeError, match="fastnn.compile: expected a fastnn.nn.Module"):
        fastnn.compile(lambda x: x)
    copied = copy.deepcopy(compiled)
    assert type(copied) is inference.CompiledModule and copied._orig_mod is not model


def test_compiled_module_saves_and_loads(tmp_path):
    model = nn.Sequential(nn.Linear(3, 2))
    fastnn.save(fastnn.compile(model), tmp_path / "m.fnn")
    loaded = fastnn.load(tmp_path / "m.fnn")
    assert type(loaded) is inference.CompiledModule
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()["_orig_mod." + k].data, v.data)


def test_predict_runs_on_a_plan_and_threads_fall_back():
    model, compiled, x = _cnn(2, batch=10)
    with fastnn.no_grad():
        want = model(x).data
    np.testing.assert_allclose(fastnn.predict(model, x, batch_size=4), want, rtol=2e-5, atol=2e-5)
    assert len(inference._PLANS[model]) == 2  # batches of 4 and the last of 2
    results, errors = [], []

    def work():
        try:
            with fastnn.no_grad():
                for _ in range(5):
                    results.append(compiled(x).data)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        np.testing.assert_allclose(r, want, rtol=2e-5, atol=2e-5)


def _peak_bytes(fn, x):
    tracemalloc.start()
    try:
        fn(x)  # (a compiled model: the traced call, then the first on its plan)
        fn(x)
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn(x)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_repeated_call_allocates_no_layer_outputs():
    """Measured with tracemalloc, which sees NumPy's arrays and the kernels' own
    allocations: eager inference allocates every layer's output; on the plan, a
    convolution net allocates only its result and the packing room of the
    convolution's matrix products (about 32 KB here), and Linear layers, whose
    weights the plan packs once, nothing at all."""
    rng = np.random.default_rng(3)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(16), nn.Sigmoid(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))
    model = _randomise_norms(model, rng).eval()
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    compiled = fastnn.compile(model)
    # one thread: each convolution slot's packing room is taken in turn (with more,
    # the slots' rooms may or may not be live at the same time)
    with fastnn.no_grad(), fastnn.set_num_threads(1):
        eager = _peak_bytes(model, x)
        planned = _peak_bytes(compiled, x)
    assert eager > 2 * 16 * 32 * 32 * 4  # at least the first layer's output
    assert planned < 48 * 1024, (planned, eager)

    mlp = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 16)).eval()
    x = rng.standard_normal((8, 64)).astype(np.float32)
    compiled = fastnn.compile(mlp)
    with fastnn.no_grad():
        planned = _peak_bytes(compiled, x)
    assert planned < 8 * 16 * 4 + 2048, planned  # the copied-out result and a few Python objects


def test_plain_sequential_runs_bound_to_its_buffers(monkeypatch):
    """A Sequential of planned layers and views runs as calls bound to the buffers
    they read (the views cost nothing); anything else in it (a view at its end, a
    layer run as it is) keeps the step-by-step loop. Equal to eager either way."""
    rng = np.random.default_rng(7)
    lenet = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3), nn.ReLU(),
                          nn.Flatten(), nn.Dropout(0.3), nn.Linear(6 * 2 * 2, 5), nn.Tanh(), nn.Linear(5, 3))
    net1d = nn.Sequential(nn.Conv1d(1, 8, 5, stride=2, padding=1), nn.ReLU(), nn.Conv1d(8, 8, 3, stride=2),
                          nn.Identity(), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4, 2))
    ends_in_view = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten())
    unplanned = nn.Sequential(nn.Linear(6, 5), nn.Softmax(dim=-1), nn.Linear(5, 2))
    cases = [(lenet, (1, 1, 8, 8), True), (lenet, (3, 1, 8, 8), True), (net1d, (1, 1, 21), True),
             (ends_in_view, (2, 1, 5, 5), False), (unplanned, (4, 6), False)]
    for model, shape, bound in cases:
        model.eval()
        compiled = fastnn.compile(model)
        for n in range(2):
            x = rng.standard_normal(shape).astype(np.float32)
            with fastnn.no_grad():
                want = model(x).data
                results = [compiled(x).data for _ in range(3)]
            for got in results:
                np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
            assert results[1] is not results[2]
        plan = inference._PLANS[model][inference._signature((x,))]
        assert (plan.bound is not None) == bound, (model, plan.bound)
    # on the bound chain a view's forward is not called at all
    x = rng.standard_normal((1, 1, 21)).astype(np.float32)
    with fastnn.no_grad():
        fastnn.compile(net1d)(x)  # (traced again: the other models' eval() changed the mode generation)
        calls = []
        monkeypatch.setattr(nn.Flatten, "forward", lambda self, x: calls.append(1) or x)
        fastnn.compile(net1d)(x)
    assert not calls and inference._PLANS[net1d][inference._signature((x,))].bound is not None
    monkeypatch.undo()
    # a changed weight still rebuilds the plan
    with fastnn.no_grad():
        before = fastnn.compile(net1d)(x).data
        net1d[0].weight.mul_(2.0)
        after = fastnn.compile(net1d)(x).data
        np.testing.assert_allclose(after, net1d(x).data, rtol=2e-5, atol=2e-5)
    assert not np.allclose(before, after)


def test_first_conv1d_layer_runs_on_the_path_chosen_for_its_plan(monkeypatch):
    """A plan's first Conv1d reads the caller's input, a new array each call: it still
    takes the position-rows product a bound step would (chosen once, when the plan is
    built), on that call's input, and equals eager."""
    from fastnn.kernels import conv1d as conv1d_k

    real, read = conv1d_k._forward_rows, []
    monkeypatch.setattr(conv1d_k, "_forward_rows", lambda out, x, *rest: read.append(x) or real(out, x, *rest))
    rng = np.random.default_rng(3)
    model = nn.Sequential(nn.Conv1d(32, 32, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(32 * 10, 3)).eval()
    compiled = fastnn.compile(model)
    inputs = [rng.standard_normal((1, 32, 19)).astype(np.float32) for _ in range(4)]
    with fastnn.no_grad():
        for x in inputs:
            np.testing.assert_allclose(compiled(x).data, model(x).data, rtol=2e-5, atol=2e-5)
    assert [any(a is x for a in read) for x in inputs] == [False, True, True, True]  # (the first call traces)


def test_read_only_and_strided_inputs_get_plans_of_their_own():
    model, compiled, x = _cnn(4)
    frozen = x.copy()
    frozen.flags.writeable = False
    strided = np.asfortranarray(x)
    with fastnn.no_grad():
        want = model(x).data
        for arg in (x, frozen, strided, x, frozen, strided):
            np.testing.assert_allclose(compiled(arg).data, want, rtol=2e-5, atol=2e-5)
    assert len(inference._PLANS[model]) == 3


def test_buffers_are_reused_once_nothing_reads_them():
    layers = []
    for _ in range(6):
        layers += [nn.Linear(32, 32), nn.Tanh(), nn.Dropout(0.1)]
    model = nn.Sequential(*layers, nn.Linear(32, 4)).eval()
    compiled = fastnn.compile(model)
    x = np.random.default_rng(5).standard_normal((16, 32)).astype(np.float32)
    with fastnn.no_grad():
        want = model(x).data
        for _ in range(3):
            np.testing.assert_allclose(compiled(x).data, want, rtol=2e-5, atol=2e-5)
    plan = list(inference._PLANS[model].values())[0]
    assert len(plan.buffers) == 2  # seven layer outputs in two buffers, taken in turn
    block = Block(4).eval()  # the input x is read again by the residual add: its buffer is kept
    x = fastnn.from_numpy(np.random.default_rng(6).standard_normal((2, 4, 5, 5)).astype(np.float32))
    compiled = fastnn.compile(nn.Sequential(nn.Conv2d(4, 4, 1), block).eval())
    with fastnn.no_grad():
        want = compiled._orig_mod(x).data
        for _ in range(3):
            np.testing.assert_allclose(compiled(x).data, want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("case", range(len(_warmup._layer_cases())),
                         ids=[label for label, _, _ in _warmup._layer_cases()])
def test_every_layer_kind_on_a_plan(case):
    """Every layer kind fastnn has (the warmup's cases), eval mode, grad off: the plan
    (the third call) equals the eager forward; kinds a plan does not take over run
    eagerly inside it."""
    _, factory, make_input = _warmup._layer_cases()[case]
    fastnn.manual_seed(case)
    model = factory().eval()
    x = make_input(np.random.default_rng(case), np.float32)
    compiled = fastnn.compile(model)
    with fastnn.no_grad():
        want = _first(model(x))
        for _ in range(3):
            got = _first(compiled(x))
    np.testing.assert_allclose(got.data, want.data, rtol=2e-5, atol=2e-5)


def _first(out):
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("layer", [
    nn.LSTM(5, 8, num_layers=2, bidirectional=True, batch_first=True), nn.GRU(5, 8), nn.RNN(5, 8, num_layers=3)],
    ids=["lstm", "gru", "rnn"])
def test_recurrent_layers_on_a_plan(layer):
    """An RNN, LSTM or GRU called on its input alone runs as the plan's RecurrentStep:
    its output and final states equal the eager ones, are copied out to the caller,
    follow weight changes, and a repeated call allocates nothing but those copies.
    One, a few and many rows: rows one by one, and in padded panels of the packed W_hh."""
    rng = np.random.default_rng(11)
    model = States(layer).eval()
    compiled = fastnn.compile(model)
    for N in (1, 3, 19):
        shape = (N, 6, 5) if layer.batch_first else (6, N, 5)
        x = rng.standard_normal(shape).astype(np.float32)
        with fastnn.no_grad():
            want = [t.data for t in model(x)]
            runs = [[t.data for t in compiled(x)] for _ in range(3)]
        assert "RecurrentStep" in _steps(model)
        for got in runs[1:]:
            for g, w in zip(got, want):
                np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-5)
        assert all(a is not b for a, b in zip(runs[1], runs[2]))
    with fastnn.no_grad():
        layer.weight_hh_l0.mul_(0.5)
        np.testing.assert_allclose(compiled(x)[0].data, model(x)[0].data, rtol=2e-5, atol=2e-5)
        planned = _peak_bytes(compiled, x)
    results = sum(t.data.nbytes for t in model(x))
    assert planned < results + 4096, (planned, results)


class _Last(nn.Module):
    """A module of no state whose forward makes no step: the last time step."""

    def forward(self, x):
        return x[:, -1]


class _Relu(nn.Module):
    """A module of no state whose forward makes a step (a relu after the layer before)."""

    def forward(self, x):
        return fastnn.nn.functional.relu(x)


class _Holder(nn.Module):
    """A module that holds a layer."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(6, 6)

    def forward(self, x):
        return self.inner(x)


@pytest.mark.parametrize("middle,chained", [(_Last, True), (_Relu, False), (_Holder, False)],
                         ids=["stateless", "makes_a_step", "holds_a_layer"])
def test_sequential_with_a_stateless_module_runs_as_a_chain(middle, chained, rng):
    # a custom module of no parameters, buffers or children in a Sequential is called
    # as it is between the steps (the plan skips the Sequential's forward); one that
    # makes a step of its own, or holds a layer, leaves the model's forward to run
    if middle is _Last:
        model = nn.Sequential(nn.LSTM(4, 6, batch_first=True), middle(), nn.Linear(6, 3)).eval()
        x = rng.standard_normal((2, 5, 4)).astype(np.float32)
    else:  # (last: only the count of the steps it made tells)
        model = nn.Sequential(nn.Linear(4, 6), middle()).eval()
        x = rng.standard_normal((2, 4)).astype(np.float32)
    compiled = fastnn.compile(model)
    with fastnn.no_grad():
        want = model(x).data
        for _ in range(3):
            np.testing.assert_allclose(compiled(x).data, want, rtol=2e-5, atol=2e-5)
    plan = list(inference._PLANS[model].values())[-1]
    assert (plan.chain is not None) == chained
