"""L-BFGS with an optional strong-Wolfe line search: PyTorch's algorithm, step by step.

The vector algebra (a few dot products and axpys per iteration over one flat vector
of all parameters) runs in NumPy; the cost of an iteration is the closure.
"""
import copy

import numpy as np

from ..autograd.grad_mode import enable_grad
from ..tensor import Tensor
from ._line_search import strong_wolfe
from .optimizer import Optimizer, check_number


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"LBFGS: {name} must be an int, got {value!r}")
    if value < low:
        raise ValueError(f"LBFGS: invalid {name} {value!r}, expected an int >= {low}")


class LBFGS(Optimizer):
    """L-BFGS (PyTorch's ``torch.optim.LBFGS``): each ``step(closure)`` runs up to
    ``max_iter`` quasi-Newton iterations, re-evaluating the loss through ``closure``.

    All parameters form one flat vector; the curvature pairs of the last
    ``history_size`` iterations approximate the inverse Hessian. Only one parameter
    group is supported (as in PyTorch).

    Args:
        params: iterable of Parameters (one group).
        lr (float): step length (default 1).
        max_iter (int): iterations per ``step`` (default 20).
        max_eval (int): closure evaluations per ``step`` (default ``max_iter * 5 // 4``).
        tolerance_grad (float): stop when ``max|g| <= tolerance_grad`` (default 1e-7).
        tolerance_change (float): stop when the loss or the step changes less (default 1e-9).
        history_size (int): curvature pairs kept (default 100).
        line_search_fn (str): None (fixed step ``lr``) or ``'strong_wolfe'``.

    State (kept under the first parameter): ``func_evals``, ``n_iter``, ``d``, ``t``,
    ``old_dirs``, ``old_stps``, ``ro``, ``H_diag``, ``prev_flat_grad``, ``prev_loss``.

    Example:
        >>> opt = fastnn.optim.LBFGS(model.parameters(), lr=1, line_search_fn="strong_wolfe")
        >>> def closure():
        ...     opt.zero_grad()
        ...     loss = loss_fn(model(x), y)
        ...     loss.backward()
        ...     return loss
        >>> opt.step(closure)
    """

    def __init__(self, params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7,
                 tolerance_change=1e-9, history_size=100, line_search_fn=None):
        check_number("LBFGS", "learning rate", lr)
        _check_int("max_iter", max_iter, 1)
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        _check_int("max_eval", max_eval, 1)
        _check_int("history_size", history_size, 1)
        check_number("LBFGS", "tolerance_grad", tolerance_grad, low=float("-inf"))
        check_number("LBFGS", "tolerance_change", tolerance_change, low=float("-inf"))
        if line_search_fn not in (None, "strong_wolfe"):
            raise ValueError(f"LBFGS: line_search_fn must be None or 'strong_wolfe', got {line_search_fn!r}")
        defaults = dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                        tolerance_change=tolerance_change, history_size=history_size,
                        line_search_fn=line_search_fn)
        super().__init__(params, defaults)
        self._params = self.param_groups[0]["params"]

    def add_param_group(self, param_group):
        if self.param_groups:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        super().add_param_group(param_group)
        dtypes = {p.data.dtype for p in self.param_groups[0]["params"]}
        if len(dtypes) > 1:
            self.param_groups.clear()
            raise TypeError(f"LBFGS: all parameters must share one dtype, got {sorted(map(str, dtypes))}")

    def _check_group(self, group):
        check_number("LBFGS", "learning rate", group["lr"])

    # ------------------------------------------------------------ flat vectors
    def _gather_flat_grad(self):
        parts = []
        for p in self._params:
            grad = p.grad
            if grad is None:
                parts.append(np.zeros(p.data.size, dtype=p.data.dtype))
            else:
                grad = grad.data if isinstance(grad, Tensor) else np.asarray(grad)
                if grad.shape != p.data.shape:
                    raise ValueError(f"LBFGS.step: gradient of shape {grad.shape} does not match its "
                                     f"parameter of shape {p.data.shape}")
                parts.append(grad.reshape(-1))
        return np.concatenate(parts).astype(self._params[0].data.dtype, copy=False)

    def _add_grad(self, step_size, update):
        offset = 0
        for p in self._params:
            n = p.data.size
            p.data += (step_size * update[offset:offset + n]).reshape(p.data.shape)
            p._version += 1
            offset += n

    def _clone_param(self):
        return [p.data.copy() for p in self._params]

    def _set_param(self, params_data):
        for p, data in zip(self._params, params_data):
            np.copyto(p.data, data)
            p._version += 1

    def _evaluate(self, closure):
        with enable_grad():
            return closure()

    def _directional_evaluate(self, closure, x, t, d):
        self._add_grad(t, d)
        loss = float(self._evaluate(closure))
        flat_grad = self._gather_flat_grad()
        self._set_param(x)
        return loss, flat_grad

    # ------------------------------------------------------------ step
    def step(self, closure):
        """Run up to ``max_iter`` iterations; ``closure`` zeroes the gradients, computes
        the loss, calls ``backward`` and returns the loss. Returns the first loss."""
        if closure is None or not callable(closure):
            raise TypeError("LBFGS.step: needs a closure that recomputes the loss and its gradients")
        group = self.param_groups[0]
        lr, max_iter, max_eval = group["lr"], group["max_iter"], group["max_eval"]
        tolerance_grad, tolerance_change = group["tolerance_grad"], group["tolerance_change"]
        line_search_fn, history_size = group["line_search_fn"], group["history_size"]
        state = self.state.setdefault(self._params[0], {})
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss = self._evaluate(closure)
        loss = float(orig_loss)
        current_evals = 1
        state["func_evals"] += 1
        flat_grad = self._gather_flat_grad()
        if np.abs(flat_grad).max() <= tolerance_grad:
            return orig_loss

        d, t = state.get("d"), state.get("t")
        old_dirs, old_stps, ro = state.get("old_dirs"), state.get("old_stps"), state.get("ro")
        H_diag = state.get("H_diag")
        prev_flat_grad, prev_loss = state.get("prev_flat_grad"), state.get("prev_loss")
        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                d = -flat_grad
                old_dirs, old_stps, ro = [], [], []
                H_diag = 1
            else:
                d, H_diag = self._direction(state, flat_grad, prev_flat_grad, d, t, old_dirs,
                                            old_stps, ro, H_diag, history_size)
            prev_flat_grad = flat_grad.copy()
            prev_loss = loss
            if state["n_iter"] == 1:
                t = min(1.0, 1.0 / np.abs(flat_grad).sum()) * lr
            else:
                t = lr
            gtd = flat_grad.dot(d)
            if gtd > -tolerance_change:
                break

            ls_func_evals = 0
            if line_search_fn is not None:
                x_init = self._clone_param()

                def obj_func(x, t, d):
                    return self._directional_evaluate(closure, x, t, d)

                loss, flat_grad, t, ls_func_evals = strong_wolfe(
                    obj_func, x_init, t, d, loss, flat_grad, gtd, max_ls=max_eval - current_evals)
                self._add_grad(t, d)
                opt_cond = np.abs(flat_grad).max() <= tolerance_grad
            else:
                self._add_grad(t, d)
                opt_cond = False
                if n_iter != max_iter:
                    loss = float(self._evaluate(closure))
                    flat_grad = self._gather_flat_grad()
                    opt_cond = np.abs(flat_grad).max() <= tolerance_grad
                    ls_func_evals = 1
            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                break
            if np.abs(d * t).max() <= tolerance_change or abs(loss - prev_loss) < tolerance_change:
                break

        state.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=H_diag,
                     prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
        return orig_loss

    @staticmethod
    def _direction(state, flat_grad, prev_flat_grad, d, t, old_dirs, old_stps, ro, H_diag, history_size):
        """The L-BFGS two-loop recursion: update the history, return ``(d, H_diag)``."""
        y = flat_grad - prev_flat_grad
        s = d * t
        ys = y.dot(s)
        if ys > 1e-10:
            if len(old_dirs) == history_size:
                old_dirs.pop(0)
                old_stps.pop(0)
                ro.pop(0)
            old_dirs.append(y)
            old_stps.append(s)
            ro.append(1.0 / ys)
            H_diag = ys / y.dot(y)
        num_old = len(old_dirs)
        if "al" not in state:
            state["al"] = [None] * history_size
        al = state["al"]
        q = -flat_grad
        for i in range(num_old - 1, -1, -1):
            al[i] = old_stps[i].dot(q) * ro[i]
            q = q - al[i] * old_dirs[i]
        r = q * H_diag
        for i in range(num_old):
            be_i = old_dirs[i].dot(r) * ro[i]
            r = r + (al[i] - be_i) * old_stps[i]
        return r, H_diag

    # ------------------------------------------------------------ state
    def _loaded_value(self, p, key, value):
        """Saved LBFGS state: flat vectors (and lists of them) in the parameters' dtype."""
        if isinstance(value, Tensor):
            value = value.data
        elif hasattr(value, "detach"):  # a torch tensor
            value = value.detach().cpu().numpy()
        if isinstance(value, list):
            return [self._loaded_value(p, key, v) for v in value]
        if key in ("func_evals", "n_iter"):
            return int(np.asarray(value).item())
        if isinstance(value, np.ndarray):
            if value.ndim == 0:
                return value.item()
            return np.array(value, dtype=p.data.dtype, order="C", copy=True)
        return copy.deepcopy(value)
