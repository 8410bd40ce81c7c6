"""Training: the course's gradient descent with momentum, full batch or minibatch, with history.

All rows (train, valid, test) sit in one contiguous device array, so in full-batch mode one product
X·Wh serves the gradient step and the evaluation of all three splits, at the same weights (those
before the update, as the course code records them). Buffers are allocated once, before the loop.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np

from .checkpoint import Checkpointer
from .datasets import Dataset
from .errors import FastMLPError, InvalidInputError, InvalidTypeError, is_int
from .history import METRICS, SPLITS, History
from .kernels import sparse as ksparse
from .kernels import steps
from .model import CHUNK_ROWS, MLP, flat_views
from .sparse import SparseBatch, SparseRows, resolve_sparse


class DivergenceError(FastMLPError):
    """Training produced a non-finite loss or parameter.

    ``epoch`` is the (1-based) epoch where it was detected; ``history`` holds the epochs up to
    the last finite weights, which the model has been restored to (with ``history.final``
    measured at them), so the pair is as if training had stopped there. ``out_dir``: where
    :func:`fastmlp.run` wrote that history and those weights (None elsewhere).
    """

    def __init__(self, message: str, *, epoch: int, history: History):
        super().__init__(message)
        self.epoch, self.history = epoch, history
        self.out_dir: os.PathLike[str] | None = None


def _metrics(stats: np.ndarray, counts: tuple[int, ...]) -> dict[str, float]:
    """{split}_loss / {split}_acc from summed (loss, correct) rows; NaN for an empty split."""
    out = {}
    for (loss_sum, correct), n, split in zip(stats, counts, SPLITS, strict=True):
        out[f"{split}_loss"] = float(loss_sum) / n if n else math.nan
        out[f"{split}_acc"] = float(correct) / n if n else math.nan
    return out


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


def check_batch_size(batch_size: int | None, n_train: int, what: str = "batch size") -> None:
    """A clear FastMLPError unless ``batch_size`` is None (full batch) or an integer in
    [1, n_train]; ``what`` names it as the caller's user spells it (e.g. "--batch-size")."""
    if batch_size is None:
        return
    if not is_int(batch_size) or not 1 <= batch_size <= n_train:
        raise FastMLPError(f"{what} must be between 1 and the {n_train} training rows, "
                           f"got {batch_size!r}")


def split_stats(model: MLP, X: Any, y: Any, ends: tuple[int, ...], Z: Any,
                out: Any = None, sparse: SparseRows | None = None, offset: int = 0) -> Any:
    """Device (S×2) float64 summed loss and correct count per split of device rows X (N×F),
    y (N,), in ``out`` (overwritten) or a new array.

    Split s is rows [ends[s-1], ends[s]). Forward passes run in chunks of Z's rows (Z: scratch
    (C×H)), so evaluation needs no N×H buffer. No device->host read: the caller makes one
    (``backend.to_host``), possibly together with other stats. ``sparse``: X is rows
    [offset, offset + N) of these, whose products then replace the dense ones.
    """
    xp, N, chunk = model.backend.xp, X.shape[0], Z.shape[0]
    total = xp.empty((len(ends), 2), dtype=xp.float64) if out is None else out

    def rows(a: int, b: int) -> Any:
        return None if sparse is None else sparse.between(offset + a, offset + b)

    if 0 < N <= chunk:  # one pass: the head writes (overwrites) the sums itself
        model.forward_backward(X, y, ends, 0, Z[:N], total, sparse=rows(0, N))
        return total
    total[...] = 0
    stats = xp.empty_like(total)  # the head overwrites it per chunk
    for a in range(0, N, chunk):
        b = min(N, a + chunk)
        local = tuple(min(max(e - a, 0), b - a) for e in ends)
        model.forward_backward(X[a:b], y[a:b], local, 0, Z[:b - a], stats, sparse=rows(a, b))
        total += stats
    return total


