"""Tests for the ``fastmlp`` command line: end-to-end train runs (in-process and as a real
process) with every output checked, and one-line errors with exit code 2 for bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp.cli import COMMANDS, main
from fastmlp.train import METRICS

OUTPUTS = ("history.json", "history.csv", "loss.png", "accuracy.png", "model.npz")
SYNTHETIC = ["train", "--dataset", "synthetic", "--hidden", "32", "--epochs", "8",
             "--lr", "0.05", "--momentum", "0.9", "--device", "cpu"]


@pytest.fixture
def check_run(png_size, assert_no_temp_files):
    """``check_run(out, epochs, dataset)``: every output exists and agrees with the others;
    returns history.json's contents."""

    def check(out: Path, epochs: int, dataset: fastmlp.Dataset) -> dict:
        for name in OUTPUTS:
            assert (out / name).is_file() and (out / name).stat().st_size > 0, name
        assert_no_temp_files(out)
        data = json.loads((out / "history.json").read_text())
        for key in (*METRICS, "final", "config", "wall_time_s", "device", "epochs"):
            assert key in data, key
        assert data["epochs"] == epochs
        for key in METRICS:
            assert len(data[key]) == epochs, key
        assert data["train_loss"][-1] < data["train_loss"][0]  # it learns
        assert data["final"]["train_loss"] < data["train_loss"][0]
        assert data["wall_time_s"] > 0 and data["device"].startswith("cpu")
        lines = (out / "history.csv").read_text().splitlines()
        assert lines[0] == "epoch," + ",".join(METRICS) and len(lines) == epochs + 1
        for png in ("loss.png", "accuracy.png"):
            png_size(out / png)
        # the saved model reproduces the final accuracies the run measured
        model = fastmlp.MLP.load(out / "model.npz")
        for split in ("train", "test"):
            part = getattr(dataset, split)
            acc = float(np.mean(model.predict(part.x) == part.y))
            assert acc == pytest.approx(data["final"][f"{split}_acc"], abs=2 / len(part))
        with np.load(out / "model.npz") as f:
            config = json.loads(str(f["config"]))
        assert config["run"]["epochs"] == epochs and config["n_hidden"] == 32
        return data

    return check


