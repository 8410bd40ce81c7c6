"""Checkpoints: everything needed to continue a run exactly, in one atomically written ``.npz``.

``checkpoint.npz`` holds two arrays, ``params`` and ``velocity`` (host copies of the flat
buffers), and ``meta``, one JSON string: the format and its version, the epoch, the minibatch
``np.random.Generator`` state and the history so far, whose ``config`` records the run once (its
settings as ``config["run"]``, the model as :meth:`~fastmlp.model.MLP.config` keys). Only what
that config lacks is stored beside it: the model as ``meta["model"]`` (a history not written by
``train()``), a writer's own settings as ``meta["config"]``.

Version 1 (fastmlp before the plan) also stored the run's options a second time, flat, in
``meta["config"]``, and version 2 files written before the run was recorded once hold the model
in ``meta["model"]`` and some settings flat beside ``config["run"]`` too: :func:`load_checkpoint`
reads every layout and returns ``"config"`` as version 1 stored it (:func:`resume_record`) and
``"model"`` either way.

It is written through :func:`fastmlp.report.atomic_write` (temp file in the same directory,
fsync, ``os.replace``), so a process killed at any moment leaves the previous checkpoint intact.
A killed writer may leave a hidden ``.checkpoint.npz.*.tmp`` behind; it is never read.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .config import CHECKPOINT_KEYS
from .errors import FastMLPError, is_int, os_errors, probe_path
from .history import History
from .jsonsafe import json_clean
from .npyfile import NumpyFileError, read_npz
from .report import atomic_write
from .settings import check_settings


class Trainer(Protocol):
    """What a checkpoint takes from :class:`fastmlp.train.Trainer` (named here, not imported:
    the trainer module imports this one)."""

    epoch: int
    model: Any

    def state_dict(self) -> dict[str, Any]: ...

__all__ = ["CHECKPOINT_NPZ", "FORMAT", "VERSION", "Checkpointer", "checkpoint_path",
           "load_checkpoint", "remove_stale_temps", "save_checkpoint"]

CHECKPOINT_NPZ = "checkpoint.npz"
FORMAT = "fastmlp-checkpoint"
VERSION = 2
# the settings of a `fastmlp train` run that --resume reads back (RunConfig.checkpoint_record)
RESUME_RECORD_KEYS = (*CHECKPOINT_KEYS, "compiled", "sparse")
MODEL_KEYS = ("n_in", "n_hidden", "n_out", "activation", "init", "dtype", "seed")  # MLP.config


def checkpoint_path(path: str | os.PathLike[str]) -> Path:
    """``path`` itself, or ``path/checkpoint.npz`` when ``path`` is a directory."""
    p = Path(path).expanduser()
    st = probe_path(p)  # one clear line where is_dir() would raise
    return p / CHECKPOINT_NPZ if st is not None and stat.S_ISDIR(st.st_mode) else p


def save_checkpoint(path: str | os.PathLike[str], trainer: Trainer, history: History,
                    config: dict[str, Any] | None = None) -> Path:
    """Atomically write ``trainer``'s state, ``history`` and ``config`` to ``path`` (a file, or
    a directory to hold ``checkpoint.npz``); return the file's path. ``config`` None: the run's
    settings are those ``history.config`` records (not stored twice).

    Call it between epochs only: mid-epoch the weights and the epoch counter disagree.
    """
    if history.epochs != trainer.epoch:
        raise FastMLPError(f"cannot checkpoint: the history holds {history.epochs} epochs but "
                           f"the trainer has done {trainer.epoch}")
    target = checkpoint_path(path)
    state = trainer.state_dict()
    meta = {"format": FORMAT, "version": VERSION, "epoch": state["epoch"],
            "rng_state": state["rng_state"], "history": history.to_dict()}
    model = trainer.model.config()
    if any(history.config.get(key) != value for key, value in model.items()):
        meta["model"] = model  # a history of another writer's, without the model's keys
    if config is not None:
        meta["config"] = config
    # allow_nan=False: strict JSON; json_clean already mapped non-finite floats to null
    text = json.dumps(json_clean(meta), allow_nan=False)
    return atomic_write(target, lambda f: np.savez(
        f, params=state["params"], velocity=state["velocity"], meta=np.array(text)), binary=True)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint (a file, or a directory holding ``checkpoint.npz``).

    Returns ``{"params", "velocity", "epoch", "rng_state"}`` (a :meth:`Trainer.state_dict`, so
    it can go straight to ``load_state_dict`` or ``train(state=...)``) plus ``"history"`` (a
    :class:`History`), ``"config"``, ``"model"`` (the model's config), ``"version"`` and
    ``"path"``. Raises :class:`FastMLPError` for a missing, corrupt or incompatible file.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise FastMLPError(f"a checkpoint path must be a str or os.PathLike, got {path!r}")
    given = Path(path).expanduser()
    given_stat = probe_path(given)
    target = given / CHECKPOINT_NPZ if given_stat and stat.S_ISDIR(given_stat.st_mode) else given
    target_stat = given_stat if target == given else probe_path(target)
    if target_stat is None:
        where = f"in {given}" if target != given else f"at {given}"
        raise FastMLPError(f"no checkpoint {where}")
    name = target.name if target.parent == given else str(target)
    try:
        arrays, _ = read_npz(target, ("params", "velocity", "meta"), what="checkpoint")
    except NumpyFileError as exc:
        raise FastMLPError(f"{name} is corrupt: {exc.reason}") from None
    missing = [k for k in ("params", "velocity", "meta") if k not in arrays]
    if missing:
        raise FastMLPError(f"{name} is corrupt: missing {', '.join(missing)}")
    params, velocity = arrays["params"], arrays["velocity"]
    try:
        meta_array = arrays["meta"]
        if meta_array.ndim != 0 or meta_array.dtype.kind != "U":
            raise ValueError(f"meta must be a JSON string, got {meta_array.dtype} "
                             f"{meta_array.shape}")
        meta = json.loads(str(meta_array))
    except (ValueError, RecursionError) as exc:  # bad JSON; RecursionError: absurd nesting
        raise FastMLPError(f"{name} is corrupt: {_reason(exc)}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FastMLPError(f"{name} is not a fastmlp checkpoint")
    version = meta.get("version")
    if not is_int(version) or version < 1:  # bool is no version either
        raise FastMLPError(f"{name} is corrupt: its checkpoint format version is {version!r} "
                           f"({type(version).__name__}), not a whole number >= 1")
    if version > VERSION:
        raise FastMLPError(f"{name} has checkpoint format version {version}; this fastmlp "
                           f"reads versions up to {VERSION} (upgrade fastmlp)")
    try:
        epoch = meta["epoch"]
        # a null or absent config or model records none; another type is damage
        config, model = ({} if meta.get(key) is None else meta[key] for key in ("config", "model"))
        for key, value in (("history", meta["history"]), ("config", config), ("model", model)):
            if not isinstance(value, dict):
                raise TypeError(f"{key} must be a JSON object, got {type(value).__name__}")
        history = History.from_dict(meta["history"])
        if version >= 2 and meta.get("config") is None:
            config = resume_record(history.config)
        if meta.get("model") is None:  # the history's config records the model
            model = {key: history.config[key] for key in MODEL_KEYS if key in history.config}
        out = {"params": params, "velocity": velocity, "epoch": epoch,
               "rng_state": meta["rng_state"], "history": history, "config": config,
               "model": model, "version": version, "path": target}
        problem = _inconsistency(out)
    # AttributeError: a wrong type deeper in, as a list for the history's "final"
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as exc:
        problem = _reason(exc)
    if problem:
        raise FastMLPError(f"{name} is corrupt: {problem}")
    return out


def resume_record(config: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint's history ``config`` says of the run's settings: for a ``fastmlp
    train`` run (``config["run"]``, RunConfig.to_dict), the keys --resume reads
    (:data:`RESUME_RECORD_KEYS` and the command line as ``argv``), as version 1 stored them;
    for another writer, the history's config itself."""
    run = config.get("run")
    if not isinstance(run, dict):
        return config
    record = {key: run[key] for key in RESUME_RECORD_KEYS if key in run}
    record["argv"] = run.get("command", "")
    return record


