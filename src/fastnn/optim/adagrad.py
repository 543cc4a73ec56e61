"""Adagrad, PyTorch's update rule."""
from ..kernels.optim import adagrad_update
from .optimizer import Optimizer, check_number


class Adagrad(Optimizer):
    """Adagrad, PyTorch's update rule::

        g = g + weight_decay * p
        clr = lr / (1 + (t - 1) * lr_decay)
        sum = sum + g * g
        p = p - clr * g / (sqrt(sum) + eps)

    Args:
        params: iterable of Parameters or of parameter-group dicts.
        lr (float): learning rate (default 1e-2).
        lr_decay (float): learning-rate decay per step (default 0).
        weight_decay (float): L2 penalty added to the gradient (default 0).
        initial_accumulator_value (float): starting value of ``sum`` (default 0).
        eps (float): added to the denominator for stability (default 1e-10).

    State per parameter: ``step`` (int) and ``sum``.

    Example:
        >>> opt = fastnn.optim.Adagrad(model.parameters(), lr=0.01)
        >>> opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
    """

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10):
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value)
        super().__init__(params, defaults)

    def _check_group(self, group):
        check_number("Adagrad", "learning rate lr", group["lr"])
        check_number("Adagrad", "lr_decay value", group["lr_decay"])
        check_number("Adagrad", "weight_decay value", group["weight_decay"])
        check_number("Adagrad", "initial_accumulator_value value", group["initial_accumulator_value"])
        check_number("Adagrad", "epsilon value", group["eps"])

    def _update(self, param, data, grad, state, group):
        dt = data.dtype.type
        state_sum = self._buffer(state, "sum", param, fill=group["initial_accumulator_value"])
        step = state["step"] = state.get("step", 0) + 1
        clr = group["lr"] / (1 + (step - 1) * group["lr_decay"])
        adagrad_update(data, state_sum, grad, dt(clr), dt(group["eps"]), dt(group["weight_decay"]))
