"""Specialisations that cost compile time and buy nothing.

* A float32 model compiles float32 kernels only: training it, and scoring it on an
  inference plan (whose first trace calibrates on a few probe calls), never compiles
  a float64 specialisation that a float64 call did not ask for.
* The shared product kernels (``_jit.typed``: gemm_serial, the packing and tile
  kernels) compile once per argument type, never once per constant flag or offset
  a caller passes (``Literal[bool](False)``, ``Literal[int](0)``).

Runs in a fresh interpreter on an empty kernel cache (about 15 s of compiling), so
that the kernels' ``overloads`` hold what this run compiled, callees included: a
kernel loaded from the cache brings its callees' code along, and their dispatchers
then stay empty.
"""
import os
import subprocess
import sys
import textwrap

RUN = textwrap.dedent("""
    import numpy as np
    import fastnn
    from fastnn import nn, optim
    from fastnn._warmup import all_kernels
    fastnn.manual_seed(0)
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    x = fastnn.from_numpy(rng.standard_normal((64, 8)).astype(np.float32))
    y = fastnn.from_numpy(np.arange(64) % 3)
    opt = optim.Adam(model.parameters())
    nn.CrossEntropyLoss()(model(x), y).backward()
    opt.step()
    fastnn.predict(model, x.numpy())
    seen = set()
    for name, k in all_kernels().items():
        d = getattr(k, "dispatcher", k)
        for sig in d.overloads:
            seen.add(name)
            text = " ".join(map(str, sig))
            if "float64, " in text:
                print("FLOAT64", name, sig)
            if getattr(d, "typed", False):
                print("TYPED", name, "Literal" in text)
    print("KERNELS", len(seen))
""")


def test_no_needless_specialisations(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "FASTNN_DISABLE_CACHE"}
    env["NUMBA_CACHE_DIR"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-c", RUN], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert [line for line in lines if line.startswith("FLOAT64")] == []
    assert int(lines[-1].split()[1]) >= 5  # the run did use kernels (and the scan found them)
    typed = [line.split() for line in lines if line.startswith("TYPED")]
    assert len({name for _, name, _ in typed}) >= 4  # linear_serial, gemm_serial, _pack_b, _tiles, ...
    assert [name for _, name, literal in typed if literal == "True"] == []
