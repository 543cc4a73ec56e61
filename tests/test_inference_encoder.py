"""Transformer encoder layers on inference plans: the layer step (``EncoderLayerStep``)
gives the eager eval forward's bits, masks and other calls it was not built for run
eagerly, and the products of layers run as they are use the plan's packed weights."""
import numba
import numpy as np
import pytest

import fastnn
from fastnn import inference, nn
from fastnn.nn import functional as F


def _plan(model):
    plans = inference._PLANS[model]
    return plans[next(iter(plans))]


def _check(model, x, steps=None):
    """The compiled model's first (traced) and two planned calls equal the eager eval
    forward bit for bit; returns the plan."""
    model.eval()
    compiled = fastnn.compile(model)
    with fastnn.no_grad():
        want = model(x).data.copy()
        for _ in range(3):
            np.testing.assert_array_equal(compiled(x).data, want)
    plan = _plan(model)
    if steps is not None:
        assert [type(s).__name__ for s in plan.steps] == steps
    return plan


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("activation,bias", [("relu", True), ("gelu", False)])
def test_encoder_layer_step_equals_eager(norm_first, batch_first, activation, bias):
    fastnn.manual_seed(3)
    kw = {"activation": activation, "batch_first": batch_first, "norm_first": norm_first, "bias": bias}
    model = nn.Sequential(nn.TransformerEncoderLayer(32, 4, 48, **kw), nn.TransformerEncoderLayer(32, 4, 40, **kw))
    # 70 positions: more than one query and key block of the attention
    x = fastnn.randn(3, 70, 32) if batch_first else fastnn.randn(70, 3, 32)
    _check(model, x, ["EncoderLayerStep", "EncoderLayerStep"])


@pytest.mark.parametrize("batch_first", [False, True])
def test_encoder_layer_step_at_a_size_that_packs_heads_in_parallel(batch_first):
    fastnn.manual_seed(9)
    model = nn.Sequential(nn.TransformerEncoderLayer(64, 4, 96, batch_first=batch_first))
    # 16 x 4 heads x 130 positions x 16: each of q, k, v over SERIAL_BELOW elements
    x = fastnn.randn(16, 130, 64) if batch_first else fastnn.randn(130, 16, 64)
    _check(model, x, ["EncoderLayerStep"])


def test_encoder_stack_in_float64_and_without_layer_norm_parameters():
    fastnn.manual_seed(4)
    layer = nn.TransformerEncoderLayer(16, 2, 24, batch_first=True, dtype=np.float64)
    layer.norm1 = nn.LayerNorm(16, elementwise_affine=False, dtype=np.float64)
    model = nn.Sequential(nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(16, dtype=np.float64)),
                          nn.Linear(16, 3, dtype=np.float64))
    # the encoder passes its (absent) masks by keyword: still one step per layer
    _check(model, fastnn.randn(2, 9, 16, dtype=np.float64),
           ["EncoderLayerStep", "EncoderLayerStep", "LayerStep"])


class _Masked(nn.Module):
    """An encoder layer called with a key padding mask (by keyword), or without one
    when ``masked`` is False."""

    def __init__(self, masked=True):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(16, 2, 24, batch_first=True)
        self.masked = masked

    def forward(self, x):
        pad = np.zeros(x.shape[:2], bool)
        pad[:, -2:] = True
        if self.masked or float(x.sum()) < 0:
            return self.layer(x, src_key_padding_mask=pad)
        return self.layer(x)


def test_masked_calls_run_eagerly_with_their_masks():
    fastnn.manual_seed(5)
    _check(_Masked(), fastnn.randn(2, 7, 16), ["Step"])
    model = _Masked(masked=False).eval()  # a mask only for some inputs: the plan notices
    compiled = fastnn.compile(model)
    pos, neg = fastnn.ones(2, 7, 16), -fastnn.ones(2, 7, 16)
    with fastnn.no_grad():
        for x in (pos, pos, neg, pos):
            np.testing.assert_array_equal(compiled(x).data, model(x).data)


def test_custom_activation_runs_eagerly():
    fastnn.manual_seed(6)
    model = nn.Sequential(nn.TransformerEncoderLayer(16, 2, 24, activation=F.silu, batch_first=True))
    _check(model, fastnn.randn(2, 5, 16), ["Step"])


class _Attend(nn.Module):
    """Self-attention through a MultiheadAttention module (not a plan step itself)."""

    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(64, 4, batch_first=True)
        self.out = nn.Linear(64, 5)

    def forward(self, x):
        return self.out(self.mha(x, x, x, need_weights=False)[0])


