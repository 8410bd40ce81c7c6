"""The ``fastmlp`` command (also ``python -m fastmlp``).

Subcommands live in :data:`COMMANDS`: each is a :class:`Command` with a ``configure(parser)``
that adds its options and a ``run(args) -> int``. To add one (``bench``, ``sweep``,
``gradcheck``, ``evaluate``, ``predict``), write those two functions and call :func:`register`.

Error policy: a problem the user can fix (:class:`FastMLPError`, a bad option) prints one line
``fastmlp: error: <message>`` on stderr and exits 2, never a traceback; Ctrl-C exits 130 with one
line. Genuine bugs still raise, with their traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import NoReturn

from . import __version__
from .backend import DEVICES, Backend, get_backend
from .datasets import DATASET_NAMES, SCALES, Dataset, load_dataset
from .errors import FastMLPError
from .kernels import ACTIVATIONS
from .model import DTYPES, INITS, MLP
from .train import History, Trainer, train

PROG = "fastmlp"
EXIT_OK = 0
EXIT_USAGE = 2  # bad options or input: FastMLPError, argparse
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C

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


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


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


def _configure_train(p: argparse.ArgumentParser) -> None:
    data = p.add_argument_group("data")
    data.add_argument("--dataset", choices=DATASET_NAMES, default="mnist",
                      help="default: %(default)s (bundled); notmnist and npz need --data-path")
    data.add_argument("--data-path", metavar="PATH", default=None,
                      help="notMNIST.npz / any .npz file / a directory with the MNIST IDX files")
    data.add_argument("--train-size", type=train_size, default=None, metavar="N",
                      help=f"keep the first N training rows, or 'all' "
                           f"(default: {MNIST_TRAIN_SIZE} for mnist, all otherwise)")
    data.add_argument("--scale", choices=SCALES, default="unit",
                      help="pixels to [0, 1] (unit, the default) or [-1, 1] (symmetric)")

    model = p.add_argument_group("model")
    model.add_argument("--hidden", type=positive_int, default=1000, metavar="H",
                       help="hidden units (default: %(default)s)")
    model.add_argument("--activation", choices=ACTIVATIONS, default="relu",
                       help="hidden activation (default: %(default)s)")
    model.add_argument("--init", choices=INITS, default="xavier",
                       help="weight initialisation (default: %(default)s)")
    model.add_argument("--dtype", choices=DTYPES, default="float32",
                       help="data and parameter precision (default: %(default)s)")
    model.add_argument("--device", choices=DEVICES, default="auto",
                       help="default: auto, which uses CUDA when CuPy sees a GPU, else the CPU")

    opt = p.add_argument_group("training")
    opt.add_argument("--epochs", type=positive_int, default=200, metavar="N",
                     help="default: %(default)s")
    opt.add_argument("--lr", type=non_negative_float, default=0.1,
                     help="learning rate (default: %(default)s)")
    opt.add_argument("--momentum", type=non_negative_float, default=0.99,
                     help="momentum coefficient (default: %(default)s)")
    opt.add_argument("--batch-size", type=positive_int, default=None, metavar="B",
                     help="minibatch size (default: full batch, as the course)")
    opt.add_argument("--velocity-init", type=non_negative_float, default=1e-5, metavar="V",
                     help="initial value of every velocity entry (default: %(default)s)")
    opt.add_argument("--eval-every", type=positive_int, default=1, metavar="N",
                     help="measure valid/test every N epochs (default: %(default)s)")
    opt.add_argument("--seed", type=non_negative_int, default=0,
                     help="seed for the initial weights, minibatch order and synthetic data "
                          "(default: %(default)s)")

    out = p.add_argument_group("output")
    out.add_argument("--out", metavar="DIR", default=None,
                     help="output directory (default: runs/<YYYYmmdd-HHMMSS>)")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    out.add_argument("--quiet", action="store_true",
                     help="print only the output directory (implies --no-progress)")


@dataclass
class TrainRun:
    """What a ``fastmlp train`` run has built so far; handed to :func:`on_interrupt`.

    ``history`` collects the epochs completed so far (through the training callback), so an
    interrupted run still knows them; ``trainer`` holds the model, velocity and epoch counter.
    """

    args: argparse.Namespace
    out_dir: Path
    dataset: Dataset | None = None
    model: MLP | None = None
    trainer: Trainer | None = None
    history: History = field(default_factory=History)

    def record(self, trainer: Trainer, record: dict[str, float]) -> None:
        """The per-epoch training callback."""
        self.trainer = trainer
        self.history.append(record)


def on_interrupt(run: TrainRun) -> str:
    """Ctrl-C during training; returns the one-line message to print.

    HOOK for checkpointing: ``run.trainer`` (model weights, velocity, ``epoch``) and
    ``run.history`` (completed epochs) are here; write them into ``run.out_dir`` with
    :func:`fastmlp.report.atomic_write` / ``atomic_path`` so a resume can pick them up.
    For now nothing is saved.
    """
    done = run.history.epochs
    return (f"interrupted after {done} of {run.args.epochs} epochs; nothing saved "
            f"(output directory {run.out_dir})")


def _resolve_out_dir(out: str | None) -> Path:
    """Create the output directory now, before training, so a bad path fails in seconds."""
    if out is not None:
        path = Path(out).expanduser()
        if path.exists() and not path.is_dir():
            raise FastMLPError(f"--out {path} exists and is not a directory")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FastMLPError(f"cannot create output directory {path}: "
                               f"{exc.strerror or exc}") from None
        return path
    base = Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):  # two runs started in the same second get -2, -3, ...
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            raise FastMLPError(f"cannot create output directory {path}: "
                               f"{exc.strerror or exc}") from None
    raise FastMLPError(f"cannot find a free output directory next to {base}; use --out")


def _load_data(args: argparse.Namespace) -> Dataset:
    if args.dataset in ("notmnist", "npz") and not args.data_path:
        raise FastMLPError(f"--dataset {args.dataset} needs --data-path FILE.npz")
    size = args.train_size
    if size is None:
        size = MNIST_TRAIN_SIZE if args.dataset == "mnist" else None
    elif size == "all":
        size = None
    return load_dataset(args.dataset, path=args.data_path, train_size=size, scale=args.scale,
                        dtype=args.dtype, seed=args.seed)


def _say(args: argparse.Namespace, *lines: str) -> None:
    if not args.quiet:
        for line in lines:
            print(line, flush=True)


def _header(dataset: Dataset, model: MLP, backend: Backend, args: argparse.Namespace) -> list[str]:
    batch = (f"minibatch {args.batch_size}" if args.batch_size
             else f"full batch ({len(dataset.train)} rows)")
    return [
        f"data:     {dataset.summary()}",
        f"model:    MLP {model.n_in}-{model.n_hidden}-{model.n_out}, {model.activation}, "
        f"{model.init} init, {model.dtype}, {model.n_params:,} parameters",
        f"device:   {backend.describe()} [{backend.reason or 'requested'}]",
        f"training: {args.epochs} epochs, {batch}, lr {args.lr:g}, momentum {args.momentum:g}, "
        f"seed {args.seed}",
    ]


def run_train(args: argparse.Namespace) -> int:
    """``fastmlp train``: load, build, train, write history/plots/model, print the summary."""
    from . import report  # matplotlib stays unimported until the plots are drawn

    dataset = _load_data(args)
    backend = get_backend(args.device)
    model = MLP(dataset.n_features, args.hidden, dataset.n_classes, activation=args.activation,
                init=args.init, dtype=args.dtype, device=backend, seed=args.seed)
    if args.batch_size is not None and args.batch_size > len(dataset.train):
        # train() checks this too, but only after the output directory would exist
        raise FastMLPError(f"--batch-size must be at most the {len(dataset.train)} training "
                           f"rows, got {args.batch_size}")
    out_dir = _resolve_out_dir(args.out)
    _say(args, *_header(dataset, model, backend, args), f"output:   {out_dir}")
    run = TrainRun(args=args, out_dir=out_dir, dataset=dataset, model=model)
    try:
        history = train(model, dataset, epochs=args.epochs, lr=args.lr, momentum=args.momentum,
                        batch_size=args.batch_size, eval_every=args.eval_every,
                        velocity_init=args.velocity_init, seed=args.seed,
                        progress=not (args.no_progress or args.quiet), callback=run.record)
    except KeyboardInterrupt:
        print(f"{PROG}: {on_interrupt(run)}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    # What train() does not know: how the data was prepared and the exact command.
    history.config.update(scale=args.scale, data_path=args.data_path,
                          device_requested=args.device, argv=_command_line(args))
    try:
        report.write_history(history, out_dir)
        report.plot_history(history, out_dir)
        report.save_model(model, out_dir / report.MODEL_NPZ, extra=history.config)
    except OSError as exc:  # disk full, permissions, directory removed during training
        where = exc.filename or out_dir
        raise FastMLPError(f"cannot write results to {where}: {exc.strerror or exc}") from None
    _say(args, "", report.format_summary(history), "")
    print(f"results in {out_dir}" if not args.quiet else out_dir, flush=True)
    return EXIT_OK


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
    p.add_argument("--dataset", choices=DATASET_NAMES, default=None,
                   help="real data instead of random data of the canonical shapes")
    p.add_argument("--data-path", metavar="PATH", default=None)
    p.add_argument("--compare", action="store_true",
                   help="also measure course-style NumPy and, when installed, PyTorch eager and "
                        "torch.compile on the same workload")
    p.add_argument("--tf32", action="store_true",
                   help="allow TF32 float32 products on the GPU (explicit opt-in)")
    p.add_argument("--json", action="store_true", help="one JSON object per row on stdout")


def batch_or_full(text: str) -> int | None:
    """A positive integer, or ``full`` for full batch."""
    return None if text.strip().lower() == "full" else positive_int(text)


def run_bench(args: argparse.Namespace) -> int:
    """``fastmlp bench``: epoch time against the GEMM floor, one isolated process per row."""
    from . import bench

    workload = dict(bench.WORKLOAD, n_hidden=args.hidden)
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
                for batch in (args.batch_size if impl == "fastmlp" else [None]):
                    spec = dict(impl=impl, device=device, dtype=dtype, batch_size=batch,
                                epochs=args.epochs, warmup=args.warmup, repeats=args.epochs,
                                workload=workload, dataset=args.dataset,
                                data_path=args.data_path, tf32=args.tf32)
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


# -- entry point --------------------------------------------------------------------------------


def _error(message: str) -> None:
    one_line = " ".join(str(message).split())  # the contract is one line, whatever the message
    print(f"{PROG}: error: {one_line}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fastmlp`` command line; return the exit code (0 ok, 2 usage, 130 Ctrl-C)."""
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
        return args._run(args)
    except (UsageError, FastMLPError) as exc:
        _error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:  # outside training (loading data, writing results)
        print(f"{PROG}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

