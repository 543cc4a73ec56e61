"""Winograd F(2x2, 3x3) convolution (``kernels.winograd``), the 3 x 3 stride-1
convolution of enough channels (``applies``): against a float64 NumPy reference,
every padding, edge and channel count, fused bias and activations, the thread split,
the weight transform, and on a plan against the eager forward. The eager forward and
the input gradient (a stride-1 convolution too) take it as well: ``test_conv``'s
Winograd configuration checks both against the reference and by central differences."""
import numpy as np
import pytest

import fastnn
from fastnn import nn
from fastnn.kernels import activations as act_k
from fastnn.kernels import winograd
from fastnn.kernels.conv_plan import Workspace

from _conv_reference import activation_reference, conv2d_reference


def reference(x, w, b, PH, PW):
    """The direct 3 x 3 convolution in float64."""
    return conv2d_reference(x, w, b, (3, 3, 1, 1, PH, PW, 1, 1, 1))


def _run(x, w, b, PH, PW, kind=act_k.IDENTITY, slope=0.0, threads=2):
    N, C, H, W = x.shape
    out = np.full((N, w.shape[0], H + 2 * PH - 2, W + 2 * PW - 2), np.nan, x.dtype)
    geom = (3, 3, 1, 1, PH, PW, 1, 1, 1)
    winograd.forward_runner(out, x, w, b, geom, kind, slope, threads, Workspace())(x)
    return out


CASES = [  # N, C, OC, H, W, PH, PW
    (1, 8, 8, 5, 5, 1, 1),
    (2, 9, 11, 7, 6, 0, 2),      # odd and even sizes, no padding across, OC not a multiple of MR
    (3, 16, 20, 9, 13, 2, 1),    # odd output width: the last tile's second column dropped
    (1, 3, 5, 3, 4, 0, 0),       # one row of tiles, an odd output height of 1
    (2, 32, 32, 16, 16, 1, 1),   # several panels of tiles, split over threads
    (1, 4, 9, 1, 1, 1, 1),       # a 1 x 1 image: padding only
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_matches_the_direct_convolution(case, dtype):
    N, C, OC, H, W, PH, PW = case
    rng = np.random.default_rng(sum(case))
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((OC, C, 3, 3)).astype(dtype)
    b = rng.standard_normal(OC).astype(dtype)
    want = reference(x, w, b, PH, PW)
    got = _run(x, w, b, PH, PW)
    # float64: rounding only; float32: a few units in the last place of the largest output
    tol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * np.abs(want).max())
    assert not np.isnan(got).any()  # every output element written


def test_many_channels_take_several_k_blocks():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 300, 4, 5))  # 300 > KC = 256: two K blocks of 150
    w = rng.standard_normal((17, 300, 3, 3))
    want = reference(x, w, None, 1, 1)
    np.testing.assert_allclose(_run(x, w, None, 1, 1), want, rtol=0, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("width", [9, 14])  # float64 rows of 5 and 7 tiles: the vectors, overlapping
@pytest.mark.parametrize("kind,slope", [(act_k.RELU, 0.0), (act_k.LEAKY_RELU, 0.1), (act_k.SIGMOID, 0.0)])
def test_fused_activation(kind, slope, width):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 8, 7, width))
    w = rng.standard_normal((12, 8, 3, 3))
    b = rng.standard_normal(12)
    want = activation_reference(reference(x, w, b, 1, 1), kind, slope)
    np.testing.assert_allclose(_run(x, w, b, 1, 1, kind, slope), want, rtol=1e-12, atol=1e-12)


def test_results_do_not_depend_on_the_thread_split():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 32, 14, 10)).astype(np.float32)
    w = rng.standard_normal((40, 32, 3, 3)).astype(np.float32)
    b = rng.standard_normal(40).astype(np.float32)
    one = _run(x, w, b, 1, 1, threads=1)
    assert np.array_equal(_run(x, w, b, 1, 1, threads=2), one)
    assert np.array_equal(_run(x, w, b, 1, 1, threads=3), one)


@pytest.mark.parametrize("geom,channels,width,dtype,ok", [
    ((3, 3, 1, 1, 1, 1, 1, 1, 1), (32, 32), 16, np.float32, True),
    ((3, 3, 1, 1, 0, 2, 1, 1, 1), (8, 32), 14, np.float32, True),    # 16 output columns: 8 tiles a row
    ((3, 3, 1, 1, 1, 1, 1, 1, 1), (32, 32), 14, np.float32, False),  # 7 tiles a row: less than a vector
    ((3, 3, 1, 1, 1, 1, 1, 1, 1), (32, 32), 8, np.float64, True),    # 4 tiles: a float64 vector
    ((3, 3, 1, 1, 1, 1, 1, 1, 1), (16, 16), 32, np.float32, False),  # too few channels to pay
    ((3, 3, 1, 1, 1, 1, 1, 1, 1), (4, 64), 32, np.float32, False),   # too few input channels
    ((3, 3, 2, 2, 1, 1, 1, 1, 1), (32, 32), 32, np.float32, False),  # stride 2
    ((3, 3, 1, 1, 2, 2, 2, 2, 1), (32, 32), 32, np.float32, False),  # dilation 2
    ((3, 3, 1, 1, 1, 1, 1, 1, 2), (32, 32), 32, np.float32, False),  # groups
    ((5, 5, 1, 1, 2, 2, 1, 1, 1), (32, 32), 32, np.float32, False),  # 5 x 5
    ((3, 3, 1, 1, 3, 3, 1, 1, 1), (32, 32), 32, np.float32, False),  # padding past 2
])
def test_applies_where_it_pays(geom, channels, width, dtype, ok):
    C, OC = channels
    assert winograd.applies((1, C, 8, width), (OC, C // geom[8], geom[0], geom[1]), geom, dtype) is ok


class _Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        out = nn.functional.relu(self.bn1(self.conv1(x)))
        return nn.functional.relu(self.bn2(self.conv2(out)) + x)


@pytest.mark.parametrize("batch", [1, 5])
def test_a_plan_runs_it_and_equals_the_eager_forward(batch, monkeypatch):
    built = []
    runner = winograd.forward_runner

    def counting(*args, **kwargs):
        if kwargs.get("keep", True):  # a plan's (an eager call's runner is used once)
            built.append(args[2].shape)
        return runner(*args, **kwargs)

    monkeypatch.setattr(winograd, "forward_runner", counting)
    fastnn.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), _Block(32),
                          nn.Conv2d(32, 40, 3, padding=1), nn.Flatten()).eval()
    for m in model.modules():  # statistics a folded BatchNorm has to get right
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.data[:] = np.linspace(-0.5, 0.5, m.num_features)
            m.running_var.data[:] = np.linspace(0.5, 2.0, m.num_features)
    x = np.random.default_rng(4).standard_normal((batch, 3, 11, 17)).astype(np.float32)  # 9 tiles a row
    compiled = fastnn.compile(model)
    with fastnn.no_grad():
        want = model(x).data
        for _ in range(3):
            got = compiled(x).data
    assert built == [(32, 32, 3, 3), (32, 32, 3, 3), (40, 32, 3, 3)]  # not the 3-channel first layer
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
