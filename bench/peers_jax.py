"""The reference workloads (WORKLOADS.md) in plain JAX, for ``compare_peers.py``.

    run = make_runner("lenet", batch=64, mode="train")
    run()   # one jitted training step: forward + cross-entropy + backward + Adam

Each model is a pure function ``forward(name, params, x, key)`` over a dict of float32
arrays laid out as PyTorch's (NCHW images, OIHW filters, batch-first sequences);
``key`` is a PRNG key in training mode (dropout on, batch statistics in
BatchNorm) and ``None`` in eval mode. Layers are written by hand on jax.numpy and
jax.lax (``conv_general_dilated``, ``reduce_window``, ``scan``); Adam too, so
nothing beyond jax is needed. The weights are drawn like PyTorch's defaults
(uniform +-1/sqrt(fan_in)), or are PyTorch's (``params_from_torch``, for
``--check``). Running statistics are not tracked (eval-mode BatchNorm uses
those of a fresh layer, mean 0 and variance 1): they do not change the timing.
"""
import functools
import math

import numpy as np

try:  # a peer, never a dependency: asv imports every module of bench/, with or without jax
    import jax
    import jax.numpy as jnp
    from jax import lax
except ImportError:
    jax = jnp = lax = None

try:
    from . import workloads
except ImportError:  # imported as a top-level module by compare_peers.py
    import workloads

EPS = 1e-5
HEADS = 4
DROPOUT = 0.1


# ------------------------------------------------------------------ layers
def _uniform(rng, shape, fan_in):
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, shape).astype(np.float32)


def linear_params(rng, n_in, n_out):
    return {"w": _uniform(rng, (n_in, n_out), n_in), "b": _uniform(rng, (n_out,), n_in)}


def conv_params(rng, c_in, c_out, k, dims=2, bias=True):
    fan_in = c_in * k ** dims
    p = {"w": _uniform(rng, (c_out, c_in) + (k,) * dims, fan_in)}
    if bias:
        p["b"] = _uniform(rng, (c_out,), fan_in)
    return p


def norm_params(c):
    return {"gamma": np.ones(c, np.float32), "beta": np.zeros(c, np.float32)}


def linear(p, x):
    return x @ p["w"] + p["b"]


def conv(p, x, stride=1, padding=0):
    """Conv1d / Conv2d on (N, C, L) or (N, C, H, W)."""
    dims = x.ndim - 2
    spec = ("NCH", "OIH", "NCH") if dims == 1 else ("NCHW", "OIHW", "NCHW")
    out = lax.conv_general_dilated(x, p["w"], (stride,) * dims, [(padding, padding)] * dims,
                                   dimension_numbers=spec)
    return out + p["b"].reshape((1, -1) + (1,) * dims) if "b" in p else out


def max_pool2d(x, k):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, k, k), (1, 1, k, k), "VALID")


def batch_norm2d(p, x, train):
    """BatchNorm2d: batch statistics in training, a fresh layer's running ones in eval."""
    if train:
        mean, var = x.mean((0, 2, 3), keepdims=True), x.var((0, 2, 3), keepdims=True)
    else:
        mean, var = 0.0, 1.0
    scale = p["gamma"].reshape(1, -1, 1, 1) * lax.rsqrt(var + EPS)
    return (x - mean) * scale + p["beta"].reshape(1, -1, 1, 1)


def layer_norm(p, x):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) * lax.rsqrt(var + EPS) * p["gamma"] + p["beta"]


