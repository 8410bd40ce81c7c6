"""``.npz`` datasets: the ECE421 notMNIST file, split as the course does, and any ``.npz`` of
named splits; their features and labels checked as a user's data must be."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

from ..errors import FastMLPError, file_kind, probe_path
from ..npyfile import read_npz
from .pixels import scale_pixels
from .splits import Dataset, Split, check_train_size

# The ECE421 course split of notMNIST (seed 521; 10000 train, 6000 valid, the rest test).
NOTMNIST_SEED = 521
NOTMNIST_TRAIN_END = 10_000
NOTMNIST_VALID_END = 16_000

# An npz whose largest label exceeds both this and its row count holds ids, not class indices.
NPZ_MAX_SPARSE_CLASSES = 1000


def require_file(path: str | os.PathLike[str] | None, name: str) -> Path:
    """``path`` as a Path when it names a regular file; else a FastMLPError saying what it is
    (dataset ``name`` needs one)."""
    if path is None:
        raise FastMLPError(f"dataset {name!r} needs a path to its .npz file (path=...)")
    if not isinstance(path, (str, os.PathLike)):
        raise FastMLPError(f"path must be a file path (str or os.PathLike), got {path!r}")
    p = Path(path).expanduser()
    st = probe_path(p)
    if st is None:
        raise FastMLPError(f"file not found: {p}")
    if stat.S_ISDIR(st.st_mode):
        raise FastMLPError(f"expected a .npz file for dataset {name!r}, got a directory: {p}")
    if not stat.S_ISREG(st.st_mode):
        raise FastMLPError(f"expected a .npz file for dataset {name!r}, got {file_kind(st)} "
                           f"(not a regular file): {p}")
    return p


def _read_npz(p: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
    """{key: array} for the required and present optional keys; load errors -> FastMLPError."""
    arrays, names = read_npz(p, (*required, *optional))
    missing = [k for k in required if k not in arrays]
    if missing:
        raise FastMLPError(f"{p} is missing key(s) {', '.join(missing)} (it has: "
                           f"{', '.join(names) or 'none'})")
    return arrays


def _features(x: np.ndarray, dtype: np.dtype, where: str) -> np.ndarray:
    """(N, F) or (N, R, C) numeric -> (N, F') C-contiguous float ``dtype``; rejects NaN/inf."""
    if x.ndim not in (2, 3):
        raise FastMLPError(
            f"{where}: features must be 2-D (N, F) or 3-D (N, H, W), got shape {x.shape}"
        )
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise FastMLPError(f"{where}: features must be real numbers, got dtype {x.dtype}")
    flat = x.reshape(len(x), int(np.prod(x.shape[1:])))  # not -1: that fails for 0 rows
    if flat.shape[1] == 0:  # caught here, not later as a model with n_in 0
        raise FastMLPError(f"{where}: features have zero columns, got shape {x.shape}")
    with np.errstate(over="ignore"):  # overflow to inf is reported just below, as an error
        out = np.ascontiguousarray(flat, dtype=dtype)
    # Checked after the cast: float64 values beyond float32's range become inf there.
    if out.size and not np.isfinite(out).all():
        raise FastMLPError(f"{where}: features contain NaN or infinite values")
    return out


def _labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    """(N,) or (N, 1) integer(-valued) labels -> (N,) int64; negatives are rejected."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise FastMLPError(
            f"{where}: labels must be 1-D class indices (N,), got shape {y.shape} "
            "(one-hot labels? use argmax)"
        )
    if len(y) != n:
        raise FastMLPError(f"{where}: {n} feature rows but {len(y)} labels")
    if np.issubdtype(y.dtype, np.integer):  # bool is no np.integer: rejected below
        pass
    elif np.issubdtype(y.dtype, np.floating):
        # Labels saved as floats are fine when every value is a whole number.
        if y.size and not (np.isfinite(y).all() and (y == np.round(y)).all()):
            raise FastMLPError(f"{where}: labels must be integers, got non-integer values")
    else:
        raise FastMLPError(f"{where}: labels must be integers, got dtype {y.dtype}")
    # beyond int64 (uint64, large floats) a cast would wrap: name the value as stored
    if y.size and (int(y.max()) if y.dtype.kind in "iu" else float(y.max())) >= 2**63:
        raise FastMLPError(f"{where}: labels must be class indices 0..K-1, found {y.max()}")
    out = y.astype(np.int64)
    if out.size and out.min() < 0:
        raise FastMLPError(f"{where}: labels must be in 0..K-1, found {out.min()}")
    return out


def _check_range(split: Split, n_classes: int, where: str) -> None:
    if len(split) and int(split.y.max()) >= n_classes:
        raise FastMLPError(
            f"{where}: labels must be in 0..{n_classes - 1}, found {int(split.y.max())}"
        )


def load_notmnist(p: Path, scale: str, dtype: np.dtype, train_size: int | None) -> Dataset:
    """The ECE421 notMNIST file ``p`` (``images`` (N, 28, 28) or (N, 784), ``labels`` (N,)),
    split as the course does; the first ``train_size`` (default 10000) training rows."""
    arrays = _read_npz(p, ("images", "labels"))
    images, labels = arrays["images"], arrays["labels"]
    where = f"notMNIST {p}"
    if images.ndim not in (2, 3):
        raise FastMLPError(
            f"{where}: images must be (N, 28, 28) or (N, 784), got shape {images.shape}"
        )
    target = _labels(labels, len(images), where)
    n = len(images)
    if n <= NOTMNIST_VALID_END:
        raise FastMLPError(
            f"{where}: {n} rows, but the course split (train 10000, valid 6000, test the rest) "
            f"needs more than {NOTMNIST_VALID_END}"
        )
    # The course code seeds the global RNG then shuffles; a private RandomState(521) draws the
    # same MT19937 stream, so the order is identical without clobbering the user's global RNG.
    order = np.arange(n)
    np.random.RandomState(NOTMNIST_SEED).shuffle(order)
    n_train = NOTMNIST_TRAIN_END if train_size is None else train_size
    check_train_size(n_train, NOTMNIST_TRAIN_END, "notmnist")
    # only the rows kept are converted: train_size drops the end of the training split
    keep = np.concatenate([order[:n_train], order[NOTMNIST_TRAIN_END:]])
    # the course's x / 255 in float64, then cast (scale_pixels); uint8 pixels, the usual case,
    # need no checks and go straight through its lookup table, without float64 copies
    kept = images[keep]
    if kept.dtype != np.uint8 or kept[0].size == 0:
        kept = _features(kept, np.dtype(np.float64), where)
    data = scale_pixels(kept, scale, dtype)
    target = target[keep]
    end_valid = n_train + NOTMNIST_VALID_END - NOTMNIST_TRAIN_END
    ds = Dataset(
        name="notmnist",
        train=Split(data[:n_train], target[:n_train]),
        valid=Split(data[n_train:end_valid], target[n_train:end_valid]),
        test=Split(data[end_valid:], target[end_valid:]),
        n_classes=10,
    )
    for split_name in ("train", "valid", "test"):
        _check_range(getattr(ds, split_name), 10, f"{where} ({split_name})")
    return ds


def load_npz(p: Path, dtype: np.dtype | None) -> Dataset:
    """The splits in ``p`` (``x_train``, ``y_train``, optionally ``x_valid``/``y_valid`` and
    ``x_test``/``y_test``), features flattened to (N, F) of ``dtype`` (None: float64 if
    ``x_train`` is, else float32); K = max label + 1 (at least 2)."""
    arrays = _read_npz(p, ("x_train", "y_train"), ("x_valid", "y_valid", "x_test", "y_test"))
    if dtype is None:  # as given: float64 features stay float64
        dtype = np.dtype(np.float64 if arrays["x_train"].dtype == np.float64 else np.float32)
    for part in ("valid", "test"):
        have = [k for k in (f"x_{part}", f"y_{part}") if k in arrays]
        if len(have) == 1:
            other = f"y_{part}" if have[0].startswith("x") else f"x_{part}"
            raise FastMLPError(f"{p} has {have[0]} but is missing key {other}")
    splits: dict[str, Split] = {}
    for part in ("train", "valid", "test"):
        if f"x_{part}" not in arrays:
            continue
        where = f"{p} ({part})"
        x = _features(arrays[f"x_{part}"], dtype, where)
        splits[part] = Split(x, _labels(arrays[f"y_{part}"], len(x), where))
    width = splits["train"].x.shape[1]
    if len(splits["train"]) == 0:
        raise FastMLPError(f"{p}: x_train has no rows")
    for part, split in splits.items():
        if split.x.shape[1] != width:
            raise FastMLPError(
                f"{p}: x_{part} has {split.x.shape[1]} features but x_train has {width}"
            )
    empty = Split(np.empty((0, width), dtype=dtype), np.empty(0, dtype=np.int64))
    n_classes = max(2, 1 + max((int(s.y.max()) for s in splits.values() if len(s)), default=0))
    n_rows = sum(len(s) for s in splits.values())
    if n_classes > max(n_rows, NPZ_MAX_SPARSE_CLASSES):
        # K = max label + 1 would build a huge output layer: these are ids, not class indices.
        raise FastMLPError(
            f"{p}: labels must be class indices 0..K-1, but the largest is {n_classes - 1} for "
            f"{n_rows} rows (remap them, e.g. with numpy.unique(y, return_inverse=True))"
        )
    return Dataset(
        name="npz",
        train=splits["train"],
        valid=splits.get("valid", empty),
        test=splits.get("test", empty),
        n_classes=n_classes,
    )
