"""The ONNX Runtime runner of ``compare_peers.py``: PyTorch's model of a reference
workload (``workloads.build_torch``) in eval mode, exported and run by ONNX Runtime.

    run = onnx_runner("lenet", batch=64, threads=2)   # one InferenceSession.run

The model is exported with ``torch.onnx.export`` at a fixed batch size (to a
temporary file) and run with every graph optimisation enabled,
``intra_op_num_threads = threads`` and one inter-op thread. ONNX Runtime has no
training, so there is no train runner.
"""
import os
import tempfile

try:
    from . import workloads
except ImportError:  # imported as a top-level module by compare_peers.py
    import workloads


def _eval_torch_model(name, seed=0):
    model = workloads.build_torch(name, seed)
    model.eval()
    return model


def export_onnx(model, x, path):
    """Write ``model`` (eval mode) traced at input ``x`` (a torch tensor) to ``path``.

    The dynamo exporter first (PyTorch's default, needs onnxscript); the TorchScript
    one where that fails.
    """
    import torch
    failures = []
    for dynamo in (True, False):
        try:
            with torch.no_grad():
                torch.onnx.export(model, (x,), path, input_names=["x"], output_names=["logits"],
                                  dynamo=dynamo, opset_version=18, verbose=False)
            return
        except Exception as exc:  # noqa: BLE001 (any exporter failure: try the other one)
            failures.append(f"dynamo={dynamo}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    raise RuntimeError("torch.onnx.export failed: " + "; ".join(failures))


def onnx_session(model, x, threads):
    """An ONNX Runtime InferenceSession of ``model`` exported at input ``x``."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        export_onnx(model, x, path)
        # the session reads the file (and any external weights next to it) now
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def onnx_runner(name, batch, threads, seed=0):
    """A zero-argument callable: one ONNX Runtime inference of workload ``name``.

    ``run.model`` is the PyTorch model it was exported from, ``run.x`` the batch.
    """
    import torch
    model = _eval_torch_model(name, seed)
    x, _ = workloads.make_batch(name, batch, seed)
    session = onnx_session(model, torch.from_numpy(x), threads)
    feed = {"x": x}

    def run():
        return session.run(None, feed)[0]
    run.model, run.x = model, x
    return run

