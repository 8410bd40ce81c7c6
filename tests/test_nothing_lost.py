"""Nothing a user has is lost: an earlier run in --out is refused or set aside (--overwrite),
one run per output directory (the lock, stale locks and temp files cleared), SIGTERM and SIGHUP
save as Ctrl-C does (exit 143 / 129), sweep workers end with a killed driver, a closed stdout or
stderr is harmless, predict never replaces its inputs, and the compiled loop's loss does not
depend on where its calls split an epoch (a resumed run's history equals an uninterrupted one's).
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fastmlp
import fastmlp.runner as runner
from fastmlp.checkpoint import CHECKPOINT_NPZ, load_checkpoint
from fastmlp.cli import main
from fastmlp.errors import FastMLPError
from fastmlp.rundir import LOCK_FILE, SET_ASIDE_DIR, RunLock
from fastmlp.train import StopSignal, Trainer

PARAMS = ("Wh", "bh", "Wo", "bo")
SYN = ["train", "--dataset", "synthetic", "--hidden", "16", "--lr", "0.05", "--momentum", "0.9",
       "--device", "cpu", "--no-progress"]
ENV = dict(os.environ, PYTHONWARNINGS="ignore")
FASTMLP = [sys.executable, "-m", "fastmlp"]


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def _assert_same_run(a: Path, b: Path) -> None:
    with np.load(a / "model.npz") as fa, np.load(b / "model.npz") as fb:
        for name in PARAMS:
            assert np.array_equal(fa[name], fb[name]), name
    ha, hb = (json.loads((d / "history.json").read_text()) for d in (a, b))
    for key in ("train_loss", "train_acc", "valid_loss", "test_loss", "final", "epochs"):
        assert ha[key] == hb[key], key


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- an earlier run in --out ----------------------------------------------------------------------


def test_an_earlier_run_is_refused_and_left_as_it_was(tmp_path: Path, capsys,
                                                      assert_one_line_error) -> None:
    out = tmp_path / "run"
    assert main([*SYN, "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    before = _files(out)
    assert set(before) == set(runner.RUN_FILES)
    capsys.readouterr()
    # the usual slip: the original command again instead of --resume; quiet or not
    for extra in ([], ["--quiet"]):
        assert main([*SYN, "--epochs", "2", "--out", str(out), *extra]) == 2
        assert_one_line_error(capsys.readouterr().err,
                              f"continue it with --resume {out}, or replace it with --overwrite")
        assert _files(out) == before


def test_overwrite_keeps_the_earlier_run_until_the_new_one_is_written(
        tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    assert main([*SYN, "--epochs", "3", "--out", str(out), "--quiet"]) == 0
    earlier = _files(out)
    # the new run stops after one epoch: the earlier run is whole in overwritten/, and the
    # directory holds only the new run's files (no mix that --resume could mistake)
    original = runner.train

    def stop_after_one(*a, **kw):
        def stop(trainer, record):
            raise KeyboardInterrupt
        return original(*a, callback=stop, **kw)

    with monkeypatch.context() as m:
        m.setattr(runner, "train", stop_after_one)
        assert main([*SYN, "--epochs", "4", "--seed", "1", "--out", str(out), "--overwrite",
                     "--checkpoint-every", "0"]) == 130
    assert _files(out / SET_ASIDE_DIR) == earlier
    assert {p.name for p in out.iterdir() if p.is_file()} == {
        CHECKPOINT_NPZ, "history.json", "history.csv"}
    ck = load_checkpoint(out)
    assert ck["epoch"] == 1 and ck["config"]["seed"] == 1
    capsys.readouterr()
    # resumed to its end, the new run has replaced the earlier one: overwritten/ is gone
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert not (out / SET_ASIDE_DIR).exists()
    assert load_checkpoint(out)["epoch"] == 4
    assert json.loads((out / "history.json").read_text())["config"]["seed"] == 1


def test_overwrite_that_fails_keeps_the_earlier_run(tmp_path: Path, capsys,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    assert main([*SYN, "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    earlier = _files(out)

    def boom(*a, **kw):
        raise FastMLPError("the disk went away")

    monkeypatch.setattr(runner, "train", boom)
    assert main([*SYN, "--epochs", "2", "--out", str(out), "--overwrite", "--quiet"]) == 2
    assert _files(out / SET_ASIDE_DIR) == earlier  # nothing lost; the lock is gone too
    assert not (out / LOCK_FILE).exists()


# -- the lock -------------------------------------------------------------------------------------


def test_lock_refuses_a_live_run_and_clears_a_dead_ones(tmp_path: Path) -> None:
    with RunLock(tmp_path, "first") as first:
        assert first.holder()["pid"] == os.getpid()
        with pytest.raises(FastMLPError, match=r"is in use by another fastmlp run \(pid "
                                               rf"{os.getpid()}: first\)"):
            RunLock(tmp_path, "second").acquire()
    assert not (tmp_path / LOCK_FILE).exists()
    # a killed run's lock (its process has gone), a damaged lock, a reused pid: all stale
    for record in ({"pid": _dead_pid(), "host": socket.gethostname()}, "not json",
                   {"pid": os.getpid(), "host": socket.gethostname(), "started": "0"}):
        (tmp_path / LOCK_FILE).write_text(record if isinstance(record, str)
                                          else json.dumps(record))
        with RunLock(tmp_path) as lock:
            assert lock.holder()["pid"] == os.getpid()
    # another host's run cannot be checked from here: refused, naming the file to remove
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    with pytest.raises(FastMLPError, match=f"on host elsewhere .*remove {tmp_path / LOCK_FILE}"):
        RunLock(tmp_path).acquire()


def test_stale_lock_and_temp_files_of_a_killed_run_are_cleared(tmp_path: Path, capsys,
                                                               assert_no_temp_files) -> None:
    out = tmp_path / "run"
    assert main([*SYN, "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    # what kill -9 during the final writes leaves: a lock and hidden temp files
    (out / LOCK_FILE).write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    temps = [out / f".{name}.0123456789ab.tmp" for name in ("loss.png", CHECKPOINT_NPZ,
                                                           "model.npz", "history.json")]
    for p in temps:
        p.write_bytes(b"partial")
    # a live run's temp files are not touched: refused before anything is removed
    stale = (out / LOCK_FILE).read_text()
    (out / LOCK_FILE).write_text(json.dumps(RunLock(out, "a live run")._record()))
    assert main(["train", "--resume", str(out), "--epochs", "3", "--quiet"]) == 2
    assert "is in use by another fastmlp run" in capsys.readouterr().err
    assert all(p.exists() for p in temps)
    (out / LOCK_FILE).write_text(stale)
    assert main(["train", "--resume", str(out), "--epochs", "3", "--quiet"]) == 0
    assert_no_temp_files(out)
    assert not (out / LOCK_FILE).exists()
    assert load_checkpoint(out)["epoch"] == 3


def test_sweep_takes_the_lock_and_still_resumes_by_rerun(tmp_path: Path, capsys) -> None:
    out = tmp_path / "sweep"
    argv = ["sweep", "--dataset", "synthetic", "--hidden", "4", "--epochs", "2", "--seeds", "2",
            "--device", "cpu", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    stale = out / "h4-lr0.1-m0.99-bfull-relu" / "seed-0" / ".history.json.0123456789ab.tmp"
    stale.write_bytes(b"partial")
    (out / "h4-lr0.1-m0.99-bfull-relu" / "seed-1" / "history.json").unlink()
    with RunLock(out, "another sweep"):
        assert main(argv) == 2
        assert "is in use by another fastmlp run" in capsys.readouterr().err
    assert main(argv) == 0  # the rerun resumes: one run trained again
    assert "1 of 2 runs already finished" in capsys.readouterr().out
    assert not stale.exists() and not (out / LOCK_FILE).exists()


# -- SIGTERM and SIGHUP -----------------------------------------------------------------------


def _read_until(proc: subprocess.Popen, pattern: bytes, timeout: float = 120) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, seen):
        assert proc.poll() is None, (proc.returncode, seen)
        assert time.monotonic() < deadline, seen
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if ready:
            seen += os.read(proc.stderr.fileno(), 4096)
    return seen


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)],
                         ids=["SIGTERM", "SIGHUP"])
@pytest.mark.slow  # a subprocess, Dask or the simulator
def test_sigterm_and_sighup_save_as_ctrl_c(signum: int, code: int, tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = [a for a in SYN if a != "--no-progress"]  # the bar on stderr counts the epochs
    # --checkpoint-every 0: the only checkpoint before the end is the one the signal asks for
    proc = subprocess.Popen([*FASTMLP, *argv, "--epochs", "1000", "--checkpoint-every", "0",
                             "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    try:
        seen = _read_until(proc, rb"\b[1-9]\d*/1000\b")  # an epoch is done
        proc.send_signal(signum)
        stderr = (seen + proc.communicate(timeout=120)[1]).decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    name = signal.Signals(signum).name
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    saved = load_checkpoint(out)["epoch"]
    assert 1 <= saved == json.loads((out / "history.json").read_text())["epochs"] < 1000
    assert (f"fastmlp: stopped by {name} after {saved} of 1000 epochs; history so far written; "
            f"checkpoint at epoch {saved} in {out}; resume with: fastmlp train --resume {out}"
            ) in stderr
    assert not (out / LOCK_FILE).exists()
    # resumed, it ends where an uninterrupted run ends, bit for bit
    target = saved + 2
    assert main(["train", "--resume", str(out), "--epochs", str(target), "--quiet"]) == 0
    whole = tmp_path / "whole"
    assert main([*SYN, "--epochs", str(target), "--out", str(whole), "--quiet"]) == 0
    _assert_same_run(out, whole)


def test_a_stop_in_mid_epoch_saves_the_epochs_before_it(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A second signal abandons the running epoch: the checkpoint holds the epochs done."""
    data = fastmlp.load_dataset("synthetic", n_train=120, n_valid=30, n_test=30, n_features=12)
    whole = fastmlp.MLP(12, 16, 10, seed=1)
    fastmlp.train(whole, data, epochs=2, batch_size=40, seed=2)
    original = Trainer.run_epoch

    def stopped_in_epoch_3(self, progress=None):
        record = original(self, progress)
        if self.epoch == 3:  # its updates are done, the epoch not yet recorded
            raise StopSignal(signal.SIGTERM)
        return record

    monkeypatch.setattr(Trainer, "run_epoch", stopped_in_epoch_3)
    model = fastmlp.MLP(12, 16, 10, seed=1)
    with pytest.raises(StopSignal):
        fastmlp.train(model, data, epochs=10, batch_size=40, seed=2, checkpoint=tmp_path,
                      checkpoint_every=0)
    ck = load_checkpoint(tmp_path)
    assert ck["epoch"] == 2 and ck["history"].epochs == 2
    np.testing.assert_array_equal(ck["params"], whole.params)


