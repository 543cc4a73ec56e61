"""The ``fastnn`` command line (also ``python -m fastnn``).

``fastnn train CONFIG``, ``fastnn predict MODEL INPUT OUTPUT``, ``fastnn warmup``,
``fastnn info``, ``fastnn demo``. An error prints one line on stderr,
``fastnn <command>: error: ...``, and exits with status 2 (1 for unexpected
errors, 130 when interrupted); ``--debug`` shows the traceback instead.
"""
import argparse
import sys

from ._common import _end_job, _message, _Parser
from .demo import _demo
from .info import _info, collect_info
from .predict import _predict
from .train import _train
from .warmup import _warmup

__all__ = ["build_parser", "collect_info", "main"]


def build_parser():
    from ..demo import DEMOS

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")
    threads = argparse.ArgumentParser(add_help=False)
    threads.add_argument("--threads", type=int, default=None, metavar="N",
                         help="threads for the kernels (default: NUMBA_NUM_THREADS or the CPUs allowed)")
    progress = argparse.ArgumentParser(add_help=False)
    progress.add_argument("--no-progress", action="store_true", help="no progress bar")

    parser = _Parser(prog="fastnn", description="fastnn: neural networks on Numba kernels")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", parents=[common, threads, progress], help="train a model described in a TOML file",
                           description="Train the model and run described in CONFIG (TOML); a checkpoint is "
                                       "written every epoch and the model is saved at the end.")
    train.add_argument("config", metavar="CONFIG")
    train.add_argument("--resume", metavar="CHECKPOINT",
                       help="continue from a checkpoint file, a folder (its newest), or 'auto' (the newest in the "
                            "config's checkpoint_dir if there is one, else start fresh)")
    train.add_argument("--epochs", type=int, default=None, help="override the config's epochs (total, not extra)")
    train.add_argument("--distributed", action=argparse.BooleanOptionalAction, default=None,
                       help="train data-parallel over MPI ranks (default: when mpirun/mpiexec/srun started "
                            "more than one rank)")
    train.set_defaults(func=_train)

    predict = sub.add_parser("predict", parents=[common, threads, progress], help="score an .npy/.npz file in chunks",
                             description="Score INPUT (.npy, or .npz) with MODEL (a fastnn.save file or a "
                                         "checkpoint) chunk by chunk, in bounded memory; OUTPUT (.npy or .npz) "
                                         "appears atomically when complete.")
    predict.add_argument("model", metavar="MODEL")
    predict.add_argument("input", metavar="INPUT")
    predict.add_argument("output", metavar="OUTPUT")
    predict.add_argument("--batch-size", type=int, default=1024, help="rows per chunk (default 1024)")
    predict.add_argument("--key", default=None, help="array of an .npz INPUT (default: x, or its only array)")
    predict.add_argument("--output-key", default="y", help="array name in an .npz OUTPUT (default: y)")
    predict.set_defaults(func=_predict)

    warm = sub.add_parser("warmup", parents=[common, progress], help="compile every kernel into the cache",
                          description="Compile every kernel into the on-disk cache (for container images, and "
                                      "before forking workers) and report the time taken.")
    warm.add_argument("--float64", action="store_true", help="float64 kernels too")
    warm.add_argument("--jobs", type=int, default=None, metavar="N",
                      help="compile in N worker processes into the shared cache (default: the CPUs allowed)")
    warm.set_defaults(func=_warmup)

    info = sub.add_parser("info", parents=[common], help="versions, CPU, threads, threading layer, cache")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=_info)

    demo = sub.add_parser("demo", parents=[common, threads, progress], help="train a small model on bundled data")
    demo.add_argument("--model", choices=sorted(DEMOS), default="mlp")
    demo.add_argument("--epochs", type=int, default=None)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    return parser


def main(argv=None):
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"fastnn {args.command}: interrupted", file=sys.stderr)
        return _end_job(args, 130)
    except Exception as exc:
        if args.debug:
            raise
        expected = isinstance(exc, (OSError, ValueError, TypeError, KeyError, ArithmeticError))
        kind = "" if expected else f"{type(exc).__name__}: "
        print(f"fastnn {args.command}: error: {kind}{_message(exc)}", file=sys.stderr)
        return _end_job(args, 2 if expected else 1)
