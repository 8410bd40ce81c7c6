"""One training run from its :class:`~fastmlp.config.RunConfig`: ``fastmlp.run(config)``.

Loads the data, builds the model, trains (checkpointing into the output directory, Ctrl-C,
SIGTERM and SIGHUP stopping at the end of the epoch), writes history.json/csv, the plots and
model.npz. The output directory is locked while the run writes there, and an earlier run in it is
never deleted before this one has written its own files (:mod:`fastmlp.rundir`). ``fastmlp
train`` (and ``--resume``) and every run of ``fastmlp sweep`` go through :func:`run`; the
command line only parses options into a RunConfig and reports.
"""

from __future__ import annotations

import importlib.util
import signal
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from . import report
from .backend import Backend, get_backend
from .checkpoint import CHECKPOINT_NPZ, Checkpointer, load_checkpoint
from .config import CHECKPOINT_KEYS, RESUME_MAY_CHANGE, RunConfig, option, train_rows
from .datasets import Dataset, TrainSizeError, data_fingerprint, load_dataset
from .errors import FastMLPError, os_errors, probe_path
from .history import History
from .kernels import warmup
from .model import MLP
from .plan import Plan, make_plan
from .rundir import (
    LOCK_FILE,
    SET_ASIDE_DIR,
    RunLock,
    drop_set_aside,
    earlier_run_files,
    remove_stale_temps,
    set_aside,
)
from .train import DivergenceError, check_batch_size, train

__all__ = ["Resume", "RunInterrupted", "RunResult", "load_run_data", "prepare_out_dir",
           "resume_config", "run"]

DATA_FINGERPRINT = "data_fingerprint"  # the history config's key for it

# what a run leaves in its directory: a fresh run refuses a directory holding any of them
# (unless --overwrite, which sets them aside); their temp files are cleared under the lock
RUN_FILES = (CHECKPOINT_NPZ, report.MODEL_NPZ, report.HISTORY_JSON, report.HISTORY_CSV,
             report.LOSS_PNG, report.ACCURACY_PNG)
TEMP_NAMES = (*RUN_FILES, "write-check", LOCK_FILE)


@dataclass
class RunResult:
    """A finished run: its history, the trained model and where its files are (None when the
    run wrote none)."""

    history: History
    model: MLP
    out_dir: Path | None


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM, SIGHUP: ``signum``) stopped a run that writes files: after
    ``epochs_done`` of ``epochs`` epochs (``history_written``: history.json holds them), with the
    last checkpoint at ``checkpoint_epoch`` (None: none) in ``out_dir``; ``while_writing``:
    training was over and checkpointed, the results were being written."""

    def __init__(self, out_dir: Path, epochs_done: int, epochs: int, *,
                 history_written: bool = False, checkpoint_epoch: int | None = None,
                 while_writing: bool = False, signum: int = signal.SIGINT):
        super().__init__(f"interrupted after {epochs_done} of {epochs} epochs")
        self.out_dir, self.epochs_done, self.epochs = out_dir, epochs_done, epochs
        self.history_written, self.checkpoint_epoch = history_written, checkpoint_epoch
        self.while_writing, self.signum = while_writing, int(signum)


@dataclass
class Resume:
    """A run to continue: its checkpoint (:func:`fastmlp.checkpoint.load_checkpoint`), its
    directory, and whether the data path is the recorded one (not given again)."""

    checkpoint: dict[str, Any]
    directory: Path
    recorded_data_path: bool


def load_run_data(config: RunConfig) -> Dataset:
    """The Dataset that ``config``'s data settings name, as every run loads it."""
    rows = train_rows(config.dataset, config.train_size)
    try:
        return load_dataset(config.dataset, path=config.data_path, train_size=rows,
                            scale=config.scale, dtype=config.dtype, seed=config.seed)
    except TrainSizeError as exc:  # its message names the library's train_size, not the option
        default = " (its default for mnist)" if config.train_size is None else ""
        raise FastMLPError(f"--train-size must be between 1 and {exc.rows}, the training rows "
                           f"of {config.dataset}, got {rows}{default}") from None


