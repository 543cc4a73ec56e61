"""fastnn: a JIT-compiled CPU engine for neural networks, with PyTorch's API."""
__version__ = "0.1.0"

from ._config import get_default_dtype, get_num_threads, set_default_dtype, set_num_threads  # noqa: F401
