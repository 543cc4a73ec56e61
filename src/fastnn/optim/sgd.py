"""Stochastic gradient descent with momentum, dampening, Nesterov and weight decay."""
from ..kernels.optim import sgd_update
from .optimizer import Optimizer, check_number, unused_buffer


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's update rule::

        d = g + weight_decay * p
        buf = d  (first step)   or   buf = momentum * buf + (1 - dampening) * d
        d = d + momentum * buf  (nesterov)   or   d = buf      (when momentum != 0)
        p = p - lr * d

    Args:
        params: iterable of Parameters or of parameter-group dicts.
        lr (float): learning rate (default 1e-3).
        momentum (float): momentum factor (default 0).
        dampening (float): dampening for momentum (default 0).
        weight_decay (float): L2 penalty added to the gradient (default 0).
        nesterov (bool): Nesterov momentum; needs momentum > 0 and zero dampening.

    State per parameter: ``momentum_buffer`` (only when momentum != 0).

    Example:
        >>> opt = fastnn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov)
        super().__init__(params, defaults)

    def _check_group(self, group):
        check_number("SGD", "learning rate lr", group["lr"])
        check_number("SGD", "momentum", group["momentum"])
        check_number("SGD", "dampening", group["dampening"], low=float("-inf"))
        check_number("SGD", "weight_decay", group["weight_decay"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                "SGD: Nesterov momentum requires a momentum > 0 and zero dampening, got "
                f"momentum={group['momentum']!r}, dampening={group['dampening']!r}"
            )

    def _update(self, param, data, grad, state, group):
        dt = data.dtype.type
        momentum = group["momentum"]
        use_momentum = momentum != 0
        first_step = False
        buf = unused_buffer(data.dtype)
        if use_momentum:
            first_step = state.get("momentum_buffer") is None
            buf = self._buffer(state, "momentum_buffer", param, fill=None)
        sgd_update(data, buf, grad, dt(group["lr"]), dt(momentum), dt(1 - group["dampening"]),
                   dt(group["weight_decay"]), use_momentum, bool(group["nesterov"]), first_step)