def prepare_out_dir(out: str | None, prefix: str = "") -> Path:
    """Create the output directory (default runs/<prefix><timestamp>) now, before any work,
    so a bad path fails in seconds."""
    if out is not None:
        if not str(out).strip():  # Path("") is the current directory: never meant
            raise FastMLPError("--out is empty; give a directory")
        path = Path(out).expanduser()
        st = probe_path(path)  # one line where exists() would raise (a name too long, ...)
        if st is not None and not stat.S_ISDIR(st.st_mode):
            raise FastMLPError(f"--out {path} exists and is not a directory")
        with os_errors("create output directory", path, name_the_file=False):
            path.mkdir(parents=True, exist_ok=True)
        with os_errors("write into output directory", path, name_the_file=False):
            report.check_writable(path)
        return path
    base = Path("runs") / f"{prefix}{datetime.now():%Y%m%d-%H%M%S}"
    for n in range(1, 1000):  # two runs started in the same second get -2, -3, ...
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        with os_errors("create output directory", path, name_the_file=False):
            try:
                path.mkdir(parents=True, exist_ok=False)
                return path
            except FileExistsError:
                continue
    raise FastMLPError(f"cannot find a free output directory next to {base}; use --out")


def may_change_text(also: tuple[str, ...] = ()) -> str:
    """'--epochs, ... and --quiet': the settings a resumed run may change (plus ``also``, the
    caller's own), for help texts and errors, so neither can drift from the tuple."""
    names = [option(key) for key in (*RESUME_MAY_CHANGE, *also)]
    return f"{', '.join(names[:-1])} and {names[-1]}"


def resume_config(directory: str | Path, given: dict[str, Any],
                  also_may_change: tuple[str, ...] = ()) -> tuple[RunConfig, Resume]:
    """The run checkpointed in ``directory``, to be continued: its recorded config with the
    settings of ``given`` (setting -> value, as the user gave them) that may change
    (:data:`~fastmlp.config.RESUME_MAY_CHANGE`; ``also_may_change`` names the caller's own,
    which are skipped); any other differing setting is an error."""
    if not str(directory).strip():  # Path("") is the current directory: never meant
        raise FastMLPError("--resume is empty; give the run's directory")
    directory = Path(directory).expanduser()
    # the run's checkpoint itself names its directory; any other file would not be the
    # checkpoint that the resumed run goes on writing
    st = probe_path(directory)  # one line where is_dir() would raise (a name too long, ...)
    if st is not None and stat.S_ISREG(st.st_mode) and directory.name == CHECKPOINT_NPZ:
        directory = directory.parent
        st = probe_path(directory)
    if st is None or not stat.S_ISDIR(st.st_mode):
        problem = (f"expects the run directory (the one holding {CHECKPOINT_NPZ}), not a file"
                   if st is not None else "no such directory")
        raise FastMLPError(f"--resume {directory}: {problem}")
    ck = load_checkpoint(directory)
    recorded = ck["config"]
    missing = [key for key in CHECKPOINT_KEYS if key not in recorded]
    if missing:
        raise FastMLPError(f"{ck['path']} was not written by 'fastmlp train' (no {missing[0]} "
                           f"recorded); continue it from Python with train(state=...)")
    changes, conflicts = {}, []
    for key, value in given.items():
        if key in also_may_change:
            continue
        if key in RESUME_MAY_CHANGE:
            changes[key] = value
        elif key == "out":
            if Path(value).expanduser().resolve() != directory.resolve():
                conflicts.append(f"--out {value} (the outputs go into {directory})")
        elif key in recorded:
            then = recorded[key]
            if key == "data_path" and value is not None:
                value = report.absolute_path(value)
            elif key == "train_size":  # the rows meant: the default None is 10000 of mnist
                value, then = (train_rows(recorded["dataset"], size) or "all"
                               for size in (value, then))
            if value != then:
                conflicts.append(f"{option(key)} {value} (recorded: {then})")
    if conflicts:
        raise FastMLPError(
            f"--resume continues the run recorded in {directory} with its own options; "
            f"{'; '.join(conflicts)}; only {may_change_text(also_may_change)} may change")
    config = RunConfig.from_record(recorded, **changes, out=str(directory))
    if ck["epoch"] > config.epochs:
        raise FastMLPError(f"the checkpoint in {directory} is at epoch {ck['epoch']}, past "
                           f"--epochs {config.epochs}")
    return config, Resume(ck, directory, recorded_data_path="data_path" not in given)


