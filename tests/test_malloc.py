"""glibc allocator tuning applied at import (fastnn._malloc)."""
import os
import platform
import subprocess
import sys

import pytest

from fastnn import _malloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("environ, plat, expected", [
    ({"FASTNN_MALLOC_TUNING": "0"}, "linux", "FASTNN_MALLOC_TUNING=0"),
    ({"FASTNN_MALLOC_TUNING": "off"}, "linux", "FASTNN_MALLOC_TUNING=0"),
    ({}, "darwin", "not Linux"),
    ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"}, "linux", "already tunes"),
    ({"MALLOC_MMAP_THRESHOLD_": "65536"}, "linux", "already tunes"),
])
def test_left_alone_when_asked_or_not_glibc(environ, plat, expected):
    state = _malloc.tune(environ=environ, platform=plat)
    assert state.startswith("off") and expected in state


def _state_in_fresh_process(**env):
    code = "import fastnn, fastnn._malloc as m; print(m.STATE)"
    # (dask.distributed, imported by other tests, exports MALLOC_TRIM_THRESHOLD_)
    dropped = ("GLIBC_TUNABLES", "FASTNN_MALLOC_TUNING") + _malloc._USER_SETTINGS
    environ = {k: v for k, v in os.environ.items() if k not in dropped}
    environ.update(env, PYTHONPATH=os.path.join(ROOT, "src"))
    return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"),
                    reason="glibc only")
def test_applied_on_import_unless_opted_out():
    assert _state_in_fresh_process().startswith("on (glibc")
    assert _state_in_fresh_process(FASTNN_MALLOC_TUNING="0").startswith("off")
