"""Tests for ``fastmlp sweep``: summary statistics against the per-run files, resume (all and
partial), identical results in-process / process pool / Dask LocalCluster, failed runs, Ctrl-C,
and one-line errors. Small synthetic grids (H 8/16, 3 epochs) keep the whole file fast."""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import fastmlp
import fastmlp.sweep as sweep
from fastmlp.cli import main
from fastmlp.config import RunConfig
from fastmlp.train import METRICS

GRID = ["sweep", "--dataset", "synthetic", "--hidden", "8", "16", "--lr", "0.05", "0.01",
        "--momentum", "0.9", "--seeds", "2", "--epochs", "3", "--device", "cpu"]
POINTS = [f"h{h}-lr{lr}-m0.9-bfull-relu" for h in (8, 16) for lr in (0.05, 0.01)]
RUNS = [f"{p}/seed-{s}" for p in POINTS for s in (0, 1)]

try:
    import distributed  # noqa: F401

    HAVE_DISTRIBUTED = True
except ImportError:
    HAVE_DISTRIBUTED = False


def finals(out: Path) -> dict[str, dict[str, float]]:
    """run directory -> final metrics, from each run's history.json."""
    return {run: json.loads((out / run / "history.json").read_text())["final"] for run in RUNS}


def inodes(out: Path) -> dict[str, int]:
    # an atomic rewrite replaces the file, so an unchanged inode means "not written again"
    return {run: (out / run / "history.json").stat().st_ino for run in RUNS}


class CountRuns:
    """Stands in for sweep.run_one (in-process sweeps) and counts the runs actually trained."""

    def __init__(self, fail_on: int | None = None):
        self.specs: list[RunConfig] = []
        self.fail_on = fail_on
        self.original = sweep.run_one

    def __call__(self, spec: RunConfig, save_model: bool = False) -> dict:
        self.specs.append(spec)
        if self.fail_on is not None and len(self.specs) == self.fail_on:
            raise KeyboardInterrupt
        return self.original(spec, save_model)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, products: str) -> tuple[Path, str]:
    """One in-process sweep (workers=1) shared by the tests below: (out dir, stdout)."""
    out = tmp_path_factory.mktemp("sweep") / "out"
    capture = tmp_path_factory.mktemp("stdout") / "stdout.txt"
    saved = sys.stdout
    with open(capture, "w") as f:  # capsys is function-scoped: capture by hand
        sys.stdout = f
        try:
            rc = main([*GRID, "--out", str(out)])
        finally:
            sys.stdout = saved
    assert rc == 0
    return out, capture.read_text()


