"""``fastnn.data``: datasets, samplers and ``DataLoader``, as in ``torch.utils.data``.

Example:
    >>> from fastnn.data import DataLoader, TensorDataset, random_split
    >>> train, val = random_split(TensorDataset(x, y), [0.9, 0.1])
    >>> for xb, yb in DataLoader(train, batch_size=64, shuffle=True):
    ...     ...
    >>> fastnn.fit(model, train, None, loss_fn, optimizer, validation_data=val)
"""
from ._worker import WorkerInfo, get_worker_info  # noqa: F401
from .collate import default_collate, default_convert  # noqa: F401
from .dataloader import DataLoader  # noqa: F401
from .dataset import ConcatDataset, Dataset, IterableDataset, Subset, TensorDataset, random_split  # noqa: F401
from .sampler import (  # noqa: F401
    BatchSampler, RandomSampler, Sampler, SequentialSampler, SubsetRandomSampler, WeightedRandomSampler,
)

__all__ = [
    "BatchSampler", "ConcatDataset", "DataLoader", "Dataset", "IterableDataset", "RandomSampler", "Sampler",
    "SequentialSampler", "Subset", "SubsetRandomSampler", "TensorDataset", "WeightedRandomSampler", "WorkerInfo",
    "default_collate", "default_convert", "get_worker_info", "random_split",
]
