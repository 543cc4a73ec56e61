"""The kernel cache is never fatal: read-only package, unwritable cache folders, no
home, several processes compiling into one empty cache at once, corrupted index and
data files, a cache folder that turns unusable mid-run (never stale:
test_cache_key.py).

Each case runs a fresh interpreter that compiles cold: one training step of a tiny
Embedding model (its layer, MSE and SGD kernels; Linear's matmul would cost three
times the compile time), or just two elementwise kernels for the processes racing
on one cache folder. They all start together so that the compiles overlap.
"""
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap

import numba
import numpy as np

import fastnn

STEP = textwrap.dedent("""
    import json, sys, tempfile, warnings
    if "--no-home-no-temp" in sys.argv:  # a user with no home folder and no usable temp folder
        import os.path
        os.path.expanduser = lambda path: path
        tempfile.tempdir = sys.argv[-1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import numpy as np
        import fastnn
        from fastnn import nn, optim
        from fastnn.kernels import _jit
        from fastnn._warmup import all_kernels
        fastnn.manual_seed(0)
        model = nn.Sequential(nn.Embedding(5, 2))
        if "--kernels-only" in sys.argv:
            from fastnn.kernels import elementwise
            data = model[0].weight.data.reshape(-1)
            elementwise.add(data, data, data)
            elementwise.multiply(data, data, data)
            value = 0.0
        else:
            opt = optim.SGD(model.parameters(), lr=0.1)
            loss = nn.MSELoss()
            loss_value = loss(model(np.array([[0], [3], [4], [3]])), np.ones((4, 1, 2), np.float32))
            loss_value.backward()
            opt.step()
            value = loss_value.item()
    stats = [k.stats for k in all_kernels().values() if len(k.overloads)]
    print(json.dumps({"cache": _jit.CACHE, "dir": _jit.CACHE_DIR, "loss": value,
                      "weight": model[0].weight.data.tolist(),
                      "warnings": [str(w.message) for w in caught if "fastnn" in str(w.message)],
                      "compiler_set_up": "numba.np.arraymath" in sys.modules,
                      "misses": sum(sum(s.cache_misses.values()) for s in stats),
                      "hits": sum(sum(s.cache_hits.values()) for s in stats)}))
""")


