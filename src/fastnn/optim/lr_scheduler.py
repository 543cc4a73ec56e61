"""Learning-rate schedulers: they set ``group['lr']`` of an optimizer once per epoch.

``LRScheduler`` and the simple decays live here; ``OneCycleLR``, ``SequentialLR``,
``ReduceLROnPlateau`` and ``LambdaLR`` in ``_schedulers.py`` (re-exported here).
"""
import copy
import math
import numbers

from .optimizer import Optimizer


class LRScheduler:
    """Base class of learning-rate schedulers (PyTorch's ``LRScheduler`` protocol).

    Construction records each group's ``initial_lr`` (``base_lrs``) and performs the
    initial ``step()`` (``last_epoch`` becomes 0). Call ``step()`` once per epoch,
    after ``optimizer.step()``. Subclasses implement ``get_lr()`` for ``last_epoch``.

    Args:
        optimizer (Optimizer): the optimizer whose learning rates are scheduled.
        last_epoch (int): index of the last epoch when resuming (default -1: start).

    Example:
        >>> sched = fastnn.optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.1)
        >>> for epoch in range(100):
        ...     train_one_epoch(); sched.step()
    """

    def __init__(self, optimizer, last_epoch=-1):
        _check_optimizer(self, optimizer)
        if isinstance(last_epoch, bool) or not isinstance(last_epoch, numbers.Integral) or last_epoch < -1:
            raise ValueError(f"{type(self).__name__}: last_epoch must be an int >= -1, got {last_epoch!r}")
        for i, group in enumerate(optimizer.param_groups):
            if last_epoch == -1:
                group.setdefault("initial_lr", group["lr"])
            elif "initial_lr" not in group:
                raise KeyError(f"{type(self).__name__}: param_groups[{i}] has no 'initial_lr' "
                               "to resume from (last_epoch != -1)")
        self.optimizer = optimizer
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = int(last_epoch)
        self._last_lr = []
        self._initial_step()

    def _initial_step(self):
        """The step construction performs (``get_lr`` sees ``_is_initial``), as PyTorch's."""
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self):
        """The learning rates of all groups for ``self.last_epoch``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement get_lr")

    def step(self, epoch=None):
        """Advance one epoch and write the new learning rates into the optimizer.

        ``epoch`` (deprecated in PyTorch): jump to that epoch, with the closed form.
        """
        self._step_count += 1
        self._update_lr(epoch)

    def _update_lr(self, epoch=None):
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = int(epoch)
            values = self._get_closed_form_lr() if hasattr(self, "_get_closed_form_lr") else self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _current_lrs(self):
        return [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self):
        """The learning rates the last ``step()`` set, one per group."""
        return list(self._last_lr)

    def state_dict(self):
        """Everything but the optimizer, as plain numbers and lists."""
        return {key: copy.deepcopy(value) for key, value in self.__dict__.items() if key != "optimizer"}

    def load_state_dict(self, state_dict):
        """Restore a ``state_dict()``; the optimizer's own state is loaded separately."""
        self.__dict__.update({k: copy.deepcopy(v) for k, v in state_dict.items() if k != "optimizer"})


def _check_optimizer(scheduler, optimizer):
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{type(scheduler).__name__}: expected an Optimizer, got {type(optimizer).__name__}")


