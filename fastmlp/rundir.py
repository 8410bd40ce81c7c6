"""An output directory owned by one run at a time, and an earlier run in it never destroyed.

- :class:`RunLock`: ``DIR/.fastmlp.lock`` (JSON: pid, host, process start time, command) held
  while a run or a sweep writes into DIR. A second run into the same DIR is refused with one line;
  a lock left by a process that no longer runs (kill -9, power loss) on this host is stale and is
  cleared. Created with a hard link of a complete temp file, so the lock is never seen half
  written.
- :func:`earlier_run_files`: what an earlier run left in DIR (checkpoint, model, histories,
  plots). ``fastmlp train`` refuses such a DIR unless ``--resume`` or ``--overwrite``.
- :func:`set_aside`: ``--overwrite`` moves those files into ``DIR/overwritten/`` before training,
  so DIR never holds a mix of two runs that ``--resume`` could mistake, and an interrupted or
  failed new run loses nothing; :func:`drop_set_aside` deletes them once the new run has written
  its own results.
- :func:`remove_stale_temps`: the hidden temp files (``.NAME.<hex>.tmp``) of a killed writer,
  cleared by the next run that holds the lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from .errors import FastMLPError, os_errors

__all__ = ["LOCK_FILE", "SET_ASIDE_DIR", "RunLock", "drop_set_aside", "earlier_run_files",
           "remove_stale_temps", "set_aside"]

LOCK_FILE = ".fastmlp.lock"
SET_ASIDE_DIR = "overwritten"


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (Linux /proc; None elsewhere or when it has gone), so
    that a pid reused by another process does not pass for the lock's owner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int, started: str | None) -> bool:
    """Whether the process ``pid`` (started at ``started``, if known) still runs here."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    except OSError:
        return False
    now = _start_time(pid)
    return started is None or now is None or now == started


class RunLock:
    """``DIR/.fastmlp.lock`` for one run's lifetime: :meth:`acquire` (raises
    :class:`FastMLPError` when a live process holds it), :meth:`release`; usable as a context
    manager."""

    def __init__(self, directory: str | os.PathLike[str], command: str = ""):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self.command = command
        self.held = False

    def _record(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "host": socket.gethostname(),
                "started": _start_time(os.getpid()), "command": self.command or
                " ".join(sys.argv)}

    def _try_create(self) -> bool:
        tmp = self.directory / f".{LOCK_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(self._record()) + "\n", encoding="utf-8")
        try:
            os.link(tmp, self.path)  # atomic, and the lock is complete when it appears
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links on this filesystem: exclusive create instead
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(tmp.read_text(encoding="utf-8"))
            return True
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def holder(self) -> dict[str, Any] | None:
        """The lock's record, or None when there is none or it is unreadable (damaged)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def acquire(self) -> RunLock:
        """Take the lock; clear a stale one; raise :class:`FastMLPError` if a live run has it
        (or the lock cannot be written)."""
        with os_errors("lock the output directory", self.directory, name_the_file=False):
            return self._acquire()

    def _acquire(self) -> RunLock:
        for _ in range(3):  # another process may clear or take a stale lock at the same time
            if self._try_create():
                self.held = True
                return self
            holder = self.holder()
            if holder is None:  # released in the meantime
                continue
            pid, host = holder.get("pid"), holder.get("host")
            if (isinstance(pid, int) and host == socket.gethostname()
                    and _alive(pid, holder.get("started"))):
                raise FastMLPError(f"{self.directory} is in use by another fastmlp run (pid "
                                   f"{pid}: {holder.get('command') or '?'}); wait for it to end "
                                   f"or choose another --out")
            if isinstance(pid, int) and host != socket.gethostname():
                raise FastMLPError(f"{self.directory} is in use by a fastmlp run on host {host} "
                                   f"(pid {pid}); if none runs there, remove {self.path}")
            # its process has gone (or the lock is damaged): stale, cleared
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        raise FastMLPError(f"cannot take the lock {self.path}: other runs keep taking it")

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if not self.held:
            return
        self.held = False
        holder = self.holder()
        if holder and holder.get("pid") == os.getpid():
            with contextlib.suppress(OSError):
                self.path.unlink()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def earlier_run_files(directory: Path, names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` (a run's files) exist in ``directory``."""
    return [name for name in names if (directory / name).is_file()]


def set_aside(directory: Path, names: tuple[str, ...]) -> list[str]:
    """Move the files ``names`` of an earlier run into ``directory/overwritten/`` (replacing what
    an earlier ``--overwrite`` left there); return the names moved. Each move is a rename within
    one filesystem: a kill at any moment leaves every file whole, in one place or the other."""
    moved = earlier_run_files(directory, names)
    if not moved:
        return []
    aside = directory / SET_ASIDE_DIR
    if aside.is_dir():  # the files of a run already overwritten once
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                (aside / name).unlink()
    aside.mkdir(exist_ok=True)
    for name in moved:
        os.replace(directory / name, aside / name)
    return moved


def drop_set_aside(directory: Path, names: tuple[str, ...]) -> None:
    """Delete what :func:`set_aside` kept, now that the new run has written its own files."""
    aside = directory / SET_ASIDE_DIR
    if not aside.is_dir():
        return
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            (aside / name).unlink()
    with contextlib.suppress(OSError):  # left when the user put something else there
        aside.rmdir()


def remove_stale_temps(directory: Path, names: tuple[str, ...]) -> list[Path]:
    """Delete the temp files ``.NAME.<hex>.tmp`` that a killed writer left in ``directory`` for
    each of ``names`` (call it holding the directory's lock: no live writer then); return them."""
    removed = []
    for name in names:
        for p in directory.glob(f".{name}.*.tmp"):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed
