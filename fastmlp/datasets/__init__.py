"""Loading datasets: bundled MNIST, the ECE421 notMNIST file, any ``.npz``, and synthetic blobs.

Every loader returns a :class:`Dataset` of three :class:`Split` s whose features ``x`` are an
(N, F) C-contiguous float32/float64 array and whose labels ``y`` are an (N,) int64 array in
``0 .. n_classes - 1``. Anything the user can fix (a missing file, a bad option, corrupt data)
raises :class:`fastmlp.errors.FastMLPError` with a one-line message.

Here: :func:`load_dataset`, by name. Its parts: ``splits`` (:class:`Split`, :class:`Dataset`,
the fingerprint, keeping the first training rows), ``idx`` (the IDX format, gzipped or raw),
``mnist`` (the bundled copy or a directory, checksums, the split), ``npz`` (notMNIST and any
``.npz``, with the checks of a user's features and labels), ``pixels`` (0..255 to [0, 1] or
[-1, 1]) and ``synthetic`` (seeded blobs).

The package depends only on NumPy, the standard library, :mod:`fastmlp.errors` and
:mod:`fastmlp.npyfile`, so it imports whatever state the rest of the package is in.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import FastMLPError, is_int
from .idx import parse_idx
from .mnist import MNIST_VALID_ROWS, load_mnist
from .npz import load_notmnist, load_npz, require_file
from .pixels import SCALES, scale_pixels
from .splits import Dataset, Split, TrainSizeError, data_fingerprint, take_train
from .synthetic import make_synthetic

__all__ = ["DATASET_NAMES", "DTYPES", "MNIST_VALID_ROWS", "SCALES", "Dataset", "Split",
           "TrainSizeError", "data_fingerprint", "load_dataset", "parse_idx", "scale_pixels"]

DATASET_NAMES = ("mnist", "notmnist", "npz", "synthetic")
DTYPES = ("float32", "float64")


def load_dataset(
    name: str,
    *,
    path: str | os.PathLike[str] | None = None,
    train_size: int | None = None,
    scale: str = "unit",
    dtype: str | None = None,
    seed: int = 0,
    n_train: int = 1000,
    n_valid: int = 200,
    n_test: int = 200,
    n_features: int = 784,
    n_classes: int = 10,
) -> Dataset:
    """Load a dataset by name.

    Names:

    - ``"mnist"``: the bundled MNIST (or ``path``, a directory with the four IDX files, gzipped or
      raw). Train = the first 50000 official training images, valid = the last 10000, test = the
      official 10000 test images; x is (N, 784). Checksums are verified (see ``SHA256SUMS``).
    - ``"notmnist"``: the ECE421 ``notMNIST.npz`` at ``path`` (keys ``images`` (N, 28, 28) and
      ``labels`` (N,)), split exactly as the course code does (shuffle with seed 521; train
      10000, valid 6000, test the rest), without touching NumPy's global RNG.
    - ``"npz"``: any ``.npz`` at ``path`` with ``x_train``, ``y_train`` and optionally
      ``x_valid``/``y_valid`` and ``x_test``/``y_test``; features are used as given (``scale`` is
      ignored) and flattened to (N, F); K = max label + 1 (at least 2).
    - ``"synthetic"``: ``n_classes`` Gaussian blobs in ``n_features`` dimensions with ``n_train``
      / ``n_valid`` / ``n_test`` rows, fully determined by ``seed``.

    ``train_size`` keeps the first N rows of the train split. ``scale`` maps pixels to [0, 1]
    (``"unit"``: x / 255) or [-1, 1] (``"symmetric"``: x / 127.5 - 1). ``dtype`` is ``"float32"``
    or ``"float64"``; None (the default) is float32, except for an ``.npz`` whose ``x_train`` is
    float64, kept in float64 (features used as given). ``seed`` and the ``n_*`` sizes are used
    by ``"synthetic"`` only.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in DATASET_NAMES:
        raise FastMLPError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASET_NAMES)}")
    if scale not in SCALES:
        raise FastMLPError(f"unknown scale {scale!r}; choose one of: {', '.join(SCALES)}")
    np_dtype = None if dtype is None else _float_dtype(dtype)
    if train_size is not None and (not is_int(train_size) or train_size < 1):
        raise FastMLPError(f"train_size must be a positive integer, got {train_size!r}")

    if key == "npz":
        return take_train(load_npz(require_file(path, key), np_dtype), train_size)
    np_dtype = np_dtype or np.dtype(np.float32)
    if key == "mnist":
        # Sliced before scaling: converting all 50000 rows to keep a few would waste time.
        return load_mnist(path, scale, np_dtype, train_size)
    if key == "notmnist":  # sliced while converting, as mnist
        return load_notmnist(require_file(path, key), scale, np_dtype, train_size)
    ds = make_synthetic(seed, n_train, n_valid, n_test, n_features, n_classes, np_dtype)
    return take_train(ds, train_size)


def _float_dtype(dtype: Any) -> np.dtype:
    dt: np.dtype | None = None
    # np.dtype(None) means float64; refuse it so a forgotten option is not silently accepted.
    if dtype is not None:
        try:
            dt = np.dtype(dtype)
        except TypeError:
            pass
    # Compared by name: `np.dtype(...) == None` is True (None reads as float64).
    if dt is None or dt.name not in DTYPES:
        raise FastMLPError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
    return dt
