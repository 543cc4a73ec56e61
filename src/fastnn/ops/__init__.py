"""fastnn.ops: the differentiable operations, one level above the kernels.

Each operation validates its arguments, runs its forward (a Numba kernel on the hot
paths, NumPy for generic elementwise and shape work) and, when grad is recorded,
attaches a backward that calls kernels too (see ``fastnn.autograd.engine`` for the
protocol). ``nn.functional`` and the Tensor methods call these.
"""
from ._util import check_dim, index_of  # noqa: F401
# the layer families first: a submodule's name (norm, linear, dropout) must not
# hide the function of the same name that the star imports below bind here
from . import conv, dropout, embedding, linear, loss, norm, pool, recurrent  # noqa: F401,E401
from .activation import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .arith import *  # noqa: F401,F403
from .reduce import *  # noqa: F401,F403
from .shape import *  # noqa: F401,F403
from .creation import *  # noqa: F401,F403
