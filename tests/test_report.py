"""Tests for fastmlp.report: history JSON/CSV, plots, the summary table, atomic writes."""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp.report import (
    atomic_path,
    atomic_write,
    format_summary,
    plot_history,
    save_model,
    write_history,
)
from fastmlp.train import METRICS, History

NAN = math.nan


def make_history() -> History:
    """Five epochs; valid/test measured every other epoch (NaN between), as eval_every=2 gives."""
    h = History(device="cpu (numpy, fused kernels)", wall_time_s=2.5,
                config={"n_in": 784, "n_hidden": 32, "n_out": 10, "activation": "relu",
                        "dataset": "mnist", "lr": 0.1, "batch_size": None})
    for e in range(5):
        evaluated = e % 2 == 0
        h.append({"train_loss": 2.0 - 0.3 * e, "train_acc": 0.2 + 0.1 * e,
                  "valid_loss": 2.1 - 0.25 * e if evaluated else NAN,
                  "valid_acc": 0.15 + 0.1 * e if evaluated else NAN,
                  "test_loss": 2.2 - 0.2 * e if evaluated else NAN,
                  "test_acc": 0.1 + 0.1 * e if evaluated else NAN})
    h.final = {"train_loss": 0.75, "train_acc": 0.65, "valid_loss": 0.9, "valid_acc": 0.6,
               "test_loss": 1.0, "test_acc": 0.55}
    return h


def assert_nan_equal(a: list[float], b: list[float]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert (math.isnan(x) and math.isnan(y)) or x == y


# -- history.json / history.csv -----------------------------------------------------------------


def test_history_json_round_trips(tmp_path: Path) -> None:
    h = make_history()
    json_path, _ = write_history(h, tmp_path)
    assert json_path == tmp_path / "history.json"
    text = json_path.read_text()
    assert "NaN" not in text  # strict JSON: not-evaluated metrics are null
    data = json.loads(text)
    for key in (*METRICS, "final", "config", "wall_time_s", "device", "epochs"):
        assert key in data, key
    assert data["epochs"] == 5
    assert data["valid_loss"][1] is None and data["valid_loss"][0] == pytest.approx(2.1)
    assert data["config"]["batch_size"] is None and data["device"] == h.device
    back = History.from_dict(data)
    for key in METRICS:
        assert_nan_equal(getattr(back, key), getattr(h, key))
    assert back.final == h.final
    assert back.config == h.config and back.wall_time_s == h.wall_time_s
    assert back.device == h.device and back.epochs == h.epochs


def test_history_json_handles_numpy_and_nonfinite_config(tmp_path: Path) -> None:
    h = make_history()
    h.config.update(seed=np.int64(3), lr=np.float32(0.5), bad=float("inf"), path=tmp_path)
    json_path, _ = write_history(h, tmp_path)
    config = json.loads(json_path.read_text())["config"]
    assert config["seed"] == 3 and config["lr"] == 0.5
    assert config["bad"] is None and config["path"] == str(tmp_path)


def test_history_csv_rows_columns_and_empty_nan(tmp_path: Path) -> None:
    h = make_history()
    _, csv_path = write_history(h, tmp_path)
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", *METRICS]
    assert len(rows) == 1 + h.epochs
    assert [r[0] for r in rows[1:]] == ["1", "2", "3", "4", "5"]
    for i, row in enumerate(rows[1:]):
        assert len(row) == 7
        for key, cell in zip(METRICS, row[1:], strict=True):
            value = getattr(h, key)[i]
            if math.isnan(value):
                assert cell == ""
            else:
                assert float(cell) == value  # full precision
    assert rows[2][3] == "" and rows[2][1] != ""  # epoch 2: valid not evaluated, train is


# -- plots --------------------------------------------------------------------------------------


def test_plot_history_writes_valid_pngs(tmp_path: Path, png_size, assert_no_temp_files) -> None:
    loss, acc = plot_history(make_history(), tmp_path)
    assert (loss, acc) == (tmp_path / "loss.png", tmp_path / "accuracy.png")
    for path in (loss, acc):
        width, height = png_size(path)
        assert width >= 300 and height >= 200
        assert path.stat().st_size > 5000  # axes, curves and text, not an empty canvas
    assert_no_temp_files(tmp_path)


def test_plot_history_without_any_evaluated_split(tmp_path: Path, png_size) -> None:
    h = History()
    for _ in range(3):
        h.append(dict.fromkeys(METRICS, NAN))
    loss, acc = plot_history(h, tmp_path)
    png_size(loss), png_size(acc)


def test_plotting_leaves_pyplot_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      png_size) -> None:
    # Not via matplotlib.get_backend(): that resolves the backend by importing pyplot itself.
    # Instead any import of pyplot fails, and so does a backend switch.
    import matplotlib

    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    monkeypatch.delattr(matplotlib, "pyplot", raising=False)  # `from matplotlib import pyplot`

    def use(*args, **kwargs):
        raise AssertionError(f"plot_history called matplotlib.use{args}")

    monkeypatch.setattr(matplotlib, "use", use)
    backend = dict.__getitem__(matplotlib.rcParams, "backend")  # raw: reading resolves it
    loss, acc = plot_history(make_history(), tmp_path)
    png_size(loss), png_size(acc)
    assert dict.__getitem__(matplotlib.rcParams, "backend") is backend