def _all_rows(model: MLP, dataset: Dataset) -> tuple[Any, Any, tuple[int, ...], tuple[int, ...]]:
    """Every row on the device, train then valid then test, in one array: X (N×F) in the
    model's dtype, y (N,) int32; with the split sizes and their cumulative ends. Read only."""
    be = model.backend
    splits = (dataset.train, dataset.valid, dataset.test)
    counts = tuple(len(s) for s in splits)
    ends = tuple(int(e) for e in np.cumsum(counts))

    def joined(arrays):  # only the train split (MLPClassifier.fit): no copy of it on the CPU
        rows = [a for a in arrays if len(a)]
        return rows[0] if len(rows) == 1 else np.concatenate(arrays)

    with np.errstate(over="ignore"):  # a value past the dtype: check_finite_rows names it
        X = be.asarray(joined([s.x for s in splits]), dtype=model.dtype)
    y = be.asarray(joined([s.y for s in splits]), dtype=np.int32)
    return X, y, counts, ends


def check_finite_rows(model: MLP, X: Any, counts: tuple[int, ...], name: str) -> None:
    """A clear FastMLPError naming the split, row and column of the first NaN or infinite
    feature in device rows X (train, valid then test rows, ``counts`` of each, as the model's
    dtype sees them: a float64 1e300 is inf in float32). ``name``: the dataset's.

    One reduction over X and one device->host read when every value is finite (a NaN or inf
    makes the sum non-finite); only then is the first bad entry looked for."""
    be, xp = model.backend, model.backend.xp
    if X.size == 0:
        return
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(be.to_host(xp.sum(X, dtype=xp.float64)))
    if math.isfinite(total):
        return
    bad_rows = be.to_host(xp.flatnonzero(~xp.isfinite(X).all(axis=1)))
    if not len(bad_rows):  # finite values whose sum overflowed: nothing wrong
        return
    row = int(bad_rows[0])
    column = int(be.to_host(xp.flatnonzero(~xp.isfinite(X[row])))[0])
    value = float(be.to_host(X[row, column]))
    ends = np.cumsum(counts)
    s = int(np.searchsorted(ends, row, side="right"))
    local = row - (int(ends[s - 1]) if s else 0)
    raise InvalidInputError(f"the {SPLITS[s]} features of the data ({name}) are not finite: "
                            f"{value} at row {local}, column {column} (as {model.dtype}), "
                            f"{len(bad_rows)} row(s) in all; training needs finite inputs")


def evaluate(model: MLP, dataset: Dataset) -> dict[str, float]:
    """``{split}_loss`` and ``{split}_acc`` of ``model`` on every split of ``dataset`` at the
    current weights (NaN for an empty split), measured as training measures them.

    All rows go to the device as one array; one chunked forward pass (scratch of at most
    :data:`~fastmlp.model.CHUNK_ROWS` rows × H) measures the three splits.
    """
    check_compatible(model, dataset)
    X, y, counts, ends = _all_rows(model, dataset)
    check_finite_rows(model, X, counts, dataset.name)
    Z = model.backend.empty((max(1, min(CHUNK_ROWS, ends[-1])), model.n_hidden), model.dtype)
    return _metrics(model.backend.to_host(split_stats(model, X, y, ends, Z)), counts)


# Rows × hidden units per step up to which the compiled small-batch loop beats the per-step
# path's products (measured crossovers: H = 1000 dense between B = 4 and 10, H = 300 MNIST
# between B = 16 and 32; bench/RESULTS.md). Per-sample steps (B = 1) always run compiled.
COMPILED_MAX_WORK = 6000


