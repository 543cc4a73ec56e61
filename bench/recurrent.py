"""Recurrent layers (the lstm workload's LSTM, and RNN/GRU of the same size) and Embedding."""
from .common import (
    HIDDEN,
    SEQUENCE_SHAPE,
    THREADS,
    LayerBenchmark,
    fastnn,
    randn,
    require,
    rng,
)

VOCAB, EMBEDDING_DIM = 10000, 64


class Recurrent(LayerBenchmark):
    """RNN/LSTM/GRU(F, HIDDEN, batch_first=True) over an (N, T, F) float32 batch."""

    params = (["RNN", "LSTM", "GRU"], THREADS)
    param_names = ["layer", "threads"]

    def make(self, layer, threads):
        require(fastnn.nn, layer)
        cls = getattr(fastnn.nn, layer)
        return cls(SEQUENCE_SHAPE[2], HIDDEN, batch_first=True), randn(SEQUENCE_SHAPE)


class Embedding(LayerBenchmark):
    """Embedding(VOCAB, EMBEDDING_DIM) looked up at (N, T) random token ids."""

    params = (THREADS,)
    param_names = ["threads"]

    def make(self, threads):
        require(fastnn.nn, "Embedding")
        tokens = rng(1).integers(0, VOCAB, SEQUENCE_SHAPE[:2])
        return fastnn.nn.Embedding(VOCAB, EMBEDDING_DIM), tokens
