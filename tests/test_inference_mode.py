"""``fastnn.inference_mode``: ``no_grad``, and the outermost module call in eval mode
runs on an inference plan from the second call at an input shape on."""
import threading

import numpy as np
import pytest

import fastnn
from fastnn import inference, nn
from fastnn.inference.plan import Plan


def _model():
    fastnn.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 5 * 5, 3))
    model[1].running_mean.data[:] = np.linspace(-0.2, 0.3, 4)  # a folding that changes the weights
    model[1].running_var.data[:] = np.linspace(0.5, 2.0, 4)
    return model.eval()


def _plans(model):
    return list(inference._PLANS.get(model, {}).values())


def _x(batch=2, seed=1):
    return np.random.default_rng(seed).standard_normal((batch, 2, 5, 5)).astype(np.float32)


def test_an_eval_model_runs_on_its_plan_from_the_second_call():
    model, x = _model(), _x()
    with fastnn.no_grad():
        eager = model(x).data
    assert _plans(model) == []  # no_grad alone: eager, no plan
    with fastnn.inference_mode():
        first = model(x)
        assert _plans(model) == [] and not fastnn.is_grad_enabled()  # seen once: as it is
        second, third = model(x), model(x)
    plans = _plans(model)
    assert len(plans) == 1 and type(plans[0]) is Plan and plans[0].bound is not None
    np.testing.assert_array_equal(first.data, eager)
    np.testing.assert_array_equal(second.data, eager)  # the trace runs the layers as they are
    np.testing.assert_allclose(third.data, eager, rtol=1e-5, atol=1e-6)  # folded batch norm
    with fastnn.no_grad():
        compiled = fastnn.compile(model)(x)
    np.testing.assert_array_equal(third.data, compiled.data)  # what fastnn.compile runs
    fourth = fastnn.compile(model)(x)  # (grad on: the model as it is)
    assert fourth.requires_grad
    with fastnn.inference_mode():
        fifth = model(x)
    np.testing.assert_array_equal(fifth.data, third.data)
    assert not third.requires_grad and fifth.data is not third.data  # results are the caller's


def test_shapes_seen_once_build_no_plan_and_training_mode_none():
    model = _model()
    with fastnn.inference_mode():
        for batch in range(1, 9):
            model(_x(batch))
    assert _plans(model) == []
    model.train()
    with fastnn.inference_mode():
        for _ in range(3):
            out = model(_x())
    assert _plans(model) == [] and not out.requires_grad


def test_only_the_outermost_call_plans_and_weights_and_mode_changes_count():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = _model()

        def forward(self, x):
            return self.body(x) * 2

    net, x = Net().eval(), _x()
    with fastnn.inference_mode():
        for _ in range(3):
            out = net(x)
        assert len(_plans(net)) == 1 and _plans(net.body) == []
        with fastnn.no_grad():
            net.body[4].bias.data += 1.0  # an in-place weight update: the plan is rebuilt
        moved = net(x)
    np.testing.assert_allclose(moved.data, out.data + 2.0, rtol=1e-5, atol=1e-5)
    with fastnn.no_grad():
        eager = net(x).data
    np.testing.assert_allclose(moved.data, eager, rtol=1e-5, atol=1e-5)


def test_compiled_modules_and_numpy_inputs():
    model, x = _model(), _x()
    compiled = fastnn.compile(model)
    with fastnn.inference_mode():
        for _ in range(3):
            a = compiled(x)  # the wrapper plans on its own, as under no_grad
            b = model(fastnn.from_numpy(x))
    assert _plans(compiled) == [] and len(_plans(model)) == 1
    np.testing.assert_array_equal(a.data, b.data)


def test_inference_mode_false_and_decorators():
    model, x = _model(), _x()
    with fastnn.inference_mode():
        with fastnn.inference_mode(False):
            assert fastnn.is_grad_enabled()
            for _ in range(3):
                model(x)
        assert not fastnn.is_grad_enabled()
    assert _plans(model) == []

    @fastnn.inference_mode
    def bare(x):
        return model(x), fastnn.is_grad_enabled()

    @fastnn.inference_mode()
    def called(x):
        return model(x), fastnn.is_grad_enabled()

    for fn in (bare, called, bare):
        out, grad = fn(x)
        assert not grad and not out.requires_grad
    assert fastnn.is_grad_enabled() and len(_plans(model)) == 1


def test_another_thread_is_not_in_inference_mode():
    model, x = _model(), _x()
    seen = {}

    def other():
        for _ in range(3):
            out = model(x)
        seen["grad"], seen["requires_grad"] = fastnn.is_grad_enabled(), out.requires_grad

    with fastnn.inference_mode():
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert seen == {"grad": True, "requires_grad": True} and _plans(model) == []


@pytest.mark.parametrize("bad", [object(), None])
def test_a_model_with_non_array_inputs_runs_as_it_is(bad):
    class Pick(nn.Module):
        def forward(self, x, extra):
            return x * 2

    model, x = Pick().eval(), fastnn.ones(2, 3)
    with fastnn.inference_mode():
        for _ in range(3):
            out = model(x, bad)
    np.testing.assert_array_equal(out.data, 2 * np.ones((2, 3), np.float32))
    assert _plans(model) == []


def test_results_in_lists_and_dicts_are_the_callers():
    class Heads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = _model()

        def forward(self, x):
            out = self.body(x)
            return {"logits": out, "all": [out, out * 2]}

    model, x = Heads().eval(), _x()
    with fastnn.inference_mode():
        for _ in range(3):
            first = model(x)
        kept = first["logits"].data.copy()
        model(_x(seed=2))  # another input: the plan's buffers are written again
    np.testing.assert_array_equal(first["logits"].data, kept)
    np.testing.assert_array_equal(first["all"][0].data, kept)
    assert len(_plans(model)) == 1
