"""Losses against the references, gradient checks, and input validation."""
import numpy as np
import pytest

import fastnn
from fastnn import nn

import reference as ref


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (3, 2, 7), (5000, 3)])
def test_mse(dtype, shape, rng):
    pred = rng.standard_normal(shape).astype(dtype)
    target = rng.standard_normal(shape).astype(dtype)
    loss = nn.MSELoss()
    assert loss(pred, target) == pytest.approx(ref.mse(pred, target), rel=1e-5 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(loss.backward(), 2 * (pred - target) / pred.size, rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,c", [(1, 1), (1, 10), (7, 3), (64, 10)])
def test_cross_entropy(dtype, n, c, rng):
    logits = (rng.standard_normal((n, c)) * 5).astype(dtype)
    target = rng.integers(0, c, n)
    loss = nn.CrossEntropyLoss()
    assert loss(logits, target) == pytest.approx(ref.cross_entropy(logits, target),
                                                 rel=1e-5 if dtype == np.float32 else 1e-12, abs=1e-6)
    expected = ref.softmax(logits)
    expected[np.arange(n), target] -= 1
    np.testing.assert_allclose(loss.backward(), expected / n, rtol=1e-4, atol=1e-7)


def test_cross_entropy_is_stable_for_huge_logits():
    loss = nn.CrossEntropyLoss()
    value = loss(np.array([[1000.0, -1000.0, 0.0]]), np.array([0]))
    assert value == pytest.approx(0.0, abs=1e-12)
    assert np.all(np.isfinite(loss.backward()))


@pytest.mark.parametrize("shape", [(4,), (6, 3)])
def test_bce_with_logits(shape, rng):
    x = rng.standard_normal(shape) * 4
    t = rng.random(shape)
    loss = nn.BCEWithLogitsLoss()
    assert loss(x, t) == pytest.approx(ref.bce_with_logits(x, t), rel=1e-10)
    assert loss(np.array([800.0, -800.0]), np.array([1.0, 0.0])) == pytest.approx(0.0, abs=1e-12)


def test_loss_gradchecks(rng):
    assert fastnn.gradcheck(nn.MSELoss(), rng.standard_normal((4, 3)), rng.standard_normal((4, 3)))
    assert fastnn.gradcheck(nn.CrossEntropyLoss(), rng.standard_normal((5, 4)), rng.integers(0, 4, 5))
    assert fastnn.gradcheck(nn.BCEWithLogitsLoss(), rng.standard_normal((5, 2)), rng.random((5, 2)))


def test_loss_backward_scales_by_grad_output(rng):
    loss = nn.MSELoss()
    loss(rng.standard_normal(3), rng.standard_normal(3))
    np.testing.assert_allclose(loss.backward(2.0), 2 * loss.backward())


@pytest.mark.parametrize("target,error,match", [
    (np.array([0, 3]), ValueError, r"\[0, 3\).*\[0, 3\]"),
    (np.array([-1, 0]), ValueError, r"\[0, 3\)"),
    (np.array([0.5, 1.0]), TypeError, "integer"),
    (np.array([0, 1, 2]), ValueError, r"\(2,\)"),
    (np.array([[0], [1]]), ValueError, "1-D target"),
])
def test_cross_entropy_bad_targets(target, error, match):
    with pytest.raises(error, match=match):
        nn.CrossEntropyLoss()(np.zeros((2, 3)), target)


def test_loss_shape_and_type_errors():
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: expected 2-D input"):
        nn.CrossEntropyLoss()(np.zeros(3), np.array([0]))
    with pytest.raises(ValueError, match=r"MSELoss: target shape \(3,\) does not match input shape \(2,\)"):
        nn.MSELoss()(np.zeros(2), np.zeros(3))
    with pytest.raises(TypeError, match="MSELoss"):
        nn.MSELoss()(np.array(["a", "b"]), np.zeros(2))
    with pytest.raises(RuntimeError, match="no cached forward"):
        nn.MSELoss().backward()