def copy_of(finished: tuple[Path, str], tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(finished[0], out)
    return out


# -- the in-process sweep -----------------------------------------------------------------------


def test_summary_matches_run_files(finished: tuple[Path, str], png_size) -> None:
    out, stdout = finished
    for run in RUNS:
        data = json.loads((out / run / "history.json").read_text())
        assert data["epochs"] == 3 and len(data["valid_loss"]) == 3
        assert data["config"]["sweep"]["seed"] == int(run[-1])  # the spec is stored for resume
        assert (out / run / "history.csv").is_file() and not (out / run / "model.npz").exists()
    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    summary = json.loads((out / "summary.json").read_text())
    assert [r["point"] for r in rows] == [r["point"] for r in summary["rows"]] == POINTS
    assert summary["n_runs"] == 8 and summary["n_failed"] == 0 and summary["n_trained"] == 8
    assert summary["seeds"] == [0, 1] and summary["grid"]["hidden"] == [8, 16]
    run_finals = finals(out)
    for row, jrow in zip(rows, summary["rows"], strict=True):
        assert row["status"] == jrow["status"] == "ok"
        assert row["n_seeds"] == "2" and jrow["n_seeds"] == 2 and row["batch_size"] == "full"
        for m in METRICS:
            values = np.array([run_finals[f"{row['point']}/seed-{s}"][m] for s in (0, 1)])
            mean, std = values.mean(), values.std(ddof=1)  # sample std over the two seeds
            assert float(row[f"{m}_mean"]) == pytest.approx(mean, rel=1e-12, abs=1e-15)
            assert float(row[f"{m}_std"]) == pytest.approx(std, rel=1e-12, abs=1e-15)
            assert jrow[f"{m}_mean"] == pytest.approx(mean, rel=1e-12, abs=1e-15)
            assert jrow[f"{m}_std"] == pytest.approx(std, rel=1e-12, abs=1e-15)
        assert float(row["wall_time_s_mean"]) > 0
    for png in ("curves_loss.png", "curves_accuracy.png"):
        width, height = png_size(out / png)  # the signature, and an IHDR chunk first
        assert width > 0 and height > 0
    assert summary["curves_split"] == "valid"
    assert not list(out.rglob("*.tmp"))
    # the printed table: one line per grid point with mean ± std
    assert "8 runs" in stdout and f"results in {out}" in stdout
    table = [line for line in stdout.splitlines() if " ± " in line]
    assert len(table) == 4 and all(line.count("±") == 7 for line in table)


def test_single_seed_std_is_zero(tmp_path: Path) -> None:
    out = tmp_path / "one"
    assert main([*GRID[:3], "--hidden", "8", "16", "--lr", "0.05", "--seed-list", "3",
                 "--epochs", "2", "--quiet", "--out", str(out)]) == 0
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert [r["n_seeds"] for r in rows] == [1, 1] and [r["seeds"] for r in rows] == [[3], [3]]
    assert all(r[f"{m}_std"] == 0.0 for r in rows for m in METRICS)


# -- resume -------------------------------------------------------------------------------------


def test_resume_skips_finished_runs(finished, tmp_path, monkeypatch, capsys) -> None:
    out = copy_of(finished, tmp_path)
    before = inodes(out)
    counter = CountRuns()
    monkeypatch.setattr(sweep, "run_one", counter)
    assert main([*GRID, "--out", str(out)]) == 0
    assert counter.specs == []  # trained nothing
    assert inodes(out) == before
    stdout = capsys.readouterr().out
    assert "8 of 8 runs already finished" in stdout and "training 0" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_skipped"] == 8 and summary["n_trained"] == 0
    assert (out / "summary.csv").read_text() == (finished[0] / "summary.csv").read_text()


def test_resume_reruns_exactly_the_missing_run(finished, tmp_path, monkeypatch, capsys) -> None:
    out = copy_of(finished, tmp_path)
    missing = RUNS[5]
    (out / missing / "history.json").unlink()
    before = inodes_of(out)  # the seven others
    counter = CountRuns()
    monkeypatch.setattr(sweep, "run_one", counter)
    assert main([*GRID, "--out", str(out)]) == 0
    assert [sweep.run_dir(out, s).relative_to(out).as_posix() for s in counter.specs] == [missing]
    assert {r: i for r, i in inodes(out).items() if r != missing} == before
    assert "7 of 8 runs already finished" in capsys.readouterr().out
    assert finals(out) == finals(finished[0])  # deterministic: the same numbers again


def inodes_of(out: Path) -> dict[str, int]:
    return {run: (out / run / "history.json").stat().st_ino for run in RUNS
            if (out / run / "history.json").exists()}


def test_changed_options_retrain(finished, tmp_path, monkeypatch) -> None:
    out = copy_of(finished, tmp_path)
    counter = CountRuns()
    monkeypatch.setattr(sweep, "run_one", counter)
    # same grid, one more epoch: stored specs differ, so nothing is skipped
    args = [*GRID, "--out", str(out), "--quiet"]
    args[args.index("--epochs") + 1] = "4"
    assert main(args) == 0
    assert len(counter.specs) == 8
    assert json.loads((out / RUNS[0] / "history.json").read_text())["epochs"] == 4


def test_rerun_without_models_removes_the_old_model(tmp_path, monkeypatch) -> None:
    # a model.npz from the earlier options must not be taken for the rerun's on a later
    # --save-models resume (the run would be skipped, its model and history disagreeing)
    out = tmp_path / "out"
    base = ["sweep", "--dataset", "synthetic", "--hidden", "8", "--seeds", "1", "--device", "cpu",
            "--out", str(out), "--quiet"]
    run = out / "h8-lr0.1-m0.99-bfull-relu" / "seed-0"
    assert main([*base, "--epochs", "2", "--save-models"]) == 0
    assert (run / "model.npz").is_file()
    assert main([*base, "--epochs", "3"]) == 0
    assert not (run / "model.npz").exists()
    counter = CountRuns()
    monkeypatch.setattr(sweep, "run_one", counter)
    assert main([*base, "--epochs", "3", "--save-models"]) == 0
    assert len(counter.specs) == 1  # retrained, since its model was missing
    assert fastmlp.MLP.load(run / "model.npz").saved_config["run"]["epochs"] == 3


# -- parallel executors give identical numbers --------------------------------------------------


def workers_products(products: str) -> list[str]:
    # worker processes keep the real density threshold (conftest.products): ask for the path
    # this process's auto took
    return ["--sparse", "on" if products == "sparse" else "off"]


@pytest.mark.slow  # a subprocess, Dask or the simulator
def test_process_pool_is_identical(finished, tmp_path: Path, products: str) -> None:
    out = tmp_path / "pool"
    assert main([*GRID, "--out", str(out), "--workers", "2", "--save-models", "--quiet",
                 *workers_products(products)]) == 0
    assert finals(out) == finals(finished[0])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["executor"] == "processes"
    # --save-models: the driver wrote each model from the worker's arrays
    data = fastmlp.load_dataset("synthetic", seed=1)
    model = fastmlp.MLP.load(out / RUNS[1] / "model.npz")
    acc = float(np.mean(model.predict(data.test.x) == data.test.y))
    assert acc == pytest.approx(finals(out)[RUNS[1]]["test_acc"], abs=1.5 / len(data.test))


@pytest.mark.skipif(not HAVE_DISTRIBUTED,
                    reason="needs Dask's distributed scheduler: pip install 'fastmlp[dask]'")
@pytest.mark.slow  # a subprocess, Dask or the simulator
def test_dask_local_cluster_is_identical(finished, tmp_path: Path, capsys,
                                        products: str) -> None:
    import dask
    from distributed import LocalCluster

    out = tmp_path / "dask"
    environ = dict(os.environ)
    # Dask's nanny limits worker BLAS to 1 thread (and writes that into this process's
    # environment); leave the limits out so workers run the products exactly as this process.
    unset = {f"distributed.nanny.pre-spawn-environ.{k}": None for k in sweep.BLAS_ENV}
    try:
        with dask.config.set(unset), LocalCluster(n_workers=2, threads_per_worker=1,
                                                  processes=True, dashboard_address=None) as c:
            assert main([*GRID, "--out", str(out), "--scheduler", c.scheduler_address,
                         *workers_products(products)]) == 0
    finally:
        os.environ.clear()
        os.environ.update(environ)
    assert finals(out) == finals(finished[0])
    assert "Dask scheduler" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["executor"] == "dask"


# -- failures and Ctrl-C ------------------------------------------------------------------------


def test_failed_run_is_recorded_and_retried(tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "fail"
    args = [*GRID[:3], "--lr", "0.05", "1e10", "--seeds", "1", "--epochs", "4", "--hidden",
            "16", "--out", str(out)]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "FAILED:" in captured.out and "diverged at epoch" in captured.out
    assert captured.err.count("\n") == 1 and "1 of 2 runs failed" in captured.err
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert [(r["status"], r["n_seeds"], r["n_failed"]) for r in rows] == [("ok", 1, 0),
                                                                          ("failed", 0, 1)]
    assert rows[1]["valid_acc_mean"] is None  # no finished seed: NaN, written as null
    bad = out / rows[1]["runs"][0]["dir"]
    assert bad.relative_to(out).as_posix() == "h16-lr10000000000.0-m0.99-bfull-relu/seed-0"
    error = json.loads((bad / "error.json").read_text())
    assert "diverged" in error["error"] and not (bad / "history.json").exists()
    assert len(error["history"]["train_loss"]) < 4  # stopped early, at the divergence
    counter = CountRuns()
    monkeypatch.setattr(sweep, "run_one", counter)
    assert main(args) == 1  # the failed run, and only it, is tried again
    assert [s.lr for s in counter.specs] == [1e10]


def test_run_that_fails_midway_keeps_its_epochs(monkeypatch) -> None:
    """A bug in epoch 3 of 4: run_one reports it with its traceback and the 2 epochs done."""
    trainer_cls = sys.modules["fastmlp.train"].Trainer
    original = trainer_cls.run_epoch

    def flaky(self, progress=None):
        if self.epoch == 2:
            raise ZeroDivisionError("a bug in epoch 3")
        return original(self, progress)

    monkeypatch.setattr(trainer_cls, "run_epoch", flaky)
    spec = dict(dataset="synthetic", data_path=None, train_size=None, scale="unit", epochs=4,
                dtype="float32", device="cpu", eval_every=1, init="xavier", velocity_init=1e-5,
                sparse="auto", hidden=8, lr=0.05, momentum=0.9, batch_size=None,
                activation="relu", seed=0)
    result = sweep.run_one(RunConfig(**spec))
    assert result["status"] == "failed" and result["error"] == "ZeroDivisionError: a bug in epoch 3"
    assert "ZeroDivisionError" in result["traceback"]
    history = result["history"]
    assert history["epochs"] == 2 and len(history["valid_acc"]) == 2
    assert history["config"]["sweep"] == spec and history["config"]["n_hidden"] == 8


def test_ctrl_c_keeps_finished_runs(tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "ctrl-c"
    monkeypatch.setattr(sweep, "run_one", CountRuns(fail_on=3))
    assert main([*GRID, "--out", str(out)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fastmlp: interrupted: 2 of 8 runs finished")
    assert "to resume, run: fastmlp sweep" in err[0] and f"--out {out}" in err[0]
    assert [p.parent.relative_to(out).as_posix() for p in sorted(out.rglob("history.json"))
            ] == RUNS[:2]
    assert not (out / "summary.csv").exists() and not list(out.rglob("*.tmp"))


# -- one-line errors ----------------------------------------------------------------------------

ERROR_CASES = {
    "zero workers": (["--workers", "0"], "--workers"),
    "workers and scheduler": (["--workers", "2", "--scheduler", "tcp://x:1"], "--scheduler"),
    "zero seeds": (["--seeds", "0"], "--seeds"),
    "seeds and seed list": (["--seeds", "2", "--seed-list", "1"], "not allowed"),
    "repeated seeds": (["--seed-list", "1", "1"], "repeated"),
    "negative hidden": (["--hidden", "8", "-1"], "--hidden"),
    "bad lr": (["--lr", "abc"], "--lr"),
    "bad batch": (["--batch-size", "zero"], "--batch-size"),
    "batch too big": (["--batch-size", "full", "5000"],
                      "--batch-size must be between 1 and the 1000 training rows, got 5000"),
    "unknown activation": (["--activation", "tanh"], "--activation"),
    "npz without path": (["--dataset", "npz"], "--data-path"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_errors(case: str, tmp_path: Path, capsys, assert_one_line_error) -> None:
    options, fragment = ERROR_CASES[case]
    out = tmp_path / "out"
    base = ["sweep", "--dataset", "synthetic", "--epochs", "1", "--hidden", "8"]
    assert main([*base, *options, "--out", str(out)]) == 2
    assert_one_line_error(capsys.readouterr().err, fragment)
    assert not out.exists()


def test_out_is_a_file(tmp_path: Path, capsys, assert_one_line_error) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    assert main([*GRID, "--out", str(f)]) == 2
    assert_one_line_error(capsys.readouterr().err, "not a directory")


def test_out_is_empty(tmp_path: Path, capsys, monkeypatch, assert_one_line_error) -> None:
    monkeypatch.chdir(tmp_path)  # "" would be the current directory
    assert main([*GRID, "--out", ""]) == 2
    assert_one_line_error(capsys.readouterr().err, "--out is empty; give a directory")
    assert not list(tmp_path.iterdir())


def test_missing_dask_names_the_extra(tmp_path, monkeypatch, capsys, assert_one_line_error) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    out = tmp_path / "out"
    assert main([*GRID, "--scheduler", "tcp://127.0.0.1:1", "--out", str(out)]) == 2
    assert_one_line_error(capsys.readouterr().err, "pip install 'fastmlp[dask]'")
    assert not out.exists()


@pytest.mark.skipif(not HAVE_DISTRIBUTED, reason="needs distributed to try the connection")
@pytest.mark.slow  # a subprocess, Dask or the simulator
def test_unreachable_scheduler(tmp_path, monkeypatch, capsys, assert_one_line_error) -> None:
    monkeypatch.setattr(sweep, "DASK_CONNECT_TIMEOUT", "1s")
    out = tmp_path / "out"
    assert main([*GRID, "--scheduler", "tcp://127.0.0.1:9", "--out", str(out)]) == 2
    assert_one_line_error(capsys.readouterr().err, "cannot connect to the Dask scheduler")
    assert not out.exists()


def test_blas_note() -> None:
    def result(threads: int, **env: str) -> dict:
        return {"history": {"config": {"threads": threads, "blas_env": env}}}

    assert "1 BLAS thread" in sweep.blas_note([result(2, OPENBLAS_NUM_THREADS="1")])
    assert "1 BLAS thread" in sweep.blas_note([result(4, OMP_NUM_THREADS="1")])
    # OPENBLAS_NUM_THREADS wins over OMP_NUM_THREADS; one Numba thread is a deliberate setup
    assert sweep.blas_note([result(2, OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="1")]) == ""
    assert sweep.blas_note([result(1, OPENBLAS_NUM_THREADS="1"), result(2)]) == ""


def test_help_lists_sweep(capsys) -> None:
    assert main(["sweep", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--hidden", "--seeds", "--seed-list", "--workers", "--scheduler",
                   "--save-models", "--out"):
        assert option in text


def test_an_npz_member_that_is_not_numpy_data_is_one_line(tmp_path, capsys,
                                                          assert_one_line_error) -> None:
    import zipfile

    with zipfile.ZipFile(tmp_path / "raw.npz", "w") as z:
        z.writestr("x_train.npy", b"raw bytes, not NumPy data")
        z.writestr("y_train.npy", b"1,2,3\n")
    out = tmp_path / "out"
    assert main(["sweep", "--dataset", "npz", "--data-path", str(tmp_path / "raw.npz"),
                 "--epochs", "1", "--hidden", "4", "--out", str(out)]) == 2
    assert_one_line_error(capsys.readouterr().err, "member x_train.npy: not NumPy data")