def resolve_compiled(compiled: bool | None, model: MLP,
                      batch_size: int | None) -> tuple[bool, str]:
    """Whether minibatch epochs run as compiled calls of many steps, and why (for logs).

    ``compiled`` None chooses: on the CPU with the fused kernels, B = 1 or B·H up to
    :data:`COMPILED_MAX_WORK`; True asks for it (an error where it cannot run)."""
    if batch_size is None:
        return False, "full batch"
    usable = model.backend.name == "cpu" and model.backend.fused
    if compiled is None:
        if not usable:
            return False, "per-step path: the compiled loop is for the CPU's fused kernels"
        work = batch_size * model.n_hidden
        if batch_size > 1 and work > COMPILED_MAX_WORK:
            return False, (f"per-step path: batch size x hidden units {work} > "
                           f"{COMPILED_MAX_WORK}")
        return True, (f"compiled small-batch loop: batch size x hidden units {work} <= "
                      f"{COMPILED_MAX_WORK}" if batch_size > 1 else
                      "compiled small-batch loop: per-sample steps")
    if compiled and not usable:
        raise FastMLPError("the compiled small-batch loop runs on the CPU with fused kernels "
                           f"only, not on {model.backend.describe()}")
    return bool(compiled), ("compiled small-batch loop (asked for)" if compiled
                            else "per-step path (asked for)")


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
    """Owns the device copies of the data, the velocity buffer and every scratch buffer.

    ``run_epoch()`` does one epoch and returns its record; ``evaluate()`` measures all splits at
    the current weights. Momentum: v ← γ·v + α·∂L/∂W; W ← W − v, v starting at ``velocity_init``.
    """

    def __init__(self, model: MLP, dataset: Dataset, *, lr: float = 0.1, momentum: float = 0.99,
                 batch_size: int | None = None, eval_every: int = 1,
                 velocity_init: float = 1e-5, seed: int = 0, compiled: bool | None = None,
                 sparse: str = "auto"):
        check_compatible(model, dataset)
        if model.backend.name == "cpu":
            _warn_if_openblas_spins()
        n_train = len(dataset.train)
        if n_train < 1:
            raise FastMLPError("the training split is empty")
        check_batch_size(batch_size, n_train)
        if not is_int(eval_every) or eval_every < 1:
            raise InvalidInputError(f"eval_every must be an integer >= 1, got {eval_every!r}")
        if not is_int(seed) or seed < 0:  # what np.random.default_rng takes
            raise InvalidInputError(f"seed must be an integer >= 0, got {seed!r}")
        if compiled not in (None, True, False):
            raise InvalidInputError(f"compiled must be None, True or False, got {compiled!r}")
        # velocity_init too: a NaN start would otherwise surface later as a false "diverged"
        for name, value in (("learning rate", lr), ("momentum", momentum),
                            ("velocity_init", velocity_init)):
            real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
                value, (bool, np.bool_))
            if not real or not math.isfinite(value) or value < 0:
                raise InvalidInputError(f"{name} must be a finite number >= 0, got {value!r}")
        if momentum >= 1:
            warnings.warn(momentum_warning(momentum), RuntimeWarning, stacklevel=3)
        self.model, self.lr, self.mu = model, float(lr), float(momentum)
        self.batch_size = None if batch_size in (None, n_train) else int(batch_size)
        self.eval_every = int(eval_every)
        xp = model.backend.xp
        # one contiguous copy of all rows: one product X·Wh serves training and evaluation
        self.X, self.y, self.counts, self.ends = _all_rows(model, dataset)
        check_finite_rows(model, self.X, self.counts, dataset.name)  # once, not per epoch
        n_all = self.ends[-1]
        # full batch: Z holds every row; minibatch: a batch, or a chunk of rows to evaluate
        rows = n_all if self.batch_size is None else min(n_all, max(self.batch_size, CHUNK_ROWS))
        self.Z = model.backend.empty((rows, model.n_hidden), model.dtype)
        # per-split (loss sum, correct) of an epoch, read to the host once: full batch, the
        # head writes all rows; minibatch, row 0 sums the batches, rows 1-2 evaluate
        self.stats = xp.zeros((3, 2), dtype=xp.float64)
        self.velocity = model.backend.full(model.n_params, velocity_init, model.dtype)
        self.rng = np.random.default_rng(seed)  # minibatch order; host-side, so it is restorable
        if self.batch_size is not None:
            B = self.batch_size
            self.yb = xp.empty(B, dtype=xp.int32)
            self.batch_stats = xp.zeros((1, 2), dtype=xp.float64)
        self.compiled, self.compiled_reason = resolve_compiled(compiled, model, self.batch_size)
        # mostly-zero rows: the products over the nonzeros (fastmlp/sparse.py)
        use_sparse, self.sparse_reason = resolve_sparse(
            sparse, model, [s.x for s in (dataset.train, dataset.valid, dataset.test)],
            self.compiled)
        self.sparse = (SparseRows(self.X, n_train, full_batch=self.batch_size is None)
                       if use_sparse else None)
        if self.batch_size is not None and not self.compiled:  # the per-step path's batch rows
            if use_sparse:
                self.sparse_batch = SparseBatch(self.sparse, self.batch_size)
            else:
                self.Xb = model.backend.empty((self.batch_size, model.n_in), model.dtype)
        if self.compiled:
            self.threads = steps.threads_for(model.n_hidden, self.batch_size)
            self.steps_ws = steps.workspace(self.batch_size, model.n_in, model.n_hidden,
                                            model.n_out, np.dtype(model.dtype), self.threads)
            self.velocity_views = flat_views(self.velocity, model.shapes)
            self.nonzeros = ksparse.csr(self.X, self.counts[0])  # the training rows' CSR
            self.steps_per_call = max(1, 1024 // self.batch_size)  # grown to ~0.2 s per call
        self.epoch = 0

    # -- one epoch ------------------------------------------------------------------------------
    def run_epoch(self, progress: Callable[[float], None] | None = None) -> dict[str, float]:
        """Train one epoch; return its metrics (train from the gradient passes, valid and test at
        the weights before this epoch's updates; NaN where ``eval_every`` skips them).

        ``progress(fraction)``, if given, is called within a compiled small-batch epoch after
        each call of many steps, with the fraction of the epoch done."""
        evaluate = self.epoch % self.eval_every == 0
        if self.batch_size is None:
            record = self._full_batch_epoch(evaluate)
        elif self.compiled:
            record = self._compiled_epoch(evaluate, progress)
        else:
            record = self._minibatch_epoch(evaluate)
        self.epoch += 1
        return record

    def _full_batch_epoch(self, evaluate: bool) -> dict[str, float]:
        n_train = self.counts[0]
        n = self.ends[-1] if evaluate else n_train
        ends = self.ends if evaluate else (n_train, n_train, n_train)
        self.model.forward_backward(self.X[:n], self.y[:n], ends, n_train, self.Z[:n], self.stats,
                                    sparse=self.sparse)
        self._step()
        stats = self.model.backend.to_host(self.stats)  # the epoch's one device->host read
        return _metrics(stats, self.counts if evaluate else (n_train, 0, 0))

    def _minibatch_epoch(self, evaluate: bool) -> dict[str, float]:
        be, xp, B = self.model.backend, self.model.backend.xp, self.batch_size
        n_train = self.counts[0]
        if evaluate:  # valid and test at the weights before the updates, into rows 1-2
            self._forward_only(self.ends[0], self.ends[-1], out=self.stats)
        train_stats = self.stats[:1]
        train_stats[...] = 0
        # no copy where NumPy's default int is int64 (all but Windows before NumPy 2)
        order = be.asarray(self.rng.permutation(n_train).astype(np.int64, copy=False))
        sparse = None if self.sparse is None else self.sparse_batch
        xb = None
        for start in range(0, n_train, B):
            idx = order[start:start + B]
            nb = idx.shape[0]
            if sparse is None:
                xb = self.Xb[:nb]
                xp.take(self.X, idx, axis=0, out=xb)
            else:  # the batch's rows in sparse form, no dense copy
                sparse.gather(idx)
            xp.take(self.y, idx, axis=0, out=self.yb[:nb])
            self.model.forward_backward(xb, self.yb[:nb], (nb,), nb, self.Z[:nb],
                                        self.batch_stats, sparse=sparse)
            self._step()
            train_stats += self.batch_stats  # stays on the device: no sync per step
        stats = be.to_host(self.stats)  # the epoch's one device->host read
        return _metrics(stats, self.counts if evaluate else (n_train, 0, 0))

    def _compiled_epoch(self, evaluate: bool,
                        progress: Callable[[float], None] | None) -> dict[str, float]:
        # the per-step path's work, in calls of many whole steps each (kernels/steps.py)
        model, B, n_train = self.model, self.batch_size, self.counts[0]
        if evaluate:  # valid and test at the weights before the updates, into rows 1-2
            self._forward_only(self.ends[0], self.ends[-1], out=self.stats)
        train_stats = self.stats[0]
        train_stats[...] = 0
        order = self.rng.permutation(n_train).astype(np.int64, copy=False)
        n_steps = -(-n_train // B)
        s = 0
        self.steps_ws["done"][:] = 0  # steps run this epoch, and whether the last call finished

        def run(s0: int, stop: int, finish: bool) -> None:
            steps.train_steps(self.X, self.y, order, s0, stop, B, model.views,
                              self.velocity_views, model.activation, self.lr, self.mu,
                              self.steps_ws, train_stats, self.nonzeros, threads=self.threads,
                              finish=finish)

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
        return _metrics(self.stats, self.counts if evaluate else (n_train, 0, 0))

    def _forward_only(self, start: int, stop: int, out: Any = None) -> Any:
        """Device (3×2) stats of rows [start, stop) split at the dataset's split ends (in
        ``out`` when given)."""
        ends = tuple(min(max(e - start, 0), stop - start) for e in self.ends)
        return split_stats(self.model, self.X[start:stop], self.y[start:stop], ends, self.Z,
                           out=out, sparse=self.sparse, offset=start)

    def _step(self) -> None:
        self.model.backend.momentum(self.model.params, self.model.grads, self.velocity, self.lr,
                                    self.mu)

    def evaluate(self) -> dict[str, float]:
        """All six metrics at the current weights (one forward pass over all rows)."""
        return _metrics(self.model.backend.to_host(self._forward_only(0, self.ends[-1])),
                        self.counts)

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What training changes, as host copies: ``params``, ``velocity`` (flat arrays),
        ``epoch`` and ``rng_state`` (the minibatch Generator's state, a JSON-ready dict).

        Take it between epochs; :meth:`load_state_dict` of it continues bit for bit on the CPU.
        """
        be = self.model.backend
        return {"params": be.to_host(self.model.params, copy=True),
                "velocity": be.to_host(self.velocity, copy=True), "epoch": int(self.epoch),
                "rng_state": self.rng.bit_generator.state}

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
        rng = np.random.default_rng()
        try:
            rng.bit_generator.state = state["rng_state"]
        except (KeyError, TypeError, ValueError) as exc:
            raise FastMLPError(f"the state's random generator state is unusable: {exc}") from None
        model.params[...] = model.backend.asarray(arrays["params"])
        self.velocity[...] = model.backend.asarray(arrays["velocity"])
        self.rng, self.epoch = rng, int(epoch)


def train(model: MLP, dataset: Dataset, *, epochs: int, lr: float = 0.1, momentum: float = 0.99,
          batch_size: int | None = None, eval_every: int = 1, velocity_init: float = 1e-5,
          seed: int = 0, progress: bool = False,
          callback: Callable[[Trainer, dict[str, float]], None] | None = None,
          history: History | None = None, state: dict[str, Any] | None = None,
          checkpoint: str | os.PathLike[str] | None = None, checkpoint_every: int | None = None,
          checkpoint_config: dict[str, Any] | None = None,
          compiled: bool | None = None, sparse: str = "auto") -> History:
    """Train ``model`` on ``dataset`` for ``epochs`` epochs; return the :class:`History`.

    ``batch_size`` None is full batch (the course); B gives minibatches reshuffled every epoch
    from ``seed``; 1 is per-sample SGD. ``callback(trainer, record)`` runs after each epoch.
    ``compiled``: minibatch epochs as compiled calls of many whole steps (kernels/steps.py); None
    chooses (:func:`resolve_compiled`), False keeps the per-step path. ``sparse`` ("auto", "on",
    "off"): full-batch products over the inputs' nonzeros (:func:`fastmlp.sparse.resolve_sparse`).

    To continue a run, pass its ``state`` (:meth:`Trainer.state_dict`, or
    :func:`fastmlp.checkpoint.load_checkpoint`) and the ``history`` recorded up to it: training
    goes on until ``epochs`` epochs in all, wall time accumulating, exactly as if never stopped.
    A given ``history`` is appended to in place (even if training is interrupted).

    ``checkpoint`` (a file, or an existing directory to hold ``checkpoint.npz``) writes
    checkpoints, with ``checkpoint_config`` (default: ``history.config``) in them: every
    ``checkpoint_every`` epochs (None: every 10 epochs, at most once a minute; 0: never), after
    the last epoch and on Ctrl-C. With it, Ctrl-C stops at the end of the running epoch (a second
    one abandons the epoch, back to its start) and raises KeyboardInterrupt (a
    :class:`StopSignal`) after the checkpoint is written; so do SIGTERM and SIGHUP where their
    handler is :func:`stop_on_signal` (the command line installs it).

    Raises :class:`DivergenceError` on a non-finite loss or parameter, with the model restored
    to its last finite weights.
    """
    if not is_int(epochs) or epochs < 1:
        raise FastMLPError(f"epochs must be a positive integer, got {epochs!r}")
    trainer = Trainer(model, dataset, lr=lr, momentum=momentum, batch_size=batch_size,
                      eval_every=eval_every, velocity_init=velocity_init, seed=seed,
                      compiled=compiled, sparse=sparse)
    if state is not None:
        if history is None:
            raise FastMLPError("continuing from a state needs the history recorded up to it")
        trainer.load_state_dict(state)
    history = History() if history is None else history
    history.device = model.backend.describe()  # where this (last) stretch of training ran
    history.config.update(
        model.config(), epochs=int(epochs), lr=lr, momentum=momentum, batch_size=batch_size,
        eval_every=eval_every, velocity_init=velocity_init, shuffle_seed=seed,
        small_batch_loop=trainer.compiled_reason, products=trainer.sparse_reason,
        dataset=dataset.name, n_train=trainer.counts[0], n_valid=trainer.counts[1],
        n_test=trainer.counts[2])
    saver = None if checkpoint is None else Checkpointer(
        checkpoint, checkpoint_every, history.config if checkpoint_config is None
        else checkpoint_config)
    return fit_epochs(trainer, history, epochs, progress=progress, callback=callback,
                      checkpointer=saver)


class EpochCheckpointer(Protocol):
    """What :func:`fit_epochs` asks of a checkpointer (:class:`fastmlp.checkpoint.Checkpointer`):
    ``periodic`` after every epoch (it decides whether to write), ``save`` at the end, on
    Ctrl-C and after a divergence, and ``saved_epoch``, the epoch of the last one written."""

    saved_epoch: int

    def periodic(self, trainer: Trainer, history: History) -> None: ...

    def save(self, trainer: Trainer, history: History) -> None: ...


def fit_epochs(trainer: Trainer, history: History, epochs: int, *, progress: bool = False,
               callback: Callable[[Trainer, dict[str, float]], None] | None = None,
               checkpointer: EpochCheckpointer | None = None) -> History:
    """Continue ``trainer`` until ``epochs`` epochs are done, appending to ``history`` (which
    must hold exactly the trainer's completed epochs). With a ``checkpointer``, Ctrl-C stops at
    the end of the running epoch and checkpoints are written as in :func:`train`; errors as
    there."""
    if history.epochs != trainer.epoch:
        raise FastMLPError(f"the history holds {history.epochs} epochs but the trainer has done "
                           f"{trainer.epoch}")
    if trainer.epoch > epochs:
        raise FastMLPError(f"the run is already at epoch {trainer.epoch}, past the {epochs} "
                           f"epochs asked for")
    saver = checkpointer
    rollback = _Rollback(trainer)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, initial=trainer.epoch, unit="epoch", dynamic_ncols=True,
                   mininterval=0.2)
    if trainer.epoch < epochs:
        history.final = {}  # measured again after the last epoch
    start = time.perf_counter() - history.wall_time_s  # wall time accumulates over resumes
    at_boundary = True  # between epochs: weights, epoch counter and history agree
    try:
        with _sigint_at_epoch_end(saver is not None) as stop_requested:
            try:
                while trainer.epoch < epochs:
                    rollback.save(trainer)
                    at_boundary = False
                    record = trainer.run_epoch(None if bar is None
                                               else _within_epoch(bar, trainer.epoch))
                    if not math.isfinite(record["train_loss"]):
                        raise _diverged(trainer, history, rollback, start, trainer.epoch - 1,
                                        trainer.epoch,
                                        f"the training loss is {record['train_loss']}")
                    history.append(record)
                    history.wall_time_s = time.perf_counter() - start
                    at_boundary = True
                    if bar is not None:
                        bar.set_postfix_str(_postfix(record), refresh=False)
                        bar.update(trainer.epoch - bar.n)  # whole epochs again
                    if callback is not None:
                        callback(trainer, record)
                    if saver is not None:
                        saver.periodic(trainer, history)
                    if stop_requested():
                        raise StopSignal(stop_requested())
                final = trainer.evaluate()  # its device->host read waits for the device
                xp = trainer.model.backend.xp
                problem = None
                if not math.isfinite(final["train_loss"]):
                    problem = f"the loss after the last update is {final['train_loss']}"
                elif not bool(xp.isfinite(trainer.model.params).all()):
                    problem = "a parameter is not finite after the last update"
                if problem is not None:
                    raise _diverged(trainer, history, rollback, start, trainer.epoch,
                                    trainer.epoch, problem)
                history.final = final
                history.wall_time_s = time.perf_counter() - start
                if saver is not None:
                    saver.save(trainer, history)
            except KeyboardInterrupt:
                # Only between epochs is the state consistent: a second, immediate Ctrl-C in
                # mid-epoch abandons the epoch, back to its start (held for the divergence
                # guard), so that every finished epoch is saved however soon the stop came.
                if saver is not None and (at_boundary
                                          or rollback.restore(trainer, history.epochs)):
                    if history.epochs == trainer.epoch and saver.saved_epoch != trainer.epoch:
                        saver.save(trainer, history)
                raise
            except DivergenceError:
                # the last checkpoint may hold the weights found bad: replace it with the kept
                # ones, which the history now ends at
                if saver is not None:
                    saver.save(trainer, history)
                raise
    finally:
        if bar is not None:
            bar.close()
    return history


def _within_epoch(bar: Any, epoch: int) -> Callable[[float], None]:
    # a long compiled epoch reports the fraction done after each call: the bar moves within it
    def progress(fraction: float) -> None:
        bar.update(epoch + fraction - bar.n)
    return progress


class _Rollback:
    """Params, velocity and RNG state at the start of the last two epochs (divergence guard).

    An epoch's training loss is measured at the weights it starts from (full batch) or along its
    updates (minibatch), so a non-finite loss in epoch e condemns the weights e started from;
    the last weights known to give a finite loss are those epoch e-1 started from: two snapshots
    back. Cost: two device copies per epoch, no host transfer, no extra sync.
    """

    def __init__(self, trainer: Trainer):
        xp = trainer.model.backend.xp
        self.params = [xp.empty_like(trainer.model.params) for _ in range(2)]
        self.velocity = [xp.empty_like(trainer.velocity) for _ in range(2)]
        self.rng_state: list[dict | None] = [None, None]
        self.epoch = [-1, -1]

    def save(self, trainer: Trainer) -> None:
        """Snapshot the trainer at the start of epoch ``trainer.epoch``."""
        i, xp = trainer.epoch % 2, trainer.model.backend.xp
        xp.copyto(self.params[i], trainer.model.params)
        xp.copyto(self.velocity[i], trainer.velocity)
        self.rng_state[i], self.epoch[i] = trainer.rng.bit_generator.state, trainer.epoch

    def restore(self, trainer: Trainer, epoch: int) -> bool:
        """Put the trainer back to the start of ``epoch`` if that snapshot is still held."""
        i, xp = epoch % 2, trainer.model.backend.xp
        if epoch < 0 or self.epoch[i] != epoch:
            return False
        xp.copyto(trainer.model.params, self.params[i])
        xp.copyto(trainer.velocity, self.velocity[i])
        trainer.rng.bit_generator.state = self.rng_state[i]
        trainer.epoch = epoch
        return True


FEATURE_RANGE = 100.0  # |x| above which a divergence message names the features first


def _diverged(trainer: Trainer, history: History, rollback: _Rollback, start: float, bad: int,
              detected: int, what: str) -> DivergenceError:
    """Restore the last finite weights before ``bad`` (the weights found non-finite, counted in
    completed epochs), trim ``history`` to them, and build the error for (1-based) epoch
    ``detected``."""
    for epoch in (bad - 1, bad):  # bad itself only when the one before is not held (resume)
        if rollback.restore(trainer, epoch):
            break
    kept = trainer.epoch
    for key in METRICS:
        del getattr(history, key)[kept:]
    history.final = trainer.evaluate()
    history.wall_time_s = time.perf_counter() - start
    history.config["diverged_at_epoch"] = detected
    weights = "the initial weights" if kept == 0 else f"the weights after epoch {kept}"
    loss = history.final["train_loss"]
    finite_weights = bool(trainer.model.backend.xp.isfinite(trainer.model.params).all())
    if math.isfinite(loss) and finite_weights:
        kept_note = f"kept {weights}, the last finite ones"
    elif finite_weights:  # the weights are fine, their loss is not: no older snapshot held
        kept_note = f"kept {weights}, the oldest held: finite, though their loss is {loss}"
    else:  # no older snapshot: the initial weights, or the first epoch after a resume
        kept_note = f"kept {weights}, the oldest held, though they are not finite either"
    hint = f"try a smaller learning rate than {trainer.lr:g}"
    if trainer.mu >= 1:
        hint = f"use a momentum below 1 (got {trainer.mu:g}: the velocity never decays)"
    elif kept == 0 and finite_weights and not math.isfinite(loss):
        # no update has been made: the learning rate cannot be the cause
        hint = ("the loss is not finite before any update, so the learning rate is not the "
                "cause: check the data for NaN, inf or huge values")
    n_train = trainer.counts[0]
    if n_train:
        xp = trainer.model.backend.xp
        reach = float(trainer.model.backend.to_host(xp.abs(trainer.X[:n_train]).max()))
        if reach > FEATURE_RANGE:  # NaN compares False: the usual hint
            hint = (f"the features reach |x| = {reach:.3g}, far outside the usual range (about "
                    f"1): scale them, or {hint}")
    return DivergenceError(f"training diverged at epoch {detected}: {what}; {kept_note}; {hint}",
                           epoch=detected, history=history)


class StopSignal(KeyboardInterrupt):
    """The KeyboardInterrupt of a stop signal: ``signum`` is SIGINT (Ctrl-C), SIGTERM or
    SIGHUP, so a caller can exit with 128 + ``signum`` as a shell would report it."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = int(signum)


# SIGHUP is not on Windows
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))


def stop_on_signal(signum: int, frame: Any) -> None:
    """A signal handler raising :class:`StopSignal`: install it for SIGTERM and SIGHUP (as
    ``fastmlp``'s command line does) and they stop a run as Ctrl-C does, checkpoint included."""
    raise StopSignal(signum)


def _takes_over(signum: int) -> bool:
    """Whether training may handle ``signum`` itself: Python's default for SIGINT, and for
    SIGTERM/SIGHUP only :func:`stop_on_signal` (never a host's own handler, nor the default
    that ends the process, which a library must not change unasked)."""
    handler = signal.getsignal(signum)
    return handler is (signal.default_int_handler if signum == signal.SIGINT else stop_on_signal)


def _say(text: str) -> None:
    try:  # stderr may be closed (sys.stderr None) or broken: the note is then dropped
        sys.stderr.write(text)
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass


@contextlib.contextmanager
def _sigint_at_epoch_end(enabled: bool) -> Iterator[Callable[[], int]]:
    """Make the first Ctrl-C (SIGTERM, SIGHUP) a request to stop at the end of the epoch (so the
    checkpoint written then is consistent); a second one raises :class:`StopSignal` at once.
    Yields a function giving the signal of the stop requested (0: none). Only in the main
    thread, and only for the signals :func:`_takes_over` allows."""
    signums = ([s for s in STOP_SIGNALS if _takes_over(s)] if enabled
               and threading.current_thread() is threading.main_thread() else [])
    if not signums:
        yield lambda: 0
        return
    pending: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if pending:
            raise StopSignal(signum)
        pending.append(signum)
        if signum == signal.SIGINT:
            _say("\nstopping at the end of this epoch (Ctrl-C again to stop now)\n")
        else:
            name = signal.Signals(signum).name
            _say(f"\n{name}: stopping at the end of this epoch ({name} again to stop now)\n")

    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield lambda: pending[0] if pending else 0
    finally:
        for s, before in previous.items():
            signal.signal(s, before)


def _postfix(record: dict[str, float]) -> str:
    parts = []
    for split in SPLITS:
        loss, acc = record[f"{split}_loss"], record[f"{split}_acc"]
        if math.isfinite(loss):
            parts.append(f"{split} {loss:.4f}/{acc:.4f}")
    return " ".join(parts)