# -- summary ------------------------------------------------------------------------------------


def test_format_summary_table() -> None:
    text = format_summary(make_history())
    lines = text.splitlines()
    assert lines[0].split() == ["split", "loss", "accuracy"]
    assert lines[1].split() == ["train", "0.7500", "0.6500"]
    assert lines[3].split() == ["test", "1.0000", "0.5500"]
    # the numbers line up under their headers
    assert len({len(line) for line in lines[:4]}) == 1
    assert "2.50 s" in text and "0.5 s" in text  # wall time and seconds per epoch (2.5 / 5)
    assert "cpu (numpy, fused kernels)" in text


def test_format_summary_marks_missing_splits() -> None:
    h = make_history()
    h.final["test_loss"] = h.final["test_acc"] = NAN
    test_line = next(line for line in format_summary(h).splitlines() if line.startswith("test"))
    assert test_line.split() == ["test", "n/a", "n/a"]


# -- atomic writes ------------------------------------------------------------------------------


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    atomic_write(target, lambda f: f.write("old"))
    atomic_write(target, lambda f: f.write("new"))
    assert target.read_text() == "new"
    atomic_write(tmp_path / "b.bin", lambda f: f.write(b"\x00\x01"), binary=True)
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "out.txt"]


def test_atomic_write_failure_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "history.json"
    target.write_text("complete old contents")

    def broken(f):
        f.write("half of the new")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(target, broken)
    assert target.read_text() == "complete old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]


def test_atomic_write_failure_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "x.csv", lambda f: (_ for _ in ()).throw(KeyboardInterrupt))
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_mode_of_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "m.txt"
    target.write_text("x")
    target.chmod(0o705)  # execute bits: no fresh file gets them, whatever the umask
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".m.txt.")
        tmp.write_text("y")
    assert target.read_text() == "y" and target.stat().st_mode & 0o777 == 0o705


def test_atomic_write_errors_name_the_target_not_the_temp_file(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_dir" / "history.json"
    with pytest.raises(FileNotFoundError) as excinfo:
        atomic_write(missing, lambda f: f.write("x"))
    assert excinfo.value.filename == str(missing)
    with pytest.raises(IsADirectoryError) as excinfo:  # fails inside, at the rename
        (tmp_path / "d").mkdir()
        atomic_write(tmp_path / "d", lambda f: f.write("x"))
    assert excinfo.value.filename == str(tmp_path / "d")
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no temp file left


def test_atomic_path_gives_a_new_file_the_umask_mode(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # what open(path, "w") would give (0o666 minus the umask), not mkstemp's 0o600; an unusual
    # umask, so that a hard-coded 0o644 (the common result) would fail
    old = os.umask(0o027)
    try:
        with monkeypatch.context() as m:
            # without touching the process umask: setting it, even briefly, races other threads
            m.setattr(os, "umask", lambda mask: pytest.fail("atomic_write set the umask"))
            atomic_write(tmp_path / "new.txt", lambda f: f.write("x"))
    finally:
        os.umask(old)
    assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o640


def test_save_model_atomic_and_loadable(tmp_path: Path, assert_no_temp_files) -> None:
    model = fastmlp.MLP(6, 4, 3, seed=1)
    path = save_model(model, tmp_path / "model.npz", extra={"lr": 0.1, "epochs": np.int64(7)})
    assert_no_temp_files(tmp_path)
    loaded = fastmlp.MLP.load(path)
    x = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    with np.load(path) as f:
        config = json.loads(str(f["config"]))
    assert config["lr"] == 0.1 and config["epochs"] == 7 and config["n_hidden"] == 4
