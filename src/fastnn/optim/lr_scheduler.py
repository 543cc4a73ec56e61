"""Learning-rate schedulers: they set ``group['lr']`` of an optimizer once per epoch."""
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
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an Optimizer, got {type(optimizer).__name__}")
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
        self.step()

    def get_lr(self):
        """The learning rates of all groups for ``self.last_epoch``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement get_lr")

    def step(self):
        """Advance one epoch and write the new learning rates into the optimizer."""
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self):
        """The learning rates the last ``step()`` set, one per group."""
        return list(self._last_lr)

    def state_dict(self):
        """Everything but the optimizer, as plain numbers and lists."""
        return {key: copy.deepcopy(value) for key, value in self.__dict__.items() if key != "optimizer"}

    def load_state_dict(self, state_dict):
        """Restore a ``state_dict()``; the optimizer's own state is loaded separately."""
        self.__dict__.update({k: copy.deepcopy(v) for k, v in state_dict.items() if k != "optimizer"})


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
        if isinstance(step_size, bool) or not isinstance(step_size, numbers.Integral) or step_size < 1:
            raise ValueError(f"StepLR: step_size must be an int >= 1, got {step_size!r}")
        if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real):
            raise TypeError(f"StepLR: gamma must be a real number, got {gamma!r}")
        self.step_size = int(step_size)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        groups = self.optimizer.param_groups
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return [group["lr"] for group in groups]
        return [group["lr"] * self.gamma for group in groups]


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
        if isinstance(eta_min, bool) or not isinstance(eta_min, numbers.Real):
            raise TypeError(f"CosineAnnealingLR: eta_min must be a real number, got {eta_min!r}")
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        cosine = (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
        return [self.eta_min + (base_lr - self.eta_min) * cosine for base_lr in self.base_lrs]