def test_products_inside_unplanned_layers_use_packed_weights():
    fastnn.manual_seed(7)
    model = _Attend()
    x = fastnn.randn(4, 32, 64)
    plan = _check(model, x, ["LayerStep", "LayerStep"])  # out_proj and out: steps packing their own
    assert list(plan.packs.packed_weights) == [id(model.mha.in_proj_weight)]  # the in-projection: packed once, reused
    compiled = fastnn.compile(model)
    with fastnn.no_grad():
        model.mha.in_proj_weight.mul_(0.5)  # a weight change: a new plan, packed afresh
        np.testing.assert_array_equal(compiled(x).data, model(x).data)
        np.testing.assert_array_equal(compiled(x).data, model(x).data)
    assert _plan(model) is not plan


def test_encoder_plan_follows_weight_updates():
    fastnn.manual_seed(8)
    model = nn.Sequential(nn.TransformerEncoderLayer(32, 4, 64, batch_first=True), nn.Linear(32, 2))
    x = fastnn.randn(2, 40, 32)
    _check(model, x)
    compiled = fastnn.compile(model)
    opt = fastnn.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    F.mse_loss(model(x), fastnn.zeros(2, 40, 2)).backward()
    opt.step()
    model.eval()
    with fastnn.no_grad():
        for _ in range(2):
            np.testing.assert_array_equal(compiled(x).data, model(x).data)


def _fused_steps(plan):
    """Whether each encoder step ran as one kernel, sequence by sequence (``encoder_rows``)."""
    return [isinstance(s.fused, tuple) for s in plan.steps if type(s).__name__ == "EncoderLayerStep"]


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation,bias", [("relu", True), ("gelu", False)])
def test_encoder_layer_sequence_by_sequence_equals_eager(norm_first, activation, bias):
    fastnn.manual_seed(10)
    kw = {"activation": activation, "batch_first": True, "norm_first": norm_first, "bias": bias}
    model = nn.Sequential(nn.TransformerEncoderLayer(64, 4, 96, **kw), nn.TransformerEncoderLayer(64, 4, 80, **kw))
    # 4 sequences (a multiple of 1, 2 or 4 threads) of 70 positions: two query blocks
    # each, and every product big enough for packed weights
    plan = _check(model, fastnn.randn(4, 70, 64), ["EncoderLayerStep", "EncoderLayerStep"])
    assert _fused_steps(plan) == [True, True]


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_sequence_by_sequence_longer_than_a_row_tile(norm_first):
    # 150 positions: each sequence's products in two row tiles (at most MC rows: the
    # packing room holds no more at a depth of 256, the in-projection's here)
    fastnn.manual_seed(13)
    model = nn.Sequential(nn.TransformerEncoderLayer(256, 2, 64, batch_first=True, norm_first=norm_first))
    plan = _check(model, fastnn.randn(4, 150, 256), ["EncoderLayerStep"])
    assert _fused_steps(plan) == [True]


def test_encoder_layer_bits_do_not_depend_on_the_thread_count():
    # 3 sequences: one kernel sequence by sequence on one thread; on two threads, where
    # it would leave one idle for a third of the time, the kernels one after another
    fastnn.manual_seed(11)
    model = nn.Sequential(nn.TransformerEncoderLayer(64, 2, 64, batch_first=True, dtype=np.float64)).eval()
    x = fastnn.randn(3, 40, 64, dtype=np.float64)
    with fastnn.no_grad():
        want = model(x).data.copy()
    compiled = fastnn.compile(model)
    # two threads first: the step keeps its sequence-by-sequence arguments once made
    for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}, reverse=True):
        with fastnn.set_num_threads(threads), fastnn.no_grad():
            for _ in range(2):
                np.testing.assert_array_equal(compiled(x).data, want)
        assert _fused_steps(_plan(model)) == [threads == 1], threads


def test_encoder_layer_read_only_input_runs_the_kernels_one_after_another():
    fastnn.manual_seed(12)
    model = nn.Sequential(nn.TransformerEncoderLayer(64, 2, 64, batch_first=True)).eval()
    data = fastnn.randn(4, 40, 64).data
    data.flags.writeable = False
    x = fastnn.from_numpy(data)
    plan = _check(model, x, ["EncoderLayerStep"])
    assert _fused_steps(plan) == [False]
    _check(model, fastnn.randn(4, 40, 64))  # a writeable one (its own plan): sequence by sequence
    assert sorted(_fused_steps(p) for p in inference._PLANS[model].values()) == [[False], [True]]