def build_model(config: RunConfig, dataset: Dataset, backend: Backend) -> MLP:
    """The untrained model of ``config`` for ``dataset``'s features and classes."""
    return MLP(dataset.n_features, config.hidden, dataset.n_classes,
               activation=config.activation, init=config.init, dtype=config.dtype,
               device=backend, seed=config.seed)


def check_same_data(ck: dict[str, Any], model: MLP, dataset: Dataset,
                    fingerprint: str | None = None) -> None:
    """The rebuilt model and data must be the checkpoint's (a data file may have changed):
    the same shapes, and the same values where the run recorded its data's ``fingerprint``
    (:func:`~fastmlp.datasets.data_fingerprint`; checkpoints from before it have none)."""
    now = dict(model.config(), n_train=len(dataset.train), n_valid=len(dataset.valid),
               n_test=len(dataset.test))
    then = dict(ck["history"].config, **ck["model"])
    diff = [f"{k} {then[k]} then, {now[k]} now" for k in now
            if k != "seed" and k in then and then[k] != now[k]]
    if diff:
        raise FastMLPError(f"the data or model no longer match the checkpoint {ck['path']}: "
                           f"{', '.join(diff)}")
    recorded = then.get(DATA_FINGERPRINT)
    fingerprint = fingerprint or data_fingerprint(dataset)
    if isinstance(recorded, str) and recorded != fingerprint:
        raise FastMLPError(
            f"the data are not those the run in {ck['path'].parent} was trained on: same "
            f"shapes, other values (data fingerprint {recorded} then, {fingerprint} now; the "
            f"file was edited or is another one); resume with the original data, or start a "
            f"new run")


def describe(config: RunConfig, dataset: Dataset, model: MLP, backend: Backend,
             plan: Plan) -> list[str]:
    """The lines that introduce a run: data, model, device, training, then the ``plan``'s loop
    and products."""
    batch = (f"minibatch {config.batch_size}" if config.batch_size
             else f"full batch ({len(dataset.train)} rows)")
    return [
        f"data:     {dataset.summary()}",
        f"model:    MLP {model.n_in}-{model.n_hidden}-{model.n_out}, {model.activation}, "
        f"{model.init} init, {model.dtype}, {model.n_params:,} parameters",
        f"device:   {backend.describe()} [{backend.reason or 'requested'}]",
        f"training: {config.epochs} epochs, {batch}, lr {config.lr:g}, momentum "
        f"{config.momentum:g}, seed {config.seed}",
        *plan.header(),
    ]


def plan_run(config: RunConfig, dataset: Dataset, model: MLP) -> Plan:
    """The run's :class:`~fastmlp.plan.Plan`, decided once (the header prints it, the trainer
    runs it)."""
    return make_plan(model, [s.x for s in (dataset.train, dataset.valid, dataset.test)],
                     batch_size=config.batch_size, compiled=config.compiled,
                     sparse=config.sparse)


def claim_out_dir(out_dir: Path, overwrite: bool) -> list[str]:
    """Make ``out_dir`` (locked by the caller) ready for a fresh run: refuse it when it holds an
    earlier run, unless ``overwrite``, which moves that run's files into ``out_dir/overwritten``
    (its checkpoint then can never pass for this run's, and nothing is lost if this run stops
    early); return the names moved."""
    earlier = earlier_run_files(out_dir, RUN_FILES)
    if earlier and not overwrite:
        raise FastMLPError(f"--out {out_dir} holds an earlier run ({', '.join(earlier)}); "
                           f"continue it with --resume {out_dir}, or replace it with "
                           f"--overwrite")
    with os_errors("set the earlier run's files aside in", out_dir):
        return set_aside(out_dir, RUN_FILES)


