"""Training: the course's gradient descent with momentum, full batch or minibatch, with history.

All rows (train, valid, test) sit in one contiguous device array, so in full-batch mode one product
X·Wh serves the gradient step and the evaluation of all three splits, at the same weights (those
before the update, as the course code records them). Buffers are allocated once, before the loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .datasets import Dataset
from .errors import FastMLPError
from .model import MLP

METRICS = ("train_loss", "train_acc", "valid_loss", "valid_acc", "test_loss", "test_acc")
SPLITS = ("train", "valid", "test")


@dataclass
class History:
    """Per-epoch metrics (NaN where not evaluated), the final metrics after the last update,
    the configuration, wall time and device."""

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    valid_acc: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    final: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0
    device: str = ""

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def append(self, record: dict[str, float]) -> None:
        for key in METRICS:
            getattr(self, key).append(record[key])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; NaN (not evaluated) becomes None."""
        clean = lambda v: None if isinstance(v, float) and not math.isfinite(v) else v  # noqa: E731
        out: dict[str, Any] = {key: [clean(v) for v in getattr(self, key)] for key in METRICS}
        out["final"] = {k: clean(v) for k, v in self.final.items()}
        out.update(config=self.config, wall_time_s=self.wall_time_s, device=self.device,
                   epochs=self.epochs)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        nan = lambda v: math.nan if v is None else float(v)  # noqa: E731
        h = cls(**{key: [nan(v) for v in d.get(key, [])] for key in METRICS})
        h.final = {k: nan(v) for k, v in d.get("final", {}).items()}
        h.config, h.wall_time_s, h.device = d.get("config", {}), d.get("wall_time_s", 0.0), d.get(
            "device", "")
        return h


def _metrics(stats: np.ndarray, counts: tuple[int, ...]) -> dict[str, float]:
    """{split}_loss / {split}_acc from summed (loss, correct) rows; NaN for an empty split."""
    out = {}
    for (loss_sum, correct), n, split in zip(stats, counts, SPLITS, strict=False):
        out[f"{split}_loss"] = float(loss_sum) / n if n else math.nan
        out[f"{split}_acc"] = float(correct) / n if n else math.nan
    return out


class Trainer:
    """Owns the device copies of the data, the velocity buffer and every scratch buffer.

    ``run_epoch()`` does one epoch and returns its record; ``evaluate()`` measures all splits at
    the current weights. Momentum: v ← γ·v + α·∂L/∂W; W ← W − v, v starting at ``velocity_init``.
    """

    def __init__(self, model: MLP, dataset: Dataset, *, lr: float = 0.1, momentum: float = 0.99,
                 batch_size: int | None = None, eval_every: int = 1,
                 velocity_init: float = 1e-5, seed: int = 0):
        if dataset.n_features != model.n_in:
            raise FastMLPError(f"the data has {dataset.n_features} features but the model takes "
                               f"{model.n_in}")
        if dataset.n_classes > model.n_out:
            raise FastMLPError(f"the data has {dataset.n_classes} classes but the model outputs "
                               f"{model.n_out}")
        n_train = len(dataset.train)
        if n_train < 1:
            raise FastMLPError("the training split is empty")
        if batch_size is not None and not 1 <= batch_size <= n_train:
            raise FastMLPError(f"batch size must be between 1 and the {n_train} training rows, "
                               f"got {batch_size}")
        if eval_every < 1:
            raise FastMLPError(f"eval_every must be at least 1, got {eval_every}")
        for name, value in (("learning rate", lr), ("momentum", momentum)):
            if not math.isfinite(value) or value < 0:
                raise FastMLPError(f"{name} must be a finite number >= 0, got {value}")
        self.model, self.lr, self.mu = model, float(lr), float(momentum)
        self.batch_size = None if batch_size in (None, n_train) else int(batch_size)
        self.eval_every = int(eval_every)
        be, xp = model.backend, model.backend.xp
        splits = (dataset.train, dataset.valid, dataset.test)
        self.counts = tuple(len(s) for s in splits)
        self.ends = tuple(int(e) for e in np.cumsum(self.counts))
        n_all = self.ends[-1]
        # one contiguous copy of all rows: one product X·Wh serves training and evaluation
        self.X = be.asarray(np.concatenate([s.x for s in splits]), dtype=model.dtype)
        self.y = be.asarray(np.concatenate([s.y for s in splits]), dtype=np.int32)
        self.Z = xp.empty((n_all, model.n_hidden), dtype=model.dtype)
        self.stats = xp.zeros((3, 2), dtype=xp.float64)
        self.velocity = xp.full(model.n_params, velocity_init, dtype=model.dtype)
        self.rng = np.random.default_rng(seed)  # minibatch order; host-side, so it is restorable
        if self.batch_size is not None:
            B = self.batch_size
            self.Xb = xp.empty((B, model.n_in), dtype=model.dtype)
            self.yb = xp.empty(B, dtype=xp.int32)
            self.batch_stats = xp.zeros((1, 2), dtype=xp.float64)
            self.epoch_stats = xp.zeros((1, 2), dtype=xp.float64)
        self.epoch = 0

    # -- one epoch ------------------------------------------------------------------------------
    def run_epoch(self) -> dict[str, float]:
        """Train one epoch; return its metrics (train from the gradient passes, valid and test at
        the weights before this epoch's updates; NaN where ``eval_every`` skips them)."""
        evaluate = self.epoch % self.eval_every == 0
        if self.batch_size is None:
            record = self._full_batch_epoch(evaluate)
        else:
            record = self._minibatch_epoch(evaluate)
        self.epoch += 1
        return record

    def _full_batch_epoch(self, evaluate: bool) -> dict[str, float]:
        n_train = self.counts[0]
        n = self.ends[-1] if evaluate else n_train
        ends = self.ends if evaluate else (n_train, n_train, n_train)
        self.model.forward_backward(self.X[:n], self.y[:n], ends, n_train, self.Z[:n], self.stats)
        self._step()
        stats = self.model.backend.to_host(self.stats)  # the epoch's one device->host read
        return _metrics(stats, self.counts if evaluate else (n_train, 0, 0))

    def _minibatch_epoch(self, evaluate: bool) -> dict[str, float]:
        be, xp, B = self.model.backend, self.model.backend.xp, self.batch_size
        n_train = self.counts[0]
        if evaluate:
            eval_stats = self._forward_only(self.ends[0], self.ends[-1])
        order = be.asarray(self.rng.permutation(n_train).astype(np.int64))
        self.epoch_stats[...] = 0
        for start in range(0, n_train, B):
            idx = order[start:start + B]
            nb = idx.shape[0]
            xp.take(self.X, idx, axis=0, out=self.Xb[:nb])
            xp.take(self.y, idx, axis=0, out=self.yb[:nb])
            self.model.forward_backward(self.Xb[:nb], self.yb[:nb], (nb,), nb, self.Z[:nb],
                                        self.batch_stats)
            self._step()
            self.epoch_stats += self.batch_stats  # stays on the device: no sync per step
        train_stats = be.to_host(self.epoch_stats)
        record = _metrics(train_stats, (n_train,))
        evaluated = _metrics(eval_stats if evaluate else np.zeros((3, 2)),
                             (0,) + self.counts[1:] if evaluate else (0, 0, 0))
        record.update({k: v for k, v in evaluated.items() if not k.startswith("train")})
        return record

    def _forward_only(self, start: int, stop: int) -> np.ndarray:
        """Host (3×2) stats of rows [start, stop) split at the dataset's split ends."""
        ends = tuple(min(max(e - start, 0), stop - start) for e in self.ends)
        n = stop - start
        self.model.forward_backward(self.X[start:stop], self.y[start:stop], ends, 0, self.Z[:n],
                                    self.stats)
        return self.model.backend.to_host(self.stats)

    def _step(self) -> None:
        self.model.backend.momentum(self.model.params, self.model.grads, self.velocity, self.lr,
                                    self.mu)

    def evaluate(self) -> dict[str, float]:
        """All six metrics at the current weights (one forward pass over all rows)."""
        return _metrics(self._forward_only(0, self.ends[-1]), self.counts)


