"""`fastnn demo --model {mlp,cnn,lstm,transformer,conv1d}`: each demo trains on the bundled
digits (conv1d: the generated 1-D signals) and reaches its accuracy bar (the numbers the
README and the issues promise)."""
import pytest

from fastnn.demo import run_demo


@pytest.mark.parametrize("model,bar", [("mlp", 0.96), ("cnn", 0.98), ("lstm", 0.95), ("transformer", 0.96),
                                       ("conv1d", 0.94)])
def test_demo_reaches_its_accuracy(model, bar):
    lines = []
    accuracy, rate = run_demo(model, progress=False, out=lines.append)
    assert accuracy >= bar
    assert rate > 0
    assert any(line.startswith("test accuracy:") for line in lines)
    assert any("samples/s" in line for line in lines)
