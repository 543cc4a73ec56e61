"""fastnn's random source: explicit generators, with one default like PyTorch's.

``fastnn.manual_seed(s)`` reseeds the default generator that layer
initialisation and Dropout use when they are not given a ``generator``.
"""
import numpy as np

_default = {"rng": np.random.default_rng()}


def manual_seed(seed):
    """Reseed the default generator; returns it."""
    _default["rng"] = np.random.default_rng(seed)
    return _default["rng"]


def default_generator():
    return _default["rng"]


def resolve(generator):
    """``generator`` if given (a Generator or an int seed), else the default one."""
    if generator is None:
        return _default["rng"]
    if isinstance(generator, np.random.Generator):
        return generator
    return np.random.default_rng(generator)