def _check_real(owner, name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a real number, got {value!r}")


def _check_int(owner, name, value, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{owner}: {name} must be an int >= {low}, got {value!r}")
    return int(value)


class StepLR(LRScheduler):
    """Multiply each group's learning rate by ``gamma`` every ``step_size`` epochs.

    ``lr = base_lr * gamma ** (epoch // step_size)``, computed like PyTorch by
    multiplying the current ``lr`` at each boundary.

    Args:
        optimizer (Optimizer): wrapped optimizer.
        step_size (int): period of learning-rate decay, in epochs (>= 1).
        gamma (float): multiplicative factor (default 0.1).
        last_epoch (int): index of the last epoch when resuming (default -1).

    Example:
        >>> sched = fastnn.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        >>> # lr: 0.1, 0.1, 0.05, 0.05, 0.025, ... after each sched.step()
    """

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        self.step_size = _check_int("StepLR", "step_size", step_size, 1)
        _check_real("StepLR", "gamma", gamma)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]

    def _get_closed_form_lr(self):
        return [base_lr * self.gamma ** (self.last_epoch // self.step_size) for base_lr in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from each group's base lr down to ``eta_min`` over ``T_max`` epochs.

    ``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2`` (the
    closed form of PyTorch's schedule; past ``T_max`` it rises again, as PyTorch's).

    Args:
        optimizer (Optimizer): wrapped optimizer.
        T_max (int): number of epochs of a half cosine period (> 0).
        eta_min (float): minimum learning rate (default 0).
        last_epoch (int): index of the last epoch when resuming (default -1).

    Example:
        >>> sched = fastnn.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=50)
    """

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        if isinstance(T_max, bool) or not isinstance(T_max, numbers.Real) or not T_max > 0:
            raise ValueError(f"CosineAnnealingLR: T_max must be a number > 0, got {T_max!r}")
        _check_real("CosineAnnealingLR", "eta_min", eta_min)
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self._is_initial:  # as PyTorch: construction keeps the current learning rates
            return self._current_lrs()
        return self._get_closed_form_lr()

    def _get_closed_form_lr(self):
        cosine = (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
        return [self.eta_min + (base_lr - self.eta_min) * cosine for base_lr in self.base_lrs]


class MultiStepLR(LRScheduler):
    """Multiply each group's learning rate by ``gamma`` at each epoch in ``milestones``.

    Args:
        optimizer (Optimizer): wrapped optimizer.
        milestones (list of int): epoch indices (a repeated one decays repeatedly).
        gamma (float): multiplicative factor (default 0.1).
        last_epoch (int): index of the last epoch when resuming (default -1).

    Example:
        >>> sched = fastnn.optim.lr_scheduler.MultiStepLR(opt, milestones=[30, 80], gamma=0.1)
        >>> # lr: 0.05 for epochs 0-29, 0.005 for 30-79, 0.0005 from 80
    """

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        try:
            milestones = list(milestones)
        except TypeError:
            raise TypeError(f"MultiStepLR: milestones must be a list of ints, got {milestones!r}") from None
        counts = {}
        for m in milestones:
            m = _check_int("MultiStepLR", "each milestone", m, 0)
            counts[m] = counts.get(m, 0) + 1
        _check_real("MultiStepLR", "gamma", gamma)
        self.milestones = counts  # {epoch: how many times it is listed}, like PyTorch's Counter
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        count = self.milestones.get(self.last_epoch, 0)
        if count == 0:
            return self._current_lrs()
        return [lr * self.gamma ** count for lr in self._current_lrs()]

    def _get_closed_form_lr(self):
        passed = sum(c for m, c in self.milestones.items() if int(m) <= self.last_epoch)
        return [base_lr * self.gamma ** passed for base_lr in self.base_lrs]

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self.milestones = {int(k): int(v) for k, v in dict(self.milestones).items()}


class ExponentialLR(LRScheduler):
    """Multiply each group's learning rate by ``gamma`` every epoch.

    Args:
        optimizer (Optimizer): wrapped optimizer.
        gamma (float): multiplicative factor.
        last_epoch (int): index of the last epoch when resuming (default -1).

    Example:
        >>> sched = fastnn.optim.lr_scheduler.ExponentialLR(opt, gamma=0.95)
    """

    def __init__(self, optimizer, gamma, last_epoch=-1):
        _check_real("ExponentialLR", "gamma", gamma)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self._is_initial:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]

    def _get_closed_form_lr(self):
        return [base_lr * self.gamma ** self.last_epoch for base_lr in self.base_lrs]


class LinearLR(LRScheduler):
    """Scale each group's learning rate by a factor that moves linearly from
    ``start_factor`` to ``end_factor`` over ``total_iters`` epochs (a warm-up).

    Args:
        optimizer (Optimizer): wrapped optimizer.
        start_factor (float): factor at epoch 0, in (0, 1] (default 1/3).
        end_factor (float): factor from epoch ``total_iters`` on, in [0, 1] (default 1).
        total_iters (int): epochs of the linear change (default 5).
        last_epoch (int): index of the last epoch when resuming (default -1).

    Example:
        >>> warmup = fastnn.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=5)
    """

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5, last_epoch=-1):
        _check_real("LinearLR", "start_factor", start_factor)
        _check_real("LinearLR", "end_factor", end_factor)
        if start_factor > 1.0 or start_factor <= 0:
            raise ValueError(f"LinearLR: start_factor must be in (0, 1], got {start_factor!r}")
        if end_factor > 1.0 or end_factor < 0:
            raise ValueError(f"LinearLR: end_factor must be in [0, 1], got {end_factor!r}")
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = _check_int("LinearLR", "total_iters", total_iters, 1)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0:
            return [lr * self.start_factor for lr in self._current_lrs()]
        if self._is_initial or self.last_epoch > self.total_iters:
            return self._current_lrs()
        change = self.end_factor - self.start_factor
        factor = 1.0 + change / (self.total_iters * self.start_factor + (self.last_epoch - 1) * change)
        return [lr * factor for lr in self._current_lrs()]

    def _get_closed_form_lr(self):
        change = self.end_factor - self.start_factor
        factor = self.start_factor + change * min(self.total_iters, self.last_epoch) / self.total_iters
        return [base_lr * factor for base_lr in self.base_lrs]


from ._schedulers import LambdaLR, OneCycleLR, ReduceLROnPlateau, SequentialLR  # noqa: E402

__all__ = ["LRScheduler", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR",
           "LambdaLR", "OneCycleLR", "SequentialLR", "ReduceLROnPlateau"]
