"""RMSprop, optionally centered and with momentum, PyTorch's update rule."""
from ..kernels.optim import rmsprop_update
from .optimizer import Optimizer, check_number, unused_buffer


class RMSprop(Optimizer):
    """RMSprop, PyTorch's update rule::

        g = g + weight_decay * p
        s = alpha * s + (1 - alpha) * g * g
        avg = sqrt(s - a * a) + eps, a = lerp(a, g, 1 - alpha)   (centered)
        avg = sqrt(s) + eps                                      (otherwise)
        buf = momentum * buf + g / avg; p = p - lr * buf         (momentum > 0)
        p = p - lr * g / avg                                     (otherwise)

    Args:
        params: iterable of Parameters or of parameter-group dicts.
        lr (float): learning rate (default 1e-2).
        alpha (float): smoothing constant of the squared-gradient average (default 0.99).
        eps (float): added to the denominator for stability (default 1e-8).
        weight_decay (float): L2 penalty added to the gradient (default 0).
        momentum (float): momentum factor (default 0).
        centered (bool): normalise by an estimate of the gradient's variance.

    State per parameter: ``step`` (int), ``square_avg``, and ``momentum_buffer``
    (momentum > 0) and ``grad_avg`` (centered).

    Example:
        >>> opt = fastnn.optim.RMSprop(model.parameters(), lr=1e-3, momentum=0.9)
        >>> opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                        momentum=momentum, centered=centered)
        super().__init__(params, defaults)

    def _check_group(self, group):
        check_number("RMSprop", "learning rate lr", group["lr"])
        check_number("RMSprop", "epsilon eps", group["eps"])
        check_number("RMSprop", "alpha", group["alpha"])
        check_number("RMSprop", "weight_decay", group["weight_decay"])
        check_number("RMSprop", "momentum", group["momentum"])

    def _update(self, param, data, grad, state, group):
        dt = data.dtype.type
        alpha, momentum, centered = group["alpha"], group["momentum"], bool(group["centered"])
        use_momentum = momentum > 0
        square_avg = self._buffer(state, "square_avg", param)
        unused = unused_buffer(data.dtype)
        momentum_buffer = self._buffer(state, "momentum_buffer", param) if use_momentum else unused
        grad_avg = self._buffer(state, "grad_avg", param) if centered else unused
        state["step"] = state.get("step", 0) + 1
        rmsprop_update(data, square_avg, grad_avg, momentum_buffer, grad, dt(group["lr"]),
                       dt(alpha), dt(1 - alpha), dt(group["eps"]), dt(group["weight_decay"]),
                       dt(momentum), centered, use_momentum)
