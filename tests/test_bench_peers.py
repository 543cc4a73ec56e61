"""bench/compare_peers.py's table, skip and warning logic, without any peer installed
and without timing anything (the workers are replaced by canned results)."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.append(ROOT)
from bench import compare_peers as peers  # noqa: E402


def fake_spec(present):
    return lambda module: object() if module in present else None


def result(seconds, batch):
    return {"seconds": seconds, "batch": batch}


# ------------------------------------------------------------------ which systems
def test_missing_peers_are_skipped_with_the_module_named():
    present, skipped = peers.installed(peers.SYSTEMS, find_spec=fake_spec({"torch"}),
                                       which=lambda name: "/usr/bin/" + name)
    assert present == ["fastnn", "torch", "compile"]
    assert skipped == {"jax": "jax not installed", "onnx": "onnx, onnxruntime not installed"}


def test_nothing_installed_leaves_fastnn_alone():
    present, skipped = peers.installed(peers.SYSTEMS, find_spec=fake_spec(set()), which=lambda name: None)
    assert present == ["fastnn"]
    assert set(skipped) == {"torch", "compile", "jax", "onnx"}


def test_torch_compile_is_skipped_without_a_cxx_compiler(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    present, skipped = peers.installed(("torch", "compile"), find_spec=fake_spec({"torch"}),
                                       which=lambda name: None)
    assert present == ["torch"]
    assert "C++ compiler" in skipped["compile"]


def test_onnx_runtime_has_no_training():
    assert not peers.applies("onnx", "train")
    assert all(peers.applies("onnx", mode) for mode in ("infer", "latency"))
    assert all(peers.applies(s, mode) for s in ("fastnn", "torch", "compile", "jax") for mode in peers.MODES)


def test_busy_warning_on_a_loaded_two_core_machine():
    assert peers.busy_warning(0.3, cpus=2, threads=2) is None
    warning = peers.busy_warning(1.4, cpus=2, threads=2)
    assert "load average 1.4" in warning and "2 CPUs" in warning
    assert peers.busy_warning(3.0, cpus=16, threads=2) is None  # 13 idle CPUs
    assert peers.busy_warning(15.0, cpus=16, threads=2) is not None


# ------------------------------------------------------------------ table
def test_best_peer_and_ratio_in_both_directions():
    rates = {"fastnn": 300.0, "torch": 100.0, "jax": 200.0, "onnx": None}
    assert peers.best_peer(rates, "infer") == ("jax", 200.0)
    assert peers.ratio_cell(rates, "infer") == "1.50x (JAX)"
    latencies = {"fastnn": 40e-6, "torch": 20e-6, "jax": 80e-6}
    assert peers.best_peer(latencies, "latency") == ("torch", 20e-6)
    assert peers.ratio_cell(latencies, "latency") == "0.50x (PyTorch)"  # fastnn twice as slow
    assert peers.ratio_cell({"fastnn": 1.0, "torch": None}, "train") == "n/a"
    assert peers.ratio_cell({"fastnn": None, "torch": 1.0}, "train") == "n/a"


def test_speed_is_the_median_over_rounds():
    raw = {("jax", "mlp", "train"): [result(0.1, 128), result(0.3, 128), result(0.2, 128)],
           ("jax", "mlp", "latency"): [result(4e-5, 1), {"error": "boom"}, result(2e-5, 1)]}
    assert peers.speed(raw, "jax", "mlp", "train") == pytest.approx(128 / 0.2)
    assert peers.speed(raw, "jax", "mlp", "latency") == pytest.approx(3e-5)
    assert peers.speed(raw, "torch", "mlp", "train") is None


def table_rows(raw, systems, available=None):
    lines = peers.table(raw, available or {"mlp": True}, systems, ["mlp"], lambda name: 128)
    header, rows = lines[0], lines[2:]
    return header, {row.split(" | ")[1]: [c.strip() for c in row.strip("| ").split(" | ")] for row in rows}


def test_table_cells_empty_error_and_skipped():
    systems = ["fastnn", "torch", "jax", "onnx"]
    raw = {("fastnn", "mlp", "train"): [result(0.01, 128)],
           ("torch", "mlp", "train"): [{"error": "torch mlp train exited 1"}],
           ("jax", "mlp", "train"): [result(0.02, 128)],
           ("fastnn", "mlp", "infer"): [result(0.001, 128)],
           ("onnx", "mlp", "infer"): [result(0.0005, 128)],
           ("jax", "mlp", "infer"): [{"skip": "not here"}],
           ("fastnn", "mlp", "latency"): [result(50e-6, 1)],
           ("torch", "mlp", "latency"): [result(100e-6, 1)]}
    header, rows = table_rows(raw, systems)
    assert header == ("| workload | measurement | batch | fastnn | PyTorch | JAX | ONNX Runtime "
                      "| fastnn / best peer |")
    assert rows["train samples/s"] == ["mlp", "train samples/s", "128", "12,800", "error", "6,400", "",
                                       "2.00x (JAX)"]
    assert rows["infer samples/s"][3:] == ["128,000", "n/a", "skipped", "256,000", "0.50x (ONNX Runtime)"]
    assert rows["batch-1 latency"][2:] == ["1", "50 us", "100 us", "n/a", "n/a", "2.00x (PyTorch)"]


def test_table_without_fastnn_layers_says_so():
    _, rows = table_rows({("torch", "mlp", "train"): [result(0.01, 128)]}, ["fastnn", "torch"],
                         available={"mlp": False})
    assert rows["train samples/s"][3:] == ["n/a (layers missing)", "12,800", "n/a"]


# ------------------------------------------------------------------ options, environment, checks
def test_parse_args_quick_rounds_and_subsets():
    args = peers.parse_args(["--quick", "--workloads", "mlp, conv1d", "--systems", "fastnn,jax"])
    assert (args.rounds, args.min_time) == (1, 0.3)
    assert args.workloads == ["mlp", "conv1d"] and args.systems == ["fastnn", "jax"]
    args = peers.parse_args(["--quick", "--rounds", "2", "--min-time", "0.1"])
    assert (args.rounds, args.min_time) == (2, 0.1)
    args = peers.parse_args([])
    assert (args.rounds, args.min_time, args.threads) == (3, 1.0, 2)


@pytest.mark.parametrize("argv", [["--workloads", "vgg"], ["--systems", "tensorflow"], ["--threads", "0"],
                                  ["--systems", ","], ["--min-time", "0"]])
def test_parse_args_rejects_bad_values(argv, capsys):
    with pytest.raises(SystemExit):
        peers.parse_args(argv)
    assert "error" in capsys.readouterr().err


def test_worker_env_sets_every_thread_count():
    env = peers.worker_env(3, environ={"XLA_FLAGS": "--xla_dump_to=/tmp/x", "PATH": "/bin"})
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        assert env[var] == "3"
    assert env["XLA_FLAGS"] == ("--xla_dump_to=/tmp/x --xla_cpu_multi_thread_eigen=true "
                                "intra_op_parallelism_threads=3")
    assert env["PATH"] == "/bin" and env["JAX_PLATFORMS"] == "cpu"


def test_check_lines():
    ok, text = peers.check_line("onnx", "mlp", {"max_abs_diff": 1e-7})
    assert ok and text == "max |logit - PyTorch's| = 1.0e-07"
    ok, text = peers.check_line("compile", "mlp", {"max_abs_diff": 0.5})
    assert not ok and "MISMATCH" in text
    assert peers.check_line("jax", "mlp", {"shape": [8, 10], "finite": True})[0]
    assert not peers.check_line("jax", "mlp", {"shape": [8, 11], "finite": True})[0]
    assert not peers.check_line("jax", "mlp", {"shape": [8, 10], "finite": False})[0]
    assert not peers.check_line("onnx", "mlp", {"error": "exited 1"})[0]
    assert peers.check_line("fastnn", "mlp", {"skip": "torch not installed"})[0]


def test_main_skips_missing_peers_and_prints_the_table(monkeypatch, capsys):
    calls = []

    def fake_worker(system, name, mode, args):
        calls.append((system, name, mode))
        return result(0.01 if system == "fastnn" else 0.02, 1 if mode == "latency" else 128)

    monkeypatch.setattr(peers, "installed",
                        lambda systems: (["fastnn", "onnx"], {"jax": "jax not installed"}))
    monkeypatch.setattr(peers, "run_worker", fake_worker)
    monkeypatch.setattr(peers, "versions", lambda systems: {"fastnn": "0"})
    monkeypatch.setattr(peers.workloads, "missing_fastnn_layers", lambda name: [])
    monkeypatch.setattr(peers.os, "getloadavg", lambda: (5.0, 5.0, 5.0))
    monkeypatch.setattr(peers.os, "cpu_count", lambda: 2)
    assert peers.main(["--rounds", "2", "--workloads", "mlp", "--systems", "fastnn,jax,onnx"]) == 0
    out, err = capsys.readouterr()
    assert "skipping JAX: jax not installed" in err and "Skipped: JAX (jax not installed)." in out
    assert out.count("WARNING: load average 5.0") == 1 and "WARNING" in err
    assert "| fastnn | ONNX Runtime | fastnn / best peer |" in out and "| JAX |" not in out
    assert "| mlp | infer samples/s | 128 | 12,800 | 6,400 | 2.00x (ONNX Runtime) |" in out
    # two warm-up runs of fastnn, then two rounds in alternating order; ONNX Runtime never trains
    assert calls[:2] == [("fastnn", "mlp", "train"), ("fastnn", "mlp", "latency")]
    assert calls[2:7] == [("fastnn", "mlp", "train"), ("fastnn", "mlp", "infer"), ("onnx", "mlp", "infer"),
                          ("fastnn", "mlp", "latency"), ("onnx", "mlp", "latency")]
    assert calls[7:] == [("fastnn", "mlp", "train"), ("onnx", "mlp", "infer"), ("fastnn", "mlp", "infer"),
                         ("onnx", "mlp", "latency"), ("fastnn", "mlp", "latency")]
