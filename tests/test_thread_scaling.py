"""bench/thread_scaling.py runs end to end on a tiny product and prints its table."""
import os
import sys

import numba

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.append(ROOT)
from bench import thread_scaling  # noqa: E402


def test_a_tiny_product_gives_a_row_with_shares_of_peak(capsys):
    previous = numba.get_num_threads()  # (the script sets this thread's count: restored for the tests after)
    try:
        assert thread_scaling.main(["--threads", "1", "--shapes", "64x32x16", "--rounds", "1"]) == 0
    finally:
        numba.set_num_threads(previous)
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith("| 64 x 32 x 16 | 1 |")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")][2:]
    shares = [float(c.rstrip("%")) for c in cells if c.endswith("%")]
    assert len(shares) >= 2 and all(s > 0 for s in shares)
