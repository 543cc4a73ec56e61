"""Cold start: ``import fastnn``, build the mlp workload and run its first training
step, in a fresh Python process, with an empty kernel cache (every kernel the
step uses is compiled) and with the warm one a second run finds (compiled code
loaded from fastnn's usual cache folder).

Only the mlp: a cold compile of the convolutional or recurrent workloads takes
long enough to dominate a CI run.
"""
import os
import subprocess
import sys

from .common import fastnn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASTNN_PATH = os.path.dirname(os.path.dirname(os.path.abspath(fastnn.__file__)))

# the timed statement: what a user's script does before its first step returns
STMT = """
from bench.workloads import make_runner
make_runner("fastnn", "mlp", 128, "train")()
"""


def _setup_code(cache):
    # untimed, in the child before STMT: the same fastnn as this process, the
    # bench package, and for an "empty" cache a fresh kernel cache folder
    return f"""
import atexit, os, shutil, sys, tempfile
sys.path[:0] = [{FASTNN_PATH!r}, {ROOT!r}]
if {cache!r} == "empty":
    folder = tempfile.mkdtemp(prefix="fastnn-cold-cache-")
    atexit.register(shutil.rmtree, folder, True)
    os.environ["NUMBA_CACHE_DIR"] = folder
"""


class ColdStart:
    """Seconds from a bare interpreter to the end of the mlp's first training step."""

    params = (["empty", "warm"],)
    param_names = ["cache"]
    number = 1
    repeat = (1, 3, 60.0)
    rounds = 1
    warmup_time = 0
    timeout = 900

    def setup(self, cache):
        if cache == "warm":  # fill the cache, as a first run would
            subprocess.run([sys.executable, "-c", _setup_code(cache) + STMT], check=True)

    def timeraw_import_and_first_step(self, cache):
        return STMT, _setup_code(cache)
