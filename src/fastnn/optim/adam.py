"""Adam and AdamW (decoupled weight decay), PyTorch's update rules."""
import numpy as np

from ..kernels.optim import adam_update
from .optimizer import Optimizer, check_number, unused_buffer


class Adam(Optimizer):
    """Adam, PyTorch's update rule::

        g = g + weight_decay * p                      (Adam; AdamW: p = p * (1 - lr * wd))
        m = beta1 * m + (1 - beta1) * g               (computed as lerp(m, g, 1 - beta1))
        v = beta2 * v + (1 - beta2) * g * g
        v_max = max(v_max, v); v = v_max              (amsgrad only)
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    Args:
        params: iterable of Parameters or of parameter-group dicts.
        lr (float): learning rate (default 1e-3).
        betas (tuple): decay rates of the running averages of g and g*g, each in [0, 1).
        eps (float): added to the denominator for stability (default 1e-8).
        weight_decay (float): L2 penalty added to the gradient (default 0).
        amsgrad (bool): use the AMSGrad variant (the maximum of the past second
            moments in the denominator; default False).

    State per parameter: ``step`` (int), ``exp_avg``, ``exp_avg_sq``, and
    ``max_exp_avg_sq`` with amsgrad.

    Example:
        >>> opt = fastnn.optim.Adam(model.parameters(), lr=1e-3)
        >>> opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
    """

    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False):
        defaults = dict(lr=lr, betas=tuple(betas) if isinstance(betas, list) else betas,
                        eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
        super().__init__(params, defaults)

    def _validate(self, group):
        amsgrad = group.get("amsgrad", False)
        if not isinstance(amsgrad, (bool, np.bool_)):
            raise TypeError(f"{type(self).__name__}: amsgrad must be a bool, got {amsgrad!r}")
        super()._validate({k: v for k, v in group.items() if k != "amsgrad"})

    def _check_group(self, group):
        name = type(self).__name__
        check_number(name, "learning rate lr", group["lr"])
        check_number(name, "epsilon eps", group["eps"])
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{name}: betas must be a pair (beta1, beta2), got {betas!r}")
        check_number(name, "beta parameter at index 0", betas[0], high=1.0)
        check_number(name, "beta parameter at index 1", betas[1], high=1.0)
        check_number(name, "weight_decay", group["weight_decay"])
        if bool(group.get("decoupled_weight_decay", self.decoupled)) != self.decoupled:
            raise ValueError(f"{name}: decoupled_weight_decay must be {self.decoupled}; "
                             f"use {'Adam' if self.decoupled else 'AdamW'} instead")

    def _update(self, param, data, grad, state, group):
        exp_avg = self._buffer(state, "exp_avg", param)
        exp_avg_sq = self._buffer(state, "exp_avg_sq", param)
        amsgrad = bool(group.get("amsgrad", False))
        max_exp_avg_sq = self._buffer(state, "max_exp_avg_sq", param) if amsgrad else unused_buffer(data.dtype)
        step = state["step"] = state.get("step", 0) + 1
        key = (data.dtype, step, group["lr"], tuple(group["betas"]), group["eps"], group["weight_decay"])
        cache = self.__dict__.setdefault("_consts", {})
        consts = cache.get(key)
        if consts is None:  # the step's scalars, made once for all parameters of a group
            if len(cache) >= 64:  # steps and schedules move on: keep only the latest
                cache.clear()
            consts = cache[key] = self._scalars(data.dtype.type, step, group)
        adam_update(data, exp_avg, exp_avg_sq, max_exp_avg_sq, grad, *consts, self.decoupled, amsgrad)

    def _scalars(self, dt, step, group):
        """adam_update's scalar arguments for this step, in the parameters' dtype."""
        lr, weight_decay, eps = group["lr"], group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        bias_correction1 = 1 - beta1 ** step
        bias_correction2 = 1 - beta2 ** step
        step_size = lr / bias_correction1
        decay = 1 - lr * weight_decay if self.decoupled else 1.0
        return (dt(step_size), dt(beta1), dt(1 - beta1), dt(beta2), dt(1 - beta2), dt(bias_correction2 ** 0.5),
                dt(eps), dt(weight_decay), dt(decay))


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay, PyTorch's update rule.

    Each step first shrinks the parameter, ``p = p * (1 - lr * weight_decay)``, then
    applies the Adam update with the raw gradient (see :class:`Adam`).

    Args:
        params: iterable of Parameters or of parameter-group dicts.
        lr (float): learning rate (default 1e-3).
        betas (tuple): decay rates of the running averages of g and g*g, each in [0, 1).
        eps (float): added to the denominator for stability (default 1e-8).
        weight_decay (float): decoupled weight decay coefficient (default 1e-2).
        amsgrad (bool): use the AMSGrad variant (default False; see :class:`Adam`).

    Example:
        >>> opt = fastnn.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
        >>> opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
    """

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
