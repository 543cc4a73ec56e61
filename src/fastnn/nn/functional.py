"""fastnn.nn.functional: the functional form of every layer, activation and loss,
by PyTorch's names (``import fastnn.nn.functional as F``).

Each function validates its arguments and calls one operation of ``fastnn.ops``;
the modules in ``fastnn.nn`` call these.
"""
from ..kernels import activations as _act_k
from ..ops.linear import linear as _linear
from ..ops.activation import ACTIVATION_KINDS as _KINDS
from ..ops.activation import activation as _activation
from ..ops.activation import gelu, leaky_relu, relu, sigmoid, tanh  # noqa: F401
from ..ops.attention import *  # noqa: F401,F403
from ..ops.conv import *  # noqa: F401,F403
from ..ops.activation_extra import *  # noqa: F401,F403
from ..ops.embedding_bag import *  # noqa: F401,F403
from ..ops.loss_extra import *  # noqa: F401,F403
from ..ops.resample import *  # noqa: F401,F403
from ..ops.vector import *  # noqa: F401,F403
from ..ops.conv1d import *  # noqa: F401,F403
from ..ops.conv_transpose import *  # noqa: F401,F403
from ..ops.dropout import *  # noqa: F401,F403
from ..ops.embedding import *  # noqa: F401,F403
from ..ops.loss import *  # noqa: F401,F403
from ..ops.norm import *  # noqa: F401,F403
from ..ops.layer_norm import *  # noqa: F401,F403
from ..ops.pool import *  # noqa: F401,F403
from ..ops.pool1d import *  # noqa: F401,F403
from ..ops.adaptive_pool import *  # noqa: F401,F403
from ..ops.recurrent import *  # noqa: F401,F403
from ..ops.reduce import log_softmax, softmax  # noqa: F401
from ..ops.shape import flatten, one_hot  # noqa: F401


def linear(input, weight, bias=None, activation=None, negative_slope=0.0):  # noqa: A002 (PyTorch's name)
    """y = input @ weight.T + bias, like ``torch.nn.functional.linear``.

    fastnn extension: ``activation`` (``'relu'``, ``'leaky_relu'``, ``'sigmoid'``,
    ``'tanh'`` or ``'gelu'``) is applied in the same pass as the bias (the epilogue),
    with ``negative_slope`` for leaky_relu; results equal the separate calls.

    Shape: input (*, in_features), weight (out_features, in_features), bias
    (out_features,) -> (*, out_features).
    """
    if activation is None:
        return _linear(input, weight, bias)
    kind, slope = epilogue_kind(activation), float(negative_slope)
    if kind == _act_k.GELU or slope < 0:  # its derivative needs the pre-activation: run it apart
        return _activation(_linear(input, weight, bias), kind, slope, activation)
    return _linear(input, weight, bias, kind, slope)


def epilogue_kind(activation):
    """The kernel code of an activation that a layer can apply in its epilogue."""
    try:
        return _KINDS[activation]
    except KeyError:
        raise ValueError(f"unknown epilogue activation {activation!r}; expected one of {sorted(_KINDS)}") from None


IDENTITY = _act_k.IDENTITY
