"""Reading users' ``.npy`` and ``.npz`` files without trusting them.

``np.load`` believes a file's header: a header claiming a terabyte-sized shape makes it allocate
a terabyte ("out of memory"), and an ``.npz`` member that is not ``.npy`` data comes back as raw
``bytes``. These readers check every size the file claims against the bytes that are there before
allocating anything, so memory stays within what the file can hold (its size; for a compressed
member, deflate's most extreme ratio), and every problem ends in one :class:`NumpyFileError`.

Arrays of Python objects are refused without unpickling; structured dtypes are refused too
(fastmlp reads plain arrays only).
"""

from __future__ import annotations

import math
import os
import zipfile
from typing import IO

import numpy as np

from .errors import NPY_MAGIC, ZIP_MAGICS, FastMLPError, open_regular

__all__ = ["NumpyFileError", "read_npy", "read_npz"]

MAX_HEADER_BYTES = 10_000  # np.load's own limit on the header's dictionary
DEFLATE_MAX_RATIO = 1032  # deflate cannot expand data by more than about 1032:1
CHUNK_BYTES = 1 << 24  # read in 16 MiB pieces: no transient copy of a whole array
OBJECTS_REFUSED = ("holds arrays of Python objects, which fastmlp does not load (unpickling can "
                   "run code); save plain numeric arrays")


