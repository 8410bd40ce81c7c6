"""The IDX format of the MNIST files: a header (magic number: element type and dims, then each
dim's size, big-endian) and the data, read gzipped or raw, never trusting the header's sizes
further than the bytes there are."""

from __future__ import annotations

import gzip
import io
import math
import os
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import FastMLPError, open_regular, os_errors

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

# IDX magic numbers of the two MNIST files: 0x08 = unsigned byte, then the number of dims.
IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801

# IDX element type codes -> big-endian NumPy dtypes (the format's full table, for parse_idx).
IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

GZIP_PIECE_BYTES = 1 << 16  # gunzip in 64 KiB pieces: memory follows the data, not its header


def parse_idx(path: str | os.PathLike[str], *, magic: int | None = None) -> np.ndarray:
    """Read one IDX file (gzip-compressed or raw, detected from its first bytes).

    Returns a writable native-endian array whose shape comes from the header, e.g. (60000, 28, 28)
    uint8 for MNIST training images or (60000,) uint8 for its labels. ``magic`` (e.g.
    ``0x00000803``) additionally requires that exact magic number. Raises FastMLPError naming the
    file if it is missing, not IDX, truncated, or has trailing bytes.
    """
    p = Path(path).expanduser()
    arr = parse_idx_bytes(_read_maybe_gzip(p, str(p)), str(p), magic)
    # A writable copy in native byte order (IDX stores multi-byte numbers big-endian).
    return arr.astype(arr.dtype.newbyteorder("="), copy=True)


def _read_maybe_gzip(src: Path | Traversable, label: str) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic (not judged by its name)."""
    return gunzip_if_gzip(read_bytes(src, label), label)


def read_bytes(src: Path | Traversable, label: str) -> bytes:
    """The file's bytes as stored (compressed or not); a user's file must be a regular one."""
    if isinstance(src, Path):
        with open_regular(src, "IDX file") as f, os_errors("read", label, name_the_file=False):
            return f.read()
    with os_errors("read", label, name_the_file=False), src.open("rb") as f:
        return f.read()


def gunzip_if_gzip(raw: bytes, label: str) -> bytes:
    """``raw`` gunzipped when it starts with the gzip magic, else ``raw`` itself.

    Decompressed in pieces, no further than the IDX header says the data runs (plus one byte,
    to notice trailing data), so a header claiming a huge shape, or a gzip bomb, costs no more
    memory than the data really there.
    """
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
            head = _read_upto(gz, 4)
            if len(head) == 4:
                head += _read_upto(gz, 4 * head[3])
            expected = _idx_data_bytes(head)
            if expected is None:  # no sound header: parse_idx_bytes says what is wrong
                return head
            return head + _read_upto(gz, expected + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise FastMLPError(f"corrupt or truncated gzip file {label}: {e}") from e


def _read_upto(f: gzip.GzipFile, n: int) -> bytes:
    """Up to ``n`` bytes of ``f`` (fewer at its end), read in pieces: however large ``n`` is,
    no more memory than the bytes there are."""
    pieces, left = [], n
    while left > 0:
        piece = f.read(min(left, GZIP_PIECE_BYTES))  # read(n) allocates n bytes up front
        if not piece:
            break
        pieces.append(piece)
        left -= len(piece)
    return b"".join(pieces)


def _idx_data_bytes(head: bytes) -> int | None:
    """The bytes of data an IDX header (its first 4 + 4 * ndim bytes) announces, computed in
    Python ints (no overflow); None when ``head`` is not a complete IDX header."""
    if len(head) < 4 or head[:2] != b"\x00\x00" or head[2] not in IDX_TYPES:
        return None
    if head[3] == 0 or len(head) < 4 + 4 * head[3]:
        return None
    shape = [int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(head[3])]
    return math.prod(shape) * IDX_TYPES[head[2]].itemsize


def parse_idx_bytes(data: bytes, label: str, magic: int | None) -> np.ndarray:
    """Parse IDX bytes into a read-only (zero-copy) array; ``label`` names the file in errors."""
    if len(data) < 4:
        raise FastMLPError(f"truncated IDX file {label}: {len(data)} bytes, no complete header")
    found = int.from_bytes(data[:4], "big")
    if magic is not None and found != magic:
        raise FastMLPError(f"bad magic number in {label}: 0x{found:08x}, expected 0x{magic:08x}")
    type_code, ndim = data[2], data[3]
    if data[:2] != b"\x00\x00" or type_code not in IDX_TYPES or ndim == 0:
        raise FastMLPError(f"{label} is not an IDX file (magic number 0x{found:08x})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise FastMLPError(f"truncated IDX file {label}: header cut short")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dt = IDX_TYPES[type_code]
    expected = math.prod(shape) * dt.itemsize  # Python ints: a huge claim cannot overflow
    payload = len(data) - header
    if payload < expected:
        # a claim far beyond the bytes there are is a damaged header, not a cut-off file
        what = "truncated IDX file" if expected < 2 * payload + 2**20 else "corrupt IDX file"
        raise FastMLPError(
            f"{what} {label}: its header says shape {shape} ({expected:,} bytes of data), "
            f"the file holds {payload:,} bytes"
        )
    if math.prod(n for n in shape if n) * dt.itemsize > np.iinfo(np.intp).max:  # empty, yet
        raise FastMLPError(f"corrupt IDX file {label}: its header says shape {shape}, larger "
                           f"than any array can be")
    if payload > expected:
        raise FastMLPError(
            f"corrupt IDX file {label}: {payload - expected} unexpected bytes after the "
            f"{shape} data"
        )
    return np.frombuffer(data, dtype=dt, count=expected // dt.itemsize, offset=header).reshape(
        shape
    )
