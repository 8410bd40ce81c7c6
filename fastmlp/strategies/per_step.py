"""Minibatches, one Python-driven step each: gather the batch, the two products and the fused
head (``model.forward_backward``), the momentum step. Through the backend's ``xp``, so the
same code runs on the CPU and the GPU; the reference for the compiled strategies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..model import MLP
from ..sparse import SparseBatch
from .base import EpochStrategy, TrainingRows


class PerStep(EpochStrategy):
    """Batches of ``batch_size`` rows in an order drawn per epoch; owns the batch's rows
    (``Xb``, dense products) or their nonzeros (``sparse_batch``), labels ``yb`` and stats."""

    def __init__(self, model: MLP, rows: TrainingRows, velocity: Any, *, batch_size: int,
                 **kwargs: Any):
        super().__init__(model, rows, velocity, **kwargs)
        xp, B = model.backend.xp, batch_size
        self.batch_size = B
        self.yb = xp.empty(B, dtype=xp.int32)
        self.batch_stats = xp.zeros((1, 2), dtype=xp.float64)
        self.Xb = self.sparse_batch = None
        if rows.sparse is not None:  # the batch's rows in sparse form, no dense copy
            self.sparse_batch = SparseBatch(rows.sparse, B)
        else:
            self.Xb = model.backend.empty((B, model.n_in), model.dtype)

    def run_epoch(self, evaluate: bool,
                  progress: Callable[[float], None] | None = None) -> dict[str, float]:
        be, xp, B, rows = self.model.backend, self.model.backend.xp, self.batch_size, self.rows
        n_train = rows.n_train
        self.begin_epoch(evaluate)
        train_stats = self.stats[:1]  # (1, 2): the fused head's per-split stats
        # no copy where NumPy's default int is int64 (all but Windows before NumPy 2)
        order = be.asarray(self.rng.permutation(n_train).astype(np.int64, copy=False))
        sparse = self.sparse_batch
        xb = None
        for start in range(0, n_train, B):
            idx = order[start:start + B]
            nb = idx.shape[0]
            if sparse is None:
                xb = self.Xb[:nb]
                xp.take(rows.X, idx, axis=0, out=xb)
            else:
                sparse.gather(idx)
            xp.take(rows.y, idx, axis=0, out=self.yb[:nb])
            self.model.forward_backward(xb, self.yb[:nb], (nb,), nb, self.Z[:nb],
                                        self.batch_stats, sparse=sparse)
            self.step()
            train_stats += self.batch_stats  # stays on the device: no sync per step
        stats = be.to_host(self.stats)  # the epoch's one device->host read
        return self.epoch_metrics(stats, evaluate)
