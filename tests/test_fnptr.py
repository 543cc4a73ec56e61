"""Calls through a kernel's address (``kernels._fnptr``): results, errors raised by
the callee, type mismatches caught before any call, the on-disk cache across
processes, and bounds-checked builds.

The probe kernels live in a small module written to a temporary folder (the same
source in this process and in the fresh interpreters of the cache tests).
"""
import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numba.core.errors import TypingError

PROBE = textwrap.dedent('''
    import numpy as np
    from numba import prange

    from fastnn.kernels._fnptr import call, handle
    from fastnn.kernels._jit import kernel, serial_kernel


    @serial_kernel
    def axpy_row(out, x, a, i):
        # out[i] = a * x[i] + i; a < 0 raises
        if a < 0:
            raise ValueError("axpy_row: negative scale")
        for j in range(out.shape[1]):
            out[i, j] = a * x[i, j] + i


    @serial_kernel
    def negate_row(out, x, a, i):
        # out[i] = -x[i], and when a > 1 a write past the end, from every row (so
        # whichever thread runs a row, it fails)
        for j in range(out.shape[1]):
            out[i, j] = -x[i, j]
            if a > 1:
                out[i + out.shape[0], j] = -x[i, j]


    @serial_kernel
    def returns(out, x, a, i):
        return a


    @kernel
    def rows(out, x, a, fn):
        for p in prange(out.shape[0]):
            call(fn, (out, x, a, np.int64(p)))


    @serial_kernel
    def rows_serial(out, x, a, fn):
        for i in range(out.shape[0]):
            call(fn, (out, x, a, i))


    def run(shell, callee, out, x, a):
        shell(out, x, a, handle(callee, (out, x, a, 0)))
''')