def dropout(key, x, rate=DROPOUT):
    if key is None:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def lstm_last(p, x):
    """A one-layer batch-first LSTM over x (N, T, F); the last step's hidden state (N, H).

    Gates in PyTorch's order (input, forget, cell, output); the input projection of
    every step is one matmul before the scan.
    """
    hidden = p["w_hh"].shape[0]
    xw = jnp.einsum("ntf,fg->tng", x, p["w_ih"]) + (p["b_ih"] + p["b_hh"])  # (T, N, 4H)

    def cell(carry, xw_t):
        h, c = carry
        i, f, g, o = jnp.split(xw_t + h @ p["w_hh"], 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        return (jax.nn.sigmoid(o) * jnp.tanh(c), c), None

    zeros = jnp.zeros((x.shape[0], hidden), x.dtype)
    (h, _), _ = lax.scan(cell, (zeros, zeros), xw)
    return h


def encoder_layer(p, x, key):
    """PyTorch's TransformerEncoderLayer (post-norm, ReLU, batch_first), dropout where it has it."""
    keys = jax.random.split(key, 4) if key is not None else (None,) * 4
    n, t, d = x.shape
    qkv = (x @ p["in_w"] + p["in_b"]).reshape(n, t, 3, HEADS, d // HEADS)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (N, T, heads, d/heads)
    scores = jnp.einsum("nqhc,nkhc->nhqk", q, k) / math.sqrt(d // HEADS)
    weights = dropout(keys[0], jax.nn.softmax(scores, axis=-1))
    attended = jnp.einsum("nhqk,nkhc->nqhc", weights, v).reshape(n, t, d)
    x = layer_norm(p["norm1"], x + dropout(keys[1], linear(p["out"], attended)))
    h = dropout(keys[2], jax.nn.relu(linear(p["ff1"], x)))
    return layer_norm(p["norm2"], x + dropout(keys[3], linear(p["ff2"], h)))


# ------------------------------------------------------------------ models
def init_params(name, rng):
    """The parameters of workload ``name`` (numpy float32 arrays in nested dicts)."""
    lin = functools.partial(linear_params, rng)
    if name == "mlp":
        return {"fc": [lin(784, 256), lin(256, 128), lin(128, 10)]}
    if name == "lenet":
        return {"c1": conv_params(rng, 1, 6, 5), "c2": conv_params(rng, 6, 16, 5),
                "fc": [lin(400, 120), lin(120, 84), lin(84, 10)]}
    if name == "resnet":
        def block(c):
            return {"conv1": conv_params(rng, c, c, 3, bias=False), "bn1": norm_params(c),
                    "conv2": conv_params(rng, c, c, 3, bias=False), "bn2": norm_params(c)}
        return {"c1": conv_params(rng, 3, 32, 3, bias=False), "bn1": norm_params(32), "b1": block(32),
                "c2": conv_params(rng, 32, 64, 3, bias=False), "bn2": norm_params(64), "b2": block(64),
                "fc": lin(64, 10)}
    if name == "lstm":
        return {"w_ih": _uniform(rng, (64, 512), 128), "w_hh": _uniform(rng, (128, 512), 128),
                "b_ih": _uniform(rng, (512,), 128), "b_hh": _uniform(rng, (512,), 128), "fc": lin(128, 10)}
    if name == "transformer":
        def layer():
            return {"in_w": _uniform(rng, (128, 384), 128), "in_b": np.zeros(384, np.float32),
                    "out": lin(128, 128), "ff1": lin(128, 512), "ff2": lin(512, 128),
                    "norm1": norm_params(128), "norm2": norm_params(128)}
        return {"layers": [layer(), layer()], "fc": lin(128, 10)}
    if name == "conv1d":
        return {"convs": [conv_params(rng, 1, 32, 5, 1), conv_params(rng, 32, 32, 3, 1),
                          conv_params(rng, 32, 32, 3, 1)], "fc": lin(160, 10)}
    raise ValueError(f"unknown workload {name!r}; expected one of {workloads.NAMES}")


def params_from_torch(name, sd):
    """Workload ``name``'s parameters from the ``state_dict`` of PyTorch's model of it
    (``workloads.build_torch``), as numpy arrays: the same logits, for ``--check``."""
    def lin(k):
        return {"w": sd[k + ".weight"].T, "b": sd[k + ".bias"]}

    def cv(k):
        return {"w": sd[k + ".weight"], **({"b": sd[k + ".bias"]} if k + ".bias" in sd else {})}

    def norm(k):
        return {"gamma": sd[k + ".weight"], "beta": sd[k + ".bias"]}

    def block(k):
        return {"conv1": cv(k + ".conv1"), "bn1": norm(k + ".bn1"), "conv2": cv(k + ".conv2"),
                "bn2": norm(k + ".bn2")}

    def layer(k):
        return {"in_w": sd[k + ".self_attn.in_proj_weight"].T, "in_b": sd[k + ".self_attn.in_proj_bias"],
                "out": lin(k + ".self_attn.out_proj"), "ff1": lin(k + ".linear1"), "ff2": lin(k + ".linear2"),
                "norm1": norm(k + ".norm1"), "norm2": norm(k + ".norm2")}
    if name == "mlp":
        return {"fc": [lin("0"), lin("2"), lin("4")]}
    if name == "lenet":
        return {"c1": cv("0"), "c2": cv("3"), "fc": [lin("7"), lin("9"), lin("11")]}
    if name == "resnet":
        return {"c1": cv("0"), "bn1": norm("1"), "b1": block("3"), "c2": cv("5"), "bn2": norm("6"),
                "b2": block("8"), "fc": lin("11")}
    if name == "lstm":
        return {"w_ih": sd["0.weight_ih_l0"].T, "w_hh": sd["0.weight_hh_l0"].T,
                "b_ih": sd["0.bias_ih_l0"], "b_hh": sd["0.bias_hh_l0"], "fc": lin("2")}
    if name == "transformer":
        return {"layers": [layer("0.layers.0"), layer("0.layers.1")], "fc": lin("2")}
    if name == "conv1d":
        return {"convs": [cv("0"), cv("2"), cv("4")], "fc": lin("7")}
    raise ValueError(f"unknown workload {name!r}; expected one of {workloads.NAMES}")


def _mlp_head(layers, x):
    """Linear ReLU ... Linear."""
    for p in layers[:-1]:
        x = jax.nn.relu(linear(p, x))
    return linear(layers[-1], x)


def forward(name, p, x, key):
    """Logits of workload ``name``; ``key`` a PRNG key in training mode, None in eval mode."""
    relu, train = jax.nn.relu, key is not None
    if name == "mlp":
        return _mlp_head(p["fc"], x)
    if name == "lenet":
        x = max_pool2d(relu(conv(p["c1"], x, padding=2)), 2)
        x = max_pool2d(relu(conv(p["c2"], x)), 2)
        return _mlp_head(p["fc"], x.reshape(x.shape[0], -1))
    if name == "resnet":
        def block(b, x):
            h = relu(batch_norm2d(b["bn1"], conv(b["conv1"], x, padding=1), train))
            return relu(x + batch_norm2d(b["bn2"], conv(b["conv2"], h, padding=1), train))
        x = block(p["b1"], relu(batch_norm2d(p["bn1"], conv(p["c1"], x, padding=1), train)))
        x = max_pool2d(x, 2)
        x = block(p["b2"], relu(batch_norm2d(p["bn2"], conv(p["c2"], x, padding=1), train)))
        return linear(p["fc"], x.mean((2, 3)))
    if name == "lstm":
        return linear(p["fc"], lstm_last(p, x))
    if name == "transformer":
        keys = jax.random.split(key, len(p["layers"])) if train else (None,) * len(p["layers"])
        for layer, k in zip(p["layers"], keys):
            x = encoder_layer(layer, x, k)
        return linear(p["fc"], x.mean(1))
    if name == "conv1d":
        for c in p["convs"]:
            x = relu(conv(c, x, stride=2, padding=1))
        return linear(p["fc"], x.reshape(x.shape[0], -1))
    raise ValueError(f"unknown workload {name!r}; expected one of {workloads.NAMES}")


# ------------------------------------------------------------------ training
def cross_entropy(logits, y):
    return -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1).mean()


def adam_init(params):
    return {"t": jnp.zeros((), jnp.int32), "m": jax.tree.map(jnp.zeros_like, params),
            "v": jax.tree.map(jnp.zeros_like, params)}


def adam_update(params, grads, state, lr=workloads.LR, b1=0.9, b2=0.999, eps=1e-8):
    """PyTorch's Adam (no weight decay); returns (params, state)."""
    t = state["t"] + 1
    m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state["m"], grads)
    v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state["v"], grads)
    c1, c2 = 1 - b1 ** t, 1 - b2 ** t
    params = jax.tree.map(lambda p, m, v: p - lr / c1 * m / (jnp.sqrt(v / c2) + eps), params, m, v)
    return params, {"t": t, "m": m, "v": v}