def _read_only_package(tmp_path):
    """A copy of the installed package that nobody, root included, can cache into."""
    source = os.path.dirname(fastnn.__file__)
    target = tmp_path / "site" / "fastnn"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    (target / "kernels" / "__pycache__").write_text("a file where Numba wants its cache folder")
    for folder, dirs, files in os.walk(tmp_path / "site"):
        for name in dirs + files:
            path = os.path.join(folder, name)
            os.chmod(path, os.stat(path).st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    os.chmod(tmp_path / "site", 0o555)
    return tmp_path / "site"


def _env(**changes):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_CACHE_DIR", "XDG_CACHE_HOME"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


def _start(env, *args):
    return subprocess.Popen([sys.executable, "-c", STEP, *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_read_only_install_unwritable_caches_and_concurrent_compiles(tmp_path):
    site = _read_only_package(tmp_path)
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file: no folder can be made under it")
    temp = tmp_path / "tmp"
    temp.mkdir()
    shared = tmp_path / "shared-cache"
    unwritable = dict(PYTHONPATH=site, NUMBA_CACHE_DIR=blocker / "numba", XDG_CACHE_HOME=blocker / "xdg",
                      HOME=blocker / "home", TMPDIR=temp)
    procs = {
        # read-only package, NUMBA_CACHE_DIR / XDG / HOME unwritable: falls back to the private temp folder
        "fallback": _start(_env(**unwritable)),
        # no home, no writable temp folder either: runs uncached with a warning
        "uncached": _start(_env(**dict(unwritable, HOME=None)), "--no-home-no-temp", blocker / "tmp"),
        # three processes compiling into one empty cache folder at once
        **{f"shared{i}": _start(_env(NUMBA_CACHE_DIR=shared), "--kernels-only") for i in range(3)},
    }
    results = {name: _finish(proc) for name, proc in procs.items()}

    def chosen(folder):  # bounds-checked builds live in their own subfolder (see _jit)
        return str(folder / "boundscheck") if numba.config.BOUNDSCHECK else str(folder)

    private = temp / f"fastnn-cache-{os.getuid()}"
    fallback = results["fallback"]
    assert fallback["cache"] and fallback["dir"] == chosen(private)
    assert not fallback["warnings"]
    assert any(name.endswith(".nbi") for _, _, files in os.walk(fallback["dir"]) for name in files)
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o700

    uncached = results["uncached"]
    assert not uncached["cache"]
    assert any("no writable folder for the kernel cache" in w for w in uncached["warnings"])

    assert fallback["weight"] == uncached["weight"]
    reference = results["shared0"]
    assert reference["dir"] == chosen(shared)
    for result in (results["shared1"], results["shared2"]):
        assert result["weight"] == reference["weight"]

    again = _finish(_start(_env(NUMBA_CACHE_DIR=shared), "--kernels-only"))  # the racers' cache loads cleanly
    assert again["misses"] == 0 and again["hits"] > 0
    assert again["weight"] == reference["weight"]


def test_a_warm_cache_loads_kernels_without_setting_up_the_compiler(tmp_path):
    """Numba's loader sets up its whole compiler (every lowering registry, SciPy's BLAS
    check) before loading a cached kernel; ``KernelCache`` binds only what cached code
    calls. The warm step (parallel shells, serial kernels called by symbol, allocation
    through the NRT) loads everything, sets up nothing and computes the same bits."""
    env = _env(NUMBA_CACHE_DIR=tmp_path / "cache")
    cold = _finish(_start(env))
    assert cold["misses"] > 0 and cold["compiler_set_up"]
    warm = _finish(_start(env))
    assert warm["misses"] == 0 and warm["hits"] > 0 and not warm["warnings"]
    assert not warm["compiler_set_up"]
    assert (warm["loss"], warm["weight"]) == (cold["loss"], cold["weight"])


LINKED = textwrap.dedent("""
    import json
    import numba
    import numpy as np
    from fastnn.kernels import activations
    x = np.linspace(-2, 2, 9).astype(np.float32)
    direct = np.zeros_like(x)
    activations.forward_block(direct, x, activations.TANH, 0.0, 0, 9)
    library = next(iter(activations.forward_block.overloads.values())).library
    unparsed = library._shared_module is None

    @numba.njit  # not cached: compiled here, linking the kernel's code from the cache
    def caller(out, x, lo):
        activations.forward_block(out, x, activations.TANH, 0.0, lo, x.shape[0])

    linked = np.zeros_like(x)
    caller(linked, x, 0)
    print(json.dumps({"direct": direct.tolist(), "linked": linked.tolist(), "unparsed": unparsed,
                      "parsed": library._shared_module is not None,
                      "hits": sum(activations.forward_block.stats.cache_hits.values())}))
""")


def test_a_kernel_loaded_from_the_cache_links_into_a_new_caller(tmp_path):
    """A cached kernel's IR for linking is parsed only when a compile links it (then it is)."""
    env = _env(NUMBA_CACHE_DIR=tmp_path / "cache")
    runs = [subprocess.run([sys.executable, "-c", LINKED], env=env, capture_output=True, text=True, timeout=300)
            for _ in range(2)]
    assert all(run.returncode == 0 for run in runs), runs[-1].stderr[-3000:]
    cold, warm = (json.loads(run.stdout.strip().splitlines()[-1]) for run in runs)
    assert cold["hits"] == 0 and warm["hits"] == 1 and warm["unparsed"] and warm["parsed"]
    assert warm["direct"] == warm["linked"] == cold["direct"] == cold["linked"]
    assert np.allclose(cold["direct"], np.tanh(np.linspace(-2, 2, 9)), atol=1e-6)


def test_a_temp_cache_folder_owned_by_someone_else_is_not_used(tmp_path, monkeypatch):
    from fastnn.kernels import _jit

    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, 0o777)  # writable by every user: could be planted
    assert not _jit._writable_dir(str(folder), private=True)
    os.chmod(folder, 0o700)
    assert _jit._writable_dir(str(folder), private=True)
    (tmp_path / "file").write_text("")
    assert not _jit._writable_dir(str(tmp_path / "file" / "sub"))
    monkeypatch.setenv("FASTNN_DISABLE_CACHE", "1")
    assert _jit._choose_cache() == (None, False, "disabled by FASTNN_DISABLE_CACHE")


def test_bounds_checked_runs_do_not_reuse_unchecked_cached_kernels():
    """Numba's cache key ignores NUMBA_BOUNDSCHECK; fastnn keeps checked builds apart,
    so a bounds-checked run really checks even when the normal cache is warm."""
    import os
    import subprocess
    import sys

    code = ("import numpy as np\n"
            "from fastnn.kernels.elementwise import add\n"
            "a, b = np.zeros(3, np.float32), np.zeros(2, np.float32)\n"
            "try:\n    add(a, a, b)\n    print('unchecked')\n"
            "except IndexError:\n    print('checked')\n")
    base = {k: v for k, v in os.environ.items() if k != "NUMBA_BOUNDSCHECK"}
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=dict(base, NUMBA_BOUNDSCHECK="0"), timeout=300)
    checked = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=dict(base, NUMBA_BOUNDSCHECK="1"), timeout=300)
    assert plain.returncode == 0 and checked.returncode == 0, plain.stderr + checked.stderr
    assert plain.stdout.strip() == "unchecked"
    assert checked.stdout.strip() == "checked"


