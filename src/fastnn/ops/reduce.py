"""(being written)"""
__all__ = ["softmax", "log_softmax"]


def softmax(x, dim=None, dtype=None):
    raise NotImplementedError


def log_softmax(x, dim=None, dtype=None):
    raise NotImplementedError
