"""Parallel first runs compile each kernel once (``fastnn._claims``): two processes
whose kernels call one serial kernel, compiling at the same moment, compile that
callee in one process only; the other waits for it and loads it from the cache. A
claim whose holder died is taken over.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from fastnn import _claims

# a callee slow to compile (many loops), so that two processes starting together
# are both inside it when neither waits for the other
PROBE = textwrap.dedent('''
    from fastnn.kernels._jit import serial_kernel


    @serial_kernel
    def callee(out, x):
        n = x.shape[0]
''' + "".join(f'''
        for i in range(n):
            out[i] = out[i] * {k + 2}.0 + x[i] - {k}.0
''' for k in range(40)) + '''


    @serial_kernel
    def caller_a(out, x):
        callee(out, x)


    @serial_kernel
    def caller_b(out, x):
        callee(out, x)
        out[0] += 1.0
''')

RUN = textwrap.dedent('''
    import json, os, sys, time
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import claims_probe as p
    from fastnn import _claims
    folder, which, use = sys.argv[2], sys.argv[3], sys.argv[4] == "1"
    kernels = [p.callee, p.caller_a, p.caller_b]
    open(os.path.join(folder, "ready-" + which), "wb").close()
    while not all(os.path.exists(os.path.join(folder, "ready-" + w)) for w in "ab"):
        time.sleep(0.001)
    out, x = np.ones(4), np.arange(4.0)
    if use:
        _claims.install(folder, kernels)
    (p.caller_a if which == "a" else p.caller_b)(out, x)
    print(json.dumps(dict(out=out.tolist(), callee=sum(p.callee.stats.cache_misses.values()))))
''')


def _run_pair(tmp_path, use):
    (tmp_path / "claims_probe.py").write_text(PROBE)
    folder = tmp_path / ("claims" if use else "plain")
    folder.mkdir()
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / ("cache" if use else "cache-plain")))
    procs = [subprocess.Popen([sys.executable, "-c", RUN, str(tmp_path), str(folder), which, "1" if use else "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for which in "ab"]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _expected(extra):
    out, x = np.ones(4), np.arange(4.0)
    for k in range(40):
        out = out * (k + 2) + x - k
    out[0] += extra
    return out.tolist()


def test_two_processes_compile_a_shared_callee_once(tmp_path):
    a, b = _run_pair(tmp_path, use=True)
    assert a["out"] == _expected(0.0) and b["out"] == _expected(1.0)
    assert a["callee"] + b["callee"] == 1, (a, b)  # compiled in one, loaded from the cache in the other


def test_without_claims_both_processes_compile_it(tmp_path):
    """The control: the same pair with no claims compiles the callee in both processes
    (so the test above does measure the claims, not the timing)."""
    a, b = _run_pair(tmp_path, use=False)
    assert a["out"] == _expected(0.0) and b["out"] == _expected(1.0)
    assert a["callee"] + b["callee"] == 2, (a, b)


def test_a_claim_is_exclusive_and_a_dead_holders_claim_is_not_waited_for(tmp_path, monkeypatch):
    path = str(tmp_path / "k-probe")
    assert _claims._claim(path)
    assert not _claims._claim(path)
    open(path + ".done", "wb").close()
    assert _claims._wait(path)  # done: no wait
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    other = str(tmp_path / "k-other")
    with open(other, "w") as f:
        f.write(dead.stdout.strip())
    assert not _claims._claim(other)
    monkeypatch.setattr(_claims, "WAIT_LIMIT", 30.0)
    assert not _claims._wait(other)  # its holder has exited: the caller compiles it itself