def test_kernels_first_called_after_numba_reloads_its_settings_keep_their_folder(tmp_path):
    """Before a compile, Numba resets its settings from the environment whenever a
    NUMBA_ variable changed (in a fresh process fastnn's own export of
    NUMBA_THREADING_LAYER does that), dropping the cache folder fastnn chose. A kernel
    first called after such a compile still caches in fastnn's folder: here a
    bounds-checked run's own, so the warm unchecked ``multiply`` is not loaded."""
    code = ("import os\nimport numpy as np\nfrom fastnn.kernels.elementwise import add, multiply\n"
            "os.environ['NUMBA_FASTNN_TEST_CHANGED'] = '1'\n"
            "a, b = np.zeros(3, np.float32), np.zeros(2, np.float32)\n"
            "add(a, a, a)\n"  # compiles in the checked run: Numba reloads its settings first
            "try:\n    multiply(a, a, b)\n    print('unchecked')\n"
            "except IndexError:\n    print('checked')\n")
    base = {k: v for k, v in os.environ.items() if k != "NUMBA_BOUNDSCHECK"}
    base["NUMBA_CACHE_DIR"] = str(tmp_path)
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=dict(base, NUMBA_BOUNDSCHECK="0"), timeout=300)
    checked = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=dict(base, NUMBA_BOUNDSCHECK="1"), timeout=300)
    assert plain.returncode == 0 and checked.returncode == 0, plain.stderr + checked.stderr
    assert (plain.stdout.strip(), checked.stdout.strip()) == ("unchecked", "checked")


KERNELS = textwrap.dedent("""
    import json, warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import numpy as np
        from fastnn.kernels import elementwise
        a = np.arange(3, dtype=np.float32)
        elementwise.add(a, a, a)
        elementwise.multiply(a, a, a)
    print(json.dumps({"a": a.tolist(), "warnings": [str(w.message) for w in caught if "fastnn" in str(w.message)],
                      "misses": {k.__name__: sum(k.stats.cache_misses.values())
                                 for k in (elementwise.add, elementwise.multiply)}}))
""")


def _run_kernels(env, before=""):
    proc = subprocess.run([sys.executable, "-c", before + KERNELS], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_corrupted_cache_warns_once_recompiles_and_is_repaired(tmp_path):
    cache = tmp_path / "cache"
    env = _env(NUMBA_CACHE_DIR=cache)
    first = _run_kernels(env)
    assert not first["warnings"]
    files = [os.path.join(folder, name) for folder, _, names in os.walk(cache) for name in names]
    index = [f for f in files if ".add-" in os.path.basename(f) and f.endswith(".nbi")]
    data = [f for f in files if ".multiply-" in os.path.basename(f) and f.endswith(".nbc")]
    assert index and data
    for path in index:  # a truncated index file
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    for path in data:  # a data file full of garbage
        with open(path, "wb") as f:
            f.write(os.urandom(256))

    broken = _run_kernels(env)
    assert broken["a"] == first["a"] == [0, 4, 16]
    assert broken["misses"]["add"] > 0 and broken["misses"]["multiply"] > 0
    assert len(broken["warnings"]) == 1, broken["warnings"]
    assert "recompil" in broken["warnings"][0] and str(cache) in broken["warnings"][0]

    repaired = _run_kernels(env)  # the recompiled kernels replaced the broken files
    assert repaired["a"] == first["a"] and not repaired["warnings"]
    assert sum(repaired["misses"].values()) == 0


def test_a_cache_folder_that_turns_unusable_mid_run_warns_once(tmp_path):
    """The kernels' cache folder is replaced by a file after import (root ignores
    permissions; a file blocks everyone): nothing can be read or saved, yet the
    kernels compile, run and warn once."""
    block = ("import os, shutil\nfrom fastnn.kernels import elementwise\n"
             "folder = elementwise.add._cache.cache_path\nos.makedirs(folder, exist_ok=True)\n"
             "shutil.rmtree(folder)\nopen(folder, 'w').close()\n")
    result = _run_kernels(_env(NUMBA_CACHE_DIR=tmp_path / "cache"), block)
    assert result["a"] == [0, 4, 16] and result["misses"]["add"] > 0
    assert len(result["warnings"]) == 1 and str(tmp_path / "cache") in result["warnings"][0], result["warnings"]
