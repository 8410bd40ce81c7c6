"""What every epoch strategy shares: the rows, the velocity, the minibatch order's generator,
the scratch of the evaluation passes, the momentum step, and the small interface the trainer
calls (:meth:`EpochStrategy.run_epoch`, :meth:`EpochStrategy.evaluate`, the state)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import FastMLPError
from ..evaluation import metrics, split_stats
from ..model import MLP
from ..sparse import SparseRows


@dataclass
class TrainingRows:
    """Every row on the device, train then valid then test, in one array: ``X`` (N×F) in the
    model's dtype, ``y`` (N,) int32, ``counts`` (rows per split) and ``ends`` (cumulative);
    ``sparse``: the same rows as their nonzeros when the plan's products are sparse."""

    X: Any
    y: Any
    counts: tuple[int, ...]
    ends: tuple[int, ...]
    sparse: SparseRows | None = None

    @property
    def n_train(self) -> int:
        return self.counts[0]


class EpochStrategy:
    """One way of running an epoch; subclasses own the buffers only they need.

    ``run_epoch(evaluate, progress)`` trains one epoch and returns its metrics;
    ``evaluate()`` measures all splits at the current weights; ``state_dict()`` /
    ``load_state_dict()`` carry what the strategy changes besides the parameters and the
    velocity (the minibatch order's generator), for checkpoints.
    """

    def __init__(self, model: MLP, rows: TrainingRows, velocity: Any, *, lr: float, mu: float,
                 seed: int, scratch_rows: int):
        self.model, self.rows, self.velocity = model, rows, velocity
        self.lr, self.mu = lr, mu
        xp = model.backend.xp
        # Z holds an epoch's rows (full batch), or a batch or a chunk of rows to evaluate
        self.Z = model.backend.empty((scratch_rows, model.n_hidden), model.dtype)
        # per-split (loss sum, correct) of an epoch, read to the host once
        self.stats = xp.zeros((3, 2), dtype=xp.float64)
        self.rng = np.random.default_rng(seed)  # minibatch order; host-side, so restorable
        self.kernels_ready = False  # compile_kernels has run

    # -- the interface ----------------------------------------------------------------------
    def run_epoch(self, evaluate: bool,
                  progress: Callable[[float], None] | None = None) -> dict[str, float]:
        """Train one epoch; its metrics (train from the gradient passes, valid and test at the
        weights before its updates when ``evaluate``, NaN otherwise). ``progress(fraction)``,
        where the strategy can, reports the fraction of a long epoch done."""
        raise NotImplementedError

    def compile_kernels(self) -> None:
        """Compile (or load) the strategy's own training kernel before the first epoch's
        evaluation, once: a first run's fused head meanwhile compiles in a second process
        (kernels/warmup.py), so the two compilations overlap. A call of no steps: nothing
        changes. None by default (the head and the products compile at their first use)."""
        self.kernels_ready = True

    def begin_epoch(self, evaluate: bool) -> Any:
        """Before an epoch's steps: the strategy's kernels compiled (once, :meth:`compile_kernels`),
        valid and test measured at the weights before the updates (into rows 1-2 of ``stats``)
        where ``evaluate``, and the train row ``stats[0]`` (2,) zeroed and returned."""
        self.compile_kernels()
        rows = self.rows
        if evaluate:
            self.forward_only(rows.ends[0], rows.ends[-1], out=self.stats)
        train_stats = self.stats[0]
        train_stats[...] = 0
        return train_stats

    def evaluate(self) -> dict[str, float]:
        """All six metrics at the current weights (one chunked forward pass over all rows)."""
        rows = self.rows
        return metrics(self.model.backend.to_host(self.forward_only(0, rows.ends[-1])),
                       rows.counts)

    def state_dict(self) -> dict[str, Any]:
        """``rng_state``: the minibatch order's generator (a JSON-ready dict)."""
        return {"rng_state": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (FastMLPError for an unusable one)."""
        rng = np.random.default_rng()
        try:
            rng.bit_generator.state = state["rng_state"]
        except (KeyError, TypeError, ValueError) as exc:
            raise FastMLPError(f"the state's random generator state is unusable: {exc}") from None
        self.rng = rng

    # -- shared pieces ----------------------------------------------------------------------
    def forward_only(self, start: int, stop: int, out: Any = None) -> Any:
        """Device (3×2) stats of rows [start, stop) split at the dataset's split ends (in
        ``out`` when given)."""
        rows = self.rows
        ends = tuple(min(max(e - start, 0), stop - start) for e in rows.ends)
        return split_stats(self.model, rows.X[start:stop], rows.y[start:stop], ends, self.Z,
                           out=out, sparse=rows.sparse, offset=start)

    def step(self) -> None:
        """The momentum update from the gradients in ``model.grads``."""
        self.model.backend.momentum(self.model.params, self.model.grads, self.velocity, self.lr,
                                    self.mu)

    def epoch_metrics(self, stats: Any, evaluate: bool) -> dict[str, float]:
        """The metrics of host (3×2) ``stats``: all splits, or train only."""
        rows = self.rows
        return metrics(stats, rows.counts if evaluate else (rows.n_train, 0, 0))