RUN = textwrap.dedent('''
    import json, sys
    import numba
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import fnptr_probe as p
    x = np.arange(12.0).reshape(4, 3)
    results, errors = {}, {}
    for callee in ((p.negate_row, p.axpy_row) if "--reversed" in sys.argv else (p.axpy_row, p.negate_row)):
        for shell in (p.rows, p.rows_serial):
            out = np.zeros_like(x)
            p.run(shell, callee, out, x, 2.0 if callee is p.axpy_row else 1.0)
            results[f"{callee.py_func.__name__} {shell.py_func.__name__}"] = out.tolist()
    for shell in (p.rows, p.rows_serial) if numba.config.BOUNDSCHECK else ():
        try:
            p.run(shell, p.negate_row, np.zeros_like(x), x, 2.0)  # writes past the end
        except Exception as exc:  # from a prange body: the cause of a SystemError
            cause = exc.__cause__ if isinstance(exc, SystemError) and exc.__cause__ else exc
            errors[shell.py_func.__name__] = f"{type(cause).__name__}: {cause}"
    misses = {k.py_func.__name__: sum(k.stats.cache_misses.values())
              for k in (p.rows, p.rows_serial, p.axpy_row, p.negate_row)}
    print(json.dumps(dict(results=results, errors=errors, misses=misses)))
''')


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fnptr")
    (folder / "fnptr_probe.py").write_text(PROBE)
    spec = importlib.util.spec_from_file_location("fnptr_probe", folder / "fnptr_probe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _raises(kind, match, func, *args):
    """``func(*args)`` raises ``kind`` (matching ``match``), directly or, from a prange
    body, as the cause of the SystemError Numba raises there (as for a direct call)."""
    with pytest.raises(Exception) as info:
        func(*args)
    exc = info.value
    if isinstance(exc, SystemError) and exc.__cause__ is not None:
        exc = exc.__cause__
    assert isinstance(exc, kind) and match in str(exc), repr(info.value)


def _expected_axpy(x, a):
    return a * x + np.arange(x.shape[0])[:, None]


@pytest.mark.parametrize("shell", ["rows", "rows_serial"])
def test_the_callee_runs_with_the_arguments_given(probe, shell):
    """Through a parallel and a serial shell, two callees of one signature, float32 and float64."""
    for dtype in (np.float32, np.float64):
        x = np.random.default_rng(0).standard_normal((37, 5)).astype(dtype)
        out = np.full_like(x, np.nan)
        probe.run(getattr(probe, shell), probe.axpy_row, out, x, 1.5)
        tol = 1e-6 if dtype == np.float32 else 1e-14  # a fused multiply-add rounds once
        np.testing.assert_allclose(out, _expected_axpy(x, 1.5), rtol=tol, atol=tol)
        probe.run(getattr(probe, shell), probe.negate_row, out, x, 1.0)
        np.testing.assert_array_equal(out, -x)


@pytest.mark.parametrize("shell", ["rows", "rows_serial"])
def test_an_error_raised_in_the_callee_surfaces_as_a_python_exception(probe, shell):
    x = np.ones((8, 3))
    _raises(ValueError, "axpy_row: negative scale", probe.run, getattr(probe, shell), probe.axpy_row,
            np.zeros_like(x), x, -1.0)
    out = np.zeros_like(x)
    probe.run(getattr(probe, shell), probe.axpy_row, out, x, 2.0)  # still usable afterwards
    np.testing.assert_allclose(out, _expected_axpy(x, 2.0))


@pytest.mark.parametrize("shell", ["rows", "rows_serial"])
def test_a_handle_for_other_argument_types_is_refused_before_any_call(probe, shell):
    """A handle made for float64 arrays, passed to a shell called with float32 ones:
    TypeError, and the callee never ran (out untouched)."""
    x64 = np.ones((6, 3))
    x32, out32 = x64.astype(np.float32), np.zeros((6, 3), np.float32)
    fn = probe.handle(probe.axpy_row, (x64, x64, 1.0, 0))
    _raises(TypeError, "other argument types", getattr(probe, shell), out32, x32, 1.0, fn)
    assert not out32.any()


def test_bad_arguments_fail_in_python(probe):
    """Arguments the callee cannot take, a callee that returns a value, a handle that
    is no handle: errors at typing time, in Python."""
    x = np.ones((4, 3))
    with pytest.raises(TypingError):
        probe.handle(probe.axpy_row, (x, x, "two", 0))
    with pytest.raises(TypeError, match="must return nothing"):
        probe.handle(probe.returns, (x, x, 1.0, 0))
    fn = probe.handle(probe.axpy_row, (x, x, 1.0, 0))
    with pytest.raises(TypingError):
        probe.rows_serial(x.copy(), x, 1.0, fn[0])
    assert probe.handle(probe.axpy_row, (x.copy(), x, 3.0, 5)) == fn  # same types, same handle


def _fresh(folder, cache, *flags, **env):
    proc = subprocess.run([sys.executable, "-c", RUN, str(folder), *flags], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, NUMBA_CACHE_DIR=str(cache), **env))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_shell_loaded_from_the_cache_calls_the_right_callee(tmp_path):
    """The second process loads every kernel from the on-disk cache (no compile), its
    callees at other addresses (compiled in the other order), and each call still
    reaches the callee its handle names."""
    (tmp_path / "fnptr_probe.py").write_text(PROBE)
    cold = _fresh(tmp_path, tmp_path / "cache", NUMBA_BOUNDSCHECK="0")
    warm = _fresh(tmp_path, tmp_path / "cache", "--reversed", NUMBA_BOUNDSCHECK="0")
    x = np.arange(12.0).reshape(4, 3)
    for result in (cold, warm):
        for shell in ("rows", "rows_serial"):
            assert result["results"][f"axpy_row {shell}"] == _expected_axpy(x, 2.0).tolist()
            assert result["results"][f"negate_row {shell}"] == (-x).tolist()
    assert all(cold["misses"].values()) and not any(warm["misses"].values()), (cold["misses"], warm["misses"])


def test_bounds_checked_callees_raise_index_error(tmp_path):
    """NUMBA_BOUNDSCHECK=1: an out-of-bounds write in the callee raises IndexError
    through either shell; in-bounds calls give the same results."""
    (tmp_path / "fnptr_probe.py").write_text(PROBE)
    checked = _fresh(tmp_path, tmp_path / "cache", NUMBA_BOUNDSCHECK="1")
    x = np.arange(12.0).reshape(4, 3)
    assert checked["results"]["axpy_row rows"] == _expected_axpy(x, 2.0).tolist()
    assert set(checked["errors"]) == {"rows", "rows_serial"}
    assert all(text.startswith("IndexError") and "out of bounds" in text for text in checked["errors"].values()), \
        checked["errors"]
