"""Padding and resampling, by ``torch.nn.functional``'s names: ``pad`` (constant,
reflect, replicate, circular; any number of padded dims), ``interpolate`` (nearest,
nearest-exact, linear/bilinear/trilinear) and ``pixel_shuffle``/``pixel_unshuffle``.

Each is a few vectorised NumPy passes (``np.pad``, gathers along one axis at a time);
the gradients fold back with sums over contiguous runs (``np.add.reduceat``), no
Python loop over elements. Interpolation indices and weights follow PyTorch's CPU
kernels (the same float32 index arithmetic for nearest).
"""
import math

import numpy as np

from ._util import _wrap, as_tensor, attach, float_tensor, recording

__all__ = ["pad", "interpolate", "upsample", "pixel_shuffle", "pixel_unshuffle"]

_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


# ------------------------------------------------------------------ pad
def _pad_pairs(pad, shape, op):
    """PyTorch's flat ``pad`` (last dim first) -> one (before, after) pair per dim."""
    try:
        flat = [int(p) for p in pad]
    except (TypeError, ValueError):
        raise TypeError(f"{op}: pad must be a sequence of ints, got {pad!r}") from None
    if len(flat) % 2 or len(flat) // 2 > len(shape):
        raise ValueError(f"{op}: pad {tuple(flat)} must have an even length of at most 2 * ndim = {2 * len(shape)} "
                         f"for input of shape {shape}")
    pairs = [(0, 0)] * len(shape)
    for k in range(len(flat) // 2):
        pairs[len(shape) - 1 - k] = (flat[2 * k], flat[2 * k + 1])
    return pairs


def _check_pads(pairs, shape, mode, op):
    for d, ((lo, hi), n) in enumerate(zip(pairs, shape)):
        if mode == "constant":
            if n + lo + hi < 0:
                raise ValueError(f"{op}: padding ({lo}, {hi}) of dim {d} leaves a negative size for input of "
                                 f"shape {shape}")
        elif lo or hi:
            where = f"padding ({lo}, {hi}) of dim {d} for input of shape {shape}"
            if lo < 0 or hi < 0:
                raise ValueError(f"{op}: {mode} {where}: negative padding is only supported in constant mode")
            if mode == "reflect" and max(lo, hi) >= n:
                raise ValueError(f"{op}: reflect {where}: each pad must be less than the dim's size {n}")
            if mode == "circular" and max(lo, hi) > n:
                raise ValueError(f"{op}: circular {where}: each pad must be at most the dim's size {n}")
            if mode == "replicate" and n == 0:
                raise ValueError(f"{op}: replicate {where}: the dim is empty")


def _sources(j, n, mode):
    """Input positions that padded positions ``j`` (input coordinates) copy from."""
    if mode == "reflect":
        return np.where(j < 0, -j, 2 * (n - 1) - j)
    return j % n  # circular (replicate sums apart)


def _fold(g, axis, lo, hi, n, mode):
    """The adjoint of padding ``axis`` by (lo, hi): a gradient of size ``n`` along it."""
    gm = np.moveaxis(g, axis, -1)
    out = gm[..., lo:lo + n].copy()
    for part, j in ((gm[..., :lo], np.arange(-lo, 0)), (gm[..., lo + n:], np.arange(n, n + hi))):
        if not j.size:
            continue
        if mode == "replicate":  # every padded position copies the edge
            out[..., 0 if j[0] < 0 else n - 1] += part.sum(axis=-1)
        else:  # reflect and circular copy from distinct positions
            out[..., _sources(j, n, mode)] += part
    return np.moveaxis(out, -1, axis)


def pad(input, pad, mode="constant", value=None):  # noqa: A002 (PyTorch's names)
    """Pads ``input``; ``pad`` = (left, right) of the last dim, then of the one before, ...

    mode 'constant' fills ``value`` (default 0; negative pads crop); 'reflect'
    mirrors without repeating the edge (pad < size), 'replicate' repeats the edge,
    'circular' wraps around (pad <= size).

    Example:
        >>> F.pad(fastnn.ones(1, 1, 2, 2), (1, 1, 0, 2), mode="replicate").shape
        (1, 1, 4, 4)
    """
    op = "pad"
    if mode not in _PAD_MODES:
        raise ValueError(f"{op}: mode must be one of {sorted(_PAD_MODES)}, got {mode!r}")
    if mode != "constant" and value not in (None, 0):
        raise ValueError(f"{op}: padding mode {mode!r} doesn't take a value argument")
    x = as_tensor(input)
    xd = x.data
    shape = xd.shape
    pairs = _pad_pairs(pad, shape, op)
    _check_pads(pairs, shape, mode, op)
    if mode == "constant":
        crop = tuple(slice(max(-lo, 0), n - max(-hi, 0)) for (lo, hi), n in zip(pairs, shape))
        grow = [(max(lo, 0), max(hi, 0)) for lo, hi in pairs]
        out = np.pad(xd[crop], grow, constant_values=0 if value is None else value)
    else:
        out = np.pad(xd, pairs, mode=_PAD_MODES[mode])
    res = _wrap(out)
    if recording(x):
        def backward(g):
            if mode == "constant":  # the cropped input's entries came through; the rest got nothing
                dx = np.zeros(shape, xd.dtype)
                inner = tuple(slice(a, a + (s.stop - s.start)) for (a, _), s in zip(grow, crop))
                dx[crop] = g[inner]
                return (dx,)
            for axis, (lo, hi) in enumerate(pairs):
                if lo or hi:
                    g = _fold(g, axis, lo, hi, shape[axis], mode)
            return (np.ascontiguousarray(g, dtype=xd.dtype),)

        name = "ConstantPadNd" if mode == "constant" else f"{mode.capitalize()}Pad"
        attach(res, backward, (x,), f"{name}Backward0")
    return res


# ------------------------------------------------------------------ interpolate
_LINEAR = {"linear": 1, "bilinear": 2, "trilinear": 3}


def _sizes(value, dims, op, name, cast):
    values = list(value) if isinstance(value, (tuple, list)) else [value] * dims
    if len(values) != dims:
        raise ValueError(f"{op}: {name} must have {dims} entries (one per spatial dim), got {value!r}")
    return [cast(v) for v in values]


def _nearest_index(n_in, n_out, scale, exact):
    # PyTorch's nearest_idx / nearest_exact_idx: float32 arithmetic
    dst = np.arange(n_out)
    if not exact and n_out == n_in:
        return dst
    if not exact and n_out == 2 * n_in:
        return dst >> 1
    s = np.float32(1.0 / scale) if scale else np.float32(n_in) / np.float32(n_out)
    pos = (dst.astype(np.float32) + np.float32(0.5)) * s if exact else dst.astype(np.float32) * s
    return np.minimum(np.floor(pos).astype(np.int64), n_in - 1)


def _linear_index(n_in, n_out, scale, align_corners, dt):
    # PyTorch's compute_source_index_and_lambda, in the input's dtype
    dst = np.arange(n_out, dtype=dt)
    if n_out == n_in:  # PyTorch copies (whatever the scale)
        i0 = np.arange(n_out)
        return i0, i0, np.ones(n_out, dt), np.zeros(n_out, dt)
    if align_corners:
        src = dst * (dt(n_in - 1) / dt(n_out - 1) if n_out > 1 else dt(0))
    else:
        s = dt(1.0 / scale) if scale else dt(n_in) / dt(n_out)
        src = np.maximum(s * (dst + dt(0.5)) - dt(0.5), dt(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    l1 = np.clip(src - i0, 0, 1).astype(dt)
    return i0, i0 + (i0 < n_in - 1), (1 - l1).astype(dt), l1


def _gather(x, axis, terms):
    """sum over (index, weight) terms of x.take(index, axis) * weight (weights along axis)."""
    shape = [1] * x.ndim
    shape[axis] = -1
    out = None
    for idx, w in terms:
        t = np.take(x, idx, axis=axis)
        if w is not None:
            t = t * w.reshape(shape)
        out = t if out is None else out + t
    return out


def _scatter(g, axis, n_in, terms):
    """The adjoint of ``_gather``: indices are non-decreasing, so each input position
    sums one contiguous run of the gradient (np.add.reduceat)."""
    gm = np.moveaxis(g, axis, -1)
    out = np.zeros(gm.shape[:-1] + (n_in,), g.dtype)
    for idx, w in terms:
        vals = gm if w is None else gm * w
        starts = np.flatnonzero(np.concatenate(([True], idx[1:] != idx[:-1])))
        out[..., idx[starts]] += np.add.reduceat(vals, starts, axis=-1)
    return np.moveaxis(out, -1, axis)


def _plan(shape, size, scale_factor, mode, align_corners, recompute_scale_factor, op):
    """Output spatial sizes and the scales the index maths uses (None: from the sizes)."""
    dims = len(shape) - 2
    if dims < 1:
        raise ValueError(f"{op}: expected an input (N, C, *spatial) with at least 1 spatial dim, got shape {shape}")
    if mode in _LINEAR and _LINEAR[mode] != dims:
        raise ValueError(f"{op}: mode {mode!r} expects a {_LINEAR[mode] + 2}-D input, got shape {shape}")
    if mode not in _LINEAR and mode not in ("nearest", "nearest-exact"):
        raise NotImplementedError(f"{op}: mode {mode!r} is not supported (nearest, nearest-exact, linear, bilinear, "
                                  "trilinear are)")
    if align_corners is not None and mode not in _LINEAR:
        raise ValueError(f"{op}: align_corners can only be set with the interpolating modes linear | bilinear | "
                         f"trilinear, not {mode!r}")
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{op}: exactly one of size or scale_factor must be given")
    if size is not None:
        if recompute_scale_factor:
            raise ValueError(f"{op}: recompute_scale_factor is not meaningful with an explicit size")
        out_sizes, scales = _sizes(size, dims, op, "size", int), [None] * dims
    else:
        factors = _sizes(scale_factor, dims, op, "scale_factor", float)
        out_sizes = [int(math.floor(n * f)) for n, f in zip(shape[2:], factors)]
        scales = [None] * dims if recompute_scale_factor else factors
    if min(shape[2:]) <= 0 or min(out_sizes) <= 0:
        raise ValueError(f"{op}: input and output sizes should be greater than 0, got input {tuple(shape[2:])} "
                         f"and output {tuple(out_sizes)}")
    return out_sizes, scales


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,  # noqa: A002
                recompute_scale_factor=None, antialias=False):
    """Resizes the spatial dims of ``input`` (N, C, *spatial) to ``size`` or by ``scale_factor``.

    mode 'nearest' (PyTorch's legacy floor rule), 'nearest-exact', 'linear' (3-D),
    'bilinear' (4-D) or 'trilinear' (5-D); ``align_corners`` (linear modes, default
    False) maps the corner pixels' centres onto each other.

    Example:
        >>> F.interpolate(fastnn.randn(1, 3, 8, 8), scale_factor=2, mode="bilinear").shape
        (1, 3, 16, 16)
    """
    op = "interpolate"
    if antialias:
        raise NotImplementedError(f"{op}: antialias=True is not supported")
    x = float_tensor(input, op)
    xd = x.data
    out_sizes, scales = _plan(xd.shape, size, scale_factor, mode, align_corners, recompute_scale_factor, op)
    dt = xd.dtype.type
    plans = []  # (axis, input size, [(index, weight)]) from the last spatial axis back, as PyTorch sums
    for k in reversed(range(len(out_sizes))):
        axis, n_in, n_out = k + 2, xd.shape[k + 2], out_sizes[k]
        if mode in _LINEAR:
            i0, i1, l0, l1 = _linear_index(n_in, n_out, scales[k], bool(align_corners), dt)
            plans.append((axis, n_in, [(i0, l0), (i1, l1)]))
        else:
            plans.append((axis, n_in, [(_nearest_index(n_in, n_out, scales[k], mode == "nearest-exact"), None)]))
    out = xd
    for axis, _, terms in plans:
        out = _gather(out, axis, terms)
    res = _wrap(np.ascontiguousarray(out))
    if recording(x):
        def backward(g):
            for axis, n_in, terms in reversed(plans):
                g = _scatter(g, axis, n_in, terms)
            return (np.ascontiguousarray(g, dtype=xd.dtype),)

        name = {"nearest": "Nearest", "nearest-exact": "NearestExact", "linear": "Linear", "bilinear": "Bilinear",
                "trilinear": "Trilinear"}[mode]
        attach(res, backward, (x,), f"Upsample{name}{len(out_sizes)}DBackward0")
    return res


def upsample(input, size=None, scale_factor=None, mode="nearest", align_corners=None):  # noqa: A002
    """The old name of ``interpolate``."""
    return interpolate(input, size, scale_factor, mode, align_corners)


# ------------------------------------------------------------------ pixel shuffle
def _shuffle(input, r, op, up):  # noqa: A002
    x = as_tensor(input)
    xd = x.data
    if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r <= 0:
        raise ValueError(f"{op}: the factor must be a positive int, got {r!r}")
    if xd.ndim < 3:
        raise ValueError(f"{op}: expected an input (*, C, H, W) with at least 3 dims, got shape {xd.shape}")
    *lead, c, h, w = xd.shape
    lead = tuple(lead)
    k = len(lead)
    if up:
        if c % (r * r):
            raise ValueError(f"{op}: the channel dim (size {c}) of input shape {xd.shape} must be divisible by "
                             f"upscale_factor^2 = {r * r}")
        split, perm = lead + (c // (r * r), r, r, h, w), (0, 3, 1, 4, 2)
        final = lead + (c // (r * r), h * r, w * r)
    else:
        if h % r or w % r:
            raise ValueError(f"{op}: the height {h} and width {w} of input shape {xd.shape} must be divisible by "
                             f"downscale_factor {r}")
        split, perm = lead + (c, h // r, r, w // r, r), (0, 2, 4, 1, 3)
        final = lead + (c * r * r, h // r, w // r)
    axes = tuple(range(k)) + tuple(k + p for p in perm)
    out = _wrap(np.ascontiguousarray(xd.reshape(split).transpose(axes)).reshape(final))
    if recording(x):
        moved = tuple(split[a] for a in axes)
        inverse = tuple(np.argsort(axes))

        def backward(g):  # undo the permutation
            return (np.ascontiguousarray(g.reshape(moved).transpose(inverse)).reshape(xd.shape),)

        attach(out, backward, (x,), "PixelShuffleBackward0" if up else "PixelUnshuffleBackward0")
    return out


def pixel_shuffle(input, upscale_factor):  # noqa: A002
    """(*, C r^2, H, W) -> (*, C, H r, W r): sub-pixel convolution's rearrangement."""
    return _shuffle(input, upscale_factor, "pixel_shuffle", True)


def pixel_unshuffle(input, downscale_factor):  # noqa: A002
    """(*, C, H r, W r) -> (*, C r^2, H, W): the inverse of ``pixel_shuffle``."""
    return _shuffle(input, downscale_factor, "pixel_unshuffle", False)
