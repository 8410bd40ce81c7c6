"""`fastmlp bench` end to end on the CPU, at a small hidden size (figures are not checked:
a benchmark is not a test)."""

import json
import subprocess
import sys

import numpy as np
import pytest

import fastmlp
from fastmlp import bench
from fastmlp.cli import main


def test_bench_json_rows_have_the_documented_keys(monkeypatch, capsys):
    # In process, so that PyTorch can be hidden: where torch happens to be installed the
    # --compare rows would otherwise include torch eager and torch.compile (slow, not our code).
    monkeypatch.setattr(bench, "available", lambda impl: not impl.startswith("torch"))
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
