"""The ``fastmlp`` command (also ``python -m fastmlp``).

Subcommands live in :data:`COMMANDS`: each is a :class:`Command` with a ``configure(parser)``
that adds its options and a ``run(args) -> int``, one module each (train, bench, gradcheck,
evaluate, predict, sweep), registered when imported below; shared options are in
:mod:`fastmlp.cli.common`.

Error policy: a problem the user can fix (:class:`FastMLPError`, a bad option) prints one line
``fastmlp: error: <message>`` on stderr and exits 2, never a traceback; Ctrl-C exits 130 with one
line, SIGTERM 143 and SIGHUP 129 likewise (they stop a run as Ctrl-C does); training that
diverges exits 3. A closed stdout or stderr is harmless (what cannot be printed is dropped).
Genuine bugs still raise, with their traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from ..errors import FastMLPError
from . import bench, doctor, evaluate, gradcheck, predict, sweep, train
from .common import (
    COMMANDS,
    EXIT_BROKEN_PIPE,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    UsageError,
    build_parser,
    closed_streams_harmless,
    error,
    register,
    stop_signals_as_interrupts,
    stopped_exit_code,
)

__all__ = ["COMMANDS", "main"]

# one module per command; registered here, in the order of the help page
for _module in (train, bench, gradcheck, evaluate, predict, sweep, doctor):
    register(_module.COMMAND)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fastmlp`` command line; return the exit code (0 ok, 1 a sweep's runs failed,
    2 usage, 3 diverged, 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP, 141 output pipe closed)."""
    with closed_streams_harmless() as stdout_closed, stop_signals_as_interrupts():
        return _main(list(sys.argv[1:] if argv is None else argv), stdout_closed)


def _main(argv: list[str], stdout_closed: bool) -> int:
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help / --version: argparse printed, then exits
            return exc.code if isinstance(exc.code, int) else EXIT_OK
        if getattr(args, "_run", None) is None:
            raise UsageError(f"choose a command: {', '.join(COMMANDS)} (see '{PROG} --help')")
        args._argv, args._stdout_closed = argv, stdout_closed
        stdout, sys.stdout = sys.stdout, _GuardedOutput(sys.stdout)
        try:
            return args._run(args)
        finally:
            sys.stdout = stdout
    except _OutputError as exc:  # a full disk under `> file`, say
        _discard_stdout()
        error(str(exc))
        return EXIT_USAGE
    except (UsageError, FastMLPError) as exc:
        error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt as exc:  # outside training (loading data, writing results)
        print(f"{PROG}: interrupted", file=sys.stderr, flush=True)
        return stopped_exit_code(exc)
    except BrokenPipeError:  # `fastmlp predict ... | head`: stop quietly, as other tools do
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # MemoryError is an Exception too
        if not is_out_of_memory(exc):
            raise  # a genuine bug: keep its traceback
        error(out_of_memory_message(exc))
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
