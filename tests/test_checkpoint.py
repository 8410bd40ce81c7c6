"""Checkpoints, --resume, Ctrl-C and the divergence guard.

Resumed runs must equal uninterrupted ones bit for bit on the CPU (full batch and minibatch);
a process killed at any moment must leave a loadable checkpoint; Ctrl-C saves and exits 130;
a diverging run stops with the last finite weights (DivergenceError, CLI exit 3).
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fastmlp
import fastmlp.runner as runner
from fastmlp.checkpoint import CHECKPOINT_NPZ, VERSION, load_checkpoint
from fastmlp.cli import main
from fastmlp.config import recorded_run
from fastmlp.rundir import LOCK_FILE
from fastmlp.train import METRICS, DivergenceError, Trainer

PARAMS = ("Wh", "bh", "Wo", "bo")
SYN = ["train", "--dataset", "synthetic", "--hidden", "16", "--lr", "0.05", "--momentum", "0.9",
       "--device", "cpu", "--no-progress"]
ENV = dict(os.environ, PYTHONWARNINGS="ignore")


def small_data() -> fastmlp.Dataset:
    return fastmlp.load_dataset("synthetic", n_train=120, n_valid=30, n_test=30, n_features=12)


def interrupt_at(monkeypatch: pytest.MonkeyPatch, epoch: int) -> None:
    """Make the CLI's per-epoch callback raise KeyboardInterrupt once ``epoch`` epochs are done,
    as a Ctrl-C arriving between epochs would."""
    original = runner.train

    def stop(trainer, record):
        if trainer.epoch == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(runner, "train", lambda *a, **kw: original(*a, callback=stop, **kw))


def assert_same_run(a: Path, b: Path) -> None:
    """model.npz arrays bit-identical; history lists and final metrics equal."""
    with np.load(a / "model.npz") as fa, np.load(b / "model.npz") as fb:
        for name in PARAMS:
            assert np.array_equal(fa[name], fb[name]), name
    ha, hb = (json.loads((d / "history.json").read_text()) for d in (a, b))
    for key in (*METRICS, "final", "epochs"):
        assert ha[key] == hb[key], key


# -- library ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("products")  # trains: once on each path of the products
def test_state_dict_roundtrip_and_checks() -> None:
    data = small_data()
    model = fastmlp.MLP(12, 8, 10)
    trainer = Trainer(model, data, lr=0.05, momentum=0.9, batch_size=32)
    for _ in range(3):
        trainer.run_epoch()
    state = trainer.state_dict()
    assert state["epoch"] == 3 and state["params"].shape == (model.n_params,)
    json.dumps(state["rng_state"])  # JSON-ready
    expected = [trainer.run_epoch() for _ in range(2)]
    other = Trainer(fastmlp.MLP(12, 8, 10, seed=7), data, lr=0.05, momentum=0.9, batch_size=32,
                    seed=99)
    other.load_state_dict(state)
    assert [other.run_epoch() for _ in range(2)] == expected
    assert np.array_equal(other.model.params, trainer.model.params)
    with pytest.raises(fastmlp.FastMLPError, match="parameters"):
        Trainer(fastmlp.MLP(12, 9, 10), data).load_state_dict(state)
    with pytest.raises(fastmlp.FastMLPError, match="float64"):
        Trainer(fastmlp.MLP(12, 8, 10, dtype="float64"), data).load_state_dict(state)


@pytest.mark.usefixtures("products")  # trains: once on each path of the products
def test_library_checkpoint_and_resume(tmp_path: Path) -> None:
    data = small_data()
    kwargs = dict(epochs=7, lr=0.05, momentum=0.9, batch_size=25, eval_every=2)
    full = fastmlp.MLP(12, 8, 10)
    h_full = fastmlp.train(full, data, **kwargs)

    def stop(trainer, record):
        if trainer.epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fastmlp.train(fastmlp.MLP(12, 8, 10), data, **kwargs, callback=stop, checkpoint=tmp_path,
                      checkpoint_every=0)
    ck = load_checkpoint(tmp_path)
    assert ck["epoch"] == 3 and ck["history"].epochs == 3 and ck["version"] == VERSION
    resumed = fastmlp.MLP(12, 8, 10, seed=5)  # different init: the state overrides it
    h = fastmlp.train(resumed, data, **kwargs, state=ck, history=ck["history"],
                      checkpoint=tmp_path)
    assert np.array_equal(resumed.params, full.params)
    for key in METRICS:
        np.testing.assert_array_equal(getattr(h, key), getattr(h_full, key))
    assert h.final == h_full.final
    assert load_checkpoint(tmp_path)["epoch"] == 7  # the final checkpoint


@pytest.mark.usefixtures("products")  # trains: once on each path of the products
def test_divergence_error_keeps_last_finite_weights() -> None:
    model = fastmlp.MLP(12, 16, 10)
    with pytest.raises(DivergenceError) as info:
        fastmlp.train(model, small_data(), epochs=50, lr=1e6, momentum=0.9)
    err = info.value
    assert isinstance(err, fastmlp.FastMLPError)
    assert f"epoch {err.epoch}" in str(err) and "learning rate" in str(err)
    assert 1 <= err.epoch < 50
    assert np.isfinite(model.params).all()
    h = err.history
    # full batch: the loss of epoch e is measured at the weights e started from, so the kept
    # weights are those epoch e-1 started from, and the history stops just before them
    assert h.epochs == max(err.epoch - 2, 0)
    assert all(math.isfinite(v) for v in h.train_loss)
    assert math.isfinite(h.final["train_loss"]) and h.config["diverged_at_epoch"] == err.epoch


def test_checkpoint_errors(tmp_path: Path, capsys: pytest.CaptureFixture,
                           assert_one_line_error) -> None:
    with pytest.raises(fastmlp.FastMLPError, match="no checkpoint in"):
        load_checkpoint(tmp_path)
    target = tmp_path / CHECKPOINT_NPZ
    target.write_bytes(b"not a zip file")
    with pytest.raises(fastmlp.FastMLPError, match="checkpoint.npz is corrupt: "):
        load_checkpoint(tmp_path)
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert_one_line_error(capsys.readouterr().err, "checkpoint.npz is corrupt: it is not an .npz "
                                                   "archive (no zip header)")

    fastmlp.train(fastmlp.MLP(12, 8, 10), small_data(), epochs=2, checkpoint=tmp_path)
    good = target.read_bytes()
    target.write_bytes(good[: len(good) // 2])  # truncated, as a non-atomic writer could leave
    with pytest.raises(fastmlp.FastMLPError, match="corrupt"):
        load_checkpoint(target)
    target.write_bytes(good)
    with np.load(target) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta"]))
    meta["version"] = VERSION + 1
    np.savez(target, **dict(arrays, meta=np.array(json.dumps(meta))))
    with pytest.raises(fastmlp.FastMLPError, match="version"):
        load_checkpoint(target)
    target.write_bytes(good)
    assert main(["train", "--resume", str(tmp_path)]) == 2  # no CLI options recorded
    assert_one_line_error(capsys.readouterr().err, "not written by 'fastmlp train'")


@pytest.mark.parametrize("damage", [
    {"history": []}, {"history": None}, {"model": [1]}, {"config": [1]}, {"config": []},
    {"config": "fastmlp"}, {"history": {"final": []}},
], ids=repr)
def test_checkpoint_metadata_of_wrong_json_types_is_corrupt(
        damage: dict, tmp_path: Path, capsys: pytest.CaptureFixture,
        assert_one_line_error) -> None:
    fastmlp.train(fastmlp.MLP(12, 8, 10), small_data(), epochs=2, checkpoint=tmp_path)
    target = tmp_path / CHECKPOINT_NPZ
    with np.load(target) as f:
        arrays = {k: f[k] for k in f.files}
    meta = dict(json.loads(str(arrays["meta"])), **damage)
    np.savez(target, **dict(arrays, meta=np.array(json.dumps(meta))))
    with pytest.raises(fastmlp.FastMLPError, match="checkpoint.npz is corrupt: "):
        load_checkpoint(tmp_path)
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert_one_line_error(capsys.readouterr().err, "checkpoint.npz is corrupt: ")


# -- CLI ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("batch", "sparse"), [(None, "off"), (None, "on"), ("64", "auto")],
                         ids=["full-batch", "full-batch-sparse", "minibatch"])
@pytest.mark.usefixtures("products")  # trains: once on each path of the products
def test_resume_is_bit_identical(batch: str | None, sparse: str, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture) -> None:
    argv = ([*SYN, "--epochs", "9", "--eval-every", "2", "--sparse", sparse]
            + (["--batch-size", batch] if batch else []))
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main([*argv, "--out", str(whole)]) == 0
    with monkeypatch.context() as m:
        interrupt_at(m, 4)
        assert main([*argv, "--out", str(parts), "--checkpoint-every", "0"]) == 130
    err = capsys.readouterr().err
    assert "interrupted after 4 of 9 epochs" in err and "checkpoint at epoch 4" in err
    assert f"resume with: fastmlp train --resume {parts}" in err
    interrupted = json.loads((parts / "history.json").read_text())
    assert interrupted["epochs"] == 4
    # the CLI's own settings are recorded before training, so an interrupted history has them
    run = interrupted["config"]["run"]
    assert run["command"].startswith("fastmlp train --dataset synthetic")
    # (scale None: synthetic features are used as given)
    assert recorded_run(interrupted["config"])["scale"] is None and "device" in run
    assert load_checkpoint(parts)["epoch"] == 4
    assert main(["train", "--resume", str(parts), "--no-progress"]) == 0
    assert "resume:   from epoch 4" in capsys.readouterr().out
    assert_same_run(whole, parts)
    history = json.loads((parts / "history.json").read_text())
    assert history["config"]["resumed_at_epoch"] == [4]
    assert load_checkpoint(parts)["epoch"] == 9


def test_resume_option_rules(tmp_path: Path, capsys: pytest.CaptureFixture,
                             assert_one_line_error) -> None:
    out = tmp_path / "run"
    assert main([*SYN, "--epochs", "3", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--lr", "0.5"]) == 2
    assert_one_line_error(capsys.readouterr().err, "--lr 0.5 (recorded: 0.05)")
    assert main(["train", "--resume", str(out), "--epochs", "2"]) == 2
    assert "past --epochs 2" in capsys.readouterr().err
    # same values, and the options that may change, are accepted; --epochs extends the run
    assert main(["train", "--resume", str(out), "--hidden", "16", "--epochs", "5",
                 "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "history.json").read_text())["epochs"] == 5
    # a fresh run into the same directory is refused; with --overwrite it sets the old
    # checkpoint and results aside before training and deletes them once it has written its own
    assert main([*SYN, "--epochs", "2", "--out", str(out), "--no-progress"]) == 2
    assert_one_line_error(capsys.readouterr().err, f"--out {out} holds an earlier run")
    assert load_checkpoint(out)["epoch"] == 5
    assert main([*SYN, "--epochs", "2", "--out", str(out), "--no-progress", "--overwrite"]) == 0
    assert ("moved the earlier run's files (checkpoint.npz, model.npz, history.json, "
            "history.csv, loss.png, accuracy.png) into " f"{out / 'overwritten'}"
            ) in capsys.readouterr().out
    assert load_checkpoint(out)["epoch"] == 2
    assert not (out / "overwritten").exists()


def test_resume_takes_the_checkpoint_file_for_its_run_directory(
        tmp_path: Path, capsys: pytest.CaptureFixture, assert_one_line_error) -> None:
    out = tmp_path / "run"
    assert main([*SYN, "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out / CHECKPOINT_NPZ), "--epochs", "3",
                 "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(out)  # the outputs go into the run directory
    assert json.loads((out / "history.json").read_text())["epochs"] == 3
    assert load_checkpoint(out)["epoch"] == 3
    # another file is not the checkpoint the run goes on writing
    assert main(["train", "--resume", str(out / "model.npz"), "--epochs", "4"]) == 2
    assert_one_line_error(capsys.readouterr().err, "model.npz: expects the run directory")
    assert main(["train", "--resume", str(tmp_path / "missing")]) == 2
    assert_one_line_error(capsys.readouterr().err, "missing: no such directory")


@pytest.mark.usefixtures("products")  # trains: once on each path of the products
def test_divergence_rewrites_the_checkpoint_at_the_kept_weights(tmp_path: Path) -> None:
    # a checkpoint written every epoch holds, when the next epoch diverges, weights found bad;
    # after the error it must hold the kept weights and the history that ends at them
    model = fastmlp.MLP(12, 16, 10)
    with pytest.raises(DivergenceError) as info, np.errstate(all="ignore"):
        fastmlp.train(model, small_data(), epochs=50, lr=1e6, momentum=0.9,
                      checkpoint=tmp_path, checkpoint_every=1)
    h = info.value.history
    assert h.epochs >= 1  # else no checkpoint was written before the divergence
    ck = load_checkpoint(tmp_path)
    assert ck["epoch"] == h.epochs and ck["history"].epochs == h.epochs
    np.testing.assert_array_equal(ck["params"], model.params)


def test_divergence_with_no_finite_weights_held_says_so() -> None:
    # NaN initial weights: nothing older is held, so they are kept, but not called finite
    model = fastmlp.MLP(12, 16, 10)
    model.params[0] = np.nan
    with pytest.raises(DivergenceError) as info, np.errstate(all="ignore"):
        fastmlp.train(model, small_data(), epochs=3)
    message = str(info.value)
    assert "diverged at epoch 1: the training loss is nan" in message
    assert "kept the initial weights, the oldest held, though they are not finite either" in message
    assert "the last finite ones" not in message


@pytest.mark.usefixtures("products")  # trains: once on each path of the products
def test_divergence_after_the_last_update_is_caught() -> None:
    # epoch 1's loss is measured before its update, so only the final check sees the blow-up
    model = fastmlp.MLP(12, 16, 10)
    initial = model.params.copy()
    with pytest.raises(DivergenceError, match="the loss after the last update is nan"), \
            np.errstate(over="ignore", invalid="ignore"):
        fastmlp.train(model, small_data(), epochs=1, lr=1e38, momentum=0.0)
    np.testing.assert_array_equal(model.params, initial)  # back to the last finite weights


def test_divergence_cli_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture,
                                assert_one_line_error) -> None:
    out = tmp_path / "run"
    assert main([*SYN, "--epochs", "50", "--lr", "1e6", "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert_one_line_error(err, "training diverged at epoch ")
    assert err.strip().startswith("fastmlp: error: training diverged at epoch ")
    assert "learning rate" in err and str(out) in err
    history = json.loads((out / "history.json").read_text())
    assert all(v is not None and math.isfinite(v) for v in history["train_loss"])
    assert history["config"]["diverged_at_epoch"] >= 1
    with np.load(out / "model.npz") as f:
        assert all(np.isfinite(f[name]).all() for name in PARAMS)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}: {proc.communicate()[1]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {path.name} after {timeout} s")
        time.sleep(0.02)


@pytest.mark.slow  # a subprocess, Dask or the simulator
def test_sigkill_never_breaks_the_checkpoint(tmp_path: Path, assert_no_temp_files) -> None:
    out = tmp_path / "run"
    first = [sys.executable, "-m", "fastmlp", *SYN, "--hidden", "64", "--epochs", "1000000",
             "--checkpoint-every", "1", "--out", str(out), "--quiet"]
    again = [sys.executable, "-m", "fastmlp", "train", "--resume", str(out), "--quiet"]
    rng = random.Random()
    last_epoch = 0
    for attempt in range(4):
        proc = subprocess.Popen(first if attempt == 0 else again, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, env=ENV)
        try:
            _wait_for(out / CHECKPOINT_NPZ, proc)
            if attempt:  # the resumed process is running once its first new checkpoint appears
                deadline = time.monotonic() + 60
                while load_checkpoint(out)["epoch"] <= last_epoch and proc.poll() is None:
                    assert time.monotonic() < deadline, "no new checkpoint after 60 s"
                    time.sleep(0.02)
            delay = rng.uniform(0.0, 0.4)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            _, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)
        # it was still running when killed: a resume that failed at once would have its own code
        assert proc.returncode == -signal.SIGKILL, (attempt, proc.returncode, stderr)
        ck = load_checkpoint(out)  # loads: never a torn file under the final name
        assert ck["epoch"] >= max(last_epoch, 1), delay
        if attempt:
            assert ck["epoch"] > last_epoch, (attempt, last_epoch, stderr)  # it made progress
        assert ck["history"].epochs == ck["epoch"] and ck["config"]["epochs"] == 1000000
        assert np.isfinite(ck["params"]).all() and np.isfinite(ck["velocity"]).all()
        # only the checkpoint, the killed run's (stale) lock and, maybe, a killed writer's temp
        for p in out.iterdir():
            assert p.name in (CHECKPOINT_NPZ, LOCK_FILE) or (
                p.name.startswith(f".{CHECKPOINT_NPZ}.") and p.name.endswith(".tmp")), p.name
        last_epoch = ck["epoch"]
    # and the survivor continues to the end (shortened here with --epochs)
    target = last_epoch + 3
    assert main(["train", "--resume", str(out), "--epochs", str(target), "--quiet"]) == 0
    assert json.loads((out / "history.json").read_text())["epochs"] == target
    assert load_checkpoint(out)["epoch"] == target
    assert_no_temp_files(out)
    assert not (out / LOCK_FILE).exists()  # the stale lock cleared, the resumed run's released


def _default_sigint() -> None:
    # A job started with '&' by a non-interactive shell (as CI runners may do) inherits SIGINT
    # ignored, and Python then keeps ignoring it; give the child the default, as a terminal would.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow  # a subprocess, Dask or the simulator
def test_sigint_saves_and_exits_130(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "fastmlp", *SYN, "--epochs", "1000",
                             "--batch-size", "250", "--checkpoint-every", "1",
                             "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            preexec_fn=_default_sigint)
    try:
        _wait_for(out / CHECKPOINT_NPZ, proc)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # a timeout above: never leave it training 1000 epochs
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert f"resume with: fastmlp train --resume {out}" in stderr
    saved = load_checkpoint(out)
    done = json.loads((out / "history.json").read_text())["epochs"]
    assert 1 <= saved["epoch"] == done < 1000
    assert f"interrupted after {done} of 1000 epochs" in stderr
    # the saved state resumes and runs to its end (shortened here with --epochs)
    target = done + 3
    assert main(["train", "--resume", str(out), "--epochs", str(target),
                 "--checkpoint-every", "0", "--no-progress"]) == 0
    history = json.loads((out / "history.json").read_text())
    assert history["epochs"] == target and load_checkpoint(out)["epoch"] == target
    assert history["config"]["resumed_at_epoch"] == [done]
    assert (out / "model.npz").is_file()


@pytest.mark.parametrize("version,shown", [("1", "'1' (str)"), (True, "True (bool)"),
                                           (1.0, "1.0 (float)"), (0, "0 (int)"),
                                           (None, "None (NoneType)")])
def test_a_checkpoint_version_of_the_wrong_type_says_what_it_is(version, shown: str,
                                                                tmp_path: Path) -> None:
    fastmlp.train(fastmlp.MLP(12, 8, 10), small_data(), epochs=1, checkpoint=tmp_path)
    target = tmp_path / CHECKPOINT_NPZ
    with np.load(target) as f:
        arrays = {k: f[k] for k in f.files}
    meta = dict(json.loads(str(arrays["meta"])), version=version)
    np.savez(target, **dict(arrays, meta=np.array(json.dumps(meta))))
    with pytest.raises(fastmlp.FastMLPError) as excinfo:
        load_checkpoint(tmp_path)
    message = str(excinfo.value)
    assert message == (f"checkpoint.npz is corrupt: its checkpoint format version is {shown}, "
                       f"not a whole number >= 1")
    assert "reads versions up to" not in message


def test_load_checkpoint_of_bad_paths_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(fastmlp.FastMLPError, match="a checkpoint path must be a str"):
        load_checkpoint(3)  # type: ignore[arg-type]
    with pytest.raises(fastmlp.FastMLPError, match="File name too long"):
        load_checkpoint(tmp_path / ("c" * 300))
    with pytest.raises(fastmlp.FastMLPError, match="character device, not a regular file"):
        load_checkpoint("/dev/zero")


def _npz_run(tmp_path: Path, x: np.ndarray, y: np.ndarray, name: str = "data.npz") -> list[str]:
    np.savez(tmp_path / name, x_train=x, y_train=y)
    return ["train", "--dataset", "npz", "--data-path", str(tmp_path / name), "--hidden", "4",
            "--epochs", "2", "--device", "cpu", "--no-progress", "--quiet",
            "--out", str(tmp_path / "run")]


def test_resume_refuses_other_data_of_the_same_shapes(tmp_path: Path, capsys,
                                                      assert_one_line_error) -> None:
    x, y = np.random.default_rng(0).random((40, 5)), np.arange(40) % 3
    assert main(_npz_run(tmp_path, x, y)) == 0
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    recorded = history["config"]["data_fingerprint"]
    assert load_checkpoint(tmp_path / "run")["history"].config["data_fingerprint"] == recorded
    resume = ["train", "--resume", str(tmp_path / "run"), "--epochs", "3", "--quiet",
              "--no-progress"]
    np.savez(tmp_path / "other.npz", x_train=x + 0.01, y_train=y)  # another file
    capsys.readouterr()
    assert main([*resume, "--data-path", str(tmp_path / "other.npz")]) == 2
    assert_one_line_error(capsys.readouterr().err, "same shapes, other values")
    x[3, 1] += 0.25  # the original file, edited in place
    np.savez(tmp_path / "data.npz", x_train=x, y_train=y)
    assert main(resume) == 2
    assert_one_line_error(capsys.readouterr().err, f"data fingerprint {recorded} then")
    x[3, 1] -= 0.25
    np.savez(tmp_path / "data.npz", x_train=x, y_train=y)  # the very data again: resumes
    assert main(resume) == 0
    assert load_checkpoint(tmp_path / "run")["epoch"] == 3


def test_a_checkpoint_without_a_fingerprint_still_resumes(tmp_path: Path) -> None:
    x, y = np.random.default_rng(1).random((40, 5)), np.arange(40) % 3
    assert main(_npz_run(tmp_path, x, y)) == 0
    target = tmp_path / "run" / CHECKPOINT_NPZ
    with np.load(target) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta"]))
    del meta["history"]["config"]["data_fingerprint"]  # as written before fingerprints
    np.savez(target, **dict(arrays, meta=np.array(json.dumps(meta))))
    assert main(["train", "--resume", str(tmp_path / "run"), "--epochs", "3", "--quiet",
                 "--no-progress"]) == 0
    assert load_checkpoint(target)["history"].config["data_fingerprint"]  # recorded from now