@pytest.mark.usefixtures("products")  # trains: once on each path of the products
def test_train_synthetic_in_process(tmp_path: Path, capsys: pytest.CaptureFixture,
                                    check_run) -> None:
    out = tmp_path / "run"
    assert main([*SYNTHETIC, "--out", str(out), "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    assert "synthetic: train 1000" in stdout and "784-32-10" in stdout
    assert "device:" in stdout and "requested" in stdout
    assert "wall time" in stdout and f"results in {out}" in stdout
    data = check_run(out, 8, fastmlp.load_dataset("synthetic"))
    run = data["config"]["run"]  # the settings, recorded once
    assert run["lr"] == 0.05 and run["momentum"] == 0.9
    assert run["command"].startswith("fastmlp train --dataset synthetic")


@pytest.mark.slow  # a subprocess, Dask or the simulator
def test_train_synthetic_subprocess(tmp_path: Path, check_run) -> None:
    out = tmp_path / "run"
    # progress bar on (the default): it goes to stderr and must not break anything
    proc = subprocess.run([sys.executable, "-m", "fastmlp", *SYNTHETIC, "--out", str(out)],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert str(out) in proc.stdout
    check_run(out, 8, fastmlp.load_dataset("synthetic"))


@pytest.mark.usefixtures("products")  # trains: once on each path of the products
def test_train_bundled_mnist(tmp_path: Path, capsys: pytest.CaptureFixture, check_run) -> None:
    out = tmp_path / "mnist"
    argv = ["train", "--train-size", "500", "--hidden", "32", "--epochs", "5", "--lr", "0.1",
            "--momentum", "0.9", "--eval-every", "2", "--device", "cpu", "--out", str(out),
            "--quiet"]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == str(out)  # --quiet: only the directory
    data = check_run(out, 5, fastmlp.load_dataset("mnist", train_size=500))
    assert data["config"]["n_train"] == 500 and data["config"]["n_valid"] == 10000
    # --eval-every 2: valid/test measured on epochs 1, 3, 5 only
    assert [v is None for v in data["valid_acc"]] == [False, True, False, True, False]


def test_device_auto_without_cupy_uses_the_cpu(tmp_path: Path, capsys: pytest.CaptureFixture,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)  # CuPy missing, whether or not it is installed
    argv = [*SYNTHETIC[:-2], "--device", "auto", "--epochs", "1", "--out", str(tmp_path / "o"),
            "--no-progress"]
    assert "--device" not in SYNTHETIC[:-2]
    assert main(argv) == 0
    device = next(line for line in capsys.readouterr().out.splitlines()
                  if line.startswith("device:"))
    assert device.split()[1] == "cpu" and "[auto: CuPy is not importable" in device, device
    history = json.loads((tmp_path / "o" / "history.json").read_text())
    assert history["device"].startswith("cpu")
    assert history["config"]["run"]["device"] == "auto"  # the run itself asked for auto


def test_version(capsys: pytest.CaptureFixture) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"fastmlp {fastmlp.__version__}"


def test_help_lists_train(capsys: pytest.CaptureFixture) -> None:
    assert main(["--help"]) == 0
    top = capsys.readouterr().out
    # the command list: one line per registered command, indented under "commands:"
    listed = re.findall(r"^ {4}(\S+)", top, flags=re.MULTILINE)
    assert listed == list(COMMANDS) and listed[0] == "train", top
    assert re.search(r"^ {4}train +train the two-layer perceptron", top, flags=re.MULTILINE), top
    assert main(["train", "--help"]) == 0
    help_text = capsys.readouterr().out
    for option in ("--dataset", "--hidden", "--epochs", "--device", "--velocity-init", "--out"):
        assert option in help_text


# -- errors: one line on stderr, exit 2, no traceback, nothing written ---------------------------


def bad_npz(tmp_path: Path) -> Path:
    p = tmp_path / "bad.npz"
    np.savez(p, x_train=np.zeros((4, 3)))  # no y_train
    return p


ERROR_CASES = {
    "npz without --data-path": (["--dataset", "npz"], "--data-path"),
    "notmnist without --data-path": (["--dataset", "notmnist"], "--data-path"),
    "nonexistent file": (["--dataset", "npz", "--data-path", "{tmp}/missing.npz"], "not found"),
    "synthetic with --data-path": (["--dataset", "synthetic", "--data-path", "{tmp}"],
                                   "--dataset synthetic generates its data and takes no "
                                   "--data-path"),
    "npz missing a key": (["--dataset", "npz", "--data-path", "{bad}"], "y_train"),
    "unknown device": (["--device", "tpu"], "--device"),
    "negative hidden": (["--hidden", "-5"], "--hidden"),
    "zero epochs": (["--epochs", "0"], "--epochs"),
    "non-numeric lr": (["--lr", "abc"], "--lr"),
    "negative momentum": (["--momentum", "-0.5"], "--momentum"),
    "unknown dataset": (["--dataset", "cifar"], "--dataset"),
    "train size too big": (["--dataset", "synthetic", "--train-size", "5000"],
                           "--train-size must be between 1 and 1000, the training rows of "
                           "synthetic, got 5000"),
    "batch too big": (["--dataset", "synthetic", "--batch-size", "5000"], "--batch-size"),
    "unknown option": (["--bogus"], "--bogus"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_train_errors(case: str, tmp_path: Path, capsys: pytest.CaptureFixture,
                      assert_one_line_error) -> None:
    options, fragment = ERROR_CASES[case]
    options = [o.format(tmp=tmp_path, bad=bad_npz(tmp_path)) for o in options]
    out = tmp_path / "out"
    assert main(["train", *options, "--out", str(out), "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert_one_line_error(captured.err, fragment)
    assert not out.exists()  # failed before anything was created


def test_no_command_and_unknown_command(capsys: pytest.CaptureFixture,
                                        assert_one_line_error) -> None:
    assert main([]) == 2
    assert_one_line_error(capsys.readouterr().err, "command")
    assert main(["fly"]) == 2
    assert_one_line_error(capsys.readouterr().err, "fly")


def test_out_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture,
                       assert_one_line_error) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    assert main([*SYNTHETIC, "--epochs", "1", "--out", str(f), "--no-progress"]) == 2
    assert_one_line_error(capsys.readouterr().err, "not a directory")


def test_unwritable_out_fails_before_training(capsys: pytest.CaptureFixture,
                                              assert_one_line_error) -> None:
    # an existing directory where no file can be created (sysfs refuses even root, who passes
    # permission bits): the run must stop at once, not after training, at the first checkpoint
    if not os.path.isdir("/sys/kernel"):
        pytest.skip("no /sys/kernel (sysfs) here to stand for a read-only directory")
    args = [*SYNTHETIC, "--epochs", "1", "--out", "/sys/kernel", "--no-progress"]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert_one_line_error(captured.err, "cannot write into output directory /sys/kernel")
    assert "data:" not in captured.out  # stopped before its header, so before training


def test_os_errors_names_the_file_and_the_reason() -> None:
    from fastmlp.errors import FastMLPError, os_errors

    full = OSError(28, "No space left on device", "/runs/x/history.json")
    with pytest.raises(FastMLPError) as excinfo, os_errors("write results to", "/runs/x"):
        raise full
    assert str(excinfo.value) == ("cannot write results to /runs/x/history.json: No space left "
                                  "on device")
    with pytest.raises(FastMLPError) as excinfo, os_errors("write", "p.npy", name_the_file=False):
        raise full
    assert str(excinfo.value) == "cannot write p.npy: No space left on device"
    with pytest.raises(ValueError), os_errors("write", "p.npy"):  # only OSErrors are turned
        raise ValueError("not an OSError")


def test_output_write_failures_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   assert_one_line_error) -> None:
    import fastmlp.report as report

    # a directory that cannot be made: its parent is a file
    (tmp_path / "file").write_text("x")
    assert main([*SYNTHETIC, "--epochs", "1", "--out", str(tmp_path / "file" / "o"),
                 "--no-progress"]) == 2
    assert_one_line_error(capsys.readouterr().err,
                          f"cannot create output directory {tmp_path / 'file' / 'o'}: ")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "o" / "history.json"))

    # the results after training, and a checkpoint during it
    with monkeypatch.context() as m:
        m.setattr(report, "write_history", disk_full)
        assert main([*SYNTHETIC, "--epochs", "1", "--out", str(tmp_path / "o"),
                     "--no-progress"]) == 2
    assert_one_line_error(capsys.readouterr().err, f"cannot write results to "
                          f"{tmp_path / 'o' / 'history.json'}: No space left on device")
    with monkeypatch.context() as m:
        m.setattr("fastmlp.checkpoint.save_checkpoint", disk_full)
        # another directory: "o" holds the checkpoint of the run above, and is refused
        assert main([*SYNTHETIC, "--epochs", "1", "--out", str(tmp_path / "o2"),
                     "--no-progress"]) == 2
    assert_one_line_error(capsys.readouterr().err, "cannot write checkpoint ")


@pytest.mark.slow  # a subprocess, Dask or the simulator
def test_error_in_subprocess(tmp_path: Path, assert_one_line_error) -> None:
    proc = subprocess.run([sys.executable, "-m", "fastmlp", "train", "--device", "tpu",
                           "--out", str(tmp_path / "o")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "tpu")
    assert proc.stdout == ""


@pytest.mark.slow  # a subprocess, Dask or the simulator
def test_closed_or_full_standard_output(tmp_path: Path, assert_one_line_error) -> None:
    # `fastmlp evaluate ... | head` ends quietly (141, as 128 + SIGPIPE); a full disk under
    # `> file` is one line and exit 2; neither is a traceback
    assert main([*SYNTHETIC, "--epochs", "1", "--out", str(tmp_path / "o"), "--quiet"]) == 0
    command = [sys.executable, "-m", "fastmlp", "evaluate", str(tmp_path / "o" / "model.npz")]
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to the pipe now fails: no reader
    try:
        proc = subprocess.run(command, stdout=write_end, stderr=subprocess.PIPE, text=True,
                              timeout=120)
    finally:
        os.close(write_end)
    assert (proc.returncode, proc.stderr) == (141, "")
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system to fill standard output")
    with open("/dev/full", "w") as full:
        proc = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True,
                              timeout=120)
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "cannot write the output: No space left on device")


def test_ctrl_c_exits_130(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture) -> None:
    import fastmlp.runner as runner

    calls = []

    def interrupted_train(*args, **kwargs):
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "train", interrupted_train)
    seen = []
    original = runner.on_interrupt
    monkeypatch.setattr(runner, "on_interrupt",
                        lambda history, out, epochs, saved: seen.append(out)
                        or original(history, out, epochs, saved))
    assert main([*SYNTHETIC, "--out", str(tmp_path / "o"), "--no-progress"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert calls and len(seen) == 1 and seen[0] == tmp_path / "o"
    assert len(err) == 1 and err[0].startswith("fastmlp: interrupted after 0 of 8 epochs")


def test_ctrl_c_while_writing_results_says_how_to_get_them(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture) -> None:
    # training is done and checkpointed when the plots are drawn: a Ctrl-C then must not leave
    # the user without model.npz and without a word on how to get it
    import fastmlp.report as report

    def interrupted_plot(*args, **kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "o"
    monkeypatch.setattr(report, "plot_history", interrupted_plot)
    assert main([*SYNTHETIC, "--epochs", "2", "--out", str(out), "--no-progress"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted while writing the results" in err[0]
    assert f"fastmlp train --resume {out}" in err[0]
    monkeypatch.undo()
    assert main(["train", "--resume", str(out), "--no-progress", "--quiet"]) == 0
    assert (out / "model.npz").is_file() and (out / "loss.png").is_file()


def test_default_out_dir_is_timestamped_and_unique(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from fastmlp.runner import prepare_out_dir

    monkeypatch.chdir(tmp_path)
    first, second = prepare_out_dir(None), prepare_out_dir(None)
    assert first.parent == second.parent == Path("runs")
    assert first != second and first.is_dir() and second.is_dir()
    assert len(first.name) == len("20250101-120000") and first.name[8] == "-"


@pytest.mark.slow  # a subprocess, Dask or the simulator
def test_huge_features_diverge_with_one_line_naming_them(tmp_path: Path) -> None:
    """Features of magnitude 1e30: the error names them as the cause, and nothing else is
    printed on stderr (no NumPy overflow warning)."""
    rng = np.random.default_rng(0)
    data = tmp_path / "big.npz"
    np.savez(data, x_train=rng.random((50, 20)) * 1e30, y_train=rng.integers(0, 3, 50))
    proc = subprocess.run(
        [sys.executable, "-m", "fastmlp", "train", "--dataset", "npz", "--data-path", str(data),
         "--hidden", "8", "--epochs", "3", "--no-progress", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "training diverged" in lines[0]
    assert "the features reach |x| = 1e+30, far outside the usual range" in lines[0]
