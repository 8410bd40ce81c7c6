"""The trainer: the model, the rows on the device, the velocity and the epoch counter, with the
epoch strategy the :class:`~fastmlp.plan.Plan` names doing the epochs.

Momentum as the course: v ← γ·v + α·∂L/∂W; W ← W − v, v starting at ``velocity_init``. Buffers
are allocated once, before the loop (by the strategy that needs them).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from . import strategies
from .checks import check_batch_size, check_compatible
from .config import RunConfig, train_settings
from .datasets import Dataset
from .errors import FastMLPError, is_int
from .evaluation import all_rows, check_finite_rows
from .model import MLP
from .plan import Plan, make_plan
from .settings import DEFAULT, TrainSettings
from .sparse import SparseRows


def momentum_warning(momentum: float) -> str:
    """Why momentum >= 1 is accepted but warned about (one line)."""
    grows = " and grow without bound" if momentum > 1 else ""
    return (f"momentum {momentum:g} >= 1: the velocity v <- momentum*v + lr*grad never decays, "
            f"so the weights never settle{grows}; use a value in [0, 1) (the course's is 0.99)")


_spin_warned = False


def _warn_if_openblas_spins() -> None:
    """Once per process: NumPy was imported before fastmlp, too late to calm OpenBLAS."""
    global _spin_warned
    from .startup import OPENBLAS_LOADED_FIRST

    if OPENBLAS_LOADED_FIRST and not _spin_warned:
        _spin_warned = True
        warnings.warn("NumPy was imported before fastmlp, so OpenBLAS's idle threads spin after "
                      "each product and slow the CPU kernels (2-11% per epoch measured on 2 "
                      "cores); import fastmlp first, or set OPENBLAS_THREAD_TIMEOUT=4 before "
                      "starting Python", RuntimeWarning, stacklevel=3)


class Trainer:
    """Owns the device copies of the data (``X``, ``y``, ``counts``, ``ends``), the velocity
    buffer, the epoch counter and the epoch ``strategy`` of its ``plan``.

    ``run_epoch()`` does one epoch and returns its record; ``evaluate()`` measures all splits at
    the current weights. ``settings``: a :class:`~fastmlp.settings.TrainSettings` (or a
    :class:`~fastmlp.config.RunConfig`'s), or else the keywords ``lr``, ``momentum``,
    ``batch_size``, ``eval_every``, ``velocity_init``, ``seed``, ``compiled`` and ``sparse``
    (TrainSettings' defaults for those left out); not both. ``plan``: decided by
    :func:`fastmlp.plan.make_plan` from ``batch_size``, ``compiled`` and ``sparse`` unless
    given (it must be of this model and data).
    """

    def __init__(self, model: MLP, dataset: Dataset,
                 settings: TrainSettings | RunConfig | None = None, *, lr: float = DEFAULT,
                 momentum: float = DEFAULT, batch_size: int | None = DEFAULT,
                 eval_every: int = DEFAULT, velocity_init: float = DEFAULT, seed: int = DEFAULT,
                 compiled: bool | None = DEFAULT, sparse: str = DEFAULT,
                 plan: Plan | None = None):
        settings = train_settings(settings, dict(
            lr=lr, momentum=momentum, batch_size=batch_size, eval_every=eval_every,
            velocity_init=velocity_init, seed=seed, compiled=compiled, sparse=sparse), "Trainer")
        check_compatible(model, dataset)
        if model.backend.name == "cpu":
            _warn_if_openblas_spins()
        n_train = len(dataset.train)
        if n_train < 1:
            raise FastMLPError("the training split is empty")
        check_batch_size(settings.batch_size, n_train)
        if settings.momentum >= 1:
            warnings.warn(momentum_warning(settings.momentum), RuntimeWarning, stacklevel=3)
        self.settings = settings
        self.model, self.lr, self.mu = model, float(settings.lr), float(settings.momentum)
        self.eval_every = int(settings.eval_every)
        self.plan = plan if plan is not None else make_plan(
            model, [s.x for s in (dataset.train, dataset.valid, dataset.test)],
            batch_size=settings.batch_size, compiled=settings.compiled, sparse=settings.sparse)
        self.batch_size = self.plan.batch_size
        # all rows in one contiguous array (a view of the loader's where its splits are
        # consecutive rows, else a copy): one product X·Wh serves training and evaluation
        X, y, counts, ends = all_rows(model, dataset)
        check_finite_rows(model, X, counts, dataset.name)  # once, not per epoch
        # mostly-zero rows (or mostly c): the products over the nonzeros (of X − 1·cᵀ;
        # fastmlp/sparse.py); only full-batch epochs read all training rows transposed
        rows_sparse = (SparseRows(X, n_train, full_batch=self.batch_size is None,
                                  constants=self.plan.constants)
                       if self.plan.sparse else None)
        self.rows = strategies.TrainingRows(X, y, counts, ends, rows_sparse)
        self.velocity = model.backend.full(model.n_params, settings.velocity_init, model.dtype)
        self.strategy = strategies.build(self.plan, model, self.rows, self.velocity,
                                         lr=self.lr, mu=self.mu, seed=settings.seed)
        self.epoch = 0

    # the rows, as callers (tests, the divergence hint) name them
    X = property(lambda self: self.rows.X)
    y = property(lambda self: self.rows.y)
    counts = property(lambda self: self.rows.counts)
    ends = property(lambda self: self.rows.ends)

    def run_epoch(self, progress: Callable[[float], None] | None = None) -> dict[str, float]:
        """Train one epoch; return its metrics (train from the gradient passes, valid and test at
        the weights before this epoch's updates; NaN where ``eval_every`` skips them).

        ``progress(fraction)``, if given, is called within a long epoch (the compiled loop's,
        after each call of many steps) with the fraction of the epoch done."""
        record = self.strategy.run_epoch(self.epoch % self.eval_every == 0, progress)
        self.epoch += 1
        return record

    def evaluate(self) -> dict[str, float]:
        """All six metrics at the current weights (one forward pass over all rows)."""
        return self.strategy.evaluate()

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What training changes, as host copies: ``params``, ``velocity`` (flat arrays),
        ``epoch`` and ``rng_state`` (the minibatch Generator's state, a JSON-ready dict).

        Take it between epochs; :meth:`load_state_dict` of it continues bit for bit on the CPU.
        """
        be = self.model.backend
        return {"params": be.to_host(self.model.params, copy=True),
                "velocity": be.to_host(self.velocity, copy=True), "epoch": int(self.epoch),
                **self.strategy.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (e.g. from :func:`fastmlp.checkpoint.load_checkpoint`)
        taken from a trainer of the same model shape and dtype."""
        model = self.model
        epoch = state.get("epoch")
        if not is_int(epoch) or epoch < 0:
            raise FastMLPError(f"the state's epoch must be an integer >= 0, got {epoch!r}")
        arrays = {}
        for name in ("params", "velocity"):
            a = np.asarray(model.backend.to_host(state[name]) if hasattr(state[name], "shape")
                           else state[name])
            if a.shape != (model.n_params,):
                raise FastMLPError(f"the state's {name} has shape {a.shape}; this "
                                   f"{model.n_in}-{model.n_hidden}-{model.n_out} model has "
                                   f"{model.n_params} parameters")
            if a.dtype.name != model.dtype:  # a silent cast would break exact continuation
                raise FastMLPError(f"the state's {name} are {a.dtype.name}; the model is "
                                   f"{model.dtype}")
            arrays[name] = a
        self.strategy.load_state_dict(state)
        model.params[...] = model.backend.asarray(arrays["params"])
        self.velocity[...] = model.backend.asarray(arrays["velocity"])
        self.epoch = int(epoch)