def train(model: MLP, dataset: Dataset, *, epochs: int, lr: float = 0.1, momentum: float = 0.99,
          batch_size: int | None = None, eval_every: int = 1, velocity_init: float = 1e-5,
          seed: int = 0, progress: bool = False,
          callback: Callable[[Trainer, dict[str, float]], None] | None = None) -> History:
    """Train ``model`` on ``dataset`` for ``epochs`` epochs; return the :class:`History`.

    ``batch_size`` None is full batch (the course); B gives minibatches reshuffled every epoch
    from ``seed``; 1 is per-sample SGD. ``callback(trainer, record)`` runs after each epoch.
    """
    if not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise FastMLPError(f"epochs must be a positive integer, got {epochs!r}")
    trainer = Trainer(model, dataset, lr=lr, momentum=momentum, batch_size=batch_size,
                      eval_every=eval_every, velocity_init=velocity_init, seed=seed)
    history = History(device=model.backend.describe(), config=dict(
        model.config(), epochs=int(epochs), lr=lr, momentum=momentum, batch_size=batch_size,
        eval_every=eval_every, velocity_init=velocity_init, shuffle_seed=seed,
        dataset=dataset.name, n_train=trainer.counts[0], n_valid=trainer.counts[1],
        n_test=trainer.counts[2]))
    return run(trainer, history, epochs, progress=progress, callback=callback)


def run(trainer: Trainer, history: History, epochs: int, *, progress: bool = False,
        callback: Callable[[Trainer, dict[str, float]], None] | None = None) -> History:
    """Continue ``trainer`` until ``epochs`` epochs are done, appending to ``history``."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, initial=trainer.epoch, unit="epoch", dynamic_ncols=True,
                   mininterval=0.2)
    start = time.perf_counter() - history.wall_time_s
    try:
        while trainer.epoch < epochs:
            record = trainer.run_epoch()
            history.append(record)
            history.wall_time_s = time.perf_counter() - start
            if bar is not None:
                bar.set_postfix_str(_postfix(record), refresh=False)
                bar.update(1)
            if callback is not None:
                callback(trainer, record)
        trainer.model.backend.synchronize()
        history.final = trainer.evaluate()
        history.wall_time_s = time.perf_counter() - start
    finally:
        if bar is not None:
            bar.close()
    return history


def _postfix(record: dict[str, float]) -> str:
    parts = []
    for split in SPLITS:
        loss, acc = record[f"{split}_loss"], record[f"{split}_acc"]
        if math.isfinite(loss):
            parts.append(f"{split} {loss:.4f}/{acc:.4f}")
    return " ".join(parts)
