"""The ``fastnn`` command line (also ``python -m fastnn``)."""
import argparse
import sys


def _demo(args):
    from .demo import run_demo

    run_demo(args.model, epochs=args.epochs, seed=args.seed, progress=not args.no_progress)
    return 0


def build_parser():
    from .demo import DEMOS

    parser = argparse.ArgumentParser(prog="fastnn", description="fastnn: neural networks on Numba kernels")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train a small model on the bundled digits")
    demo.add_argument("--model", choices=sorted(DEMOS), default="mlp")
    demo.add_argument("--epochs", type=int, default=None)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(func=_demo)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        if args.debug:
            raise
        print(f"fastnn {args.command}: error: {exc}", file=sys.stderr)
        return 2
