"""fastnn: a JIT-compiled CPU engine for neural networks, with PyTorch's API.

Importing compiles nothing: each Numba kernel compiles on its first call (or
loads from the on-disk cache).
"""
__version__ = "0.1.0"

from . import _malloc  # noqa: F401  (first: tunes glibc before large arrays exist)
from . import nn  # noqa: F401
from ._config import (  # noqa: F401
    are_deterministic_algorithms_enabled, get_default_dtype, get_num_threads, set_default_dtype, set_num_threads,
    use_deterministic_algorithms,
)
from . import datasets, optim  # noqa: F401
from .gradcheck import gradcheck  # noqa: F401
from .random import manual_seed  # noqa: F401
from .serialization import load, save  # noqa: F401
from .checkpoint import load_checkpoint, save_checkpoint  # noqa: F401
from .training import History, evaluate, fit, predict  # noqa: F401
