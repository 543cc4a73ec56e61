"""The inference plan running (or being traced) on this thread, if any.

Below the operations and the modules, which both consult it: while a plan is set,
``Module.__call__`` and the few operations a plan can fuse (``add``, ``relu``) go
through its ``module_call``/``op_call`` (see ``fastnn.inference``), and ``linear``
takes its packed weights from ``packs`` (``fastnn.inference.packs``).
"""
import threading


class _PlanState(threading.local):
    plan = None
    packs = None  # the running plan's PackedWeights, also while a layer runs unplanned
    auto = False  # in ``inference_mode``: the outermost module call in eval mode runs on a plan


plan_state = _PlanState()


def call_unplanned(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with no plan set on this thread meanwhile (what a
    plannable layer's own forward, or an operation a step runs as it is, calls inside
    is never recorded nor replayed)."""
    state = plan_state
    plan, state.plan = state.plan, None
    try:
        return fn(*args, **kwargs)
    finally:
        state.plan = plan
