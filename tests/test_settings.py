"""One rule per setting, one config: every entry point (RunConfig, the command line, train(),
Trainer, the estimator) refuses a bad value through the same rule with the same words, the
settings flow as one RunConfig / TrainSettings, and a run records them once."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import fastmlp
import fastmlp.settings as settings
from fastmlp.checkpoint import CHECKPOINT_NPZ, load_checkpoint
from fastmlp.cli import main
from fastmlp.config import LEGACY_FLAT_KEYS, option, recorded_run
from fastmlp.errors import InvalidInputError
from fastmlp.estimator import MLPClassifier
from fastmlp.settings import Rule, TrainSettings

RNG = np.random.default_rng(0)
X = RNG.random((30, 5))
Y = np.arange(30) % 3
DATA = fastmlp.Dataset("hand-built", fastmlp.Split(X.astype(np.float32), Y),
                       fastmlp.Split(X[:0].astype(np.float32), Y[:0]),
                       fastmlp.Split(X[:0].astype(np.float32), Y[:0]), n_classes=3)

# (setting, bad value, the words of its rule): each entry point names the setting its own way
BAD = [
    ("lr", float("nan"), "must be a finite number >= 0, got nan"),
    ("momentum", -0.5, "must be a finite number >= 0, got -0.5"),
    ("velocity_init", float("inf"), "must be a finite number >= 0, got inf"),
    ("epochs", 0, "must be a positive integer, got 0"),
    ("eval_every", 0, "must be a positive integer, got 0"),
    ("seed", -1, "must be an integer >= 0, got -1"),
    ("batch_size", 0, "must be an integer >= 1, got 0"),
    ("checkpoint_every", -1, "must be an integer >= 0, got -1"),
    ("compiled", "yes", "must be True, False or None, got 'yes'"),
    ("sparse", "yes", "must be one of auto, on, off, got 'yes'"),
]
ESTIMATOR_KEYS = set(MLPClassifier().get_params())
TRAINER_KEYS = set(settings.TRAIN_KEYS) - {"epochs", "checkpoint_every"}


def _raises(call, message: str) -> InvalidInputError:
    with pytest.raises(InvalidInputError, match=f"^{re.escape(message)}$") as info:
        call()
    assert isinstance(info.value, ValueError)  # what scikit-learn's conventions expect
    return info.value


@pytest.mark.parametrize("key, value, words", BAD, ids=[row[0] for row in BAD])
def test_every_entry_point_refuses_a_bad_value_in_the_same_words(key, value, words) -> None:
    _raises(lambda: fastmlp.RunConfig(dataset="synthetic", **{key: value}),
            f"{option(key)} {words}")
    _raises(lambda: TrainSettings(**{key: value}), f"{key} {words}")
    _raises(lambda: fastmlp.train(fastmlp.MLP(5, 4, 3), DATA, **{"epochs": 1, key: value}),
            f"{key} {words}")
    if key in TRAINER_KEYS:
        _raises(lambda: fastmlp.Trainer(fastmlp.MLP(5, 4, 3), DATA, **{key: value}),
                f"{key} {words}")
    if key in ESTIMATOR_KEYS:
        _raises(lambda: MLPClassifier(**{"hidden": 4, "epochs": 1, key: value}).fit(X, Y),
                f"MLPClassifier: {key} {words}")


@pytest.mark.parametrize("key, text, words", [
    ("epochs", "0", "must be a positive integer, got 0"),
    ("seed", "-1", "must be an integer >= 0, got -1"),
    ("lr", "-1", "must be a finite number >= 0, got -1.0"),
    ("batch_size", "0", "must be an integer >= 1, got 0"),
    ("train_size", "0", "must be a positive integer or 'all', got 0"),
])
def test_the_command_line_parses_with_the_same_rules(key, text, words, capsys,
                                                     tmp_path: Path) -> None:
    assert main(["train", f"--{key.replace('_', '-')}", text, "--out", str(tmp_path)]) == 2
    assert f"argument {option(key)}: {words}" in capsys.readouterr().err


def test_changing_a_rule_changes_every_entry_point(monkeypatch, capsys, tmp_path: Path) -> None:
    # the proof there is one path: a stricter rule for lr reaches every entry point at once
    monkeypatch.setitem(settings.RULES, "lr", Rule("at most 1", lambda v: 0 <= v <= 1))
    _raises(lambda: fastmlp.RunConfig(lr=2.0), "--lr must be at most 1, got 2.0")
    _raises(lambda: fastmlp.train(fastmlp.MLP(5, 4, 3), DATA, epochs=1, lr=2.0),
            "lr must be at most 1, got 2.0")
    _raises(lambda: fastmlp.Trainer(fastmlp.MLP(5, 4, 3), DATA, lr=2.0),
            "lr must be at most 1, got 2.0")
    _raises(lambda: MLPClassifier(hidden=4, epochs=1, lr=2.0).fit(X, Y),
            "MLPClassifier: lr must be at most 1, got 2.0")
    assert main(["train", "--lr", "2", "--out", str(tmp_path)]) == 2
    assert "argument --lr: must be at most 1, got 2.0" in capsys.readouterr().err


def test_train_takes_a_config_or_keywords_not_both() -> None:
    config = fastmlp.RunConfig(dataset="synthetic", hidden=4, epochs=3, lr=0.05, momentum=0.9,
                               batch_size=7, seed=2)
    by_config = fastmlp.MLP(5, 4, 3, seed=2)
    history = fastmlp.train(by_config, DATA, config)
    assert history.config["run"] == config.to_dict() and history.epochs == 3
    by_settings = fastmlp.MLP(5, 4, 3, seed=2)
    recorded = fastmlp.train(by_settings, DATA, config.training).config["run"]
    assert recorded == config.training.to_dict() == TrainSettings(
        epochs=3, lr=0.05, momentum=0.9, batch_size=7, seed=2).to_dict()
    by_keywords = fastmlp.MLP(5, 4, 3, seed=2)
    fastmlp.train(by_keywords, DATA, epochs=3, lr=0.05, momentum=0.9, batch_size=7, seed=2)
    for other in (by_settings, by_keywords):  # the same training, to the bit
        np.testing.assert_array_equal(other.params, by_config.params)
    with pytest.raises(TypeError, match=r"not both \(config and lr, seed\)"):
        fastmlp.train(fastmlp.MLP(5, 4, 3), DATA, config, lr=0.1, seed=0)
    with pytest.raises(TypeError, match="train\\(\\) needs epochs=N"):
        fastmlp.train(fastmlp.MLP(5, 4, 3), DATA)
    with pytest.raises(TypeError, match="config must be a fastmlp.RunConfig or TrainSettings, "
                                        "got dict"):
        fastmlp.train(fastmlp.MLP(5, 4, 3), DATA, {"epochs": 1})


def test_a_run_records_its_settings_once(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic", "--hidden", "4", "--epochs", "2",
                 "--batch-size", "50", "--checkpoint-every", "1", "--out", str(out),
                 "--quiet"]) == 0
    history = json.loads((out / "history.json").read_text())["config"]
    with np.load(out / "model.npz") as f:
        model = json.loads(str(f["config"]))
    with np.load(out / CHECKPOINT_NPZ) as f:
        meta = json.loads(str(f["meta"]))
    assert "config" not in meta and "model" not in meta  # the history's config says both
    for config in (history, model, meta["history"]["config"]):
        assert not set(LEGACY_FLAT_KEYS) & config.keys()
        assert config["run"]["batch_size"] == 50 and config["run"]["epochs"] == 2
        assert config["n_hidden"] == 4 and config["plan"]["batch_size"] == 50
    # what evaluate and predict read of the run, derived from it
    assert recorded_run(model) == {"dataset": "synthetic", "data_path": None, "seed": 0,
                                   "scale": None}
    assert load_checkpoint(out)["model"] == fastmlp.MLP.load(out / "model.npz").config()


def test_files_of_the_earlier_layout_still_read(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic", "--train-size", "300", "--seed", "3",
                 "--hidden", "4", "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    model = fastmlp.MLP.load(out / "model.npz")
    # the settings flat, without "run", as fastmlp wrote model.npz before RunConfig
    flat = {key: value for key, value in model.saved_config.items() if key != "run"}
    flat.update(scale=None, data_path=None, lr=0.1, epochs=1, shuffle_seed=3)
    assert recorded_run(flat) == recorded_run(model.saved_config)
    old = tmp_path / "old.npz"
    model.save(old, extra=flat)
    capsys.readouterr()
    assert main(["evaluate", str(old), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dataset"] == "synthetic" and report["seed"] == 3
    assert report["train_size"] == 300 and report["splits"]["train"]["rows"] == 300


def test_a_resumed_old_layout_records_the_run_once(tmp_path: Path) -> None:
    v1 = Path(__file__).resolve().parent / "data" / "checkpoint_v1" / CHECKPOINT_NPZ
    run = tmp_path / "old"
    run.mkdir()
    shutil.copy(v1, run / CHECKPOINT_NPZ)
    old = load_checkpoint(run)["history"].config
    assert set(LEGACY_FLAT_KEYS) & old.keys()  # the fixture holds flat copies
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 0
    history = json.loads((run / "history.json").read_text())["config"]
    assert not set(LEGACY_FLAT_KEYS) & history.keys()
    assert history["run"]["epochs"] == 3 and history["resumed_at_epoch"] == [2]
