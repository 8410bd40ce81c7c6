"""`fastmlp bench` end to end on the CPU, at a small hidden size (figures are not checked:
a benchmark is not a test)."""

import importlib.machinery
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

import fastmlp
from fastmlp import bench
from fastmlp.cli import main
from fastmlp.strategies.compiled_minibatch import CompiledMinibatch


def test_bench_json_rows_have_the_documented_keys(monkeypatch, capsys):
    # In process, so that the peers can be hidden: where torch or JAX happens to be installed
    # the --compare rows would otherwise include theirs (slow, not our code).
    monkeypatch.setattr(bench, "available", lambda impl: bench.peer_package(impl) is None)
    isolated = bench.run_isolated
    monkeypatch.setattr(bench, "run_isolated", lambda spec: isolated(spec, timeout=300))
    argv = ["bench", "--hidden", "16", "--epochs", "2", "--warmup", "1", "--batch-size", "full",
            "500", "--lr", "0.001", "--compare", "--json"]
    assert main(argv) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["impl"], r["batch_size"]) for r in rows] == [
        ("fastmlp", None), ("fastmlp", 500), ("numpy-naive", None)]
    for row in rows:
        assert set(bench.ROW_KEYS) <= set(row) and "error" not in row
        assert row["device"] == "cpu" and row["dtype"] == "float32" and row["lr"] == 0.001
        assert row["epoch_ms"] > 0 and row["gemm_floor_ms"] > 0
        assert abs(row["ratio_to_floor"] - row["epoch_ms"] / row["gemm_floor_ms"]) < 1e-9


@pytest.mark.slow  # a subprocess, Dask or the simulator
def test_bench_table_and_unusable_device(assert_one_line_error):
    out = subprocess.run([sys.executable, "-m", "fastmlp", "bench", "--hidden", "8", "--epochs",
                          "1", "--warmup", "1"], capture_output=True, text=True, check=True,
                         timeout=300)
    header, rule, row = out.stdout.splitlines()[:3]
    assert header == bench.TABLE_HEADER and set(rule) == {"-"}
    assert row.split()[:4] == ["fastmlp", "cpu", "float32", "full"]
    bad = subprocess.run([sys.executable, "-m", "fastmlp", "bench", "--device", "cudasim"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert_one_line_error(bad.stderr, "NUMBA_ENABLE_CUDASIM=1")  # no traceback either


def test_floor_is_of_the_shapes_that_run() -> None:
    """With a dataset, the floor and GFLOP/s are of its own splits, not the canonical ones."""
    workload = {"n_train": 300, "n_valid": 6000, "n_test": 2724, "n_features": 784,
                "n_hidden": 16, "n_classes": 10}
    spec = {"impl": "fastmlp", "device": "cpu", "dtype": "float32", "workload": workload,
            "warmup": 0, "repeats": 1, "epochs": 1, "activation": "relu", "momentum": 0.9,
            "batch_size": None, "dataset": "synthetic", "data_path": None}
    row = bench.run_row(spec)
    data = fastmlp.load_dataset("synthetic", train_size=300)
    ran = {"n_train": 300, "n_valid": len(data.valid.y), "n_test": len(data.test.y),
           "n_features": data.n_features, "n_hidden": 16, "n_classes": data.n_classes}
    assert ran["n_valid"] != workload["n_valid"]  # the test means something
    assert row["workload"] == ran
    flops = bench.gemm_flops({"workload": ran})
    assert row["gflops"] == pytest.approx(flops / (row["epoch_ms"] / 1e3) / 1e9)


def test_valid_and_test_sizes_keep_the_first_rows_of_a_datasets_splits(monkeypatch, capsys):
    """--valid-size/--test-size: e.g. MNIST in the course layout (10000/6000/2724 rows)."""
    seen = []
    isolated = bench.run_isolated

    def run(spec):
        row = isolated(spec, timeout=300)
        seen.append(row)
        return row

    monkeypatch.setattr(bench, "run_isolated", run)
    argv = ["bench", "--dataset", "synthetic", "--train-size", "300", "--valid-size", "50",
            "--test-size", "30", "--hidden", "8", "--epochs", "1", "--warmup", "1",
            "--sparse", "off", "--json"]
    assert main(argv) == 0
    assert [r["workload"] for r in seen] == [{"n_train": 300, "n_valid": 50, "n_test": 30,
                                               "n_features": 784, "n_hidden": 8,
                                               "n_classes": 10}]
    data = bench._dataset({"dtype": "float32", "dataset": "synthetic", "data_path": None,
                           "workload": {"n_train": 300}, "valid_size": 50, "test_size": 30})
    whole = fastmlp.load_dataset("synthetic", train_size=300)
    assert len(whole.valid.y) > 50 and len(whole.test.y) > 30  # the test means something
    np.testing.assert_array_equal(data.valid.x, whole.valid.x[:50])
    np.testing.assert_array_equal(data.test.y, whole.test.y[:30])
    np.testing.assert_array_equal(data.train.x, whole.train.x)


FIND_SPEC = importlib.util.find_spec


def _compare_specs(monkeypatch, capsys, installed: set[str], argv: list[str]):
    """The row specs and notes of ``fastmlp bench --compare`` as if the peers' packages in
    ``installed`` were there and no other, with no row actually run."""
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: (
        FIND_SPEC(name, *a) if name not in bench.PEERS
        else importlib.machinery.ModuleSpec(name, None) if name in installed else None))
    specs = []

    def run(spec):
        specs.append(spec)
        return {"impl": spec["impl"], "device": spec["device"], "dtype": spec["dtype"],
                "batch_size": spec["batch_size"], "density": 1.0, "epoch_ms": 1.0,
                "samples_per_s": 1.0, "gemm_floor_ms": 1.0, "ratio_to_floor": 1.0,
                "gflops": 1.0, "peak_rss_mb": 1.0}

    monkeypatch.setattr(bench, "run_isolated", run)
    assert main(["bench", "--compare", *argv]) == 0
    notes = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("note:")]
    return [(s["impl"], s["batch_size"]) for s in specs], notes


