"""Minibatches as compiled calls of many whole steps (kernels/steps.py): the per-step path's
work with no Python per step. CPU fused kernels only; the plan picks it for B = 1 and small
B × H (:data:`fastmlp.plan.COMPILED_MAX_WORK`) where the compiled minibatch epoch does not win
(:func:`fastmlp.plan.compiled_choice`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..kernels import sparse as ksparse
from ..kernels import steps
from ..model import MLP, flat_views
from .base import EpochStrategy, TrainingRows


class CompiledSteps(EpochStrategy):
    """Owns the kernel's workspace (``steps_ws``, for ``threads`` threads), the velocity's
    views, the training rows' nonzeros (``nonzeros``: CSR, the sparse products' own when they
    run; of S around ``constants`` for the offset products) and the number of steps per call
    (``steps_per_call``, grown to ~0.2 s per call)."""

    def __init__(self, model: MLP, rows: TrainingRows, velocity: Any, *, batch_size: int,
                 threads: int, **kwargs: Any):
        super().__init__(model, rows, velocity, **kwargs)
        self.batch_size, self.threads = batch_size, threads
        self.steps_ws = steps.workspace(batch_size, model.n_in, model.n_hidden, model.n_out,
                                        np.dtype(model.dtype), threads)
        self.velocity_views = flat_views(velocity, model.shapes)
        # the training rows' CSR (of S = X − 1·cᵀ for the offset products, whose c the loop
        # then takes): built once, the products' own when they run
        train = (rows.sparse.train if rows.sparse is not None
                 else ksparse.csr(rows.X, rows.n_train))
        self.nonzeros = (train.indptr, train.indices, train.values)
        self.constants = None if rows.sparse is None else rows.sparse.constants
        self.steps_per_call = max(1, 1024 // batch_size)

    def compile_kernels(self) -> None:
        if not self.kernels_ready:  # steps [0, 0) with nothing owed: this run's kernel, no work
            steps.train_steps(self.rows.X, self.rows.y, np.zeros(self.rows.n_train, np.int64),
                              0, 0, self.batch_size, self.model.views, self.velocity_views,
                              self.model.activation, self.lr, self.mu, self.steps_ws,
                              np.zeros(2, np.float64), self.nonzeros, threads=self.threads,
                              finish=True, constants=self.constants)
        super().compile_kernels()

    def run_epoch(self, evaluate: bool,
                  progress: Callable[[float], None] | None = None) -> dict[str, float]:
        model, B, rows = self.model, self.batch_size, self.rows
        n_train = rows.n_train
        train_stats = self.begin_epoch(evaluate)
        order = self.rng.permutation(n_train).astype(np.int64, copy=False)
        n_steps = -(-n_train // B)
        s = 0
        self.steps_ws["done"][:] = 0  # steps run this epoch, and whether the last call finished

        def run(s0: int, stop: int, finish: bool) -> None:
            steps.train_steps(rows.X, rows.y, order, s0, stop, B, model.views,
                              self.velocity_views, model.activation, self.lr, self.mu,
                              self.steps_ws, train_stats, self.nonzeros, threads=self.threads,
                              finish=finish, constants=self.constants)

        try:
            while s < n_steps:
                stop = min(n_steps, s + self.steps_per_call)
                start = time.perf_counter()
                run(s, stop, stop == n_steps)
                if time.perf_counter() - start < 0.1 and stop - s == self.steps_per_call:
                    self.steps_per_call *= 2  # a few calls a second: the bar moves, Ctrl-C heard
                s = stop
                if progress is not None and s < n_steps:
                    progress(s / n_steps)
        except BaseException:
            # stopped mid-epoch (a second Ctrl-C, raised as a call returns): rows owe no decay
            # once the steps the calls ran (recorded by the kernel) are finished
            ran, finished = (int(d) for d in self.steps_ws["done"])
            if ran > 0 and not finished:
                run(ran, ran, True)
            raise
        return self.epoch_metrics(self.stats, evaluate)