def make_runner(name, batch, mode, seed=0, params=None):
    """A zero-argument callable: one jitted training step or inference, waited for.

    ``mode`` is "train" (forward + cross-entropy + backward + Adam, parameters and
    Adam's state donated so XLA updates them in place) or "infer" (eval mode).
    ``params``: the starting parameters (``init_params``'s if None).
    ``run.params()`` returns the current parameters. Nothing is compiled here.
    """
    if mode not in ("train", "infer"):
        raise ValueError(f"mode must be 'train' or 'infer', got {mode!r}")
    x, y = workloads.make_batch(name, batch, seed)
    x, y = jnp.asarray(x), jnp.asarray(y.astype(np.int32))
    if params is None:
        params = init_params(name, np.random.default_rng(seed))
    state = {"params": jax.tree.map(jnp.asarray, params)}
    model = functools.partial(forward, name)
    if mode == "train":
        def loss_of(params, x, y, key):
            return cross_entropy(model(params, x, key), y)

        @functools.partial(jax.jit, donate_argnums=(0, 1))
        def step(params, opt, x, y):
            key = jax.random.fold_in(jax.random.key(seed), opt["t"])
            loss, grads = jax.value_and_grad(loss_of)(params, x, y, key)
            return adam_update(params, grads, opt) + (loss,)

        state["opt"] = adam_init(state["params"])

        def run():
            state["params"], state["opt"], loss = step(state["params"], state["opt"], x, y)
            return loss.block_until_ready()
    else:
        infer = jax.jit(lambda params, x: model(params, x, None))

        def run():
            return infer(state["params"], x).block_until_ready()
    run.params = lambda: state["params"]
    return run
