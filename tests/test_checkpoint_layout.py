"""The checkpoint's record layout: the run's settings stored once (in the history's config), and
checkpoints of the earlier layout (version 1, settings also stored flat in meta["config"]) still
resuming bit for bit.

tests/data/checkpoint_v1/checkpoint.npz was written by fastmlp at commit a03f9bf (version 1):
``fastmlp train --dataset synthetic --hidden 2 --epochs 2 --batch-size 50 --lr 0.05
--momentum 0.9 --out DIR --quiet --checkpoint-every 1``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import fastmlp.plan
from fastmlp.checkpoint import CHECKPOINT_NPZ, VERSION, load_checkpoint
from fastmlp.cli import main
from fastmlp.config import RunConfig

V1 = Path(__file__).resolve().parent / "data" / "checkpoint_v1" / CHECKPOINT_NPZ
OPTIONS = ["--dataset", "synthetic", "--hidden", "2", "--batch-size", "50", "--lr", "0.05",
           "--momentum", "0.9", "--checkpoint-every", "1"]


def meta_of(path: Path) -> dict:
    with np.load(path) as f:
        return json.loads(str(f["meta"]))


def model_arrays(directory: Path) -> dict[str, np.ndarray]:
    with np.load(directory / "model.npz") as f:
        return {name: f[name] for name in ("Wh", "bh", "Wo", "bo")}


def test_a_run_records_its_settings_once(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["train", *OPTIONS, "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    meta = meta_of(out / CHECKPOINT_NPZ)
    assert meta["version"] == VERSION == 2
    assert "config" not in meta  # the history's config["run"] is the one copy
    run = meta["history"]["config"]["run"]
    ck = load_checkpoint(out)
    # what --resume reads is derived from it, as version 1 stored it flat
    assert ck["config"] == RunConfig.from_record(run).checkpoint_record()
    assert ck["config"]["argv"] == run["command"] and ck["config"]["hidden"] == 2


def test_a_version_1_checkpoint_resumes_bit_for_bit(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # its epochs ran the compiled small-batch loop, which the plan now leaves to the compiled
    # minibatch epochs at this B: both runs here keep the plan it was written under, so they
    # compare bit for bit (resumed by this fastmlp's plan, epoch 3 differs by rounding only)
    monkeypatch.setattr(fastmlp.plan, "compiled_choice",
                        lambda *args: ("compiled-steps", "the plan of a03f9bf"))
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(V1, old / CHECKPOINT_NPZ)
    ck = load_checkpoint(old)
    assert ck["version"] == 1 and ck["epoch"] == 2
    assert ck["config"]["hidden"] == 2 and ck["config"]["argv"].startswith("fastmlp train")
    assert main(["train", "--resume", str(old), "--epochs", "3", "--quiet"]) == 0
    fresh = tmp_path / "fresh"
    assert main(["train", *OPTIONS, "--epochs", "3", "--out", str(fresh), "--quiet"]) == 0
    resumed, straight = model_arrays(old), model_arrays(fresh)
    for name in straight:
        np.testing.assert_array_equal(resumed[name], straight[name], err_msg=name)
    again = load_checkpoint(old)  # rewritten in the new layout, the same run
    assert again["version"] == VERSION and again["epoch"] == 3
    assert again["config"] == dict(ck["config"], epochs=3)
    np.testing.assert_array_equal(again["velocity"], load_checkpoint(fresh)["velocity"])
    history = json.loads((old / "history.json").read_text())
    assert history["config"]["resumed_at_epoch"] == [2]
    assert history["config"]["plan"]["strategy"] == "compiled-steps"
