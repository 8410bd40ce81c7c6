"""Measuring a model on rows: the summed loss and correct count per split, in chunks.

All rows (train, valid, test) sit in one contiguous device array (:func:`all_rows`), so one
chunked forward pass measures the three splits; the epoch strategies and :func:`evaluate` share
:func:`split_stats`.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from .checks import check_compatible
from .datasets import Dataset
from .errors import InvalidInputError
from .history import SPLITS
from .model import CHUNK_ROWS, MLP
from .sparse import SparseRows


def metrics(stats: np.ndarray, counts: tuple[int, ...]) -> dict[str, float]:
    """{split}_loss / {split}_acc from summed (loss, correct) rows; NaN for an empty split."""
    out = {}
    for (loss_sum, correct), n, split in zip(stats, counts, SPLITS, strict=True):
        out[f"{split}_loss"] = float(loss_sum) / n if n else math.nan
        out[f"{split}_acc"] = float(correct) / n if n else math.nan
    return out


def split_stats(model: MLP, X: Any, y: Any, ends: tuple[int, ...], Z: Any,
                out: Any = None, sparse: SparseRows | None = None, offset: int = 0) -> Any:
    """Device (S×2) float64 summed loss and correct count per split of device rows X (N×F),
    y (N,), in ``out`` (overwritten) or a new array.

    Split s is rows [ends[s-1], ends[s]). Forward passes run in chunks of Z's rows (Z: scratch
    (C×H)), so evaluation needs no N×H buffer. No device->host read: the caller makes one
    (``backend.to_host``), possibly together with other stats. ``sparse``: X is rows
    [offset, offset + N) of these, whose products then replace the dense ones.
    """
    xp, N, chunk = model.backend.xp, X.shape[0], Z.shape[0]
    total = xp.empty((len(ends), 2), dtype=xp.float64) if out is None else out

    def rows(a: int, b: int) -> Any:
        return None if sparse is None else sparse.between(offset + a, offset + b)

    if 0 < N <= chunk:  # one pass: the head writes (overwrites) the sums itself
        model.forward_backward(X, y, ends, 0, Z[:N], total, sparse=rows(0, N))
        return total
    total[...] = 0
    stats = xp.empty_like(total)  # the head overwrites it per chunk
    for a in range(0, N, chunk):
        b = min(N, a + chunk)
        local = tuple(min(max(e - a, 0), b - a) for e in ends)
        model.forward_backward(X[a:b], y[a:b], local, 0, Z[:b - a], stats, sparse=rows(a, b))
        total += stats
    return total


def all_rows(model: MLP, dataset: Dataset) -> tuple[Any, Any, tuple[int, ...], tuple[int, ...]]:
    """Every row on the device, train then valid then test, in one array: X (N×F) in the
    model's dtype, y (N,) int32; with the split sizes and their cumulative ends. Read only."""
    be = model.backend
    splits = (dataset.train, dataset.valid, dataset.test)
    counts = tuple(len(s) for s in splits)
    ends = tuple(int(e) for e in np.cumsum(counts))

    def joined(arrays):  # one split (MLPClassifier.fit), or consecutive rows of one array
        # (the MNIST loader's): no copy of them on the CPU
        rows = [a for a in arrays if len(a)]
        if len(rows) == 1:
            return rows[0]
        spanned = consecutive_rows(rows)
        return np.concatenate(arrays) if spanned is None else spanned

    with np.errstate(over="ignore"):  # a value past the dtype: check_finite_rows names it
        X = be.asarray(joined([s.x for s in splits]), dtype=model.dtype)
    y = be.asarray(joined([s.y for s in splits]), dtype=np.int32)
    return X, y, counts, ends


def consecutive_rows(arrays: list[np.ndarray]) -> np.ndarray | None:
    """The rows of ``arrays`` (each C-contiguous, n_i × F, in order) as one view, where they lie
    one after another in one C-contiguous array; else None."""
    base = arrays[0].base
    if not (isinstance(base, np.ndarray) and base.ndim == 2 and base.flags.c_contiguous):
        return None
    row = base.strides[0]
    for a, b in itertools.pairwise(arrays):
        if (b.base is not base or a.dtype != base.dtype or b.dtype != base.dtype
                or a.ndim != 2 or b.ndim != 2 or a.shape[1] != base.shape[1]
                or b.shape[1] != base.shape[1] or not a.flags.c_contiguous
                or not b.flags.c_contiguous
                or a.__array_interface__["data"][0] + a.shape[0] * row
                != b.__array_interface__["data"][0]):
            return None
    start = (arrays[0].__array_interface__["data"][0] - base.__array_interface__["data"][0])
    if start % row:
        return None
    first = start // row
    return base[first:first + sum(a.shape[0] for a in arrays)]


def check_finite_rows(model: MLP, X: Any, counts: tuple[int, ...], name: str) -> None:
    """A clear FastMLPError naming the split, row and column of the first NaN or infinite
    feature in device rows X (train, valid then test rows, ``counts`` of each, as the model's
    dtype sees them: a float64 1e300 is inf in float32). ``name``: the dataset's.

    One reduction over X and one device->host read when every value is finite (a NaN or inf
    makes the sum non-finite); only then is the first bad entry looked for."""
    be, xp = model.backend, model.backend.xp
    if X.size == 0:
        return
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(be.to_host(xp.sum(X, dtype=xp.float64)))
    if math.isfinite(total):
        return
    bad_rows = be.to_host(xp.flatnonzero(~xp.isfinite(X).all(axis=1)))
    if not len(bad_rows):  # finite values whose sum overflowed: nothing wrong
        return
    row = int(bad_rows[0])
    column = int(be.to_host(xp.flatnonzero(~xp.isfinite(X[row])))[0])
    value = float(be.to_host(X[row, column]))
    ends = np.cumsum(counts)
    s = int(np.searchsorted(ends, row, side="right"))
    local = row - (int(ends[s - 1]) if s else 0)
    raise InvalidInputError(f"the {SPLITS[s]} features of the data ({name}) are not finite: "
                            f"{value} at row {local}, column {column} (as {model.dtype}), "
                            f"{len(bad_rows)} row(s) in all; training needs finite inputs")


def evaluate(model: MLP, dataset: Dataset) -> dict[str, float]:
    """``{split}_loss`` and ``{split}_acc`` of ``model`` on every split of ``dataset`` at the
    current weights (NaN for an empty split), measured as training measures them.

    All rows go to the device as one array; one chunked forward pass (scratch of at most
    :data:`~fastmlp.model.CHUNK_ROWS` rows × H) measures the three splits.
    """
    check_compatible(model, dataset)
    X, y, counts, ends = all_rows(model, dataset)
    check_finite_rows(model, X, counts, dataset.name)
    Z = model.backend.empty((max(1, min(CHUNK_ROWS, ends[-1])), model.n_hidden), model.dtype)
    return metrics(model.backend.to_host(split_stats(model, X, y, ends, Z)), counts)


