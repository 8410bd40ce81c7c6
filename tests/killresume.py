"""SIGKILL a training run after its second checkpoint, resume it, and train the same run whole:
the shared body of the bit-identity tests of every strategy (test_steps, test_minibatch_state)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import fastmlp
from fastmlp.checkpoint import load_checkpoint
from fastmlp.cli import main

PARAMS = ("Wh", "bh", "Wo", "bo")
ENV = dict(os.environ, PYTHONWARNINGS="ignore")


def wait_for_epoch(out: Path, epoch: int, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Until ``out`` holds a checkpoint of ``epoch`` or later (the run must stay alive)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if load_checkpoint(out)["epoch"] >= epoch:
                return
        except fastmlp.FastMLPError:
            pass  # not written yet
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, f"no checkpoint at epoch {epoch} after {timeout} s"
        time.sleep(0.02)


def kill_resume_and_compare(argv: list[str], tmp_path: Path) -> tuple[int, dict, dict]:
    """Run ``fastmlp *argv`` with a checkpoint every epoch, SIGKILL it after epoch 2, resume it
    two epochs further, train the same run whole, and assert the two model.npz equal bit for
    bit and their losses equal. Returns (the epoch resumed at, killed run's history, whole's)."""
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "fastmlp", *argv, "--epochs", "100000",
                             "--checkpoint-every", "1", "--out", str(killed), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        wait_for_epoch(killed, 2, proc)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    at = load_checkpoint(killed)["epoch"]
    target = at + 2
    assert main(["train", "--resume", str(killed), "--epochs", str(target), "--quiet"]) == 0
    whole = tmp_path / "whole"
    assert main([*argv, "--epochs", str(target), "--out", str(whole), "--quiet"]) == 0
    with np.load(killed / "model.npz") as fa, np.load(whole / "model.npz") as fb:
        for name in PARAMS:
            assert np.array_equal(fa[name], fb[name]), name
    ha, hb = (json.loads((d / "history.json").read_text()) for d in (killed, whole))
    assert ha["train_loss"] == hb["train_loss"] and ha["final"] == hb["final"]
    assert ha["config"]["resumed_at_epoch"] == [at]
    return at, ha, hb
