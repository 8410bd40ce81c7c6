"""The one exception type users see (bad input, bad options, missing extras), and the probes of
users' paths that turn OSError into it."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np


def is_int(value: object) -> bool:
    """An integer (Python or NumPy) and not a bool: what every integer argument must be."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


class FastMLPError(Exception):
    """A problem the user can fix; the CLI prints its message on one line and exits non-zero."""


class InvalidInputError(FastMLPError, ValueError):
    """A bad argument or bad data handed to the API: a :class:`FastMLPError` that is also a
    ValueError, the exception scikit-learn's conventions (and ``except ValueError``) expect."""


class InvalidTypeError(FastMLPError, TypeError):
    """An argument of the wrong kind handed to the API (a tuple where a Dataset belongs): a
    :class:`FastMLPError` that is also the TypeError Python's conventions expect."""


@contextlib.contextmanager
def os_errors(action: str, path: str | os.PathLike[str], *,
              name_the_file: bool = True) -> Iterator[None]:
    """Turn an OSError inside into ``FastMLPError("cannot {action} {file}: {reason}")``.

    ``file`` is the one the error names (with ``name_the_file``), else ``path``; the reason is
    the bare ``strerror`` ("No space left on device"), without the errno tuple.
    """
    try:
        yield
    except OSError as exc:
        where = (exc.filename if name_the_file else None) or path
        raise FastMLPError(f"cannot {action} {where}: {exc.strerror or exc}") from None


# First bytes of the two formats (an .npz is a zip archive; an empty one starts with its end
# record). Anything else np.load would take for a pickle: fastmlp's readers look first.
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


def shown_path(path: str | os.PathLike[str], limit: int = 200) -> str:
    """``path`` for a message: itself, or for one longer than ``limit`` characters (a name too
    long for the file system, say) its two ends and its length, so the message stays readable."""
    text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else repr(path)
    if not isinstance(text, str) or len(text) <= limit:
        return str(text)
    return f"{text[:limit // 2 - 10]}...{text[-(limit // 2 - 10):]} ({len(text):,} characters)"


def probe_path(path: str | os.PathLike[str]) -> os.stat_result | None:
    """``os.stat(path)`` (symlinks followed), or None when nothing is there (as for
    ``Path.exists()``, also when a folder on the way is a file: nothing can be there).

    Where ``Path.exists()`` raises (a folder that may not be searched, a name too long for the
    file system), this says why in a FastMLPError naming ``path``.
    """
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise FastMLPError(f"cannot look at {shown_path(path)}: {reason}") from None


def file_kind(st: os.stat_result) -> str:
    """What ``st`` is, in words: "a regular file", "a directory", "a FIFO", ..."""
    kinds = ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"),
             (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((words for test, words in kinds if test(st.st_mode)), "not a regular file")


def open_regular(path: str | os.PathLike[str], what: str = "file") -> BinaryIO:
    """``path`` opened for binary reading, which must be a regular file: a missing one, a
    directory, a device (/dev/zero would never end) or a FIFO (never blocked on: opened
    non-blocking, then checked) each gets one FastMLPError line, and so does any OSError."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise FastMLPError(f"{what} not found: {path}") from None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise FastMLPError(f"cannot read {shown_path(path)}: {reason}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise FastMLPError(f"{what} {path} is {file_kind(st)}, not a regular file")
    return os.fdopen(fd, "rb")
