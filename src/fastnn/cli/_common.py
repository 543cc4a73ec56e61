"""Helpers shared by the ``fastnn`` subcommands: the one-line-error parser, printing,
``--threads``, and turning an exception into the one-line error message."""
import argparse
import sys


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line too."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _say(*parts):
    print(*parts, flush=True)


def _threads(n):
    if n is not None:
        from .._config import set_num_threads

        set_num_threads(n)


def _end_job(args, status):
    """Under MPI, a rank that fails ends every rank: the others would wait for it forever."""
    if getattr(args, "distributed", None) and "mpi4py.MPI" in sys.modules:
        from ..distributed import get_comm

        if get_comm().Get_size() > 1:
            get_comm().Abort(status)
    return status


def _message(exc):
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    elif isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.strerror}: {exc.filename!r}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())
