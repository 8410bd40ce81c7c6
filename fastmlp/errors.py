"""The one exception type users see: bad input, bad options, missing extras."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numpy as np


def is_int(value: object) -> bool:
    """An integer (Python or NumPy) and not a bool: what every integer argument must be."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


class FastMLPError(Exception):
    """A problem the user can fix; the CLI prints its message on one line and exits non-zero."""


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


def object_arrays_refused(exc: BaseException, path: object) -> FastMLPError | None:
    """The clear error for NumPy's refusal (without ``allow_pickle``) to load an array of Python
    objects from ``path``; None for any other exception."""
    # NumPy's wording since 1.16.3; were it to change, the caller's generic error still applies
    if isinstance(exc, ValueError) and str(exc).startswith("Object arrays cannot be loaded"):
        return FastMLPError(f"{path} holds arrays of Python objects, which fastmlp does not load "
                            f"(unpickling can run code); save plain numeric arrays")
    return None