def test_a_second_signal_turned_into_another_error_still_stops_and_saves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Numba's compiler turns a KeyboardInterrupt raised inside it into an error of its own: a
    second Ctrl-C landing there is still a forced stop, the finished epochs checkpointed."""
    data = fastmlp.load_dataset("synthetic", n_train=120, n_valid=30, n_test=30, n_features=12)
    whole = fastmlp.MLP(12, 16, 10, seed=1)
    fastmlp.train(whole, data, epochs=2, batch_size=40, seed=2)
    original = Trainer.run_epoch

    def compiling_in_epoch_3(self, progress=None):
        record = original(self, progress)
        if self.epoch == 3:
            try:  # as a compiler that swallows the interrupt and fails in its own words
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)
            except KeyboardInterrupt:
                raise RuntimeError("no compiled object yet") from None
        return record

    monkeypatch.setattr(Trainer, "run_epoch", compiling_in_epoch_3)
    model = fastmlp.MLP(12, 16, 10, seed=1)
    with pytest.raises(StopSignal) as stopped:
        fastmlp.train(model, data, epochs=10, batch_size=40, seed=2, checkpoint=tmp_path,
                      checkpoint_every=0)
    assert stopped.value.signum == signal.SIGINT
    ck = load_checkpoint(tmp_path)
    assert ck["epoch"] == 2 and ck["history"].epochs == 2
    np.testing.assert_array_equal(ck["params"], whole.params)
    # an error with no second signal behind it is the error it is
    monkeypatch.setattr(Trainer, "run_epoch", lambda self, progress=None: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        fastmlp.train(fastmlp.MLP(12, 16, 10), data, epochs=2, checkpoint=tmp_path / "b")


# -- sweep workers --------------------------------------------------------------------------------


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2:].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"  # a zombie has exited


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.slow  # a subprocess, Dask or the simulator
def test_sweep_workers_end_with_a_killed_driver(tmp_path: Path) -> None:
    # lr 1e9 diverges at once: the two failed runs say both workers are up and trained; they
    # then take the two long runs
    proc = subprocess.Popen([*FASTMLP, "sweep", "--dataset", "synthetic", "--hidden", "8",
                             "--lr", "1e9", "0.01", "--seeds", "2", "--epochs", "1000000",
                             "--device", "cpu", "--workers", "2", "--out", str(tmp_path / "s")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=ENV)
    children: set[int] = set()
    try:
        seen = b""
        deadline = time.monotonic() + 180
        while seen.count(b"FAILED") < 2:
            assert proc.poll() is None and time.monotonic() < deadline, seen
            children |= _children(proc.pid)
            if select.select([proc.stdout], [], [], 0.5)[0]:
                seen += os.read(proc.stdout.fileno(), 4096)
        time.sleep(1.0)
        children |= _children(proc.pid)
        assert len(children) >= 2, children  # the workers (and the resource tracker)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 15
        while any(_running(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [pid for pid in children if _running(pid)]
        assert not left, f"still running after the driver was killed: {left}"
    finally:
        for pid in children:  # never leave them training
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()


# -- closed standard streams ----------------------------------------------------------------------


def _closed(fd: int):
    return lambda: os.close(fd)


@pytest.mark.parametrize("fd", [1, 2], ids=["stdout", "stderr"])
@pytest.mark.slow  # a subprocess, Dask or the simulator
def test_closed_stream_is_harmless(fd: int, tmp_path: Path) -> None:
    out = tmp_path / "run"
    other = {1: {"stderr": subprocess.PIPE}, 2: {"stdout": subprocess.PIPE}}[fd]
    proc = subprocess.run([*FASTMLP, *SYN, "--hidden", "8", "--epochs", "2", "--out", str(out)],
                          preexec_fn=_closed(fd), env=ENV, timeout=300, **other)
    assert proc.returncode == 0, proc
    assert b"Traceback" not in (proc.stdout or proc.stderr)
    assert (out / "model.npz").is_file() and (out / "history.json").is_file()
    if fd == 2:  # the messages that could be printed were
        assert f"results in {out}".encode() in proc.stdout
    # and predict, through the shell's own >&-
    images = tmp_path / "images.npy"
    np.save(images, np.random.default_rng(0).random((3, 784)).astype(np.float32))
    preds = tmp_path / "preds.npy"
    redirect = ">&-" if fd == 1 else "2>&-"
    cmd = " ".join([*FASTMLP, "predict", str(out / "model.npz"), str(images), "--device", "cpu"])
    shell = subprocess.run(["bash", "-c", f"{cmd} --out {preds} {redirect}"], env=ENV,
                           capture_output=True, timeout=300)
    assert shell.returncode == 0, shell
    assert np.load(preds).shape == (3,)
    # the predictions themselves cannot go to a closed stdout: refused, exit 2
    shell = subprocess.run(["bash", "-c", f"{cmd} {redirect}"], env=ENV, capture_output=True,
                           timeout=300)
    if fd == 1:
        assert shell.returncode == 2
        assert b"standard output is closed; give --out FILE" in shell.stderr
    else:
        assert shell.returncode == 0 and len(shell.stdout.split()) == 3


def test_predict_never_replaces_its_inputs(tmp_path: Path, capsys) -> None:
    model, images = tmp_path / "m.npz", tmp_path / "x.npy"
    fastmlp.MLP(784, 8, 10).save(model)
    np.save(images, np.random.default_rng(0).random((3, 784)).astype(np.float32))
    before = images.read_bytes(), model.read_bytes()
    (tmp_path / "link.npy").symlink_to(images)
    for out in (images, tmp_path / "sub" / ".." / "x.npy", tmp_path / "link.npy", model):
        (tmp_path / "sub").mkdir(exist_ok=True)
        assert main(["predict", str(model), str(images), "--out", str(out),
                     "--device", "cpu"]) == 2
        assert "it would be replaced" in capsys.readouterr().err
    assert (images.read_bytes(), model.read_bytes()) == before


# -- the compiled loop's loss ---------------------------------------------------------------------


def test_compiled_loss_does_not_depend_on_the_call_boundaries() -> None:
    # float64: float32 per-step losses sum exactly in float64, whatever the order
    data = fastmlp.load_dataset("synthetic", n_train=3000, n_valid=30, n_test=30,
                                n_features=20, dtype="float64")
    records = []
    for steps_per_call in (7, 1024, 5000):
        model = fastmlp.MLP(20, 16, 10, seed=1, dtype="float64")
        trainer = Trainer(model, data, lr=0.01, momentum=0.9, batch_size=1, seed=2,
                          compiled=True)
        assert trainer.plan.compiled
        trainer.strategy.steps_per_call = steps_per_call
        records.append((trainer.run_epoch(), model.params.copy()))
    for record, params in records[1:]:
        assert record["train_loss"] == records[0][0]["train_loss"]
        np.testing.assert_array_equal(params, records[0][1])


def test_compiled_resume_has_the_uninterrupted_history(tmp_path: Path) -> None:
    # float64: float32 per-step losses sum exactly in float64, whatever the order
    data = fastmlp.load_dataset("synthetic", n_train=3000, n_valid=30, n_test=30,
                                n_features=20, dtype="float64")
    kw = dict(lr=0.01, momentum=0.9, batch_size=1, seed=2, compiled=True)
    whole = fastmlp.train(fastmlp.MLP(20, 16, 10, seed=1, dtype="float64"), data, epochs=4, **kw)
    first = fastmlp.MLP(20, 16, 10, seed=1, dtype="float64")
    fastmlp.train(first, data, epochs=2, checkpoint=tmp_path, checkpoint_every=0, **kw)
    ck = load_checkpoint(tmp_path)
    again = fastmlp.MLP(20, 16, 10, seed=1, dtype="float64")
    resumed = fastmlp.train(again, data, epochs=4, state=ck, history=ck["history"], **kw)
    assert resumed.train_loss == whole.train_loss
    assert resumed.final == whole.final
