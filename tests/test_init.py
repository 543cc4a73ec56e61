"""fastnn.nn.init: in place on Tensors, Parameters and arrays, outside autograd, with
PyTorch's formulas (compared with torch.nn.init where the result is deterministic)."""
import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fastnn
from fastnn.nn import Parameter, init

RANDOM = [
    ("uniform_", lambda t: init.uniform_(t, -0.5, 0.5, generator=0)),
    ("normal_", lambda t: init.normal_(t, 1.0, 0.1, generator=0)),
    ("trunc_normal_", lambda t: init.trunc_normal_(t, std=0.02, generator=0)),
    ("xavier_uniform_", lambda t: init.xavier_uniform_(t, generator=0)),
    ("xavier_normal_", lambda t: init.xavier_normal_(t, gain=2.0, generator=0)),
    ("kaiming_uniform_", lambda t: init.kaiming_uniform_(t, a=math.sqrt(5), generator=0)),
    ("kaiming_normal_", lambda t: init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu", generator=0)),
    ("orthogonal_", lambda t: init.orthogonal_(t, generator=0)),
]
FIXED = [
    ("zeros_", init.zeros_), ("ones_", init.ones_), ("constant_", lambda t: init.constant_(t, 0.25)),
    ("eye_", init.eye_),
]


@pytest.mark.parametrize("name,fn", RANDOM + FIXED, ids=[n for n, _ in RANDOM + FIXED])
def test_in_place_on_parameters_tensors_and_arrays(name, fn):
    shape = (6, 5)
    p = Parameter(np.full(shape, 7.0, np.float32))
    array = p.data
    version = p._version
    assert fn(p) is p  # returns its argument; no in-place error although p requires grad
    assert p.data is array and p.dtype == np.float32 and p.requires_grad and p.grad_fn is None
    assert p._version > version and not np.any(array == 7.0)
    t = fastnn.zeros(shape, dtype=fastnn.float64)
    assert fn(t) is t and t.grad_fn is None and not t.requires_grad
    a = np.full(shape, 7.0)
    assert fn(a) is a
    if name in dict(RANDOM):  # seeded: the same values whatever holds them
        assert_allclose(p.data, t.data, rtol=1e-6, atol=1e-7)
        assert_array_equal(t.data, a)


def test_parameter_grad_flows_after_init():
    w = init.xavier_uniform_(Parameter(np.zeros((3, 4))))
    (w * w).sum().backward()
    assert_allclose(w.grad.data, 2 * w.data)


def test_distribution_bounds_and_moments():
    big = Parameter(np.zeros((400, 250)))
    init.kaiming_uniform_(big, a=math.sqrt(5), generator=1)
    bound = math.sqrt(3) * math.sqrt(2 / (1 + 5)) / math.sqrt(250)  # 1 / sqrt(fan_in)
    assert np.abs(big.data).max() <= bound and np.abs(big.data).max() > 0.99 * bound
    init.xavier_normal_(big, generator=1)
    assert big.data.std() == pytest.approx(math.sqrt(2 / 650), rel=0.02)
    init.kaiming_normal_(big, mode="fan_out", nonlinearity="relu", generator=1)
    assert big.data.std() == pytest.approx(math.sqrt(2 / 400), rel=0.02)
    conv = np.zeros((8, 4, 3, 3))
    assert init._calculate_fan_in_and_fan_out(conv) == (36, 72)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(Parameter(np.zeros(5)))
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_uniform_(big, mode="fan")
    with pytest.raises(TypeError, match="init"):
        init.zeros_([1.0, 2.0])


def _truncated_moments(mean, std, a, b):
    alpha, beta = (a - mean) / std, (b - mean) / std
    pdf = lambda v: math.exp(-v * v / 2) / math.sqrt(2 * math.pi) if math.isfinite(v) else 0.0  # noqa: E731
    cdf = lambda v: 0.5 * math.erfc(-v / math.sqrt(2))  # noqa: E731
    z = cdf(beta) - cdf(alpha)
    m = (pdf(alpha) - pdf(beta)) / z
    bv = beta * pdf(beta) if math.isfinite(beta) else 0.0
    av = alpha * pdf(alpha) if math.isfinite(alpha) else 0.0
    var = 1 + (av - bv) / z - m * m
    return mean + std * m, std * math.sqrt(var)


@pytest.mark.parametrize("mean,std,a,b", [(0, 1, -2, 2), (0, 0.02, -0.04, 0.04), (0, 1, 5, 9), (1, 2, -30, -25),
                                          (0, 1, -0.1, 0.1), (3, 1, 2, float("inf"))])
def test_trunc_normal_matches_the_truncated_distribution(mean, std, a, b):
    t = init.trunc_normal_(Parameter(np.zeros(200_000)), mean, std, a, b, generator=2)
    values = t.data
    assert values.min() >= a and values.max() <= b
    want_mean, want_std = _truncated_moments(mean, std, a, b)
    assert values.mean() == pytest.approx(want_mean, abs=0.01 * want_std)
    assert values.std() == pytest.approx(want_std, rel=0.01)
    with pytest.raises(ValueError, match="trunc_normal_"):
        init.trunc_normal_(t, a=1.0, b=-1.0)


@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (4, 2, 3), (6, 6)])
def test_orthogonal(shape):
    w = init.orthogonal_(Parameter(np.zeros(shape)), gain=1.5, generator=3)
    flat = w.data.reshape(shape[0], -1)
    gram = flat @ flat.T if flat.shape[0] <= flat.shape[1] else flat.T @ flat
    assert_allclose(gram, 2.25 * np.eye(len(gram)), atol=1e-12)
    with pytest.raises(ValueError, match="orthogonal_"):
        init.orthogonal_(Parameter(np.zeros(4)))


def test_against_pytorch():
    torch = pytest.importorskip("torch")
    for nonlinearity, param in [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None),
                                ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None)]:
        assert init.calculate_gain(nonlinearity, param) == pytest.approx(
            torch.nn.init.calculate_gain(nonlinearity, param), rel=1e-15)
    for shape in [(3, 5), (5, 3), (4, 4)]:
        assert_array_equal(init.eye_(Parameter(np.full(shape, 3.0))).data,
                           torch.nn.init.eye_(torch.full(shape, 3.0, dtype=torch.float64)).numpy())
    for shape, groups in [((4, 2, 3), 1), ((6, 3, 3, 3), 1), ((4, 2, 3, 3), 2), ((2, 4, 1, 3, 3), 1)]:
        assert_array_equal(init.dirac_(Parameter(np.full(shape, 3.0)), groups).data,
                           torch.nn.init.dirac_(torch.full(shape, 3.0, dtype=torch.float64), groups).numpy())
    for shape in [(8, 4, 3, 3), (5, 7)]:
        w = torch.empty(shape)
        assert init._calculate_fan_in_and_fan_out(np.zeros(shape)) == \
            torch.nn.init._calculate_fan_in_and_fan_out(w)
    with pytest.raises(ValueError, match="eye_"):
        init.eye_(Parameter(np.zeros((2, 2, 2))))
    with pytest.raises(ValueError, match="dirac_"):
        init.dirac_(Parameter(np.zeros((3, 2, 3))), groups=2)
    with pytest.raises(ValueError, match="nonlinearity"):
        init.calculate_gain("softmax")
