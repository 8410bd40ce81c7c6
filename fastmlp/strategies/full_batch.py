"""Full batch (the course): every training row in one gradient step per epoch.

One product X·Wh over all rows serves the gradient step and the evaluation of the three splits,
at the same weights (those before the update, as the course code records them).
"""

from __future__ import annotations

from collections.abc import Callable

from .base import EpochStrategy


class FullBatch(EpochStrategy):
    """One forward/backward pass over the training rows (and, when evaluating, the others) in
    the scratch ``Z`` sized for every row, then one momentum step."""

    def run_epoch(self, evaluate: bool,
                  progress: Callable[[float], None] | None = None) -> dict[str, float]:
        rows = self.rows
        n_train = rows.n_train
        n = rows.ends[-1] if evaluate else n_train
        ends = rows.ends if evaluate else (n_train, n_train, n_train)
        self.model.forward_backward(rows.X[:n], rows.y[:n], ends, n_train, self.Z[:n],
                                    self.stats, sparse=rows.sparse)
        self.step()
        stats = self.model.backend.to_host(self.stats)  # the epoch's one device->host read
        return self.epoch_metrics(stats, evaluate)
