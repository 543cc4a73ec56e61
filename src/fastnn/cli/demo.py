"""``fastnn demo``: train a small model on a bundled data set."""
from ._common import _threads


def _demo(args):
    from ..demo import run_demo

    _threads(args.threads)
    run_demo(args.model, epochs=args.epochs, seed=args.seed, progress=not args.no_progress)
    return 0
