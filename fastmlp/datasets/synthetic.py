"""Synthetic data: seeded Gaussian blobs, for quick runs and tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import FastMLPError, is_int
from .splits import Dataset, Split

SYNTHETIC_SEPARATION = 8.0  # typical distance between class means, in noise standard deviations


def make_synthetic(
    seed: int,
    n_train: int,
    n_valid: int,
    n_test: int,
    n_features: int,
    n_classes: int,
    dtype: np.dtype,
) -> Dataset:
    """``n_classes`` unit-variance Gaussian blobs whose means sit ~8 noise std-devs apart."""
    checks: list[tuple[str, Any, int]] = [
        ("seed", seed, 0),
        ("n_train", n_train, 1),
        ("n_valid", n_valid, 0),
        ("n_test", n_test, 0),
        ("n_features", n_features, 1),
        ("n_classes", n_classes, 2),
    ]
    for arg, value, low in checks:
        if not is_int(value) or value < low:
            raise FastMLPError(f"synthetic: {arg} must be an integer >= {low}, got {value!r}")
    rng = np.random.default_rng(seed)
    # Means ~ N(0, s^2 / 2F) per coordinate put any two means ~s apart whatever F is, so the task
    # is equally easy at every width: two classes overlap with probability ~Phi(-s/2) ~ 3e-5.
    means = rng.standard_normal((n_classes, n_features)) * (
        SYNTHETIC_SEPARATION / np.sqrt(2.0 * n_features)
    )

    def draw(n: int) -> Split:
        y = rng.permutation(np.arange(n) % n_classes).astype(np.int64)  # balanced classes
        x = means[y] + rng.standard_normal((n, n_features))
        return Split(np.ascontiguousarray(x, dtype=dtype), y)

    train, valid, test = draw(n_train), draw(n_valid), draw(n_test)
    return Dataset("synthetic", train, valid, test, n_classes=n_classes)
