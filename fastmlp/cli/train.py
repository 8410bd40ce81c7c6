"""``fastmlp train``: parse the options into a :class:`~fastmlp.config.RunConfig`, hand it to
:func:`fastmlp.runner.run`, report. ``--resume DIR`` reads the config back from DIR's
checkpoint (:func:`fastmlp.runner.resume_config`)."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys

from .. import report, runner
from ..backend import DEVICES
from ..config import RESUME_MAY_CHANGE as RUN_MAY_CHANGE
from ..config import RunConfig
from ..errors import FastMLPError
from ..kernels import ACTIVATIONS
from ..model import DTYPES
from ..train import DivergenceError
from .common import (
    EXIT_DIVERGED,
    EXIT_OK,
    PROG,
    Command,
    Parser,
    add_data_options,
    add_run_options,
    error,
    setting,
    stopped_exit_code,
)

# the options of train alone that --resume may change too (RESUME_MAY_CHANGE: the run's own)
CLI_MAY_CHANGE = ("no_progress", "quiet")
RESUME_MAY_CHANGE = (*RUN_MAY_CHANGE, *CLI_MAY_CHANGE, "resume")


def resume_may_change() -> str:
    """'--epochs, ... and --quiet': every option --resume may change, for the help and errors."""
    return runner.may_change_text(CLI_MAY_CHANGE)


def configure_train(p: argparse.ArgumentParser) -> None:
    add_data_options(p.add_argument_group("data"))

    model = p.add_argument_group("model")
    model.add_argument("--hidden", type=setting("hidden"), default=1000, metavar="H",
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
    opt.add_argument("--lr", type=setting("lr"), default=0.1,
                     help="learning rate (default: %(default)s)")
    opt.add_argument("--momentum", type=setting("momentum"), default=0.99,
                     help="momentum coefficient (default: %(default)s)")
    opt.add_argument("--batch-size", type=setting("batch_size"), default=None, metavar="B",
                     help="minibatch size (default: full batch, as the course)")
    opt.add_argument("--compiled", action=argparse.BooleanOptionalAction, default=None,
                     help="minibatch epochs as compiled calls of many steps (CPU): the "
                          "compiled minibatch epochs (2 <= B <= 512) or the compiled "
                          "small-batch loop, whichever measured faster (default: where one "
                          "measured faster than the per-step path; the header's loop: line "
                          "says which and why); --no-compiled keeps the per-step path")
    opt.add_argument("--seed", type=setting("seed"), default=0,
                     help="seed for the initial weights, minibatch order and synthetic data "
                          "(default: %(default)s)")

    out = p.add_argument_group("output")
    out.add_argument("--out", metavar="DIR", default=None,
                     help="output directory (default: runs/<YYYYmmdd-HHMMSS>); one that holds "
                          "an earlier run is refused unless --resume or --overwrite")
    out.add_argument("--overwrite", action="store_true",
                     help="replace the earlier run in --out: its files are moved into "
                          "DIR/overwritten and deleted once this run has written its own")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    out.add_argument("--quiet", action="store_true",
                     help="print only the output directory (implies --no-progress)")
    out.add_argument("--checkpoint-every", type=setting("checkpoint_every"), default=None,
                     metavar="N",
                     help="write checkpoint.npz into --out every N epochs; 0: only at the end "
                          "and on Ctrl-C (default: every 10 epochs, at most once a minute)")
    out.add_argument("--resume", metavar="DIR", default=None,
                     help="continue the run whose checkpoint.npz is in DIR, with its options, "
                          f"writing into DIR; only {resume_may_change()} may be given too")




def _explicit_options(args: argparse.Namespace) -> dict:
    """The ``train`` options given on the command line (not defaulted): dest -> value."""
    argv = getattr(args, "_argv", None)
    if not argv or "train" not in argv:
        return {}
    p = Parser(prog=f"{PROG} train")
    configure_train(p)
    for action in p._actions:  # absent options then leave no attribute at all
        action.default = argparse.SUPPRESS
    return vars(p.parse_args(argv[argv.index("train") + 1:]))


def _command_line(args: argparse.Namespace) -> str:
    argv = getattr(args, "_argv", None)
    return shlex.join([PROG, *argv]) if argv is not None else ""


def run_config(args: argparse.Namespace) -> RunConfig:
    """The run the options of ``fastmlp train`` (without --resume) describe."""
    return RunConfig(
        dataset=args.dataset, data_path=args.data_path, train_size=args.train_size,
        scale=args.scale, hidden=args.hidden, activation=args.activation, init=args.init,
        dtype=args.dtype, device=args.device, tf32=args.tf32, epochs=args.epochs, lr=args.lr,
        momentum=args.momentum, batch_size=args.batch_size, velocity_init=args.velocity_init,
        eval_every=args.eval_every, seed=args.seed, compiled=args.compiled, sparse=args.sparse,
        checkpoint_every=args.checkpoint_every, out=args.out, command=_command_line(args))


def interrupted_message(stop: runner.RunInterrupted) -> str:
    """The one line for Ctrl-C (SIGTERM, SIGHUP): what is saved and how to go on."""
    out, resume = stop.out_dir, f"{PROG} train --resume {shlex.quote(str(stop.out_dir))}"
    what = ("interrupted" if stop.signum == signal.SIGINT
            else f"stopped by {signal.Signals(stop.signum).name}")
    if stop.while_writing:
        return (f"{what} while writing the results into {out}; the finished run is in its "
                f"checkpoint, and '{resume}' writes them again")
    head = f"{what} after {stop.epochs_done} of {stop.epochs} epochs"
    wrote = "history so far written; " if stop.history_written else ""
    if stop.checkpoint_epoch is None:
        return f"{head}; {wrote or 'nothing saved '}(output directory {out})"
    return (f"{head}; {wrote}checkpoint at epoch {stop.checkpoint_epoch} in {out}; resume "
            f"with: {resume}")


def run_train(args: argparse.Namespace) -> int:
    """``fastmlp train``: the run its options describe, reported on the terminal."""
    resume = None
    if args.resume is not None and args.overwrite:
        raise FastMLPError("--resume continues the run in its directory and --overwrite "
                           "replaces it: use one or the other")
    if args.resume is not None:
        given = {k: v for k, v in _explicit_options(args).items()
                 if k not in ("resume", "overwrite")}
        config, resume = runner.resume_config(args.resume, given,
                                              also_may_change=CLI_MAY_CHANGE)
        if not config.command:  # a checkpoint without its command line: this one
            config = config.replace(command=_command_line(args))
    else:
        config = run_config(args)
    say = None if args.quiet else (lambda line: print(line, flush=True))
    try:
        result = runner.run(config, progress=not (args.no_progress or args.quiet), log=say,
                            resume=resume, overwrite=args.overwrite)
    except runner.RunInterrupted as stop:
        print(f"{PROG}: {interrupted_message(stop)}", file=sys.stderr, flush=True)
        return stopped_exit_code(stop)
    except DivergenceError as exc:
        error(f"{exc}; the history and those weights are in {exc.out_dir}")
        return EXIT_DIVERGED
    if say is not None:
        say("")
        say(report.format_summary(result.history))
        say("")
    print(f"results in {result.out_dir}" if not args.quiet else result.out_dir, flush=True)
    return EXIT_OK


COMMAND = Command(
    name="train",
    help="train the two-layer perceptron and write history, plots and the model",
    description="Train the two-layer perceptron (F -> H -> K softmax, momentum GD) and write "
                "history.json, history.csv, loss.png, accuracy.png and model.npz into --out.",
    configure=configure_train,
    run=run_train,
)