def write_results(history: History, model: MLP, out_dir: Path) -> None:
    """history.json/csv, loss/accuracy plots and model.npz into ``out_dir``."""
    # disk full, permissions, directory removed during training: one line, naming the file
    with os_errors("write results to", out_dir):
        report.write_history(history, out_dir)
        report.plot_history(history, out_dir)
        report.save_model(model, out_dir / report.MODEL_NPZ, extra=history.config)


def on_interrupt(history: History, out: Path, epochs: int,
                 saved: int | None) -> RunInterrupted:
    """Ctrl-C during training of ``epochs`` epochs into ``out``: write the ``history`` so far
    and say what is saved: the checkpoint at epoch ``saved`` (None: none).

    train() has already written ``checkpoint.npz`` (it stops at the end of the running epoch
    on the first Ctrl-C; a second, immediate one abandons the epoch and checkpoints its start).
    A fresh run refuses a directory holding another run, or sets it aside (``overwrite``), so
    ``saved`` is this run's checkpoint (or the one a resumed run started from).
    """
    written = False
    if history.epochs:
        try:
            report.write_history(history, out)
            written = True
        except (OSError, ValueError):  # keep the exit quick and the message one line
            pass
    return RunInterrupted(out, history.epochs, epochs, history_written=written,
                          checkpoint_epoch=saved)


def cupy_installed() -> bool:
    """Whether CuPy is imported or could be (not importing it): "auto" may pick the GPU then.
    Where that cannot be told (a module without a spec in its place), as if it were."""
    if "cupy" in sys.modules:
        return True
    try:
        return importlib.util.find_spec("cupy") is not None
    except (ImportError, ValueError):
        return True


def run(config: RunConfig, *, progress: bool = False, log: Callable[[str], None] | None = None,
        resume: Resume | None = None, dataset: Dataset | None = None,
        history: History | None = None, save: bool = True, overwrite: bool = False) -> RunResult:
    """Train the run ``config`` describes; return its :class:`RunResult`.

    ``progress`` shows a progress bar; ``log(line)`` gets the lines that describe the run.
    ``resume`` (:func:`resume_config`) continues a checkpointed run. ``dataset``: the data
    already loaded (as :func:`load_run_data` loads it). ``history`` is appended to in place,
    also when training fails midway. ``save`` False writes nothing (no directory, no
    checkpoint): a sweep's driver writes its runs' files itself.

    The output directory is locked for the run (another run into it is refused). A fresh run
    refuses a directory holding an earlier run; ``overwrite`` sets that run's files aside into
    ``overwritten/`` and deletes them once this run has written its own results.

    Raises :class:`RunInterrupted` on Ctrl-C, SIGTERM or SIGHUP (with ``save``;
    KeyboardInterrupt otherwise) and :class:`~fastmlp.train.DivergenceError` (its ``out_dir``
    holding the history and the last finite weights, with ``save``) when training diverges.
    """
    if config.device == "cpu" or (config.device == "auto" and not cupy_installed()):
        # a first run: the fused head compiles in a second process while the data load
        warmup.start(config.dtype)
    try:
        return _run(config, progress, log, resume, dataset, history, save, overwrite)
    finally:
        warmup.stop()  # a run that ended before its first head call no longer needs it


