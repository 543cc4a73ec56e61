"""``ReduceLROnPlateau`` (PyTorch's rule; import it from ``fastnn.optim.lr_scheduler``)."""
import copy
import math

from .lr_scheduler import LRScheduler, _check_int, _check_optimizer, _check_real


class ReduceLROnPlateau(LRScheduler):
    """Multiply the learning rates by ``factor`` when a metric stops improving for
    more than ``patience`` epochs. Call ``step(metric)`` once per epoch, e.g. with the
    validation loss (``fit`` does: ``val_loss`` when there is validation data, else
    ``loss``).

    Args:
        optimizer (Optimizer): wrapped optimizer.
        mode (str): 'min' (default: lower is better) or 'max'.
        factor (float): new_lr = lr * factor, in [0, 1) (default 0.1).
        patience (int): epochs without improvement tolerated (default 10).
        threshold (float): least change that counts as an improvement (default 1e-4).
        threshold_mode (str): 'rel' (default: relative to the best) or 'abs'.
        cooldown (int): epochs to wait after a reduction before counting again (default 0).
        min_lr (float or list): lower bound of the learning rate(s) (default 0).
        eps (float): reductions smaller than this are skipped (default 1e-8).

    Example:
        >>> sched = fastnn.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2)
        >>> for epoch in range(50):
        ...     train_one_epoch(); sched.step(validation_loss())
    """

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
                 cooldown=0, min_lr=0, eps=1e-8):
        _check_optimizer(self, optimizer)
        _check_real("ReduceLROnPlateau", "factor", factor)
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor should be < 1.0, got {factor!r}")
        if factor < 0:
            raise ValueError(f"ReduceLROnPlateau: factor should be >= 0, got {factor!r}")
        self.factor = factor
        self.optimizer = optimizer
        n = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != n:
                raise ValueError(f"ReduceLROnPlateau: expected {n} min_lrs (one per group), got {len(min_lr)}")
            self.default_min_lr = None
            self.min_lrs = list(min_lr)
        else:
            self.default_min_lr = min_lr
            self.min_lrs = [min_lr] * n
        for value in self.min_lrs:
            _check_real("ReduceLROnPlateau", "min_lr", value)
            if value < 0:
                raise ValueError(f"ReduceLROnPlateau: min_lr must be >= 0, got {value!r}")
        self.patience = _check_int("ReduceLROnPlateau", "patience", patience, 0)
        self.cooldown = _check_int("ReduceLROnPlateau", "cooldown", cooldown, 0)
        _check_real("ReduceLROnPlateau", "eps", eps)
        _check_real("ReduceLROnPlateau", "threshold", threshold)
        self.eps = eps
        self.last_epoch = 0
        self._last_lr = [group["lr"] for group in optimizer.param_groups]
        self._init_is_better(mode, threshold, threshold_mode)
        self._reset()

    def _init_is_better(self, mode, threshold, threshold_mode):
        if mode not in ("min", "max"):
            raise ValueError(f"ReduceLROnPlateau: mode {mode!r} is unknown (expected 'min' or 'max')")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"ReduceLROnPlateau: threshold mode {threshold_mode!r} is unknown "
                             "(expected 'rel' or 'abs')")
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.mode, self.threshold, self.threshold_mode = mode, threshold, threshold_mode

    def _reset(self):
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    @property
    def in_cooldown(self):
        return self.cooldown_counter > 0

    def _is_better(self, a, best):
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def step(self, metrics, epoch=None):
        """Record this epoch's ``metrics`` (a number or a one-element Tensor) and reduce
        the learning rates if it has not improved for more than ``patience`` epochs."""
        try:
            current = float(metrics)
        except (TypeError, ValueError):
            raise TypeError(f"ReduceLROnPlateau.step: metrics must be a number, got {metrics!r}") from None
        self.last_epoch = self.last_epoch + 1 if epoch is None else int(epoch)
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _reduce_lr(self):
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(f"ReduceLROnPlateau: the optimizer has {len(groups)} parameter groups but "
                                   f"{len(self.min_lrs)} min_lrs were given")
            self.min_lrs = [self.default_min_lr] * len(groups)
        for group, min_lr in zip(groups, self.min_lrs):
            old_lr = float(group["lr"])
            new_lr = max(old_lr * self.factor, min_lr)
            if old_lr - new_lr > self.eps:
                group["lr"] = new_lr

    def get_lr(self):
        return [group["lr"] for group in self.optimizer.param_groups]

    def load_state_dict(self, state_dict):
        self.__dict__.update({k: copy.deepcopy(v) for k, v in state_dict.items() if k != "optimizer"})
        self._init_is_better(self.mode, self.threshold, self.threshold_mode)