class Checkpointer:
    """The checkpoints of one run into ``path``: periodic ones (every ``every`` epochs; None:
    every 10 epochs, at most once a minute; 0: none), and those :func:`fastmlp.train.fit_epochs`
    asks for at the end, on Ctrl-C and after a divergence. ``config`` goes into each (None: the
    history's config records the run, see :func:`save_checkpoint`)."""

    AUTO_EVERY = 10
    AUTO_MIN_INTERVAL_S = 60.0  # the default keeps checkpoint I/O negligible on fast devices

    def __init__(self, path: str | os.PathLike[str], every: int | None,
                 config: dict[str, Any] | None = None):
        check_settings({"checkpoint_every": every})
        self.path, self.config = path, config
        self.every = self.AUTO_EVERY if every is None else int(every)
        self.min_interval_s = self.AUTO_MIN_INTERVAL_S if every is None else 0.0
        self.last_save = time.monotonic()
        self.saved_epoch = -1

    def periodic(self, trainer: Trainer, history: History) -> None:
        """After an epoch: write one when the cadence says so."""
        if (self.every and trainer.epoch % self.every == 0
                and time.monotonic() - self.last_save >= self.min_interval_s):
            self.save(trainer, history)

    def save(self, trainer: Trainer, history: History) -> None:
        """Write one now (between epochs only)."""
        with os_errors("write checkpoint", self.path):
            save_checkpoint(self.path, trainer, history, self.config)
        self.saved_epoch, self.last_save = trainer.epoch, time.monotonic()


def remove_stale_temps(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete temp files a killed checkpoint writer left in ``directory``; return them."""
    removed = []
    for p in Path(directory).glob(f".{CHECKPOINT_NPZ}.*.tmp"):
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def _inconsistency(ck: dict[str, Any]) -> str:
    """Why the parts of a loaded checkpoint disagree, or "" when they agree."""
    params, velocity, epoch = ck["params"], ck["velocity"], ck["epoch"]
    if params.ndim != 1 or params.dtype.name not in ("float32", "float64"):
        return f"params must be a flat float32/float64 array, got {params.dtype} {params.shape}"
    if velocity.shape != params.shape or velocity.dtype != params.dtype:
        return "params and velocity differ in shape or dtype"
    if not isinstance(epoch, int) or epoch < 0:
        return f"bad epoch {epoch!r}"
    if ck["history"].epochs != epoch:
        return f"the history holds {ck['history'].epochs} epochs but the epoch is {epoch}"
    if not isinstance(ck["rng_state"], dict):
        return "bad random generator state"
    m = ck["model"]
    if {"n_in", "n_hidden", "n_out"} <= m.keys():
        n = (m["n_in"] + 1) * m["n_hidden"] + (m["n_hidden"] + 1) * m["n_out"]
        if params.size != n:
            return f"{params.size} parameters for a {m['n_in']}-{m['n_hidden']}-{m['n_out']} model"
    return ""


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
