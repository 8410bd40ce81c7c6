"""A dataset's containers: :class:`Split` and :class:`Dataset`, their fingerprint, and keeping
the first rows of a training split (:func:`take_train`, with the check every loader makes)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..errors import FastMLPError


@dataclass(frozen=True)
class Split:
    """One split: features ``x`` (N, F) float32/float64, C-contiguous; labels ``y`` (N,) int64."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        # Catch hand-built splits with mismatched shapes here rather than deep inside training.
        if self.x.ndim != 2 or self.y.ndim != 1 or len(self.x) != len(self.y):
            raise FastMLPError(
                f"a split needs x of shape (N, F) and y of shape (N,); got x {self.x.shape} "
                f"and y {self.y.shape}"
            )

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Dataset:
    """A named dataset: ``train``, ``valid`` and ``test`` splits sharing F features, K classes."""

    name: str
    train: Split
    valid: Split
    test: Split
    n_classes: int = 10

    def __post_init__(self) -> None:
        widths = {s.x.shape[1] for s in (self.train, self.valid, self.test)}
        if len(widths) != 1:
            raise FastMLPError(
                f"dataset {self.name!r}: splits have different feature counts {sorted(widths)}"
            )

    @property
    def n_features(self) -> int:
        """F, the number of input features (columns of every split's ``x``)."""
        return int(self.train.x.shape[1])

    def summary(self) -> str:
        """One line, e.g. ``mnist: train 50000, valid 10000, test 10000; 784 features, ...``."""
        return (
            f"{self.name}: train {len(self.train)}, valid {len(self.valid)}, "
            f"test {len(self.test)}; {self.n_features} features, {self.n_classes} classes, "
            f"{self.train.x.dtype}"
        )


def data_fingerprint(dataset: Dataset) -> str:
    """A short hex digest of ``dataset``'s data: every split's features and labels (bytes,
    dtypes, shapes) and its class count. Equal for the same data however it was loaded; a
    changed value anywhere changes it. SHA-1 for speed, not for security (a run records it so
    that ``--resume`` can refuse other data; ~0.2 s for MNIST's 70000 rows)."""
    digest = hashlib.sha1(usedforsecurity=False)
    for split in (dataset.train, dataset.valid, dataset.test):
        for array in (split.x, split.y):
            digest.update(f"{array.dtype.str}{array.shape};".encode())
            digest.update(np.ascontiguousarray(array))
    digest.update(f"classes {dataset.n_classes}".encode())
    return digest.hexdigest()[:20]


class TrainSizeError(FastMLPError):
    """``train_size`` outside 1..``rows``, the training rows there are: a caller whose option
    has another name can say so (``fastmlp gradcheck --samples``)."""

    rows: int


def check_train_size(train_size: int, n: int, name: str) -> None:
    """A clear FastMLPError unless ``train_size`` is in [1, n], the training rows of ``name``."""
    if not 1 <= train_size <= n:
        exc = TrainSizeError(f"train_size must be between 1 and {n} for {name!r}, got "
                             f"{train_size}")
        exc.rows = n  # an attribute, not an __init__ argument: the error still pickles
        raise exc


def take_train(ds: Dataset, train_size: int | None) -> Dataset:
    """Keep the first ``train_size`` training rows (copied, so the rest can be freed)."""
    if train_size is None:
        return ds
    check_train_size(train_size, len(ds.train), ds.name)
    train = Split(ds.train.x[:train_size].copy(), ds.train.y[:train_size].copy())
    return Dataset(ds.name, train, ds.valid, ds.test, ds.n_classes)
