"""The kernel cache is never stale: its key covers the sources of the kernel files a
kernel imports (``kernels._cache``), so a callee edited in another file is
recompiled, with no cache clearing, and kernels whose sources did not change still
load from the cache.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import fastnn

CALLEE = """from ._jit import inline, serial_kernel

SCALE = 2.0


@inline
def shift(x):
    return x + 1.0


@serial_kernel
def scale(x):
    return x * SCALE
"""

CALLER = """from ._jit import serial_kernel
from ._probe_callee import scale, shift


@serial_kernel
def run(out, x):
    for i in range(x.shape[0]):
        out[i] = scale(shift(x[i]))
"""

PROBE = textwrap.dedent("""
    import json
    import numpy as np
    from fastnn.kernels import _probe_caller, elementwise
    x = np.arange(3, dtype=np.float64)
    out = np.empty_like(x)
    _probe_caller.run(out, x)
    elementwise.add(x, x, x)
    print(json.dumps({"out": out.tolist(), "file": _probe_caller.__file__,
                      "misses": {k.__name__: sum(k.stats.cache_misses.values())
                                 for k in (_probe_caller.run, elementwise.add)}}))
""")


def test_a_callee_edited_in_another_kernel_file_is_recompiled(tmp_path):
    """A kernel calls an inlined helper and a compiled helper (with a constant) from
    another kernel file, in a copy of the package: editing either one changes the
    result with no cache clearing, while a kernel whose sources did not change
    (elementwise.add) still loads from the cache."""
    site = tmp_path / "site"
    shutil.copytree(os.path.dirname(fastnn.__file__), site / "fastnn",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    callee = site / "fastnn" / "kernels" / "_probe_callee.py"
    callee.write_text(CALLEE)
    (site / "fastnn" / "kernels" / "_probe_caller.py").write_text(CALLER)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(PYTHONPATH=str(site), NUMBA_CACHE_DIR=str(tmp_path / "cache"), PYTHONDONTWRITEBYTECODE="1")

    def run():
        proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    first = run()
    assert first["file"].startswith(str(site)) and first["out"] == [2, 4, 6]
    assert first["misses"]["run"] > 0 and first["misses"]["add"] > 0
    assert run()["misses"] == {"run": 0, "add": 0}  # warm

    callee.write_text(CALLEE.replace("x + 1.0", "x + 3.0"))  # same size: only the content tells
    edited = run()
    assert edited["out"] == [6, 8, 10]  # the edited inlined helper ran
    assert edited["misses"]["run"] > 0 and edited["misses"]["add"] == 0  # unrelated: still cached

    callee.write_text(CALLEE.replace("x + 1.0", "x + 3.0").replace("SCALE = 2.0", "SCALE = 5.0"))
    assert run()["out"] == [15, 20, 25]  # the compiled helper, and the constant it reads
    assert run() == dict(edited, out=[15, 20, 25], misses={"run": 0, "add": 0})  # saved under the new sources


def test_the_import_scan_of_the_sources_digest_matches_the_parser(tmp_path):
    """The digest follows the kernel files each kernel file imports (a fast regex):
    it must find what Python's parser finds, in every kernel file and odd spellings."""
    import ast

    from fastnn.kernels import _cache

    def parsed(path):
        names = set()
        for node in ast.walk(ast.parse(open(path, "rb").read())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                names.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
        return {os.path.join(os.path.dirname(path), n + ".py") for n in names} & set(files)

    odd = tmp_path / "odd.py"
    odd.write_text("from . import (a,  # a comment\n    b as bee)\nfrom .c.d import e\nfrom . import f as g, h\n"
                   "def inner():\n    from .i import j\n")
    folder = os.path.join(os.path.dirname(fastnn.__file__), "kernels")
    files = [os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".py")] + [str(odd)]
    for name in "abcfhi":
        (tmp_path / f"{name}.py").write_text("")
        files.append(str(tmp_path / f"{name}.py"))
    for path in files:
        assert set(_cache._facts(path)[1]) == parsed(path), path
    assert len(_cache._facts(str(odd))[1]) == 6
    digest = _cache.sources_digest(str(odd))
    assert digest == _cache.sources_digest(str(odd)) and len(digest) == 64
