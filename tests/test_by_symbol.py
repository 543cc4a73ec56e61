"""Serial kernels called by symbol (``kernels._fnptr.by_symbol``, what every
``serial_kernel`` gets): the callee's body is not linked into its callers; results,
return values and errors pass through; and across processes a cached caller finds
its callee, whether the callee is cached or not, and calls the callee's current code
after the callee is edited.

The probe kernels live in two small modules written to a temporary folder, the callee
in one and its callers in the other (the caller's file does not change when the
callee's does, so the caller's cache entry stays valid).
"""
import importlib
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

CALLEE = textwrap.dedent('''
    from fastnn.kernels._jit import noalias_kernel, serial_kernel


    @serial_kernel
    def axpy_row(out, x, a, i):
        # out[i] = a * x[i] + OFFSET; a < 0 raises
        if a < 0:
            raise ValueError("axpy_row: negative scale")
        for j in range(out.shape[1]):
            out[i, j] = a * x[i, j] + OFFSET


    @serial_kernel
    def row_sum(x, i):
        s = 0.0
        for j in range(x.shape[1]):
            s += x[i, j]
        return s + OFFSET


    @noalias_kernel
    def scale_rows(out, x, a):
        for i in range(out.shape[0]):
            for j in range(out.shape[1]):
                out[i, j] = a * x[i, j]
''')

CALLERS = textwrap.dedent('''
    import numpy as np
    from numba import prange

    from fastnn.kernels._jit import kernel, serial_kernel
    from sym_callee import axpy_row, row_sum


    @serial_kernel
    def rows_serial(out, x, a):
        for i in range(out.shape[0]):
            axpy_row(out, x, a, i)


    @kernel
    def rows(out, x, a):
        for p in prange(out.shape[0]):
            axpy_row(out, x, a, np.int64(p))


    @serial_kernel
    def total(x):
        s = 0.0
        for i in range(x.shape[0]):
            s += row_sum(x, i)
        return s
''')

RUN = textwrap.dedent('''
    import json, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import sym_callers as c  # the callers first: the callee is never called from Python
    import sym_callee as k
    x = np.arange(12.0).reshape(4, 3)
    results = {}
    for shell in (c.rows, c.rows_serial):
        out = np.zeros_like(x)
        shell(out, x, 2.0)
        results[shell.py_func.__name__] = out.tolist()
    results["total"] = c.total(x)
    misses = {f.py_func.__name__: sum(f.stats.cache_misses.values())
              for f in (c.rows, c.rows_serial, c.total, k.axpy_row, k.row_sum)}
    print(json.dumps(dict(results=results, misses=misses)))
''')


def _write(folder, offset):
    (folder / "sym_callee.py").write_text(CALLEE.replace("OFFSET", repr(float(offset))))
    (folder / "sym_callers.py").write_text(CALLERS)


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    folder = tmp_path_factory.mktemp("by_symbol")
    _write(folder, 1)
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module("sym_callers"), importlib.import_module("sym_callee")
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("sym_callers", None)
        sys.modules.pop("sym_callee", None)


def _expected(x, a, offset):
    return (a * x + offset).tolist()


def test_results_and_return_values_pass_through(probe):
    callers, _ = probe
    x = np.arange(12.0).reshape(4, 3)
    for shell in (callers.rows, callers.rows_serial):
        out = np.zeros_like(x)
        shell(out, x, 2.0)
        assert out.tolist() == _expected(x, 2.0, 1.0)
    assert callers.total(x) == x.sum() + 4.0


def test_an_error_raised_in_the_callee_surfaces_in_python(probe):
    callers, _ = probe
    x = np.ones((3, 2))
    with pytest.raises(ValueError, match="negative scale"):
        callers.rows_serial(np.zeros_like(x), x, -1.0)
    with pytest.raises(Exception) as info:  # from a prange body: the cause of a SystemError
        callers.rows(np.zeros_like(x), x, -1.0)
    exc = info.value.__cause__ if isinstance(info.value, SystemError) else info.value
    assert isinstance(exc, ValueError) and "negative scale" in str(exc)


