"""Dropout, Dropout1d, Dropout2d and their functional forms: masks, scaling, the
gradient (the mask itself), eval/p=0 identity, generators and bad arguments."""
import numpy as np
import pytest

import fastnn
import fastnn.nn.functional as F
from fastnn import nn


def leaf(array):
    return fastnn.tensor(np.asarray(array), requires_grad=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_scales_kept_and_gradient_is_the_mask(dtype, rng):
    x = leaf((rng.random((300, 100)) + 0.5).astype(dtype))
    out = F.dropout(x, 0.3)
    assert out.dtype == dtype and out.shape == x.shape and out.requires_grad
    kept = out.data != 0
    assert 0.67 < kept.mean() < 0.73
    np.testing.assert_allclose(out.data[kept], x.data[kept] / 0.7, rtol=1e-6)
    g = rng.standard_normal(x.shape).astype(dtype)
    out.backward(g)
    np.testing.assert_allclose(x.grad.data, np.where(kept, g / 0.7, 0), rtol=1e-6)


def test_module_train_eval_and_generator(rng):
    layer = nn.Dropout(0.3, generator=0)
    x = np.ones((200, 100), np.float32)
    y = layer(x)
    kept = y.data != 0
    assert 0.65 < kept.mean() < 0.75
    np.testing.assert_allclose(y.data[kept], 1 / 0.7, rtol=1e-6)
    assert not np.array_equal(layer(x).data, y.data)  # an int seed is one stream that advances
    np.testing.assert_array_equal(nn.Dropout(0.3, generator=0)(x).data, y.data)  # same seed, same mask
    xt = leaf(x)
    layer.eval()
    assert layer(xt) is xt  # the input itself: no copy, no node
    assert nn.Dropout(0.0)(xt) is xt
    assert F.dropout(xt, 0.5, training=False) is xt
    np.testing.assert_array_equal(layer(x), x)
    fastnn.manual_seed(5)
    a = nn.Dropout(0.5)(x).data
    fastnn.manual_seed(5)
    np.testing.assert_array_equal(F.dropout(x, 0.5).data, a)  # fastnn's default generator
    assert repr(nn.Dropout(0.25)) == "Dropout(p=0.25, inplace=False)"


def test_no_grad_and_non_contiguous_input(rng):
    x = leaf(rng.standard_normal((6, 8)))
    with fastnn.no_grad():
        out = F.dropout(x, 0.5)
    assert out.grad_fn is None and not out.requires_grad
    view = rng.standard_normal((8, 6)).T
    out = F.dropout(view, 0.5, generator=1)
    kept = out.data != 0
    np.testing.assert_allclose(out.data[kept], 2 * view[kept])
    assert np.all(F.dropout(np.ones(5), 1.0).data == 0)


@pytest.mark.parametrize("fn,shape,lead", [(F.dropout1d, (4, 6, 10), 2), (F.dropout1d, (6, 10), 1),
                                           (F.dropout2d, (3, 5, 4, 4), 2), (F.dropout2d, (3, 5, 7), 2)])
def test_channel_dropout(fn, shape, lead, rng):
    x = leaf(rng.random(shape) + 0.5)
    out = fn(x, 0.4, generator=3)
    ratio = out.data / x.data
    per_channel = ratio.reshape(shape[:lead] + (-1,))
    np.testing.assert_allclose(per_channel, np.broadcast_to(per_channel[..., :1], per_channel.shape),
                               rtol=1e-12)  # one draw per channel
    assert set(np.unique(np.round(ratio, 9))) == {0.0, round(1 / 0.6, 9)}
    g = rng.standard_normal(shape)
    out.backward(g)
    np.testing.assert_allclose(x.grad.data, g * ratio, rtol=1e-12)
    assert fn(x, 0.4, training=False) is x


def test_channel_dropout_modules(rng):
    x = np.ones((20, 30, 8), np.float32)
    out = nn.Dropout1d(0.5, generator=0)(x).data
    assert out.dtype == np.float32 and 0.4 < (out[:, :, 0] != 0).mean() < 0.6
    assert np.all(out == out[:, :, :1])
    out2 = nn.Dropout2d(0.5, generator=0)(np.ones((4, 6, 3, 3))).data
    assert np.all(out2.reshape(4, 6, 9) == out2.reshape(4, 6, 9)[..., :1])


def test_bad_arguments():
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="Dropout"):
            nn.Dropout(bad)
    with pytest.raises(TypeError, match="Dropout"):
        nn.Dropout("0.5")
    with pytest.raises(ValueError, match="dropout: dropout probability has to be between 0 and 1"):
        F.dropout(np.ones(3), 1.5)
    with pytest.raises(ValueError, match=r"dropout2d: expected a 3-D or 4-D input, got shape \(3, 4\)"):
        F.dropout2d(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"dropout1d: expected a 2-D or 3-D input"):
        nn.Dropout1d()(np.ones((2, 3, 4, 5)))
    with pytest.raises(TypeError):
        F.dropout(np.array(["a"]))
