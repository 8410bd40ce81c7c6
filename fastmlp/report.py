"""Writing results: history (JSON + CSV), loss/accuracy plots, the model, a summary table.

Every file goes through :func:`atomic_write` / :func:`atomic_path`: the bytes land in a hidden
temp file in the target's directory, are flushed and fsynced, then ``os.replace`` d over the
target. An interrupted run therefore leaves either the previous file or the complete new one,
never a truncated file under the final name. Checkpoints can reuse the same two helpers.

matplotlib is imported only inside :func:`plot_history`, so ``import fastmlp`` stays fast.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .history import METRICS, SPLITS, History
from .jsonsafe import json_clean
from .model import MLP
from .texttable import text_table

__all__ = ["HISTORY_JSON", "HISTORY_CSV", "LOSS_PNG", "ACCURACY_PNG", "MODEL_NPZ",
           "absolute_path", "atomic_path", "atomic_write", "format_summary", "plot_history",
           "save_model", "write_history", "write_json"]

HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
LOSS_PNG = "loss.png"
ACCURACY_PNG = "accuracy.png"
MODEL_NPZ = "model.npz"


# -- atomic files -------------------------------------------------------------------------------


def _new_temp_file(directory: Path, name: str) -> Path:
    """A new empty hidden file in ``directory``, created with mode 0o666 so that the umask
    applies as for a plain ``open(path, "w")`` (mkstemp gives 0o600; reading the umask would
    mean setting it, a race with other threads)."""
    for _ in range(100):
        tmp = directory / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"no free temporary file name next to {directory / name}")


def check_writable(directory: Path) -> None:
    """Create and remove a file in ``directory``: an OSError now if files cannot be written
    there (read-only mount, permissions), rather than after training."""
    _new_temp_file(directory, "write-check").unlink()


def _naming(exc: OSError, target: Path) -> OSError:
    """The same error, naming the file the user asked for rather than our hidden temp file."""
    return type(exc)(exc.errno, exc.strerror, str(target))


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable; not every platform/filesystem allows it, so best effort."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on a clean exit move it over ``path`` atomically.

    For writers that want a file name rather than a file object (``MLP.save``, ``np.save``):
    write the temp path inside the ``with`` block. The file is fsynced, given the mode a fresh
    ``open`` would give (or the old file's mode), and renamed with ``os.replace``. If the block
    raises, the temp file is removed and ``path`` is left exactly as it was.
    """
    target = Path(path)
    directory = target.parent
    try:
        tmp = _new_temp_file(directory, target.name)
    except OSError as exc:
        raise _naming(exc, target) from None
    try:
        yield tmp
        # The writer may have replaced the file or written through its own handle: reopen to fsync.
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):  # a replaced file keeps its mode
            os.chmod(tmp, target.stat().st_mode & 0o7777)
        os.replace(tmp, target)
    except BaseException as exc:  # KeyboardInterrupt too: never leave the temp file behind
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.filename is not None and str(exc.filename) == str(tmp):
            raise _naming(exc, target) from None
        raise
    _fsync_dir(directory)


def atomic_write(path: str | os.PathLike[str], writer: Callable[[IO[Any]], Any], *,
                 binary: bool = False, encoding: str = "utf-8", newline: str | None = None
                 ) -> Path:
    """Call ``writer(f)`` with ``f`` open on a temp file, then move it over ``path`` atomically.

    ``binary`` opens ``f`` in "wb" mode, else text mode with ``encoding`` and ``newline``. An
    exception inside ``writer`` leaves ``path`` untouched and no temp file behind. Returns the
    final path.
    """
    target = Path(path)
    with atomic_path(target) as tmp:
        if binary:
            with open(tmp, "wb") as f:
                writer(f)
                f.flush()
        else:
            with open(tmp, "w", encoding=encoding, newline=newline) as f:
                writer(f)
                f.flush()
    return target


# -- history ------------------------------------------------------------------------------------


def _csv_cell(value: float) -> str:
    """Shortest round-tripping repr; empty for NaN (a metric that was not evaluated)."""
    return repr(float(value)) if math.isfinite(value) else ""