class NumpyFileError(FastMLPError):
    """A file that is not the NumPy data it should be; ``reason`` says why without the path,
    for callers that word the error their own way ("model.npz is corrupt: ...")."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def read_npy(path: str | os.PathLike[str], what: str = "file") -> np.ndarray:
    """The array in the ``.npy`` file at ``path`` (any shape; trailing bytes are ignored, as
    ``np.load`` does). Raises FastMLPError for a missing or unreadable file, one that is not a
    regular file, and :class:`NumpyFileError` for one that is not sound ``.npy`` data."""
    with open_regular(path, what) as f:
        size = os.fstat(f.fileno()).st_size
        try:
            return _read_array(f, size, "")
        except NumpyFileError as exc:
            raise _with_path(exc, path, ".npy") from None


def read_npz(path: str | os.PathLike[str], keys: tuple[str, ...],
             what: str = "file") -> tuple[dict[str, np.ndarray], list[str]]:
    """The arrays of ``keys`` that the ``.npz`` archive at ``path`` holds (member ``key.npy``,
    as ``np.savez`` writes it), and the names of all its arrays.

    Raises FastMLPError for a missing or unreadable file or one that is not a regular file,
    and :class:`NumpyFileError` for one that is not a sound archive of ``.npy`` members.
    """
    with open_regular(path, what) as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(len(NPY_MAGIC))
        f.seek(0)
        if head.startswith(NPY_MAGIC):
            raise NumpyFileError(f"{path} is not an .npz archive (an .npy file?)",
                                 "an .npy file, not an .npz archive")
        if not head.startswith(ZIP_MAGICS):
            reason = "it is not an .npz archive (no zip header)"
            raise NumpyFileError(f"cannot read {path} as .npz (corrupt or truncated?): {reason}",
                                 reason)
        try:
            return _read_members(f, size, keys)
        except NumpyFileError as exc:
            raise _with_path(exc, path, ".npz") from None
        except (MemoryError, RecursionError):
            raise
        except Exception as exc:  # zipfile's damage shows as many types: all mean corrupt
            reason = str(exc) or type(exc).__name__
            raise NumpyFileError(f"cannot read {path} as .npz (corrupt or truncated?): {reason}",
                                 f"corrupt or truncated ({reason})") from None


def _read_members(f: IO[bytes], size: int, keys: tuple[str, ...]
                  ) -> tuple[dict[str, np.ndarray], list[str]]:
    with zipfile.ZipFile(f) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        names = sorted({name.removesuffix(".npy") for name in infos})
        arrays = {}
        for key in keys:
            info = infos.get(f"{key}.npy") or infos.get(key)
            if info is None:
                continue
            if info.compress_size > size:
                raise _corrupt(f"member {info.filename} claims {info.compress_size:,} bytes "
                               f"in a file of {size:,}")
            # what the member can decompress to: the sizes it records, and physics
            # what the member can decompress to: the size it records, and physics (bzip2 and
            # LZMA, which numpy never writes, have no useful bound: read as the data come)
            limit, known = info.file_size, True
            if info.compress_type == zipfile.ZIP_STORED:
                limit = min(limit, info.compress_size)
            elif info.compress_type == zipfile.ZIP_DEFLATED:
                limit = min(limit, DEFLATE_MAX_RATIO * info.compress_size + 1024)
            else:
                known = False
            with archive.open(info) as member:
                arrays[key] = _read_array(member, limit, f"member {info.filename}: ", known)
        return arrays, names


def _with_path(exc: NumpyFileError, path: str | os.PathLike[str], kind: str) -> NumpyFileError:
    """``exc`` again, its message naming the file."""
    if exc.reason == OBJECTS_REFUSED:
        return NumpyFileError(f"{path} {exc.reason}", exc.reason)
    return NumpyFileError(f"cannot read {path} as {kind}: {exc.reason}", exc.reason)


def _corrupt(reason: str) -> NumpyFileError:
    return NumpyFileError(reason, reason)


def _read_array(f: IO[bytes], limit: int, where: str, known: bool = True) -> np.ndarray:
    """One ``.npy`` stream of at most ``limit`` bytes -> its array, allocating no more than the
    bytes there are; ``where`` starts each reason ("member x_train.npy: "). ``known``: the
    stream surely holds ``limit`` bytes or fewer, so the array may be allocated before it is
    read (else it is read in pieces first, costing a copy)."""
    prefix = f.read(len(NPY_MAGIC) + 2)
    if not prefix.startswith(NPY_MAGIC):
        raise _corrupt(f"{where}not NumPy data (no .npy header)")
    version = (prefix[-2], prefix[-1]) if len(prefix) == len(NPY_MAGIC) + 2 else None
    readers = {(1, 0): np.lib.format.read_array_header_1_0,
               (2, 0): np.lib.format.read_array_header_2_0}
    if version not in readers:
        raise _corrupt(f"{where}unsupported or damaged .npy header (format version {version})")
    try:
        shape, fortran_order, dtype = readers[version](f, max_header_size=MAX_HEADER_BYTES)
    except (MemoryError, RecursionError):
        raise
    except Exception as exc:  # a damaged header dictionary: ValueError, EOFError, ...
        raise _corrupt(f"{where}damaged .npy header ({type(exc).__name__}: {exc})") from None
    if dtype.hasobject:
        raise _corrupt(OBJECTS_REFUSED)
    if dtype.names is not None or dtype.subdtype is not None or dtype.itemsize == 0:
        raise _corrupt(f"{where}unsupported dtype {dtype} (fastmlp reads plain arrays)")
    if not all(isinstance(n, int) and n >= 0 for n in shape):
        raise _corrupt(f"{where}damaged .npy header (shape {shape})")
    # an empty array's other dimensions must still fit an array's size (np.load fails there)
    if math.prod(n for n in shape if n) * dtype.itemsize > np.iinfo(np.intp).max:
        raise _corrupt(f"{where}the header claims shape {shape} of {dtype}, larger than any "
                       f"array can be: the file is corrupt")
    count = math.prod(shape)
    nbytes = count * dtype.itemsize  # Python ints: no overflow, however large the claim
    if nbytes > limit:
        raise _corrupt(f"{where}the header claims shape {shape} of {dtype} ({nbytes:,} bytes) "
                       f"but the file holds at most {limit:,} bytes: the file is corrupt")
    if known:
        array = np.empty(count, dtype=dtype)
        _fill(f, array.view(np.uint8), nbytes, where)
    else:
        data = bytearray()
        while len(data) < nbytes:
            piece = f.read(min(nbytes - len(data), CHUNK_BYTES))
            if not piece:
                raise _corrupt(f"{where}truncated: {len(data):,} of {nbytes:,} bytes of data")
            data += piece
        array = np.frombuffer(data, dtype=dtype, count=count)
    if fortran_order:
        return array.reshape(shape[::-1]).transpose()
    return array.reshape(shape)


def _fill(f: IO[bytes], buffer: np.ndarray, nbytes: int, where: str) -> None:
    """Read exactly ``nbytes`` from ``f`` into the uint8 ``buffer``."""
    view = memoryview(buffer)
    done = 0
    while done < nbytes:
        got = f.readinto(view[done:done + CHUNK_BYTES])
        if not got:
            raise _corrupt(f"{where}truncated: {done:,} of {nbytes:,} bytes of data")
        done += got
