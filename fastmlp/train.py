"""Training: the epoch loop around a :class:`~fastmlp.trainer.Trainer`, with its history.

:func:`train` builds the trainer (whose :class:`~fastmlp.plan.Plan` picks the epoch strategy:
full batch, per-step minibatch or compiled steps) and :func:`fit_epochs` runs the epochs: the
progress bar, checkpoints, Ctrl-C at the end of the epoch and the divergence guard, the same for
every strategy.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from .checkpoint import Checkpointer
from .checks import check_batch_size, check_compatible
from .config import LEGACY_FLAT_KEYS, RunConfig, train_settings
from .datasets import Dataset
from .errors import FastMLPError, InvalidTypeError
from .evaluation import evaluate, split_stats
from .history import METRICS, SPLITS, History
from .model import MLP
from .plan import Plan
from .settings import DEFAULT, TrainSettings
from .trainer import Trainer

__all__ = ["DivergenceError", "History", "METRICS", "Trainer", "check_batch_size",
           "check_compatible", "evaluate", "fit_epochs", "split_stats", "train"]


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


def train(model: MLP, dataset: Dataset, config: RunConfig | TrainSettings | None = None, *,
          epochs: int = DEFAULT, lr: float = DEFAULT, momentum: float = DEFAULT,
          batch_size: int | None = DEFAULT, eval_every: int = DEFAULT,
          velocity_init: float = DEFAULT, seed: int = DEFAULT, progress: bool = False,
          callback: Callable[[Trainer, dict[str, float]], None] | None = None,
          history: History | None = None, state: dict[str, Any] | None = None,
          checkpoint: str | os.PathLike[str] | Checkpointer | None = None,
          checkpoint_every: int | None = DEFAULT,
          checkpoint_config: dict[str, Any] | None = None,
          compiled: bool | None = DEFAULT, sparse: str = DEFAULT,
          plan: Plan | None = None) -> History:
    """Train ``model`` on ``dataset`` for ``epochs`` epochs; return the :class:`History`.

    The settings: one ``config`` (a :class:`~fastmlp.config.RunConfig` or a
    :class:`~fastmlp.settings.TrainSettings`), or the keywords (``epochs`` needed; the others
    default as TrainSettings does: lr 0.1, momentum 0.99, full batch, ...), not both; checked
    by the rules every entry point shares, and recorded once, as ``history.config["run"]``.
    ``batch_size`` None is full batch (the course); B gives minibatches reshuffled every epoch
    from ``seed``; 1 is per-sample SGD. ``compiled``: minibatch epochs as compiled calls of many
    steps, the faster of the compiled minibatch epochs and the compiled small-batch loop (None
    chooses: :func:`fastmlp.plan.choose_strategy`; False: per-step);
    ``sparse`` ("auto", "on", "off"): products over the inputs' nonzeros, or around each
    feature's most frequent value (:func:`fastmlp.sparse.resolve_sparse`). ``plan``: those
    choices already made (:func:`fastmlp.plan.make_plan`). ``callback(trainer, record)`` runs
    after each epoch.

    To continue a run, pass its ``state`` (:meth:`Trainer.state_dict`, or
    :func:`fastmlp.checkpoint.load_checkpoint`) and the ``history`` recorded up to it: training
    goes on until ``epochs`` epochs in all, wall time accumulating, exactly as if never stopped.
    A given ``history`` is appended to in place (even if training is interrupted).

    ``checkpoint`` (a file, or an existing directory to hold ``checkpoint.npz``) writes
    checkpoints, with ``checkpoint_config`` (default: none, ``history.config`` says it) (or give a
    :class:`~fastmlp.checkpoint.Checkpointer`, whose ``saved_epoch`` then tells what it wrote):
    every ``checkpoint_every`` epochs (None: every 10 epochs, at most once a minute; 0: never),
    after the last epoch and on Ctrl-C. With it, Ctrl-C stops at the end of the running epoch (a
    second one abandons the epoch, back to its start) and raises KeyboardInterrupt (a
    :class:`StopSignal`) after the checkpoint is written; so do SIGTERM and SIGHUP where their
    handler is :func:`stop_on_signal` (the command line installs it). Raises
    :class:`DivergenceError` on a non-finite loss or parameter, with the model restored to its
    last finite weights.
    """
    if config is None and epochs is DEFAULT:
        raise InvalidTypeError("train() needs epochs=N (or a config: RunConfig, TrainSettings)")
    settings = train_settings(config, dict(
        epochs=epochs, lr=lr, momentum=momentum, batch_size=batch_size, eval_every=eval_every,
        velocity_init=velocity_init, seed=seed, checkpoint_every=checkpoint_every,
        compiled=compiled, sparse=sparse), "train()")
    trainer = Trainer(model, dataset, settings, plan=plan)
    if state is not None:
        if history is None:
            raise FastMLPError("continuing from a state needs the history recorded up to it")
        trainer.load_state_dict(state)
    history = History() if history is None else history
    history.device = model.backend.describe()  # where this (last) stretch of training ran
    # the settings once, as "run" (a resumed older history's flat copies go); beside them the
    # model (MLP.config, which model.npz needs flat), the data trained on and the plan
    for key in LEGACY_FLAT_KEYS:
        history.config.pop(key, None)
    history.config.update(
        model.config(), dataset=dataset.name, n_train=trainer.counts[0],
        n_valid=trainer.counts[1], n_test=trainer.counts[2], plan=trainer.plan.record(),
        run=config.to_dict() if isinstance(config, RunConfig) else settings.to_dict())
    if checkpoint is None or isinstance(checkpoint, Checkpointer):
        saver = checkpoint
    else:
        # no config of its own: the history's config is in the checkpoint already
        saver = Checkpointer(checkpoint, settings.checkpoint_every, checkpoint_config)
    return fit_epochs(trainer, history, settings.epochs, progress=progress, callback=callback,
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
                _save_on_stop(saver, trainer, history, rollback, at_boundary)
                raise
            except DivergenceError:
                # the last checkpoint may hold the weights found bad: replace it with the kept
                # ones, which the history now ends at
                if saver is not None:
                    saver.save(trainer, history)
                raise
            except Exception:
                # a second stop signal raised inside a library that turns it into an error of
                # its own (Numba's compiler does): a forced stop still, not a failure
                if not stop_requested.forced:
                    raise
                _save_on_stop(saver, trainer, history, rollback, at_boundary)
                raise StopSignal(stop_requested.forced) from None
    finally:
        if bar is not None:
            bar.close()
    return history


def _save_on_stop(saver: EpochCheckpointer | None, trainer: Trainer, history: History,
                  rollback: _Rollback, at_boundary: bool) -> None:
    """Checkpoint the finished epochs when a stop signal ends training. Only between epochs is
    the state consistent: a second, immediate signal in mid-epoch abandons the epoch, back to
    its start (held for the divergence guard), so every finished epoch is saved however soon
    the stop came."""
    if saver is not None and (at_boundary or rollback.restore(trainer, history.epochs)):
        if history.epochs == trainer.epoch and saver.saved_epoch != trainer.epoch:
            saver.save(trainer, history)


def _within_epoch(bar: Any, epoch: int) -> Callable[[float], None]:
    # a long compiled epoch reports the fraction done after each call: the bar moves within it
    def progress(fraction: float) -> None:
        bar.update(epoch + fraction - bar.n)
    return progress


class _Rollback:
    """Params, velocity and the strategy's state (its RNG) at the start of the last two epochs
    (the divergence guard).

    An epoch's training loss is measured at the weights it starts from (full batch) or along its
    updates (minibatch), so a non-finite loss in epoch e condemns the weights e started from;
    the last weights known to give a finite loss are those epoch e-1 started from: two snapshots
    back. Cost: two device copies per epoch, no host transfer, no extra sync.
    """

    def __init__(self, trainer: Trainer):
        xp = trainer.model.backend.xp
        self.params = [xp.empty_like(trainer.model.params) for _ in range(2)]
        self.velocity = [xp.empty_like(trainer.velocity) for _ in range(2)]
        self.strategy_state: list[dict | None] = [None, None]
        self.epoch = [-1, -1]

    def save(self, trainer: Trainer) -> None:
        """Snapshot the trainer at the start of epoch ``trainer.epoch``."""
        i, xp = trainer.epoch % 2, trainer.model.backend.xp
        xp.copyto(self.params[i], trainer.model.params)
        xp.copyto(self.velocity[i], trainer.velocity)
        self.strategy_state[i] = trainer.strategy.state_dict()
        self.epoch[i] = trainer.epoch

    def restore(self, trainer: Trainer, epoch: int) -> bool:
        """Put the trainer back to the start of ``epoch`` if that snapshot is still held."""
        i, xp = epoch % 2, trainer.model.backend.xp
        if epoch < 0 or self.epoch[i] != epoch:
            return False
        xp.copyto(trainer.model.params, self.params[i])
        xp.copyto(trainer.velocity, self.velocity[i])
        trainer.strategy.load_state_dict(self.strategy_state[i])
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


class _StopRequests:
    """The stop signals received while training: the first asks for a stop at the end of the
    epoch; a second forces one at once (:class:`StopSignal` raised from the handler)."""

    def __init__(self) -> None:
        self.signums: list[int] = []

    def __call__(self) -> int:
        """The signal of the stop requested (0: none)."""
        return self.signums[0] if self.signums else 0

    @property
    def forced(self) -> int:
        """The signal that forced the stop (0: none)."""
        return self.signums[1] if len(self.signums) > 1 else 0


@contextlib.contextmanager
def _sigint_at_epoch_end(enabled: bool) -> Iterator[_StopRequests]:
    """Make the first Ctrl-C (SIGTERM, SIGHUP) a request to stop at the end of the epoch (so the
    checkpoint written then is consistent); a second one raises :class:`StopSignal` at once.
    Yields the :class:`_StopRequests` (called: the signal of the stop requested, 0: none). Only
    in the main thread, and only for the signals :func:`_takes_over` allows."""
    requests = _StopRequests()
    signums = ([s for s in STOP_SIGNALS if _takes_over(s)] if enabled
               and threading.current_thread() is threading.main_thread() else [])
    if not signums:
        yield requests
        return

    def handler(signum: int, frame: Any) -> None:
        requests.signums.append(signum)
        if len(requests.signums) > 1:
            raise StopSignal(signum)
        if signum == signal.SIGINT:
            _say("\nstopping at the end of this epoch (Ctrl-C again to stop now)\n")
        else:
            name = signal.Signals(signum).name
            _say(f"\n{name}: stopping at the end of this epoch ({name} again to stop now)\n")

    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield requests
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
