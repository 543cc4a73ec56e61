"""A first run says that it compiles: fit's progress bar shows "compiling kernels
(first run only)" while kernels compile and its rate starts after that step; without
a bar, a terminal gets one line. A warm cache shows neither.

Each case runs a fresh interpreter on an empty cache folder (tiny kernels: an
Embedding model with MSE and SGD, or two elementwise kernels).
"""
import os
import re
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("tqdm")

FIT = textwrap.dedent("""
    import functools
    import numpy as np
    import tqdm.auto
    tqdm.auto.tqdm = functools.partial(tqdm.auto.tqdm, mininterval=0)  # draw every step
    import fastnn
    from fastnn import nn, optim
    fastnn.manual_seed(0)
    model = nn.Sequential(nn.Embedding(5, 2))
    x = np.arange(800).reshape(800, 1) % 5
    y = np.ones((800, 1, 2), np.float32)
    fastnn.fit(model, x, y, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.1), batch_size=8, seed=0)
""")

KERNELS = ("import numpy as np\n"
           "from fastnn.kernels import elementwise\n"
           "a = np.ones(3, np.float32)\n"
           "elementwise.add(a, a, a)\n"
           "elementwise.multiply(a, a, a)\n")

LINE = "fastnn: compiling kernels on first use (cached for later runs)"


def _env(cache):
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "FASTNN_DISABLE_CACHE")}
    return dict(env, NUMBA_CACHE_DIR=str(cache), PYTHONDONTWRITEBYTECODE="1")


def _fit_stderr(cache):
    proc = subprocess.run([sys.executable, "-c", FIT], env=_env(cache), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


def _rate(drawn):
    """samples/s shown on one drawing of the bar (None while unknown: '?')."""
    match = re.search(r"([\d.]+)([kMG]?)samples?/s", drawn)
    if match:
        return float(match.group(1)) * {"": 1, "k": 1e3, "M": 1e6, "G": 1e9}[match.group(2)]
    match = re.search(r"([\d.]+)s/sample", drawn)  # under one sample per second
    return 1 / float(match.group(1)) if match else None


def test_fit_says_it_compiles_and_its_rate_starts_after_the_first_step(tmp_path):
    drawings = re.split(r"[\r\n]", _fit_stderr(tmp_path))
    compiling = [i for i, d in enumerate(drawings) if "compiling kernels (first run only)" in d]
    assert compiling, drawings[:20]
    after = [d for d in drawings[compiling[-1] + 1:] if d.startswith("epoch 1/1") and _rate(d)]
    assert after, drawings[-20:]
    # compiling took seconds: a rate that counted it would show a few samples/s at most
    assert _rate(after[0]) > 100, after[:3]
    assert LINE not in "\n".join(drawings)  # the bar said it; stderr is no terminal anyway

    warm = _fit_stderr(tmp_path)
    assert "compiling" not in warm and "epoch 1/1" in warm


def _kernels_on_a_terminal(cache):
    """Run KERNELS with stderr on a pseudo-terminal; what it printed there."""
    pty = pytest.importorskip("pty")
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-c", KERNELS], env=_env(cache), stderr=follower, timeout=300)
        os.close(follower)
        output = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the terminal is drained and closed
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(leader)
    assert proc.returncode == 0, output[-3000:]
    return output.decode(errors="replace")


def test_without_a_bar_a_terminal_gets_one_line_and_a_pipe_none(tmp_path):
    cold = _kernels_on_a_terminal(tmp_path / "tty")
    assert cold.count(LINE) == 1, cold  # two kernels compiled, one line
    assert LINE not in _kernels_on_a_terminal(tmp_path / "tty")  # warm: nothing compiles

    piped = subprocess.run([sys.executable, "-c", KERNELS], env=_env(tmp_path / "pipe"), capture_output=True,
                           text=True, timeout=300)
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr[-3000:]
