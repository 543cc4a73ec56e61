"""fastnn.nn: layers, containers, losses and initialisation, with PyTorch's names."""
from . import functional, init, utils  # noqa: F401
from .activation import GELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh  # noqa: F401
from .containers import ModuleDict, ModuleList, Residual, Sequential  # noqa: F401
from .conv import Conv2d  # noqa: F401
from .conv_extra import Conv1d, ConvTranspose1d, ConvTranspose2d  # noqa: F401
from .dropout import Dropout, Dropout1d, Dropout2d  # noqa: F401
from .linear import Flatten, Identity, Linear  # noqa: F401
from .loss import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, NLLLoss  # noqa: F401
from .module import Module, Parameter  # noqa: F401
from .normalization import BatchNorm1d, BatchNorm2d  # noqa: F401
from .norm_extra import GroupNorm, InstanceNorm1d, InstanceNorm2d, LayerNorm  # noqa: F401
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d  # noqa: F401
from .pooling_extra import AdaptiveAvgPool1d, AdaptiveMaxPool1d, AdaptiveMaxPool2d, AvgPool1d, MaxPool1d  # noqa: F401
from .recurrent import GRU, LSTM, RNN, LastStep  # noqa: F401
from .rnn_cells import GRUCell, LSTMCell, RNNCell  # noqa: F401
from .sparse import Embedding  # noqa: F401
from .transformer import *  # noqa: F401,F403 (MultiheadAttention, TransformerEncoder(Layer), TransformerDecoder(Layer))
from .activation_extra import *  # noqa: F401,F403
from .loss_extra import *  # noqa: F401,F403
from .misc import *  # noqa: F401,F403
from .resample import *  # noqa: F401,F403
