"""The ``fastmlp`` command (also ``python -m fastmlp``).

Subcommands live in :data:`COMMANDS`: each is a :class:`Command` with a ``configure(parser)``
that adds its options and a ``run(args) -> int``. To add one (``bench``, ``sweep``,
``gradcheck``, ``evaluate``, ``predict``), write those two functions and call :func:`register`.

Error policy: a problem the user can fix (:class:`FastMLPError`, a bad option) prints one line
``fastmlp: error: <message>`` on stderr and exits 2, never a traceback; Ctrl-C exits 130 with one
line; training that diverges exits 3. Genuine bugs still raise, with their traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from . import __version__
from .backend import DEVICES, Backend, get_backend
from .datasets import (
    DATASET_NAMES,
    SCALES,
    Dataset,
    TrainSizeError,
    load_dataset,
    scale_pixels,
)
from .errors import FastMLPError, is_int, object_arrays_refused, os_errors
from .jsonsafe import json_clean
from .kernels import ACTIVATIONS
from .model import DTYPES, INITS, MLP
from .report import absolute_path, check_writable
from .sparse import SPARSE_MAX_DENSITY, SPARSE_MODES, resolve_sparse
from .texttable import text_table
from .train import (
    COMPILED_MAX_WORK,
    SPLITS,
    DivergenceError,
    History,
    check_batch_size,
    check_compatible,
    evaluate,
    resolve_compiled,
    train,
)

PROG = "fastmlp"
EXIT_OK = 0
EXIT_USAGE = 2  # bad options or input: FastMLPError, argparse
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
EXIT_DIVERGED = 3  # fastmlp train: non-finite loss or weights
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of the output went away (`| head`)

MNIST_TRAIN_SIZE = 10_000  # the course trains on the first 10000 MNIST images


class UsageError(Exception):
    """Raised instead of argparse's print-usage-and-exit, so main() prints exactly one line."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors become :class:`UsageError` (one line, no usage dump).

    Subparsers inherit this class (argparse uses ``type(parent)`` for them).
    """

    def error(self, message: str) -> NoReturn:
        hint = f" (see '{self.prog} --help')"
        raise UsageError(message + hint)


# -- option types: argparse shows "argument --lr: <message>" for an ArgumentTypeError ----------


def _int_at_least(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a {what}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be a {what}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _int_at_least(text, 1, "positive integer")


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return _int_at_least(text, 0, "non-negative integer")


def _finite_float(text: str, positive: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    return _finite_float(text, positive=False)


def positive_float(text: str) -> float:
    """A finite number > 0."""
    return _finite_float(text, positive=True)


def train_size(text: str) -> int | str:
    """A positive integer, or ``all`` for every training row."""
    return "all" if text.strip().lower() == "all" else positive_int(text)


# -- command registry ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One subcommand: ``configure`` adds its options, ``run`` does the work and returns the exit
    code. Raise :class:`FastMLPError` for anything the user can fix."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str = ""


COMMANDS: dict[str, Command] = {}


def register(command: Command) -> Command:
    """Add ``command`` to the ``fastmlp`` command line (names must be unique)."""
    if command.name in COMMANDS:
        raise ValueError(f"command {command.name!r} is already registered")
    COMMANDS[command.name] = command
    return command


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per registered command."""
    parser = _Parser(prog=PROG, description="Train the course two-layer perceptron, fast.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for command in COMMANDS.values():
        p = sub.add_parser(command.name, help=command.help,
                           description=command.description or command.help)
        command.configure(p)
        p.set_defaults(_run=command.run)
    return parser


# -- fastmlp train ------------------------------------------------------------------------------


def add_data_options(group, *, from_run: bool = False,
                     scale_help: str = "pixels to [0, 1] (unit, the default) or [-1, 1] "
                                       "(symmetric)",
                     path_help: str = "notMNIST.npz / any .npz file / a directory with the "
                                      "MNIST IDX files") -> None:
    """The options :func:`load_data` takes (--dataset, --data-path, --train-size, --scale),
    shared by train, evaluate and sweep. ``from_run`` (evaluate): every default is None, to be
    taken from the model's recorded training run."""
    run = "that of the model's training run"
    group.add_argument("--dataset", choices=DATASET_NAMES, default=None if from_run else "mnist",
                       help=f"default: {run + ', else mnist' if from_run else 'mnist'} (bundled); "
                            f"notmnist and npz need --data-path")
    group.add_argument("--data-path", metavar="PATH", default=None, help=path_help)
    group.add_argument("--train-size", type=train_size, default=None, metavar="N",
                       help=f"keep the first N training rows, or 'all' (default: "
                            f"{run + ', else ' if from_run else ''}{MNIST_TRAIN_SIZE} for mnist, "
                            f"all otherwise)")
    group.add_argument("--scale", choices=SCALES, default=None if from_run else "unit",
                       help=scale_help)


def add_run_options(group) -> None:
    """The training options every run takes the same way (--epochs, --eval-every, --init,
    --velocity-init, --sparse), shared by train and sweep."""
    group.add_argument("--epochs", type=positive_int, default=200, metavar="N",
                       help="default: %(default)s")
    group.add_argument("--eval-every", type=positive_int, default=1, metavar="N",
                       help="measure valid/test every N epochs (default: %(default)s)")
    group.add_argument("--init", choices=INITS, default="xavier",
                       help="weight initialisation (default: %(default)s)")
    group.add_argument("--velocity-init", type=non_negative_float, default=1e-5, metavar="V",
                       help="initial value of every velocity entry (default: %(default)s)")
    group.add_argument("--sparse", choices=SPARSE_MODES, default="auto",
                       help="products over the inputs' nonzeros (CPU): auto when "
                            f"the rows' density is below {SPARSE_MAX_DENSITY} "
                            "(default: %(default)s)")


def _configure_train(p: argparse.ArgumentParser) -> None:
    add_data_options(p.add_argument_group("data"))

    model = p.add_argument_group("model")
    model.add_argument("--hidden", type=positive_int, default=1000, metavar="H",
                       help="hidden units (default: %(default)s)")
    model.add_argument("--activation", choices=ACTIVATIONS, default="relu",
                       help="hidden activation (default: %(default)s)")
    model.add_argument("--dtype", choices=DTYPES, default="float32",
                       help="data and parameter precision (default: %(default)s)")
    model.add_argument("--device", choices=DEVICES, default="auto",
                       help="default: auto, which uses CUDA when CuPy sees a GPU, else the CPU")
    model.add_argument("--tf32", action="store_true",
                       help="allow TF32 tensor-core products for float32 on the GPU (faster, "
                            "10-bit mantissa inputs; off unless asked for)")

    opt = p.add_argument_group("training")
    add_run_options(opt)
    opt.add_argument("--lr", type=non_negative_float, default=0.1,
                     help="learning rate (default: %(default)s)")
    opt.add_argument("--momentum", type=non_negative_float, default=0.99,
                     help="momentum coefficient (default: %(default)s)")
    opt.add_argument("--batch-size", type=positive_int, default=None, metavar="B",
                     help="minibatch size (default: full batch, as the course)")
    opt.add_argument("--compiled", action=argparse.BooleanOptionalAction, default=None,
                     help="minibatch epochs as compiled calls of many whole steps (CPU; "
                          "default: B = 1, or B x hidden units up to "
                          f"{COMPILED_MAX_WORK}); "
                          "--no-compiled keeps the per-step path")
    opt.add_argument("--seed", type=non_negative_int, default=0,
                     help="seed for the initial weights, minibatch order and synthetic data "
                          "(default: %(default)s)")

    out = p.add_argument_group("output")
    out.add_argument("--out", metavar="DIR", default=None,
                     help="output directory (default: runs/<YYYYmmdd-HHMMSS>)")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    out.add_argument("--quiet", action="store_true",
                     help="print only the output directory (implies --no-progress)")
    out.add_argument("--checkpoint-every", type=non_negative_int, default=None, metavar="N",
                     help="write checkpoint.npz into --out every N epochs; 0: only at the end "
                          "and on Ctrl-C (default: every 10 epochs, at most once a minute)")
    out.add_argument("--resume", metavar="DIR", default=None,
                     help="continue the run whose checkpoint.npz is in DIR, with its options, "
                          f"writing into DIR; only {resume_may_change()} may be given too")


def on_interrupt(history: History, out: Path, epochs: int) -> str:
    """Ctrl-C during training of ``epochs`` epochs into ``out``; writes the ``history`` so far
    and returns the one-line message.

    ``train()`` has already written ``checkpoint.npz`` (it stops at the end of the running epoch
    on the first Ctrl-C; after a second, immediate one the last checkpoint stands). Any
    checkpoint in ``out_dir`` belongs to this run: a fresh run removes an older one first.
    """
    from . import report
    from .checkpoint import load_checkpoint

    done = history.epochs
    head = f"interrupted after {done} of {epochs} epochs"
    wrote = ""
    if done:
        try:
            report.write_history(history, out)
            wrote = "history so far written; "
        except (OSError, ValueError):  # keep the exit quick and the message one line
            pass
    try:
        saved = load_checkpoint(out)["epoch"]
    except FastMLPError:
        return f"{head}; {wrote or 'nothing saved '}(output directory {out})"
    return (f"{head}; {wrote}checkpoint at epoch {saved} in {out}; resume with: "
            f"{PROG} train --resume {shlex.quote(str(out))}")


# Options that rebuild data, model and trainer: stored in the checkpoint, reused by --resume.
TRAIN_CONFIG = ("dataset", "data_path", "train_size", "scale", "hidden", "activation", "init",
                "dtype", "device", "epochs", "lr", "momentum", "batch_size", "velocity_init",
                "eval_every", "seed", "checkpoint_every")
# --data-path too, for a data file that moved: _check_same_data still refuses other data
RESUME_MAY_CHANGE = ("epochs", "data_path", "device", "tf32", "checkpoint_every", "no_progress",
                     "quiet", "resume")


def resume_may_change() -> str:
    """'--epochs, ... and --quiet': the options of :data:`RESUME_MAY_CHANGE` besides --resume,
    for the help and the error, so neither can drift from the tuple."""
    names = [f"--{key.replace('_', '-')}" for key in RESUME_MAY_CHANGE if key != "resume"]
    return f"{', '.join(names[:-1])} and {names[-1]}"


def _run_config(args: argparse.Namespace, cli: dict) -> dict:
    """The run's options for its checkpoint, with the data path and the original command from
    ``cli`` (:func:`_cli_config`: the path made absolute, so --resume works from anywhere)."""
    config = {key: getattr(args, key) for key in TRAIN_CONFIG}
    # compiled, sparse: not in TRAIN_CONFIG, so that checkpoints written before them still resume
    return dict(config, compiled=args.compiled, sparse=args.sparse, data_path=cli["data_path"],
                argv=cli["argv"])


def _explicit_options(args: argparse.Namespace) -> dict:
    """The ``train`` options given on the command line (not defaulted): dest -> value."""
    argv = getattr(args, "_argv", None)
    if not argv or "train" not in argv:
        return {}
    p = _Parser(prog=f"{PROG} train")
    _configure_train(p)
    for action in p._actions:  # absent options then leave no attribute at all
        action.default = argparse.SUPPRESS
    return vars(p.parse_args(argv[argv.index("train") + 1:]))


def _resume_args(args: argparse.Namespace) -> tuple[argparse.Namespace, dict]:
    """--resume DIR: the checkpoint in DIR and the options it records, with the few that may
    change taken from the command line; any other differing option is an error."""
    from .checkpoint import CHECKPOINT_NPZ, load_checkpoint, remove_stale_temps

    directory = Path(args.resume).expanduser()
    # the run's checkpoint itself names its directory; any other file would not be the
    # checkpoint that the resumed run goes on writing
    if directory.is_file() and directory.name == CHECKPOINT_NPZ:
        directory = directory.parent
    if not directory.is_dir():
        problem = (f"expects the run directory (the one holding {CHECKPOINT_NPZ}), not a file"
                   if directory.exists() else "no such directory")
        raise FastMLPError(f"--resume {directory}: {problem}")
    ck = load_checkpoint(directory)
    config = ck["config"]
    missing = [key for key in TRAIN_CONFIG if key not in config]
    if missing:
        raise FastMLPError(f"{ck['path']} was not written by 'fastmlp train' (no {missing[0]} "
                           f"recorded); continue it from Python with train(state=...)")
    merged = argparse.Namespace(**vars(args))
    for key in TRAIN_CONFIG:
        setattr(merged, key, config[key])
    merged.compiled = config.get("compiled")
    merged.sparse = config.get("sparse", "off")  # a checkpoint from before --sparse ran dense
    conflicts = []
    for key, value in _explicit_options(args).items():
        if key in RESUME_MAY_CHANGE:
            setattr(merged, key, value)
        elif key == "out":
            if Path(value).expanduser().resolve() != directory.resolve():
                conflicts.append(f"--out {value} (the outputs go into {directory})")
        elif key in config:
            recorded = config[key]
            if key == "data_path" and value is not None:
                value = absolute_path(value)
            elif key == "train_size":  # the rows meant: the default None is 10000 of mnist
                value, recorded = (train_rows(config["dataset"], size) or "all"
                                   for size in (value, recorded))
            if value != recorded:
                conflicts.append(f"--{key.replace('_', '-')} {value} (recorded: {recorded})")
    if conflicts:
        raise FastMLPError(
            f"--resume continues the run recorded in {directory} with its own options; "
            f"{'; '.join(conflicts)}; only {resume_may_change()} may change")
    if ck["epoch"] > merged.epochs:
        raise FastMLPError(f"the checkpoint in {directory} is at epoch {ck['epoch']}, past "
                           f"--epochs {merged.epochs}")
    merged.out, merged._first_argv = str(directory), config.get("argv")
    remove_stale_temps(directory)  # left by a killed writer; harmless, but clutter
    return merged, ck


def _check_same_data(ck: dict, model: MLP, dataset: Dataset) -> None:
    """The rebuilt model and data must be the checkpoint's (a data file may have changed)."""
    now = dict(model.config(), n_train=len(dataset.train), n_valid=len(dataset.valid),
               n_test=len(dataset.test))
    then = dict(ck["history"].config, **ck["model"])
    diff = [f"{k} {then[k]} then, {now[k]} now" for k in now
            if k != "seed" and k in then and then[k] != now[k]]
    if diff:
        raise FastMLPError(f"the data or model no longer match the checkpoint {ck['path']}: "
                           f"{', '.join(diff)}")


def _resolve_out_dir(out: str | None, prefix: str = "") -> Path:
    """Create the output directory (default runs/<prefix><timestamp>) now, before any work,
    so a bad path fails in seconds."""
    if out is not None:
        path = Path(out).expanduser()
        if path.exists() and not path.is_dir():
            raise FastMLPError(f"--out {path} exists and is not a directory")
        with os_errors("create output directory", path, name_the_file=False):
            path.mkdir(parents=True, exist_ok=True)
        with os_errors("write into output directory", path, name_the_file=False):
            check_writable(path)
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


def train_rows(dataset: str, train_size: int | str | None) -> int | None:
    """The rows of ``dataset`` that --train-size asks for, None for every row: its default
    (None) is the course's first 10000 rows of mnist and every row otherwise; ``"all"`` every
    row."""
    if train_size is None:
        return MNIST_TRAIN_SIZE if dataset == "mnist" else None
    return None if train_size == "all" else train_size


def load_data(dataset: str, *, data_path: str | None, train_size: int | str | None, scale: str,
              dtype: str, seed: int) -> Dataset:
    """The Dataset that the data options of train, evaluate and sweep name (their values, one
    keyword each); ``train_size`` as :func:`train_rows` reads it."""
    if dataset in ("notmnist", "npz") and not data_path:
        raise FastMLPError(f"--dataset {dataset} needs --data-path FILE.npz")
    if dataset == "synthetic" and data_path:  # it would be recorded, and looked for later
        raise FastMLPError("--dataset synthetic generates its data and takes no --data-path")
    rows = train_rows(dataset, train_size)
    try:
        return load_dataset(dataset, path=data_path, train_size=rows, scale=scale, dtype=dtype,
                            seed=seed)
    except TrainSizeError as exc:  # its message names the library's train_size, not the option
        default = " (its default for mnist)" if train_size is None else ""
        raise FastMLPError(f"--train-size must be between 1 and {exc.rows}, the training rows "
                           f"of {dataset}, got {rows}{default}") from None


PIXEL_DATASETS = ("mnist", "notmnist")  # the datasets --scale applies to


def recorded_scale(dataset: str, scale: str) -> str | None:
    """The pixel scaling a run records: ``scale`` for pixel datasets, None where the features
    are used as given (npz, synthetic), so that predict does not scale uint8 input for them."""
    return scale if dataset in PIXEL_DATASETS else None


def _load_data(args: argparse.Namespace) -> Dataset:
    return load_data(args.dataset, data_path=args.data_path, train_size=args.train_size,
                     scale=args.scale, dtype=args.dtype, seed=args.seed)


def _say(args: argparse.Namespace, *lines: str) -> None:
    if not args.quiet:
        for line in lines:
            print(line, flush=True)


def _features(dataset: Dataset) -> list:
    return [s.x for s in (dataset.train, dataset.valid, dataset.test)]


def _header(dataset: Dataset, model: MLP, backend: Backend, args: argparse.Namespace) -> list[str]:
    batch = (f"minibatch {args.batch_size}" if args.batch_size
             else f"full batch ({len(dataset.train)} rows)")
    # B = all training rows is full batch, as in Trainer
    batch_size = None if args.batch_size == len(dataset.train) else args.batch_size
    loop = resolve_compiled(args.compiled, model, batch_size)
    return [
        f"data:     {dataset.summary()}",
        f"model:    MLP {model.n_in}-{model.n_hidden}-{model.n_out}, {model.activation}, "
        f"{model.init} init, {model.dtype}, {model.n_params:,} parameters",
        f"device:   {backend.describe()} [{backend.reason or 'requested'}]",
        f"training: {args.epochs} epochs, {batch}, lr {args.lr:g}, momentum {args.momentum:g}, "
        f"seed {args.seed}",
        f"loop:     {loop[1]}",
        f"products: {resolve_sparse(args.sparse, model, _features(dataset), loop[0])[1]}",
    ]


def run_train(args: argparse.Namespace) -> int:
    """``fastmlp train``: load, build, train (checkpointing into --out), write history, plots
    and model, print the summary. ``--resume DIR`` continues the run checkpointed in DIR."""
    from . import report  # matplotlib stays unimported until the plots are drawn
    from .checkpoint import CHECKPOINT_NPZ

    resumed = None
    if args.resume is not None:
        args, resumed = _resume_args(args)
    try:
        dataset = _load_data(args)
    except FastMLPError as exc:
        if resumed is None or not args.data_path or "data_path" in _explicit_options(args):
            raise
        raise FastMLPError(f"{exc} (the data path recorded by the run in {args.out}; give "
                           f"--data-path if the file has moved)") from None
    backend = get_backend(args.device, tf32=args.tf32)
    model = MLP(dataset.n_features, args.hidden, dataset.n_classes, activation=args.activation,
                init=args.init, dtype=args.dtype, device=backend, seed=args.seed)
    # train() checks this too, but only after the output directory would exist
    check_batch_size(args.batch_size, len(dataset.train), "--batch-size")
    if resumed is not None:
        _check_same_data(resumed, model, dataset)
    out_dir = _resolve_out_dir(args.out)
    checkpoint = out_dir / CHECKPOINT_NPZ
    _say(args, *_header(dataset, model, backend, args), f"output:   {out_dir}")
    if resumed is not None:
        _say(args, f"resume:   from epoch {resumed['epoch']} ({checkpoint})")
        resumed["history"].config.setdefault("resumed_at_epoch", []).append(resumed["epoch"])
    else:
        removed = _remove_earlier_run(out_dir)
        if removed:
            _say(args, f"note:     removed the files of an earlier run in {out_dir}: "
                       f"{', '.join(removed)}")
    history = resumed["history"] if resumed is not None else History()
    # before training, so that a history written on Ctrl-C records them too
    cli = _cli_config(args)
    history.config.update(cli)
    try:
        history = train(model, dataset, epochs=args.epochs, lr=args.lr, momentum=args.momentum,
                        batch_size=args.batch_size, eval_every=args.eval_every,
                        velocity_init=args.velocity_init, seed=args.seed,
                        progress=not (args.no_progress or args.quiet), history=history,
                        state=resumed, checkpoint=checkpoint,
                        checkpoint_every=args.checkpoint_every,
                        checkpoint_config=_run_config(args, cli), compiled=args.compiled,
                        sparse=args.sparse)
    except KeyboardInterrupt:
        print(f"{PROG}: {on_interrupt(history, out_dir, args.epochs)}", file=sys.stderr,
              flush=True)
        return EXIT_INTERRUPTED
    except DivergenceError as exc:
        # The model holds the last finite weights and exc.history the epochs up to them.
        _write_results(exc.history, model, out_dir)
        _error(f"{exc}; the history and those weights are in {out_dir}")
        return EXIT_DIVERGED
    try:
        _write_results(history, model, out_dir)
    except KeyboardInterrupt:  # training is over and checkpointed: say how to get the rest
        print(f"{PROG}: interrupted while writing the results into {out_dir}; the finished run "
              f"is in its checkpoint, and '{PROG} train --resume {shlex.quote(str(out_dir))}' "
              f"writes them again", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    _say(args, "", report.format_summary(history), "")
    print(f"results in {out_dir}" if not args.quiet else out_dir, flush=True)
    return EXIT_OK


def _remove_earlier_run(out_dir: Path) -> list[str]:
    """Remove what an earlier ``train`` left in ``out_dir`` (its checkpoint, which --resume must
    never take for this run's, and its results, which must not sit beside this run's if it is
    interrupted); return the names removed."""
    from . import report
    from .checkpoint import CHECKPOINT_NPZ, remove_stale_temps

    removed = []
    with os_errors("remove the earlier run's files from", out_dir):
        for name in (CHECKPOINT_NPZ, report.MODEL_NPZ, report.HISTORY_JSON, report.HISTORY_CSV,
                     report.LOSS_PNG, report.ACCURACY_PNG):
            if (out_dir / name).is_file():
                (out_dir / name).unlink()
                removed.append(name)
        remove_stale_temps(out_dir)
    return removed


def _cli_config(args: argparse.Namespace) -> dict:
    """What train() does not know: how the data was prepared and the exact (first) command."""
    data_path = args.data_path
    if data_path is not None:  # absolute, so that evaluate finds it from any directory
        data_path = absolute_path(data_path)
    return dict(scale=recorded_scale(args.dataset, args.scale), data_path=data_path,
                device_requested=args.device,
                argv=getattr(args, "_first_argv", None) or _command_line(args))


def _write_results(history: History, model: MLP, out_dir: Path) -> None:
    """history.json/csv, loss/accuracy plots and model.npz into ``out_dir``."""
    from . import report

    # disk full, permissions, directory removed during training: one line, naming the file
    with os_errors("write results to", out_dir):
        report.write_history(history, out_dir)
        report.plot_history(history, out_dir)
        report.save_model(model, out_dir / report.MODEL_NPZ, extra=history.config)


def _command_line(args: argparse.Namespace) -> str:
    argv = getattr(args, "_argv", None)
    return shlex.join([PROG, *argv]) if argv is not None else ""


register(Command(
    name="train",
    help="train the two-layer perceptron and write history, plots and the model",
    description="Train the two-layer perceptron (F -> H -> K softmax, momentum GD) and write "
                "history.json, history.csv, loss.png, accuracy.png and model.npz into --out.",
    configure=_configure_train,
    run=run_train,
))


# -- fastmlp bench ------------------------------------------------------------------------------


def _configure_bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", nargs="+", choices=[d for d in DEVICES if d != "auto"],
                   default=["cpu"], help="devices to measure (default: cpu)")
    p.add_argument("--dtype", nargs="+", choices=DTYPES, default=["float32"],
                   help="dtypes to measure (default: float32)")
    p.add_argument("--batch-size", nargs="+", type=batch_or_full, default=[None], metavar="B",
                   help="minibatch sizes, or 'full' (default: full batch)")
    p.add_argument("--epochs", type=positive_int, default=10, metavar="N",
                   help="timed epochs per row; the median is reported (default: %(default)s)")
    p.add_argument("--warmup", type=positive_int, default=2, metavar="N",
                   help="untimed epochs first (compilation, caches) (default: %(default)s)")
    p.add_argument("--hidden", type=positive_int, default=1000, metavar="H",
                   help="hidden units (default: %(default)s)")
    p.add_argument("--activation", choices=ACTIVATIONS, default="relu",
                   help="hidden activation (default: %(default)s)")
    p.add_argument("--momentum", type=non_negative_float, default=0.9,
                   help="momentum coefficient; the learning rate is 0.01 (default: %(default)s)")
    p.add_argument("--train-size", type=positive_int, default=None, metavar="N",
                   help="training rows (default: 10000, the canonical workload)")
    p.add_argument("--compiled", action=argparse.BooleanOptionalAction, default=None,
                   help="force (or, with --no-compiled, turn off) fastmlp's compiled "
                        "small-batch loop for minibatch rows (default: its own choice)")
    p.add_argument("--sparse", choices=SPARSE_MODES, nargs="+", default=None,
                   help="fastmlp's products over the inputs' nonzeros: auto (by "
                        "density), on, off; several give a row each (default: off and on "
                        "side by side with --dataset, else auto)")
    p.add_argument("--dataset", choices=DATASET_NAMES, default=None,
                   help="real data instead of random data of the canonical shapes")
    p.add_argument("--data-path", metavar="PATH", default=None)
    p.add_argument("--compare", action="store_true",
                   help="also measure course-style NumPy and, when installed, PyTorch eager and "
                        "torch.compile on the same workload (full batch), and for each "
                        "minibatch size a PyTorch eager per-step loop")
    p.add_argument("--tf32", action="store_true",
                   help="allow TF32 float32 products on the GPU (explicit opt-in)")
    p.add_argument("--json", action="store_true", help="one JSON object per row on stdout")


def batch_or_full(text: str) -> int | None:
    """A positive integer, or ``full`` for full batch."""
    return None if text.strip().lower() == "full" else positive_int(text)


def _sparse_modes(args: argparse.Namespace, impl: str, device: str,
                  batch: int | None) -> list[str]:
    # the sparse products are fastmlp's, on the CPU: other rows run as chosen
    if impl != "fastmlp" or device != "cpu":
        return ["auto"]
    return args.sparse or (["off", "on"] if args.dataset else ["auto"])


def run_bench(args: argparse.Namespace) -> int:
    """``fastmlp bench``: epoch time against the GEMM floor, one isolated process per row."""
    from . import bench

    workload = dict(bench.WORKLOAD, n_hidden=args.hidden)
    if args.train_size is not None:
        workload["n_train"] = args.train_size
    for batch in args.batch_size:
        if batch is not None:
            check_batch_size(batch, workload["n_train"], "--batch-size")
    impls = ["fastmlp"] + ([i for i in bench.IMPLS[1:] if bench.available(i)]
                           if args.compare else [])
    if args.compare and len(impls) < len(bench.IMPLS) and not args.json:
        print("note: PyTorch is not installed; its rows are left out", file=sys.stderr)
    rows = []
    for device in args.device:
        get_backend(device)  # fail fast, with the clear message, on an unusable device
        for dtype in args.dtype:
            for impl in impls:
                if impl == "numpy-naive" and device != "cpu":
                    continue
                batches = {"fastmlp": args.batch_size, "numpy-naive": [None],
                           "torch-compile": [None]}.get(impl, args.batch_size)
                if impl == "torch-eager":  # full batch and a per-step loop per minibatch size
                    batches = [None, *(b for b in args.batch_size if b is not None)]
                for batch, sparse in ((b, m) for b in batches
                                      for m in _sparse_modes(args, impl, device, b)):
                    spec = dict(impl=impl, device=device, dtype=dtype, batch_size=batch,
                                activation=args.activation, momentum=args.momentum,
                                compiled=args.compiled, sparse=sparse, epochs=args.epochs,
                                warmup=args.warmup, repeats=args.epochs, workload=workload,
                                dataset=args.dataset, data_path=args.data_path, tf32=args.tf32)
                    row = bench.run_isolated(spec)
                    rows.append(row)
                    if args.json:
                        print(json.dumps({k: row[k] for k in (*bench.ROW_KEYS, "error")
                                          if k in row}), flush=True)
                    else:
                        if len(rows) == 1:
                            print(bench.TABLE_HEADER + "\n" + "-" * len(bench.TABLE_HEADER))
                        print(bench.format_row(row), flush=True)
    return EXIT_OK if all("error" not in r for r in rows) else 1


register(Command(
    name="bench",
    help="time epochs of the canonical workload against the GEMM floor",
    description="Seconds per epoch on the canonical workload (F=784, H=1000, K=10; 10000 "
                "train, 6000 valid, 2724 test rows) as a multiple of the time of its three big "
                "matrix products, measured in the same process.",
    configure=_configure_bench,
    run=run_bench,
))


# -- shared by gradcheck, evaluate and predict ----------------------------------------------------


def _model_line(path: str, model: MLP) -> str:
    return (f"{path} (MLP {model.n_in}-{model.n_hidden}-{model.n_out}, {model.activation}, "
            f"{model.dtype})")


# -- fastmlp gradcheck --------------------------------------------------------------------------

GRADCHECK_MODEL_ENTRIES = 32  # entries per tensor checked in a saved model: two passes each
GRADCHECK_RANDOM = {"hidden": 8, "n_in": 20, "n_classes": 10, "activation": "relu"}


def _configure_gradcheck(p: argparse.ArgumentParser) -> None:
    net = p.add_argument_group("network (default: a small random one)")
    net.add_argument("--model", metavar="MODEL.npz", default=None,
                     help="check this saved model instead of a random network")
    net.add_argument("--hidden", type=positive_int, default=None, metavar="H",
                     help=f"hidden units of the random network (default: "
                          f"{GRADCHECK_RANDOM['hidden']})")
    net.add_argument("--n-in", type=positive_int, default=None, metavar="F",
                     help=f"inputs of the random network (default: {GRADCHECK_RANDOM['n_in']}; "
                          f"784 with --dataset mnist)")
    net.add_argument("--n-classes", type=positive_int, default=None, metavar="K",
                     help=f"outputs of the random network (default: "
                          f"{GRADCHECK_RANDOM['n_classes']})")
    net.add_argument("--activation", choices=ACTIVATIONS, default=None,
                     help=f"activation of the random network (default: "
                          f"{GRADCHECK_RANDOM['activation']})")
    net.add_argument("--device", choices=DEVICES, default="auto",
                     help="device whose kernels are checked (default: auto)")
    data = p.add_argument_group("data")
    data.add_argument("--dataset", choices=("synthetic", "mnist"), default="synthetic",
                      help="rows to check on (default: %(default)s)")
    data.add_argument("--data-path", metavar="DIR", default=None,
                      help="a directory with the MNIST IDX files (default: the bundled copy)")
    data.add_argument("--samples", type=positive_int, default=16, metavar="N",
                      help="rows of data (default: %(default)s)")
    check = p.add_argument_group("check")
    check.add_argument("--max-entries", type=positive_int, default=None, metavar="M",
                       help=f"check at most M seeded random entries per tensor (default: all "
                            f"for the random network, {GRADCHECK_MODEL_ENTRIES} with --model)")
    check.add_argument("--eps", type=positive_float, default=1e-6,
                       help="finite-difference step (default: %(default)g)")
    check.add_argument("--tol", type=positive_float, default=1e-6,
                       help="largest relative error that passes (default: %(default)g)")
    check.add_argument("--seed", type=non_negative_int, default=0,
                       help="seed for the network, the data and the sampled entries "
                            "(default: %(default)s)")


def _gradcheck_model(args: argparse.Namespace, backend: Backend) -> MLP:
    """The saved model, or a random float64 network with random biases too (zero biases are a
    special point where some gradient bugs cancel out)."""
    import numpy as np

    shape_opts = ("hidden", "n_in", "n_classes", "activation")
    if args.model is not None:
        given = [f"--{o.replace('_', '-')}" for o in shape_opts if getattr(args, o) is not None]
        if given:
            raise FastMLPError(f"{', '.join(given)} describe the random network; leave them "
                               f"out with --model (the model file fixes its shape)")
        return MLP.load(args.model, device=backend)
    opts = {o: GRADCHECK_RANDOM[o] if getattr(args, o) is None else getattr(args, o)
            for o in shape_opts}
    if args.dataset == "mnist" and args.n_in is None:
        opts["n_in"] = 784
    model = MLP(opts["n_in"], opts["hidden"], opts["n_classes"], activation=opts["activation"],
                dtype="float64", device=backend, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    model.bh = backend.asarray(rng.normal(0.0, 0.5, model.shapes["bh"]))
    model.bo = backend.asarray(rng.normal(0.0, 0.5, model.shapes["bo"]))
    return model


def _gradcheck_rows(args: argparse.Namespace, model: MLP):
    """(x, y, description) of ``--samples`` rows that fit the model."""
    if args.dataset == "synthetic":
        if args.data_path is not None:
            raise FastMLPError("--data-path is for --dataset mnist")
        data = load_dataset("synthetic", n_train=args.samples, n_valid=0, n_test=0,
                            n_features=model.n_in, n_classes=model.n_out, dtype="float64",
                            seed=args.seed)
    else:
        try:
            data = load_dataset("mnist", path=args.data_path, train_size=args.samples,
                                dtype="float64")
        except TrainSizeError as exc:  # its message names train_size, not our option
            raise FastMLPError(f"--samples must be between 1 and {exc.rows} (the training "
                               f"rows of mnist), got {args.samples}") from None
    check_compatible(model, data)
    return data.train.x, data.train.y, f"{len(data.train)} {data.name} rows"


def run_gradcheck(args: argparse.Namespace) -> int:
    """``fastmlp gradcheck``: analytic gradients against central differences, per tensor."""
    from .gradcheck import gradcheck

    backend = get_backend(args.device)
    model = _gradcheck_model(args, backend)
    x, y, rows = _gradcheck_rows(args, model)
    max_entries = args.max_entries
    if max_entries is None and args.model is not None:
        max_entries = GRADCHECK_MODEL_ENTRIES
    result = gradcheck(model, x, y, eps=args.eps, max_entries=max_entries, seed=args.seed)
    what = args.model if args.model is not None else "random network"
    print(f"model:  {_model_line(what, model)}")
    print(f"data:   {rows}; mean loss {result.loss:.6g}")
    print(f"device: {backend.describe()} [{backend.reason or 'requested'}]")
    print(f"check:  central differences, eps {result.eps:g}, tol {args.tol:g}")
    for note in result.notes:
        print(f"note:   {note}")
    rows_out = [("tensor", "shape", "checked", "rel error", "result")]
    for name, err in result.items():
        shape = "x".join(str(d) for d in result.shapes[name])
        rows_out.append((name, shape, str(result.checked[name]), f"{err:.2e}",
                         "pass" if err < args.tol else "FAIL"))
    print()
    print(text_table(rows_out, n_left=2))
    failed = [name for name, err in result.items() if not err < args.tol]
    print()
    if failed:
        print(f"FAILED: {', '.join(failed)} at or above tol {args.tol:g}", flush=True)
        return 1
    print(f"passed: all {len(result)} tensors below tol {args.tol:g}", flush=True)
    return EXIT_OK


register(Command(
    name="gradcheck",
    help="check the analytic gradients against central finite differences",
    description="Compare the gradients of the mean loss (the fused kernels of --device) with "
                "central finite differences on a float64 copy, per tensor. Exit 0 when every "
                "relative error ||a-n||/(||a||+||n||) is below --tol, 1 otherwise.",
    configure=_configure_gradcheck,
    run=run_gradcheck,
))


# -- fastmlp evaluate ---------------------------------------------------------------------------

def _configure_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL.npz", help="a model written by 'fastmlp train'")
    add_data_options(p, from_run=True,
                     scale_help="pixel scaling (default: the one the model was trained with, if "
                                "recorded, else unit)")
    p.add_argument("--seed", type=non_negative_int, default=None,
                   help="seed of --dataset synthetic (default: the training run's, else 0)")
    p.epilog = ("Without --dataset and --data-path, the data is that of the model's training "
                "run, as MODEL.npz records it: dataset, data file, training rows and (synthetic) "
                "seed; with --data-path alone, only the dataset kind is taken from the record; "
                "with --dataset, none of these. The recorded pixel scaling applies unless --scale "
                "is given. Without a record: mnist, unit scaling.")
    p.add_argument("--device", choices=DEVICES, default="auto", help="default: auto")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")


def _data_options_from_run(args: argparse.Namespace, saved: dict) -> list[str]:
    """Fill the data options left out (None) from the model's recorded training run (see the
    evaluate epilog); return the options filled, as the user would have typed them."""
    recorded = saved.get("dataset") if saved.get("dataset") in DATASET_NAMES else None
    filled = []

    def fill(option: str, value) -> None:
        setattr(args, option, value)
        filled.append(f"--{option.replace('_', '-')} {value}")

    if args.dataset is None and recorded is not None:
        if args.data_path is None:  # the very data: its file, rows and seed too
            # (a synthetic run's recorded path was never read: older versions took one)
            path = saved.get("data_path") if recorded != "synthetic" else None
            if path is not None:
                if not (isinstance(path, str) and Path(path).is_absolute()
                        and Path(path).exists()):
                    raise FastMLPError(
                        f"the model was trained on --dataset {recorded} --data-path {path}, "
                        f"which is not found from here; pass --data-path (or --dataset)")
                fill("data_path", path)
            n_train = saved.get("n_train")
            if args.train_size is None and is_int(n_train) and n_train > 0:
                fill("train_size", n_train)
            seed = saved.get("seed")
            if args.seed is None and recorded == "synthetic" and is_int(seed) and seed >= 0:
                fill("seed", seed)
        filled.insert(0, f"--dataset {recorded}")
        args.dataset = recorded
    args.dataset = args.dataset or "mnist"
    if args.seed is None:
        args.seed = 0
    if args.scale is None:  # a recorded scale applies to any pixel data, the same or not
        if saved.get("scale") in SCALES:
            fill("scale", saved["scale"])
        else:
            args.scale = "unit"
    return filled


def run_evaluate(args: argparse.Namespace) -> int:
    """``fastmlp evaluate``: loss and accuracy of a saved model on each split of a dataset."""
    backend = get_backend(args.device)
    model = MLP.load(args.model, device=backend)
    from_run = _data_options_from_run(args, model.saved_config)
    args.dtype = model.dtype  # what _load_data reads, besides the data options
    try:
        dataset = _load_data(args)
    except FastMLPError as exc:
        data_options = [o for o in from_run if not o.startswith("--scale")]
        if not data_options:
            raise
        raise FastMLPError(f"{exc} ({' '.join(data_options)}: taken from the model's training "
                           f"run; give other data options to override them)") from None
    metrics = evaluate(model, dataset)  # checks that the data fits the model first
    results = {split: {"rows": len(getattr(dataset, split)), "loss": metrics[f"{split}_loss"],
                       "accuracy": metrics[f"{split}_acc"]} for split in SPLITS}
    if args.json:
        print(json.dumps(json_clean({"model": args.model, "config": model.config(),
                                     "dataset": dataset.name, "data_path": args.data_path,
                                     "scale": args.scale, "seed": args.seed,
                                     "train_size": args.train_size,
                                     "device": backend.describe(),
                                     "splits": results})), flush=True)
        return EXIT_OK
    print(f"model:  {_model_line(args.model, model)}")
    print(f"data:   {dataset.summary()}, scale {args.scale}")
    if from_run:
        print(f"        ({' '.join(from_run)}: as in the model's training run)")
    print(f"device: {backend.describe()} [{backend.reason or 'requested'}]")
    print()
    fmt = lambda v, spec: format(v, spec) if math.isfinite(v) else "n/a"  # noqa: E731
    rows = [("split", "rows", "loss", "accuracy")]
    rows += [(s, str(r["rows"]), fmt(r["loss"], ".4f"), fmt(r["accuracy"], ".4f"))
             for s, r in results.items()]
    print(text_table(rows))
    return EXIT_OK


register(Command(
    name="evaluate",
    help="loss and accuracy of a saved model on the train/valid/test splits of a dataset",
    configure=_configure_evaluate,
    run=run_evaluate,
))


# -- fastmlp predict ----------------------------------------------------------------------------

PREDICT_SCALES = ("auto", "none", *SCALES)
PREDICT_SUFFIXES = (".npy", ".csv")


def _configure_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL.npz", help="a model written by 'fastmlp train'")
    p.add_argument("images", metavar="IMAGES.npy",
                   help="(N, 784) or (N, 28, 28): floats already scaled, or uint8 pixels 0..255")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="write to FILE.npy or FILE.csv instead of printing")
    p.add_argument("--proba", action="store_true",
                   help="class probabilities (N x K) instead of labels")
    p.add_argument("--scale", choices=PREDICT_SCALES, default="auto",
                   help="unit: pixels/255; symmetric: pixels/127.5-1; none: as given; auto (the "
                        "default): uint8 images get the model's training scale (unit if not "
                        "recorded), floats are used as given")
    p.add_argument("--device", choices=DEVICES, default="auto", help="default: auto")


def _check_predict_out(out: str | None) -> Path | None:
    """Validate --out before any work, so a typo does not cost a forward pass."""
    if out is None:
        return None
    path = Path(out).expanduser()
    if path.suffix.lower() not in PREDICT_SUFFIXES:
        raise FastMLPError(f"--out must end in .npy or .csv, got {path.name!r}")
    if path.is_dir():
        raise FastMLPError(f"--out {path} is a directory")
    if not path.parent.is_dir():
        raise FastMLPError(f"--out: directory {path.parent} does not exist")
    return path


def _read_images(name: str):
    """The array in a .npy file; one-line errors for anything else."""
    import numpy as np

    from .errors import numpy_format

    path = Path(name).expanduser()
    if path.suffix.lower() != ".npy":
        raise FastMLPError(f"images must be a .npy file (numpy.save), got {path.name!r}")
    if not path.is_file():
        raise FastMLPError(f"images file not found: {path}")
    try:
        kind = numpy_format(path)  # before np.load, whose error would suggest allow_pickle
        if kind == "npz":  # an .npz archive under a .npy name
            raise FastMLPError(f"{path} is an .npz archive, not a .npy array")
        if kind is None:
            raise FastMLPError(f"{path} is not a .npy file (no NumPy header: another format, "
                               f"or corrupt or truncated?)")
        images = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # pickled objects, truncated
        raise object_arrays_refused(exc, path) or FastMLPError(
            f"cannot read {path} as .npy (corrupt or truncated?): {exc}") from None
    if images.dtype == np.bool_ or images.dtype.kind not in "iuf":
        raise FastMLPError(f"{path}: images must be real numbers, got dtype {images.dtype}")
    return images


def _prepare_images(images, model: MLP, scale: str, where: str):
    """(N, F) float rows of the model's dtype, plus a note for the user (or "")."""
    import numpy as np

    side = math.isqrt(model.n_in)
    square = f" or (N, {side}, {side})" if side * side == model.n_in else ""
    if images.ndim not in (2, 3) or math.prod(images.shape[1:]) != model.n_in or (
            images.ndim == 3 and images.shape[1:] != (side, side)):
        raise FastMLPError(f"{where} has shape {images.shape} but the model takes "
                           f"{model.n_in} features: expected (N, {model.n_in}){square}")
    if len(images) == 0:
        raise FastMLPError(f"{where} holds no images (shape {images.shape})")
    x = images.reshape(len(images), model.n_in).astype(np.float64)
    if not np.isfinite(x).all():
        raise FastMLPError(f"{where} contains NaN or infinite values")
    note = ""
    saved = model.saved_config
    if scale == "auto" and images.dtype == np.uint8 and saved.get("dataset") in ("npz",
                                                                                "synthetic"):
        scale = "none"  # trained on features used as given: so are these
    if scale == "auto":
        if images.dtype == np.uint8:
            scale = saved.get("scale") if saved.get("scale") in SCALES else "unit"
            target = "[0, 1]" if scale == "unit" else "[-1, 1]"
            note = (f"note: uint8 pixels scaled to {target} (--scale {scale}); "
                    f"--scale none uses them as given")
        else:
            scale = "none"
            if x.max() > 2.0:  # raw pixels saved as floats, most likely
                note = (f"note: values go up to {x.max():g}; if these are 0..255 pixels, "
                        f"pass --scale unit")
    with np.errstate(over="ignore"):
        x = (scale_pixels(images, scale, model.dtype) if scale in SCALES
             else np.ascontiguousarray(x, dtype=model.dtype))
    if not np.isfinite(x).all():  # float64 beyond float32's range
        raise FastMLPError(f"{where}: values overflow {model.dtype}")
    return x, note


def run_predict(args: argparse.Namespace) -> int:
    """``fastmlp predict``: labels (or probabilities) for the images in a .npy file."""
    import numpy as np

    from . import report

    out = _check_predict_out(args.out)
    images = _read_images(args.images)
    backend = get_backend(args.device)
    model = MLP.load(args.model, device=backend)
    x, note = _prepare_images(images, model, args.scale, args.images)
    if note:
        print(note, file=sys.stderr, flush=True)
    probs = backend.to_host(model.forward(backend.asarray(x, dtype=model.dtype)))
    labels = probs.argmax(axis=1).astype(np.int64)
    if out is None:
        for label, p in zip(labels, probs, strict=True):
            print(" ".join(f"{v:.6f}" for v in p) if args.proba else label)
        return EXIT_OK

    def write_csv(f) -> None:
        header = ["row", "prediction"] + ([f"p{k}" for k in range(model.n_out)]
                                          if args.proba else [])
        f.write(",".join(header) + "\n")
        for i, (label, p) in enumerate(zip(labels, probs, strict=True)):
            extra = "".join(f",{v:.8g}" for v in p) if args.proba else ""
            f.write(f"{i},{label}{extra}\n")

    # atomic: an interrupted write never leaves a complete-looking file
    with os_errors("write", out):
        if out.suffix.lower() == ".npy":
            result = probs if args.proba else labels
            report.atomic_write(out, lambda f: np.save(f, result), binary=True)
        else:
            report.atomic_write(out, write_csv, newline="")
    what = "probabilities" if args.proba else "predictions"
    print(f"wrote {len(labels)} {what} to {out}", flush=True)
    return EXIT_OK


register(Command(
    name="predict",
    help="predict the labels of images in a .npy file with a saved model",
    configure=_configure_predict,
    run=run_predict,
))


# -- fastmlp sweep (fastmlp/sweep.py: imports Dask and matplotlib only when they are used) ------

from .sweep import configure_sweep, run_sweep  # noqa: E402

register(Command(
    name="sweep",
    help="train a grid of hyperparameters x seeds and summarise it as mean ± std",
    description="Train every combination of --hidden, --lr, --momentum, --batch-size and "
                "--activation once per seed (in this process, --workers processes or on a Dask "
                "cluster with --scheduler); write each run's history.json, summary.csv, "
                "summary.json and mean-curve plots into --out. Rerun with the same --out to "
                "resume.",
    configure=configure_sweep,
    run=run_sweep,
))


# -- entry point --------------------------------------------------------------------------------


def _error(message: str) -> None:
    one_line = " ".join(str(message).split())  # the contract is one line, whatever the message
    print(f"{PROG}: error: {one_line}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fastmlp`` command line; return the exit code (0 ok, 2 usage, 3 diverged,
    130 Ctrl-C, 141 output pipe closed)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help / --version: argparse printed, then exits
            return exc.code if isinstance(exc.code, int) else EXIT_OK
        if getattr(args, "_run", None) is None:
            raise UsageError(f"choose a command: {', '.join(COMMANDS)} (see '{PROG} --help')")
        args._argv = argv
        stdout, sys.stdout = sys.stdout, _GuardedOutput(sys.stdout)
        try:
            return args._run(args)
        finally:
            sys.stdout = stdout
    except _OutputError as exc:  # a full disk under `> file`, say
        _discard_stdout()
        _error(str(exc))
        return EXIT_USAGE
    except (UsageError, FastMLPError) as exc:
        _error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:  # outside training (loading data, writing results)
        print(f"{PROG}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `fastmlp predict ... | head`: stop quietly, as other tools do
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # MemoryError is an Exception too
        if not is_out_of_memory(exc):
            raise  # a genuine bug: keep its traceback
        _error(out_of_memory_message(exc))
        return EXIT_USAGE


class _OutputError(FastMLPError):
    """Standard output refused a write (other than a closed pipe)."""


class _GuardedOutput:
    """Stands in for sys.stdout while a command runs: a failed write or flush becomes an
    :class:`_OutputError` (one line, exit 2) instead of an OSError traceback; a closed pipe
    stays a BrokenPipeError. Everything else is the wrapped stream's."""

    def __init__(self, stream: Any):
        self._stream = stream

    def _guarded(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._stream, method)(*args)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _OutputError(f"cannot write the output: {exc.strerror or exc}") from None

    def write(self, text: str) -> int:
        return self._guarded("write", text)

    def flush(self) -> None:
        self._guarded("flush")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _discard_stdout() -> None:
    # what is still buffered would fail again when Python flushes stdout at exit, with a
    # traceback-like "Exception ignored" message: send it, and anything after, to devnull
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real file behind stdout (a test's)
        pass


def is_out_of_memory(exc: BaseException) -> bool:
    """True for an out-of-memory error of any array library, recognised by type name so that
    CuPy (``cupy.cuda.memory.OutOfMemoryError``) or PyTorch need not be imported to catch it."""
    return isinstance(exc, MemoryError) or any(
        cls.__name__ == "OutOfMemoryError" for cls in type(exc).__mro__)


def out_of_memory_message(exc: BaseException) -> str:
    """One line: what ran out and what to shrink."""
    gpu = any(cls.__name__ == "OutOfMemoryError" for cls in type(exc).__mro__)
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    what = "out of GPU memory" if gpu else "out of memory"
    hint = "try a smaller --batch-size, --hidden or --train-size"
    hint += ", or --device cpu" if gpu else ""
    return f"{what} ({type(exc).__name__}{': ' + detail if detail else ''}); {hint}"


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

