"""Epoch strategies: one class per way of running an epoch, each owning its buffers, all with
the interface of :class:`~fastmlp.strategies.base.EpochStrategy`. The
:class:`~fastmlp.plan.Plan` names the strategy; :func:`build` makes it.

- full_batch.py: :class:`FullBatch` (the course);
- per_step.py: :class:`PerStep` (minibatches, one step per Python iteration; CPU and GPU);
- compiled_steps.py: :class:`CompiledSteps` (minibatches as compiled calls of many whole
  per-step-path steps; B = 1 and small B × H);
- compiled_minibatch.py: :class:`CompiledMinibatch` (minibatches as blocked compiled epochs,
  2 ≤ B ≤ 512; the training rows in the form the plan's products name).
"""

from __future__ import annotations

from typing import Any

from ..errors import FastMLPError
from ..model import CHUNK_ROWS, MLP
from ..plan import Plan
from .base import EpochStrategy, TrainingRows
from .compiled_minibatch import CompiledMinibatch, rows_form
from .compiled_steps import CompiledSteps
from .full_batch import FullBatch
from .per_step import PerStep

__all__ = ["CompiledMinibatch", "CompiledSteps", "EpochStrategy", "FullBatch", "PerStep",
           "TrainingRows", "build"]

STRATEGY_CLASSES: dict[str, type[EpochStrategy]] = {
    "full-batch": FullBatch, "per-step": PerStep, "compiled-steps": CompiledSteps,
    "compiled-minibatch": CompiledMinibatch}


def build(plan: Plan, model: MLP, rows: TrainingRows, velocity: Any, *, lr: float, mu: float,
          seed: int) -> EpochStrategy:
    """The strategy ``plan`` names, its buffers allocated for ``model`` and ``rows``."""
    cls = STRATEGY_CLASSES.get(plan.strategy)
    if cls is None:
        raise FastMLPError(f"the epoch strategy {plan.strategy!r} is not built in this fastmlp")
    n_all = rows.ends[-1]
    common: dict[str, Any] = dict(lr=lr, mu=mu, seed=seed)
    if plan.batch_size is None:
        return cls(model, rows, velocity, scratch_rows=n_all, **common)
    # a batch, or a chunk of rows to evaluate
    common["scratch_rows"] = min(n_all, max(plan.batch_size, CHUNK_ROWS))
    if plan.threads is not None:
        common["threads"] = plan.threads
    if plan.strategy == "compiled-minibatch":  # the kernel reads the rows as the products do
        common["rows_form"] = rows_form(plan.products)
    return cls(model, rows, velocity, batch_size=plan.batch_size, **common)