def _run(config: RunConfig, progress: bool, log: Callable[[str], None] | None,
         resume: Resume | None, dataset: Dataset | None, history: History | None, save: bool,
         overwrite: bool) -> RunResult:
    """:func:`run` once the head's compilation has started where it is not cached."""
    say = log or (lambda line: None)
    try:
        dataset = load_run_data(config) if dataset is None else dataset
    except FastMLPError as exc:
        if resume is None or not config.data_path or not resume.recorded_data_path:
            raise
        raise FastMLPError(f"{exc} (the data path recorded by the run in {resume.directory}; "
                           f"give --data-path if the file has moved)") from None
    backend = get_backend(config.device, tf32=config.tf32)
    model = build_model(config, dataset, backend)
    # train() checks this too, but only after the output directory would exist
    check_batch_size(config.batch_size, len(dataset.train), "--batch-size")
    # what the run records of its data, so that --resume can refuse other data (a sweep's
    # runs, which write no checkpoint, skip the hashing)
    fingerprint = data_fingerprint(dataset) if save or resume is not None else None
    if resume is not None:
        check_same_data(resume.checkpoint, model, dataset, fingerprint)
    if not save:
        return _train_run(config, dataset, model, backend, None, resume, history, progress, say)
    out_dir = prepare_out_dir(config.out)
    with RunLock(out_dir, config.command):
        with os_errors("clear temporary files in", out_dir):
            remove_stale_temps(out_dir, TEMP_NAMES)  # a killed writer's: no live one now
        moved = [] if resume is not None else claim_out_dir(out_dir, overwrite)
        if moved:
            say(f"note:     moved the earlier run's files ({', '.join(moved)}) into "
                f"{out_dir / SET_ASIDE_DIR}; they are deleted once this run has written its own")
        # a resumed run continues the one that replaced what overwritten/ holds (if anything)
        return _train_run(config, dataset, model, backend, out_dir, resume, history, progress,
                          say, drop_aside=bool(moved) or resume is not None,
                          fingerprint=fingerprint)


def _train_run(config: RunConfig, dataset: Dataset, model: MLP, backend: Backend,
               out_dir: Path | None, resume: Resume | None, history: History | None,
               progress: bool, say: Callable[[str], None], drop_aside: bool = False,
               fingerprint: str | None = None) -> RunResult:
    """:func:`run` once the output directory (if any) is locked and claimed; ``fingerprint``
    (of the data) goes into the history config."""
    if resume is not None:
        history = resume.checkpoint["history"]
    history = History() if history is None else history
    plan = plan_run(config, dataset, model)
    for line in describe(config, dataset, model, backend, plan):
        say(line)
    if out_dir is not None:
        say(f"output:   {out_dir}")
        if resume is not None:
            say(f"resume:   from epoch {resume.checkpoint['epoch']} ({out_dir / CHECKPOINT_NPZ})")
    if resume is not None:
        history.config.setdefault("resumed_at_epoch", []).append(resume.checkpoint["epoch"])
    if fingerprint is not None:
        history.config[DATA_FINGERPRINT] = fingerprint
    # the run's checkpoints; a fresh run has set any older one aside, a resumed run's stands
    # (the settings go in once: train() records the config as the history's config["run"]
    # before the first epoch, so a history written on Ctrl-C has it too)
    saver = None if out_dir is None else Checkpointer(out_dir / CHECKPOINT_NPZ,
                                                      config.checkpoint_every)
    try:
        train(model, dataset, config, progress=progress, history=history,
              state=None if resume is None else resume.checkpoint, checkpoint=saver, plan=plan)
    except KeyboardInterrupt as exc:
        if saver is None:
            raise
        # what the checkpointer wrote, known without reading it back
        saved = (saver.saved_epoch if saver.saved_epoch >= 0
                 else None if resume is None else resume.checkpoint["epoch"])
        stop = on_interrupt(history, out_dir, config.epochs, saved)
        stop.signum = getattr(exc, "signum", signal.SIGINT)  # Ctrl-C, SIGTERM or SIGHUP
        raise stop from None
    except DivergenceError as exc:
        # the model holds the last finite weights and exc.history the epochs up to them
        if out_dir is not None:
            write_results(exc.history, model, out_dir)
            if drop_aside:
                drop_set_aside(out_dir, RUN_FILES)
        exc.out_dir = out_dir
        raise
    if out_dir is not None:
        try:
            write_results(history, model, out_dir)
        except KeyboardInterrupt as exc:  # training is over and checkpointed: can be redone
            raise RunInterrupted(out_dir, history.epochs, config.epochs,
                                 checkpoint_epoch=history.epochs, while_writing=True,
                                 signum=getattr(exc, "signum", signal.SIGINT)) from None
        if drop_aside:  # this run's files are all written: the earlier run's may go
            drop_set_aside(out_dir, RUN_FILES)
    return RunResult(history, model, out_dir)