def test_compare_without_jax_leaves_its_rows_out_with_a_note(monkeypatch, capsys):
    rows, notes = _compare_specs(monkeypatch, capsys, set(), ["--batch-size", "full", "50"])
    assert rows == [("fastmlp", None), ("fastmlp", 50), ("numpy-naive", None)]
    assert notes == ["note: PyTorch is not installed; its rows are left out",
                     "note: JAX is not installed; its rows are left out"]
    # full batch only: JAX has no row to leave out, so no note of it
    rows, notes = _compare_specs(monkeypatch, capsys, set(), ["--batch-size", "full"])
    assert notes == ["note: PyTorch is not installed; its rows are left out"]


def test_compare_adds_a_jax_row_per_minibatch_size(monkeypatch, capsys):
    rows, notes = _compare_specs(monkeypatch, capsys, {"jax"},
                                 ["--batch-size", "full", "10", "100"])
    assert rows == [("fastmlp", None), ("fastmlp", 10), ("fastmlp", 100), ("numpy-naive", None),
                    ("jax-scan", 10), ("jax-scan", 100)]
    assert notes == ["note: PyTorch is not installed; its rows are left out"]
    rows, _ = _compare_specs(monkeypatch, capsys, {"jax", "torch"}, ["--batch-size", "10"])
    assert rows == [("fastmlp", 10), ("numpy-naive", None), ("torch-eager", None),
                    ("torch-eager", 10), ("torch-compile", None), ("jax-scan", 10)]


def test_a_jax_row_without_jax_fails_as_a_missing_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)  # JAX absent, even where it is installed
    spec = {"impl": "jax-scan", "device": "cpu", "dtype": "float32", "batch_size": 10,
            "workload": dict(bench.WORKLOAD, n_hidden=8, n_train=100), "warmup": 0,
            "repeats": 1, "epochs": 1, "activation": "relu", "momentum": 0.9}
    with pytest.raises(ImportError, match="jax"):
        bench.run_row(spec)


@pytest.mark.slow  # a subprocess, Dask or the simulator
def test_nothing_imports_jax_until_a_jax_row_runs():
    code = ("import sys, fastmlp, fastmlp.bench, fastmlp.bench_jax, fastmlp.cli; "
            "assert 'jax' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_jax_epoch_is_the_course_rule_on_the_same_order():
    """Where JAX is installed (a bench peer, not a test dependency): its scan epoch in float64
    equals fastmlp's compiled minibatch epoch (exact to the per-step path) over the same order,
    a short last batch included."""
    pytest.importorskip("jax", reason="JAX is a bench peer, not a test dependency")
    from fastmlp.bench_jax import PARAMS, make_epoch

    data = fastmlp.load_dataset("synthetic", train_size=203, dtype="float64")
    X, y = data.train.x, data.train.y
    for activation, B, mu in (("relu", 10, 0.9), ("sigmoid", 7, 0.0)):
        model = fastmlp.MLP(X.shape[1], 16, data.n_classes, activation=activation,
                            dtype="float64", seed=1)
        start = model.state()
        order = np.random.default_rng(B).permutation(len(y))
        loss, correct = CompiledMinibatch.on_rows(model, X, y, B, 0.05, mu).train_order(order)
        epoch = make_epoch(activation, B, 0.05, mu, "float64")
        params, _, jax_loss, jax_correct = epoch(
            tuple(start[n] for n in PARAMS), tuple(np.full_like(start[n], 1e-5) for n in PARAMS),
            X, y.astype(np.int32), order.astype(np.int32))
        for name, p in zip(PARAMS, params, strict=True):
            np.testing.assert_allclose(np.asarray(p), model.state()[name], rtol=1e-10,
                                       atol=1e-12)
        assert float(jax_loss) == pytest.approx(loss, rel=1e-10)
        assert int(jax_correct) == correct