def absolute_path(path: str | os.PathLike[str]) -> str:
    """``path`` as a run records it (e.g. its data file): ``~`` expanded and made absolute, so
    that it is found again from any directory."""
    return str(Path(path).expanduser().resolve())


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as strict, indented JSON (after :func:`~fastmlp.jsonsafe.json_clean`: no
    NaN, no NumPy types) with a final newline, atomically; return the path."""
    clean = json_clean(data)
    return atomic_write(path, lambda f: (json.dump(clean, f, indent=2, allow_nan=False),
                                         f.write("\n")))


def write_history(history: History, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``history.json`` (``History.to_dict()``) and ``history.csv`` into ``out_dir``.

    The CSV has columns ``epoch, train_loss, train_acc, valid_loss, valid_acc, test_loss,
    test_acc``, one row per epoch (epoch numbered from 1), an empty cell where a metric was not
    evaluated. Returns the two paths.
    """
    out = Path(out_dir)
    json_path = write_json(out / HISTORY_JSON, history.to_dict())

    def write_csv(f: IO[str]) -> None:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("epoch", *METRICS))
        columns = [getattr(history, key) for key in METRICS]
        for epoch, row in enumerate(zip(*columns, strict=True), start=1):
            w.writerow((epoch, *(_csv_cell(v) for v in row)))

    csv_path = atomic_write(out / HISTORY_CSV, write_csv, newline="")
    return json_path, csv_path


def save_model(model: MLP, path: str | os.PathLike[str],
               extra: dict[str, Any] | None = None) -> Path:
    """``model.save(path, extra)`` through a temp file, so a half-written model never appears."""
    target = Path(path)
    with atomic_path(target) as tmp:
        model.save(tmp, extra=extra)
    return target


# -- plots --------------------------------------------------------------------------------------


def _title(history: History, what: str) -> str:
    c = history.config
    if {"n_in", "n_hidden", "n_out"} <= c.keys():
        shape = f"{c['n_in']}-{c['n_hidden']}-{c['n_out']}"
        act = f" {c['activation']}" if "activation" in c else ""
        data = f"{c['dataset']}, " if "dataset" in c else ""
        return f"{what} ({data}MLP {shape}{act})"
    return what


def _plot_metric(history: History, metric: str, ylabel: str, title: str, path: Path) -> Path:
    # Figure + the Agg canvas directly, not pyplot: no global backend switch, no GUI, no figure
    # registry to leak, so this is safe inside a notebook or a long-running process too.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    plotted = 0
    for split in SPLITS:
        values = getattr(history, f"{split}_{metric}")
        points = [(i, v) for i, v in enumerate(values, start=1) if math.isfinite(v)]
        if not points:  # e.g. an .npz dataset with no test split
            continue
        xs, ys = zip(*points, strict=True)
        # Markers when points are few or sparse (--eval-every), else a plain line.
        marker = "o" if len(points) <= 30 or len(points) < len(values) else None
        ax.plot(xs, ys, label=split, marker=marker, markersize=3, linewidth=1.5)
        plotted += 1
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if plotted:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no evaluated epochs", ha="center", va="center",
                transform=ax.transAxes)
    atomic_write(path, lambda f: fig.savefig(f, format="png"), binary=True)
    return path


def plot_history(history: History, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``loss.png`` and ``accuracy.png`` (train/valid/test vs epoch, NaN points skipped)
    into ``out_dir``; return the two paths."""
    out = Path(out_dir)
    loss = _plot_metric(history, "loss", "average cross-entropy",
                        _title(history, "Loss"), out / LOSS_PNG)
    acc = _plot_metric(history, "acc", "accuracy", _title(history, "Accuracy"),
                       out / ACCURACY_PNG)
    return loss, acc


# -- summary ------------------------------------------------------------------------------------


def _last_finite(values: list[float]) -> float:
    return next((v for v in reversed(values) if math.isfinite(v)), math.nan)


def format_summary(history: History) -> str:
    """A short aligned table: final loss and accuracy per split, wall time, s/epoch, device.

    Uses ``history.final`` (measured after the last update); without it, the last evaluated
    per-epoch value.
    """

    def fmt(v: float, spec: str) -> str:
        return format(v, spec) if math.isfinite(v) else "n/a"

    rows = [("split", "loss", "accuracy")]
    for split in SPLITS:
        loss = history.final.get(f"{split}_loss", _last_finite(getattr(history, f"{split}_loss")))
        acc = history.final.get(f"{split}_acc", _last_finite(getattr(history, f"{split}_acc")))
        rows.append((split, fmt(loss, ".4f"), fmt(acc, ".4f")))
    epochs = history.epochs
    per_epoch = history.wall_time_s / epochs if epochs else math.nan
    info = [
        ("epochs", str(epochs)),
        ("wall time", f"{history.wall_time_s:.2f} s"),
        ("per epoch", f"{fmt(per_epoch, '.4g')} s"),
        ("device", history.device or "n/a"),
    ]
    return text_table(rows) + "\n\n" + text_table(info, n_left=2)
