"""A float32 model compiles float32 kernels only: training it, and scoring it on an
inference plan (whose first trace calibrates on a few probe calls), never compiles a
float64 specialisation that a float64 call did not ask for (issue: the compile budget).

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
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    x = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    y = np.arange(64) % 3
    fastnn.fit(model, x, y, nn.CrossEntropyLoss(), optim.Adam(model.parameters()), batch_size=16, epochs=1,
               progress=False)
    fastnn.predict(model, x)
    seen = set()
    for name, k in all_kernels().items():
        for sig in getattr(k, "dispatcher", k).overloads:
            seen.add(name)
            if "float64, " in " ".join(map(str, sig)):
                print("FLOAT64", name, sig)
    print("KERNELS", len(seen))
""")


def test_a_float32_model_compiles_no_float64_kernel():
    proc = subprocess.run([sys.executable, "-c", RUN], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert [line for line in lines if line.startswith("FLOAT64")] == []
    assert int(lines[-1].split()[1]) >= 5  # the run did use kernels (and the scan found them)
