"""End-to-end: the reference workloads (``workloads.py``, WORKLOADS.md, README "Performance").

A training step is ``opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()``
with CrossEntropyLoss and Adam(lr=1e-3); inference is a forward pass in eval mode
under ``fastnn.no_grad()`` on the model's inference plan (``fastnn.compile``, what
``predict`` uses), and eager inference the same forward with the model called
directly. Each runs at batch 1, at the workload's listed batch and at a large one
(``workloads.batch_sizes``):

    mlp 1 / 128 / 1024, lenet 1 / 64 / 512, resnet 1 / 32 / 128, lstm 1 / 64 / 512,
    transformer 1 / 32 / 128, conv1d 1 / 100 / 800

``time_inference`` at batch "1" is the single-sample latency (on the plan). A workload whose
layers fastnn does not have yet is skipped.
"""
from .common import ALL_CORES, THREADS, Benchmark, memo, seconds_per_call, set_threads
from .timing import train_step_peak_mib
from .workloads import NAMES, batch_sizes, make_runner, require_fastnn

BATCHES = ["1", "listed", "large"]


def batch_size(name, batch):
    """The batch size behind the label "1", "listed" or "large" for workload ``name``."""
    return batch_sizes(name)[BATCHES.index(batch)]


def _warm_runner(name, batch, mode):
    runner = make_runner("fastnn", name, batch_size(name, batch), mode)
    runner()  # compile (or load) every kernel the step uses; layers allocate work buffers
    return runner


class _Workload(Benchmark):
    params = (list(NAMES), BATCHES, THREADS)
    param_names = ["workload", "batch", "threads"]
    mode = None

    def setup(self, workload, batch, threads):
        require_fastnn(workload)
        set_threads(threads)
        self.run = memo((workload, batch, self.mode), lambda: _warm_runner(workload, batch, self.mode))

    def _samples_per_sec(self, workload, batch):
        return batch_size(workload, batch) / seconds_per_call(self.run)


class TrainStep(_Workload):
    """One training step of a reference workload."""

    mode = "train"

    def time_train_step(self, workload, batch, threads):
        self.run()

    def track_train_samples_per_sec(self, workload, batch, threads):
        return self._samples_per_sec(workload, batch)

    track_train_samples_per_sec.unit = "samples/s"


class Inference(_Workload):
    """One eval-mode forward pass of a reference workload."""

    mode = "infer"

    def time_inference(self, workload, batch, threads):
        self.run()

    def track_infer_samples_per_sec(self, workload, batch, threads):
        return self._samples_per_sec(workload, batch)

    track_infer_samples_per_sec.unit = "samples/s"


class EagerInference(_Workload):
    """One eval-mode forward pass with the model called directly (no inference plan)."""

    mode = "eager"

    def time_eager_inference(self, workload, batch, threads):
        self.run()

    def track_eager_samples_per_sec(self, workload, batch, threads):
        return self._samples_per_sec(workload, batch)

    track_eager_samples_per_sec.unit = "samples/s"


class TrainStepMemory(Benchmark):
    """Memory of a training step (all cores).

    ``peakmem_train_step`` is asv's measure: the peak resident set of the whole
    benchmark process (interpreter, libraries, kernels, model) once it has run a
    step. ``track_train_step_mib`` is the step's own share: the peak it adds
    above the built model, batch and loaded kernels (gradients, Adam's state,
    saved activations, temporaries), as ``compare_torch.py`` reports it.
    """

    params = (list(NAMES), BATCHES)
    param_names = ["workload", "batch"]

    def setup(self, workload, batch):
        require_fastnn(workload)
        set_threads(ALL_CORES)

    def peakmem_train_step(self, workload, batch):
        _warm_runner(workload, batch, "train")()

    def track_train_step_mib(self, workload, batch):
        return train_step_peak_mib("fastnn", workload, batch_size(workload, batch))

    track_train_step_mib.unit = "MiB"
