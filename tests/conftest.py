import os

import numba
import numpy as np
import pytest

# fit's first-run compile in worker processes (fastnn._precompile) stays off in the
# suite, and in the interpreters tests start: what a test counts compiling happens in
# its own process. tests/test_precompile.py turns it on where it is the subject.
os.environ["FASTNN_COMPILE_JOBS"] = "1"


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def threads():
    """Run a callable under 1 and under all available threads; restores the count."""
    def run(fn):
        previous = numba.get_num_threads()
        results = []
        try:
            for n in sorted({1, numba.config.NUMBA_NUM_THREADS}):
                numba.set_num_threads(n)
                results.append(fn())
        finally:
            numba.set_num_threads(previous)
        return results
    return run