def test_the_callees_body_is_not_linked_into_its_callers(probe):
    """The caller's module declares the callee's symbol and defines none of its code
    (linked, it would hold a definition of the callee and the callee's loop)."""
    callers, callee = probe
    x = np.arange(6.0).reshape(2, 3)
    callers.rows_serial(np.zeros_like(x), x, 1.0)
    callers.total(x)
    for caller, name in ((callers.rows_serial, "axpy_row"), (callers.total, "row_sum")):
        (ir,) = caller.inspect_llvm().values()
        declared = [line for line in ir.splitlines() if line.startswith("declare") and name in line]
        defined = [line for line in ir.splitlines() if line.startswith("define") and name in line]
        assert len(declared) == 1 and "@fastnn.sym_callee." + name + "." in declared[0], declared
        assert not defined, defined


def _fresh(folder, cache):
    proc = subprocess.run([sys.executable, "-c", RUN, str(folder)], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, NUMBA_CACHE_DIR=str(cache)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _check(result, offset):
    x = np.arange(12.0).reshape(4, 3)
    assert result["results"]["rows"] == _expected(x, 2.0, offset)
    assert result["results"]["rows_serial"] == _expected(x, 2.0, offset)
    assert result["results"]["total"] == x.sum() + 4 * offset


def test_cached_callers_find_their_callee_in_a_fresh_process(tmp_path):
    """A fresh process loads the callers from the cache before it ever calls the callee:
    the callee is loaded (or, its cache removed, compiled) first, and the calls reach it."""
    _write(tmp_path, 1)
    cache = tmp_path / "cache"
    cold = _fresh(tmp_path, cache)
    _check(cold, 1.0)
    assert all(cold["misses"].values()), cold["misses"]
    warm = _fresh(tmp_path, cache)
    _check(warm, 1.0)
    assert not any(warm["misses"].values()), warm["misses"]
    removed = [p for p in cache.rglob("*") if p.is_file() and "sym_callee" in p.name]
    assert removed, sorted(p.name for p in cache.rglob("*"))
    for p in removed:
        p.unlink()
    partly = _fresh(tmp_path, cache)
    _check(partly, 1.0)
    assert partly["misses"] == dict(rows=0, rows_serial=0, total=0, axpy_row=1, row_sum=1), partly["misses"]


def test_an_edited_callee_is_what_cached_callers_call(tmp_path):
    """Edit the callee's file only: its kernels recompile, the callers load from the
    cache, and they call the new code (linked in, they would run the old one)."""
    _write(tmp_path, 1)
    cache = tmp_path / "cache"
    _check(_fresh(tmp_path, cache), 1.0)
    _write(tmp_path, 5)
    edited = _fresh(tmp_path, cache)
    _check(edited, 5.0)
    assert edited["misses"] == dict(rows=0, rows_serial=0, total=0, axpy_row=1, row_sum=1), edited["misses"]


def _noalias_arguments(dispatcher):
    """How many arguments of the kernel's own function (not its Python wrapper) are noalias."""
    (ir,) = dispatcher.inspect_llvm().values()
    name = dispatcher.py_func.__name__
    (line,) = [line for line in ir.splitlines()
               if line.startswith("define") and name in line and "cpython" not in line and "cfunc" not in line]
    return line.count("noalias")


def test_a_noalias_kernel_promises_llvm_that_its_arrays_do_not_overlap(probe):
    """``noalias_kernel``: its array arguments are marked noalias (a serial kernel's are
    not: only its return and exception slots), and it computes the same."""
    _, callee = probe
    x = np.arange(6.0).reshape(2, 3)
    out = np.zeros_like(x)
    callee.scale_rows(out, x, 2.0)
    assert out.tolist() == (2.0 * x).tolist()
    callee.row_sum(x, 0)
    plain = _noalias_arguments(callee.row_sum)
    assert _noalias_arguments(callee.scale_rows) >= plain + 4, (plain, _noalias_arguments(callee.scale_rows))
