"""What every ``fastmlp`` command shares: exit codes, the one-line-error parser, option
types, the command registry and the data/run options of train, evaluate and sweep.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

from .. import __version__
from ..config import MNIST_TRAIN_SIZE
from ..datasets import DATASET_NAMES, SCALES
from ..model import INITS, MLP
from ..settings import RULES, setting_problem
from ..sparse import SPARSE_MAX_DENSITY, SPARSE_MODES
from ..train import STOP_SIGNALS, stop_on_signal

PROG = "fastmlp"
EXIT_OK = 0
EXIT_USAGE = 2  # bad options or input: FastMLPError, argparse
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
EXIT_DIVERGED = 3  # fastmlp train: non-finite loss or weights
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of the output went away (`| head`)
# 128 + SIGTERM (143) and 128 + SIGHUP (129): stopped as by Ctrl-C, see stopped_exit_code


def stopped_exit_code(exc: BaseException) -> int:
    """128 + the signal that stopped the command: 130 for Ctrl-C (a plain KeyboardInterrupt),
    143 for SIGTERM, 129 for SIGHUP (a :class:`~fastmlp.train.StopSignal`'s ``signum``)."""
    return 128 + int(getattr(exc, "signum", signal.SIGINT))


@contextlib.contextmanager
def stop_signals_as_interrupts() -> Iterator[None]:
    """SIGTERM and SIGHUP raise a :class:`~fastmlp.train.StopSignal` (a KeyboardInterrupt) while
    a command runs, so a scheduler's stop (timeout, docker stop, Slurm, Kubernetes) saves as
    Ctrl-C does; a signal set to be ignored (``nohup``) stays ignored."""
    previous = {}
    for signum in STOP_SIGNALS:
        if signum == signal.SIGINT:
            continue
        try:
            if signal.getsignal(signum) is signal.SIG_DFL:
                previous[signum] = signal.signal(signum, stop_on_signal)
        except ValueError:  # not the main thread: signals stay as they are
            break
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def closed_streams_harmless() -> Iterator[bool]:
    """Standard output or error closed (``>&-``, ``2>&-``): Python leaves ``sys.stdout`` /
    ``sys.stderr`` None; let them write into the null device instead (what cannot be printed is
    dropped; the run still trains and saves), and keep the descriptors 1 and 2 taken, so that no
    file the command opens becomes its standard output. Yields whether stdout was closed."""
    replaced = {}
    for fd, name in ((1, "stdout"), (2, "stderr")):
        if getattr(sys, name) is not None:
            continue
        try:
            os.fstat(fd)
        except OSError:  # closed: the null device takes its number
            null = os.open(os.devnull, os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        replaced[name] = None
        setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115
    try:
        yield "stdout" in replaced
    finally:
        for name in replaced:
            with contextlib.suppress(Exception):
                getattr(sys, name).close()
            setattr(sys, name, None)


class UsageError(Exception):
    """Raised instead of argparse's print-usage-and-exit, so main() prints exactly one line."""


class Parser(argparse.ArgumentParser):
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


# the run settings given as numbers that may have a fraction; the others are integers
FLOAT_SETTINGS = ("lr", "momentum", "velocity_init")


def setting(key: str) -> Callable[[str], Any]:
    """The option type of the run setting ``key`` (e.g. ``--lr``): the text read as a number,
    then checked by the rule every entry point shares
    (:func:`fastmlp.settings.setting_problem`), so a bad value fails while parsing."""
    number = float if key in FLOAT_SETTINGS else int

    def parse(text: str) -> Any:
        try:
            value = number(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {RULES[key].what}, got {text!r}"
                                             ) from None
        problem = setting_problem(key, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = key  # what argparse would call the type
    return parse


def train_size(text: str) -> int | str:
    """A positive integer, or ``all`` for every training row."""
    return "all" if text.strip().lower() == "all" else setting("train_size")(text)


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
    parser = Parser(prog=PROG, description="Train the course two-layer perceptron, fast.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for command in COMMANDS.values():
        p = sub.add_parser(command.name, help=command.help,
                           description=command.description or command.help)
        command.configure(p)
        p.set_defaults(_run=command.run)
    return parser



# -- options shared by train, evaluate and sweep --------------------------------------------------

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
    group.add_argument("--epochs", type=setting("epochs"), default=200, metavar="N",
                       help="default: %(default)s")
    group.add_argument("--eval-every", type=setting("eval_every"), default=1, metavar="N",
                       help="measure valid/test every N epochs (default: %(default)s)")
    group.add_argument("--init", choices=INITS, default="xavier",
                       help="weight initialisation (default: %(default)s)")
    group.add_argument("--velocity-init", type=setting("velocity_init"), default=1e-5,
                       metavar="V",
                       help="initial value of every velocity entry (default: %(default)s)")
    group.add_argument("--sparse", choices=SPARSE_MODES, default="auto",
                       help="products over the inputs' nonzeros (CPU), or over the "
                            "entries other than each feature's most frequent value c where c "
                            "is not 0 (offset: MNIST in [-1, 1]): auto when that density is "
                            f"below {SPARSE_MAX_DENSITY}; on always (around c where that "
                            "density is below it, else over the nonzeros); off never "
                            "(default: %(default)s)")



def batch_or_full(text: str) -> int | None:
    """A batch size, or ``full`` for full batch."""
    return None if text.strip().lower() == "full" else setting("batch_size")(text)



def model_line(path: str, model: MLP) -> str:
    """A saved model as gradcheck, evaluate and predict name it: path, shape, activation."""
    return (f"{path} (MLP {model.n_in}-{model.n_hidden}-{model.n_out}, {model.activation}, "
            f"{model.dtype})")


def error(message: str) -> None:
    """Print ``fastmlp: error: <message>`` on stderr, on one line whatever the message."""
    one_line = " ".join(str(message).split())
    print(f"{PROG}: error: {one_line}", file=sys.stderr, flush=True)
