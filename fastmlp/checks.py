"""Checks that data fit a model and a batch size fits the data: one clear FastMLPError each.

Below the trainer and the evaluation, so both (and the runner) ask the same questions.
"""

from __future__ import annotations

import warnings

import numpy as np

from .datasets import Dataset
from .errors import FastMLPError, InvalidTypeError, is_int
from .history import SPLITS
from .model import MLP


def check_compatible(model: MLP, dataset: Dataset) -> None:
    """A clear FastMLPError when ``dataset`` does not fit ``model`` (features, classes), or
    either is not what it should be (an :class:`InvalidInputError` then)."""
    if not isinstance(model, MLP):
        raise InvalidTypeError(f"the model must be a fastmlp.MLP, got {type(model).__name__}")
    if not isinstance(dataset, Dataset):  # e.g. a tuple (X, y)
        raise InvalidTypeError(f"the data must be a fastmlp.Dataset (load_dataset(...), or "
                               f"Dataset(name, Split(x, y), valid, test) for arrays of your "
                               f"own), got {type(dataset).__name__}")
    if dataset.n_features != model.n_in:
        raise FastMLPError(f"the data ({dataset.name}) has {dataset.n_features} features but the "
                           f"model takes {model.n_in}")
    if dataset.n_classes > model.n_out:
        raise FastMLPError(f"the data ({dataset.name}) has {dataset.n_classes} classes but the "
                           f"model outputs {model.n_out}")
    narrow = [p.x.dtype.name for p in (dataset.train, dataset.valid, dataset.test)
              if np.dtype(p.x.dtype).itemsize < np.dtype(model.dtype).itemsize]
    if narrow:  # widening is exact, but the values are the float32 ones: say so, once
        warnings.warn(f"the data ({dataset.name}) are {narrow[0]}: the {model.dtype} model "
                      f"trains on their {narrow[0]} values; load them with dtype="
                      f"'{model.dtype}' for {model.dtype} features", stacklevel=3)
    # hand-built splits are not checked by the loaders, and the kernels index by label
    for split, part in zip(SPLITS, (dataset.train, dataset.valid, dataset.test), strict=True):
        y = np.asarray(part.y)
        if not len(y):
            continue
        if y.dtype.kind not in "iu":
            raise FastMLPError(f"the {split} labels of the data ({dataset.name}) must be "
                               f"integers, got {y.dtype}")
        if y.min() < 0 or y.max() >= model.n_out:
            raise FastMLPError(f"the {split} labels of the data ({dataset.name}) must lie in "
                               f"[0, {model.n_out}) for this model, got {y.min()} to {y.max()}")


def check_batch_size(batch_size: int | None, n_train: int, what: str = "batch_size") -> None:
    """A clear FastMLPError unless ``batch_size`` is None (full batch) or an integer in
    [1, n_train]: the part of its rule that needs the data (the rest is
    :data:`fastmlp.settings.RULES`'); ``what`` names it as the caller's user spells it (e.g.
    "--batch-size")."""
    if batch_size is None:
        return
    if not is_int(batch_size) or not 1 <= batch_size <= n_train:
        raise FastMLPError(f"{what} must be between 1 and the {n_train} training rows, "
                           f"got {batch_size!r}")
