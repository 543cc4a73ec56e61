"""fastnn: a JIT-compiled CPU engine for neural networks, with PyTorch's API.

Importing compiles nothing: each Numba kernel compiles on its first call (or
loads from the on-disk cache).
"""
__version__ = "0.1.0"

from . import _malloc  # noqa: F401  (first: tunes glibc before large arrays exist)
import numpy as _np

from .tensor import Tensor  # noqa: F401
from . import autograd  # noqa: F401
from .autograd import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled  # noqa: F401
from .ops.activation import relu, sigmoid, tanh  # noqa: F401
from .ops.arith import *  # noqa: F401,F403
from .ops.creation import *  # noqa: F401,F403
from .ops.reduce import *  # noqa: F401,F403
from .ops.shape import *  # noqa: F401,F403
from . import nn  # noqa: F401
from ._config import (  # noqa: F401
    are_deterministic_algorithms_enabled, get_default_dtype, get_num_threads, set_default_dtype, set_num_threads,
    use_deterministic_algorithms,
)
from . import datasets, optim  # noqa: F401
from . import data  # noqa: F401
from .gradcheck import gradcheck  # noqa: F401
from .random import manual_seed  # noqa: F401
from .serialization import load, save  # noqa: F401
from .checkpoint import load_checkpoint, save_checkpoint  # noqa: F401
from .training import History, evaluate, fit, predict  # noqa: F401
from .inference import CompiledModule, compile  # noqa: F401,A001

# dtypes, PyTorch's names for NumPy's
float32 = float = _np.float32  # noqa: A001
float64 = double = _np.float64
int64 = long = _np.int64
int32 = int = _np.int32  # noqa: A001
int16 = short = _np.int16
int8 = _np.int8
uint8 = _np.uint8
bool = _np.bool_  # noqa: A001

# ``fastnn.tensor`` is the creation function (as ``torch.tensor``), not the module
# ``fastnn/tensor.py`` that defines Tensor (importing a submodule sets the attribute)
from .ops.creation import tensor  # noqa: E402,F401


def __getattr__(name):
    # ``fastnn.precompile`` (``_precompile``: subprocesses, pickling) imports on first use
    if name == "precompile":
        from ._precompile import precompile

        return precompile
    raise AttributeError(f"module 'fastnn' has no attribute {name!r}")
