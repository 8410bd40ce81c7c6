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


# First bytes of the two formats, as np.load tells them apart (an .npz is a zip archive; an
# empty one starts with its end record). Anything else np.load takes for a pickle and, without
# allow_pickle, refuses with advice to unpickle it: wrong for a CSV, a JSON file, random bytes.
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


def numpy_format(path: str | os.PathLike[str]) -> str | None:
    """``"npy"`` or ``"npz"`` by the first bytes of the file at ``path``; None for any other
    file (a text file, or one damaged at its start). OSError as ``open`` raises it."""
    with open(path, "rb") as f:
        head = f.read(len(NPY_MAGIC))
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith(ZIP_MAGICS):
        return "npz"
    return None


def object_arrays_refused(exc: BaseException, path: object) -> FastMLPError | None:
    """The clear error for NumPy's refusal (without ``allow_pickle``) to load an array of Python
    objects from ``path``; None for any other exception."""
    # NumPy's wording since 1.16.3; were it to change, the caller's generic error still applies
    if isinstance(exc, ValueError) and str(exc).startswith("Object arrays cannot be loaded"):
        return FastMLPError(f"{path} holds arrays of Python objects, which fastmlp does not load "
                            f"(unpickling can run code); save plain numeric arrays")
    return None
