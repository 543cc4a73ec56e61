"""Specialisations that cost compile time and buy nothing.

* A float32 model compiles float32 kernels only: training it, and scoring it on an
  inference plan (whose first trace calibrates on a few probe calls), never compiles
  a float64 specialisation that a float64 call did not ask for.
* The shared product kernels (``_jit.typed``: gemm_serial, the packing and tile
  kernels) compile once per argument type, never once per constant flag or offset
  a caller passes (``Literal[bool](False)``, ``Literal[int](0)``).

Runs in a fresh interpreter, so that the kernels' ``overloads`` hold only what this
run compiled or loaded from the cache.
"""
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
    mlp = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    cnn = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    for model, shape in [(mlp, (64, 8)), (cnn, (64, 2, 8, 8))]:
        x = rng.standard_normal(shape).astype(np.float32)
        y = np.arange(64) % 3
        fastnn.fit(model, x, y, nn.CrossEntropyLoss(), optim.Adam(model.parameters()), batch_size=16, epochs=1,
                   progress=False)
        fastnn.predict(model, x)
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


def test_no_needless_specialisations():
    proc = subprocess.run([sys.executable, "-c", RUN], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert [line for line in lines if line.startswith("FLOAT64")] == []
    assert int(lines[-1].split()[1]) >= 5  # the run did use kernels (and the scan found them)
    typed = [line.split() for line in lines if line.startswith("TYPED")]
    assert len({name for _, name, _ in typed}) >= 4  # gemm_serial, _pack_b, _tiles, pack_a at least
    assert [name for _, name, literal in typed if literal == "True"] == []
