"""fastmlp.run and RunConfig: one run from its config, the config recorded from the start."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import fastmlp
import fastmlp.runner as runner
from fastmlp.checkpoint import load_checkpoint

SMALL = dict(dataset="synthetic", hidden=8, epochs=3, lr=0.05, momentum=0.9, device="cpu",
             checkpoint_every=1)


def test_run_writes_the_outputs_and_records_the_config(tmp_path: Path) -> None:
    config = fastmlp.RunConfig(**SMALL, out=str(tmp_path / "run"))
    lines: list[str] = []
    result = fastmlp.run(config, log=lines.append)
    assert result.out_dir == tmp_path / "run" and result.history.epochs == 3
    assert any(line.startswith("model:    MLP") for line in lines)
    history = json.loads((result.out_dir / "history.json").read_text())
    assert history["config"]["run"] == config.to_dict()
    with np.load(result.out_dir / "model.npz") as f:
        assert json.loads(str(f["config"]))["run"]["hidden"] == 8
    assert load_checkpoint(result.out_dir)["config"] == config.checkpoint_record()


def test_the_history_written_on_ctrl_c_has_the_config(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    original = runner.train

    def stop(trainer, record):
        if trainer.epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(runner, "train", lambda *a, **kw: original(*a, callback=stop, **kw))
    config = fastmlp.RunConfig(**SMALL, out=str(tmp_path / "run"))
    with pytest.raises(runner.RunInterrupted) as info:
        fastmlp.run(config)
    assert info.value.epochs_done == 2 and info.value.checkpoint_epoch == 2
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["epochs"] == 2 and history["config"]["run"] == config.to_dict()


def test_run_without_saving_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = fastmlp.run(fastmlp.RunConfig(**SMALL), save=False)
    assert result.out_dir is None and not list(tmp_path.iterdir())
    assert result.history.config["run"]["epochs"] == 3


@pytest.mark.parametrize("changes, fragment", [
    (dict(hidden=0), "--hidden must be a positive integer"),
    (dict(lr=float("nan")), "--lr must be a finite number >= 0"),
    (dict(batch_size=0), "--batch-size must be an integer >= 1"),
    (dict(dataset="npz"), "--dataset npz needs --data-path"),
    (dict(data_path="x.npz"), "--dataset synthetic generates its data"),
    (dict(activation="tanh"), "--activation must be one of"),
    (dict(train_size=0), "--train-size must be a positive integer or 'all'"),
])
def test_config_errors_name_the_option(changes: dict, fragment: str) -> None:
    with pytest.raises(fastmlp.FastMLPError, match=fragment):
        fastmlp.RunConfig(**dict(SMALL, **changes))


def test_resume_config_reads_the_run_back(tmp_path: Path) -> None:
    config = fastmlp.RunConfig(**SMALL, out=str(tmp_path / "run"))
    fastmlp.run(config)
    again, resume = runner.resume_config(tmp_path / "run", {"epochs": 5})
    assert again == config.replace(epochs=5) and resume.checkpoint["epoch"] == 3
    assert fastmlp.run(again, resume=resume).history.epochs == 5
    with pytest.raises(fastmlp.FastMLPError, match="--lr 0.5 \\(recorded: 0.05\\)"):
        runner.resume_config(tmp_path / "run", {"lr": 0.5})
