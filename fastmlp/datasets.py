"""Loading datasets: bundled MNIST, the ECE421 notMNIST file, any ``.npz``, and synthetic blobs.

Every loader returns a :class:`Dataset` of three :class:`Split` s whose features ``x`` are an
(N, F) C-contiguous float32/float64 array and whose labels ``y`` are an (N,) int64 array in
``0 .. n_classes - 1``. Anything the user can fix (a missing file, a bad option, corrupt data)
raises :class:`fastmlp.errors.FastMLPError` with a one-line message.

This module depends only on NumPy, the standard library, :mod:`fastmlp.errors` and
:mod:`fastmlp.npyfile`, so it imports whatever state the rest of the package is in.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.resources
import io
import math
import os
import stat
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fastmlp.errors import FastMLPError, file_kind, is_int, open_regular, os_errors, probe_path
from fastmlp.npyfile import read_npz

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["DATASET_NAMES", "Dataset", "Split", "data_fingerprint", "load_dataset", "parse_idx"]

DATASET_NAMES = ("mnist", "notmnist", "npz", "synthetic")
SCALES = ("unit", "symmetric")
DTYPES = ("float32", "float64")

# IDX magic numbers of the two MNIST files: 0x08 = unsigned byte, then the number of dims.
IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801

# IDX element type codes -> big-endian NumPy dtypes (the format's full table, for parse_idx).
_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# Training rows, then test rows; labels before images so a small broken file fails fast.
_MNIST_FILES = (
    "train-labels-idx1-ubyte",
    "train-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
)
MNIST_VALID_ROWS = 10_000  # the last 10000 official training images form the validation split

# The ECE421 course split of notMNIST (seed 521; 10000 train, 6000 valid, the rest test).
NOTMNIST_SEED = 521
NOTMNIST_TRAIN_END = 10_000
NOTMNIST_VALID_END = 16_000

# An npz whose largest label exceeds both this and its row count holds ids, not class indices.
NPZ_MAX_SPARSE_CLASSES = 1000

GZIP_PIECE_BYTES = 1 << 16  # gunzip in 64 KiB pieces: memory follows the data, not its header

SYNTHETIC_SEPARATION = 8.0  # typical distance between class means, in noise standard deviations


# -- containers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """One split: features ``x`` (N, F) float32/float64, C-contiguous; labels ``y`` (N,) int64."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        # Catch hand-built splits with mismatched shapes here rather than deep inside training.
        if self.x.ndim != 2 or self.y.ndim != 1 or len(self.x) != len(self.y):
            raise FastMLPError(
                f"a split needs x of shape (N, F) and y of shape (N,); got x {self.x.shape} "
                f"and y {self.y.shape}"
            )

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Dataset:
    """A named dataset: ``train``, ``valid`` and ``test`` splits sharing F features, K classes."""

    name: str
    train: Split
    valid: Split
    test: Split
    n_classes: int = 10

    def __post_init__(self) -> None:
        widths = {s.x.shape[1] for s in (self.train, self.valid, self.test)}
        if len(widths) != 1:
            raise FastMLPError(
                f"dataset {self.name!r}: splits have different feature counts {sorted(widths)}"
            )

    @property
    def n_features(self) -> int:
        """F, the number of input features (columns of every split's ``x``)."""
        return int(self.train.x.shape[1])

    def summary(self) -> str:
        """One line, e.g. ``mnist: train 50000, valid 10000, test 10000; 784 features, ...``."""
        return (
            f"{self.name}: train {len(self.train)}, valid {len(self.valid)}, "
            f"test {len(self.test)}; {self.n_features} features, {self.n_classes} classes, "
            f"{self.train.x.dtype}"
        )


def data_fingerprint(dataset: Dataset) -> str:
    """A short hex digest of ``dataset``'s data: every split's features and labels (bytes,
    dtypes, shapes) and its class count. Equal for the same data however it was loaded; a
    changed value anywhere changes it. SHA-1 for speed, not for security (a run records it so
    that ``--resume`` can refuse other data; ~0.2 s for MNIST's 70000 rows)."""
    digest = hashlib.sha1(usedforsecurity=False)
    for split in (dataset.train, dataset.valid, dataset.test):
        for array in (split.x, split.y):
            digest.update(f"{array.dtype.str}{array.shape};".encode())
            digest.update(np.ascontiguousarray(array))
    digest.update(f"classes {dataset.n_classes}".encode())
    return digest.hexdigest()[:20]


# -- public entry point -------------------------------------------------------------------------


def load_dataset(
    name: str,
    *,
    path: str | os.PathLike[str] | None = None,
    train_size: int | None = None,
    scale: str = "unit",
    dtype: str | None = None,
    seed: int = 0,
    n_train: int = 1000,
    n_valid: int = 200,
    n_test: int = 200,
    n_features: int = 784,
    n_classes: int = 10,
) -> Dataset:
    """Load a dataset by name.

    Names:

    - ``"mnist"``: the bundled MNIST (or ``path``, a directory with the four IDX files, gzipped or
      raw). Train = the first 50000 official training images, valid = the last 10000, test = the
      official 10000 test images; x is (N, 784). Checksums are verified (see ``SHA256SUMS``).
    - ``"notmnist"``: the ECE421 ``notMNIST.npz`` at ``path`` (keys ``images`` (N, 28, 28) and
      ``labels`` (N,)), split exactly as the course code does (shuffle with seed 521; train
      10000, valid 6000, test the rest), without touching NumPy's global RNG.
    - ``"npz"``: any ``.npz`` at ``path`` with ``x_train``, ``y_train`` and optionally
      ``x_valid``/``y_valid`` and ``x_test``/``y_test``; features are used as given (``scale`` is
      ignored) and flattened to (N, F); K = max label + 1 (at least 2).
    - ``"synthetic"``: ``n_classes`` Gaussian blobs in ``n_features`` dimensions with ``n_train``
      / ``n_valid`` / ``n_test`` rows, fully determined by ``seed``.

    ``train_size`` keeps the first N rows of the train split. ``scale`` maps pixels to [0, 1]
    (``"unit"``: x / 255) or [-1, 1] (``"symmetric"``: x / 127.5 - 1). ``dtype`` is ``"float32"``
    or ``"float64"``; None (the default) is float32, except for an ``.npz`` whose ``x_train`` is
    float64, kept in float64 (features used as given). ``seed`` and the ``n_*`` sizes are used
    by ``"synthetic"`` only.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in DATASET_NAMES:
        raise FastMLPError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASET_NAMES)}")
    if scale not in SCALES:
        raise FastMLPError(f"unknown scale {scale!r}; choose one of: {', '.join(SCALES)}")
    np_dtype = None if dtype is None else _float_dtype(dtype)
    if train_size is not None and (not is_int(train_size) or train_size < 1):
        raise FastMLPError(f"train_size must be a positive integer, got {train_size!r}")

    if key == "npz":
        return _take_train(_load_npz(_require_file(path, key), np_dtype), train_size)
    np_dtype = np_dtype or np.dtype(np.float32)
    if key == "mnist":
        # Sliced before scaling: converting all 50000 rows to keep a few would waste time.
        return _load_mnist(path, scale, np_dtype, train_size)
    if key == "notmnist":  # sliced while converting, as mnist
        return _load_notmnist(_require_file(path, key), scale, np_dtype, train_size)
    ds = _make_synthetic(seed, n_train, n_valid, n_test, n_features, n_classes, np_dtype)
    return _take_train(ds, train_size)


# -- IDX (MNIST) --------------------------------------------------------------------------------


def parse_idx(path: str | os.PathLike[str], *, magic: int | None = None) -> np.ndarray:
    """Read one IDX file (gzip-compressed or raw, detected from its first bytes).

    Returns a writable native-endian array whose shape comes from the header, e.g. (60000, 28, 28)
    uint8 for MNIST training images or (60000,) uint8 for its labels. ``magic`` (e.g.
    ``0x00000803``) additionally requires that exact magic number. Raises FastMLPError naming the
    file if it is missing, not IDX, truncated, or has trailing bytes.
    """
    p = Path(path).expanduser()
    arr = _parse_idx_bytes(_read_maybe_gzip(p, str(p)), str(p), magic)
    # A writable copy in native byte order (IDX stores multi-byte numbers big-endian).
    return arr.astype(arr.dtype.newbyteorder("="), copy=True)


def _read_maybe_gzip(src: Path | Traversable, label: str) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic (not judged by its name)."""
    return _gunzip_if_gzip(_read_bytes(src, label), label)


def _read_bytes(src: Path | Traversable, label: str) -> bytes:
    """The file's bytes as stored (compressed or not); a user's file must be a regular one."""
    if isinstance(src, Path):
        with open_regular(src, "IDX file") as f, os_errors("read", label, name_the_file=False):
            return f.read()
    with os_errors("read", label, name_the_file=False), src.open("rb") as f:
        return f.read()


def _gunzip_if_gzip(raw: bytes, label: str) -> bytes:
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
            if expected is None:  # no sound header: _parse_idx_bytes says what is wrong
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
    if len(head) < 4 or head[:2] != b"\x00\x00" or head[2] not in _IDX_TYPES:
        return None
    if head[3] == 0 or len(head) < 4 + 4 * head[3]:
        return None
    shape = [int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(head[3])]
    return math.prod(shape) * _IDX_TYPES[head[2]].itemsize


def _parse_idx_bytes(data: bytes, label: str, magic: int | None) -> np.ndarray:
    """Parse IDX bytes into a read-only (zero-copy) array; ``label`` names the file in errors."""
    if len(data) < 4:
        raise FastMLPError(f"truncated IDX file {label}: {len(data)} bytes, no complete header")
    found = int.from_bytes(data[:4], "big")
    if magic is not None and found != magic:
        raise FastMLPError(f"bad magic number in {label}: 0x{found:08x}, expected 0x{magic:08x}")
    type_code, ndim = data[2], data[3]
    if data[:2] != b"\x00\x00" or type_code not in _IDX_TYPES or ndim == 0:
        raise FastMLPError(f"{label} is not an IDX file (magic number 0x{found:08x})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise FastMLPError(f"truncated IDX file {label}: header cut short")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dt = _IDX_TYPES[type_code]
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


def _read_sha256sums(src: Path | Traversable, label: str) -> dict[str, str]:
    """``SHA256SUMS`` lines ``<hex>  <name>`` -> {name: hex}; ``#`` comments are skipped."""
    try:
        text = src.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise FastMLPError(f"cannot read {label}: {e}") from e
    sums: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise FastMLPError(f"malformed line in {label}: {line!r}")
        digest, fname = parts
        sums[fname.lstrip("*").strip()] = digest.lower()
    return sums


MnistRaw = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _mnist_from_sources(
    sources: dict[str, Path | Traversable],
    sums: dict[str, str] | None,
    where: str,
    sums_label: str = "SHA256SUMS",
) -> MnistRaw:
    """Read, checksum and parse the four MNIST files into read-only uint8 arrays.

    Returns (train images (N, R, C), train labels (N,), test images (M, R, C), test labels (M,)).
    ``sums`` (read from ``sums_label``) may name a file by its canonical base name or by its
    name with ``.gz`` dropped (SHA-256 of the decompressed bytes, the bundled convention), or
    by its own name (SHA-256 of the bytes as stored, what ``sha256sum *`` writes); every entry
    that names the file is checked, and a ``sums`` naming it not at all is an error.
    """
    arrays: dict[str, np.ndarray] = {}
    for base in _MNIST_FILES:
        src = sources[base]
        label = str(src)
        raw = _read_bytes(src, label)
        data = _gunzip_if_gzip(raw, label)
        is_images = "images" in base
        arr = _parse_idx_bytes(data, label, IDX_IMAGES_MAGIC if is_images else IDX_LABELS_MAGIC)
        # Structure first (more specific errors), then the hash catches subtler corruption.
        if sums is not None:
            _verify_sha256(src.name, base, raw, data, sums, label, sums_label)
        arrays[base] = arr
    x_tr, y_tr = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
    x_te, y_te = arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]
    for x, y, what in ((x_tr, y_tr, "training"), (x_te, y_te, "test")):
        if len(x) != len(y):
            raise FastMLPError(
                f"MNIST in {where}: {len(x)} {what} images but {len(y)} {what} labels"
            )
        if y.size and int(y.max()) > 9:
            raise FastMLPError(f"MNIST in {where}: {what} labels outside 0..9 (max {y.max()})")
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise FastMLPError(
            f"MNIST in {where}: training images are {x_tr.shape[1:]} but test images are "
            f"{x_te.shape[1:]}"
        )
    if len(x_tr) <= MNIST_VALID_ROWS:
        raise FastMLPError(
            f"MNIST in {where}: {len(x_tr)} training images; the split holds out the last "
            f"{MNIST_VALID_ROWS} for validation, so more are needed"
        )
    return x_tr, y_tr, x_te, y_te


def _verify_sha256(
    name: str, base: str, raw: bytes, data: bytes, sums: dict[str, str], label: str,
    sums_label: str,
) -> None:
    """Check every ``sums`` entry that names this file (see :func:`_mnist_from_sources`)."""
    decompressed_names = {base, name.removesuffix(".gz")}
    # The file's own name first: for a raw file it is also a decompressed name (same bytes).
    checks = [(name, raw, "the file")] if name in sums else []
    checks += [(n, data, "the decompressed data") for n in sorted(decompressed_names - {name})
               if n in sums]
    if not checks:
        listed = ", ".join(sorted({name} | decompressed_names))
        raise FastMLPError(
            f"{sums_label} lists no checksum for {label} (looked for {listed}); add its line "
            f"or remove {sums_label} to load the directory unverified"
        )
    for listed_name, payload, what in checks:
        digest = hashlib.sha256(payload).hexdigest()
        if digest != sums[listed_name]:
            raise FastMLPError(
                f"checksum mismatch for {label}: sha256 of {what} is {digest[:16]}..., "
                f"{sums_label} says {sums[listed_name][:16]}... for {listed_name} (file corrupt?)"
            )


@functools.lru_cache(maxsize=1)
def _bundled_mnist() -> MnistRaw:
    """The bundled MNIST, parsed and verified once per process (the arrays are read-only)."""
    root = importlib.resources.files("fastmlp") / "data" / "mnist"
    sums_file = root / "SHA256SUMS"
    if not sums_file.is_file():
        raise FastMLPError(f"bundled MNIST is incomplete: {sums_file} is missing (reinstall?)")
    sources: dict[str, Path | Traversable] = {}
    for base in _MNIST_FILES:
        src = root / f"{base}.gz"
        if not src.is_file():
            raise FastMLPError(f"bundled MNIST is incomplete: {src} is missing (reinstall?)")
        sources[base] = src
    sums = _read_sha256sums(sums_file, str(sums_file))
    missing = [b for b in _MNIST_FILES if b not in sums]
    if missing:
        raise FastMLPError(f"{sums_file} lists no checksum for {', '.join(missing)}")
    return _mnist_from_sources(sources, sums, "the bundled copy", str(sums_file))


@functools.lru_cache(maxsize=4)
def _user_mnist(files: tuple[tuple[str, str], ...], sums_path: str | None, _stamp: Any) -> MnistRaw:
    """MNIST from a user directory; ``_stamp`` (sizes, mtimes) invalidates the cache on edits."""
    sources: dict[str, Path | Traversable] = {base: Path(p) for base, p in files}
    sums = _read_sha256sums(Path(sums_path), sums_path) if sums_path else None
    where = str(Path(files[0][1]).parent)
    return _mnist_from_sources(sources, sums, where, sums_path or "SHA256SUMS")


def _is_regular(p: Path) -> bool:
    """Whether ``p`` is a regular file (an unreadable folder on the way: one FastMLPError)."""
    st = probe_path(p)
    return st is not None and stat.S_ISREG(st.st_mode)


def _find_idx(directory: Path, base: str) -> Path:
    """The file for ``base`` in ``directory``: raw or ``.gz``; ``-idx`` or ``.idx`` spelling."""
    dotted = base.replace("-idx", ".idx")  # some mirrors name them train-images.idx3-ubyte
    for candidate in (base, f"{base}.gz", dotted, f"{dotted}.gz"):
        p = directory / candidate
        st = probe_path(p)
        if st is not None:  # a FIFO or device by that name is named, not skipped
            if not stat.S_ISREG(st.st_mode):
                raise FastMLPError(f"MNIST file {p} is {file_kind(st)}, not a regular file")
            return p
    raise FastMLPError(f"MNIST file {base}[.gz] not found in {directory}")


def _mnist_raw(path: str | os.PathLike[str] | None) -> MnistRaw:
    if path is None:
        return _bundled_mnist()
    if not isinstance(path, (str, os.PathLike)):
        raise FastMLPError(f"path must be a directory path (str or os.PathLike), got {path!r}")
    directory = Path(path).expanduser()
    st = probe_path(directory)
    if st is None:
        raise FastMLPError(f"MNIST directory not found: {directory}")
    if not stat.S_ISDIR(st.st_mode):
        what = "a file" if stat.S_ISREG(st.st_mode) else file_kind(st)
        raise FastMLPError(
            f"MNIST path must be a directory holding the four IDX files, got {what}: {directory}"
        )
    files = {base: _find_idx(directory, base) for base in _MNIST_FILES}
    sums_file = directory / "SHA256SUMS"
    has_sums = _is_regular(sums_file)
    watched = [*files.values(), *([sums_file] if has_sums else [])]
    with os_errors("read", directory):
        stamp = tuple((str(p), st.st_size, st.st_mtime_ns) for p in watched for st in [p.stat()])
    return _user_mnist(
        # absolute, not resolved: a symlink keeps the name SHA256SUMS may list it by
        tuple((b, str(p.absolute())) for b, p in files.items()),
        str(sums_file.resolve()) if has_sums else None,
        stamp,
    )


@functools.lru_cache(maxsize=4)
def _pixel_table(scale: str, dtype: np.dtype) -> np.ndarray:
    """(256,) lookup table: uint8 pixel -> scaled value, computed in float64 then cast."""
    levels = np.arange(256, dtype=np.float64)
    table = levels / 255.0 if scale == "unit" else levels / 127.5 - 1.0
    return table.astype(dtype)


def _pixels(raw: np.ndarray, scale: str, dtype: np.dtype) -> np.ndarray:
    """uint8 images (N, R, C) -> scaled (N, R*C) C-contiguous float array."""
    # A table lookup matches float64 arithmetic exactly (a float32 x / 127.5 - 1 would not) and
    # is as fast as dividing; fancy indexing beats np.take, which widens the uint8 indices first.
    return _pixel_table(scale, dtype)[raw.reshape(len(raw), -1)]


def scale_pixels(pixels: np.ndarray, scale: str, dtype: Any) -> np.ndarray:
    """Pixel values 0..255 (N, ...) -> (N, D) C-contiguous array of ``dtype``: [0, 1] for
    ``"unit"`` (x / 255), [-1, 1] for ``"symmetric"`` (x / 127.5 - 1), computed in float64 and
    then cast, so the values are those :func:`load_dataset` gives for the same pixels."""
    if scale not in SCALES:
        raise FastMLPError(f"unknown scale {scale!r}; choose {' or '.join(SCALES)}")
    if pixels.dtype == np.uint8:
        return _pixels(pixels, scale, np.dtype(dtype))
    x = pixels.reshape(len(pixels), -1).astype(np.float64, copy=False)
    x = x / 255.0 if scale == "unit" else x / 127.5 - 1.0
    return np.ascontiguousarray(x, dtype=dtype)


def _load_mnist(
    path: str | os.PathLike[str] | None, scale: str, dtype: np.dtype, train_size: int | None
) -> Dataset:
    x_tr, y_tr, x_te, y_te = _mnist_raw(path)
    cut = len(x_tr) - MNIST_VALID_ROWS
    keep = cut if train_size is None else train_size
    _check_train_size(keep, cut, "mnist")
    return Dataset(
        name="mnist",
        train=Split(_pixels(x_tr[:keep], scale, dtype), y_tr[:keep].astype(np.int64)),
        valid=Split(_pixels(x_tr[cut:], scale, dtype), y_tr[cut:].astype(np.int64)),
        test=Split(_pixels(x_te, scale, dtype), y_te.astype(np.int64)),
        n_classes=10,
    )


# -- npz files (notMNIST, generic) --------------------------------------------------------------


def _require_file(path: str | os.PathLike[str] | None, name: str) -> Path:
    if path is None:
        raise FastMLPError(f"dataset {name!r} needs a path to its .npz file (path=...)")
    if not isinstance(path, (str, os.PathLike)):
        raise FastMLPError(f"path must be a file path (str or os.PathLike), got {path!r}")
    p = Path(path).expanduser()
    st = probe_path(p)
    if st is None:
        raise FastMLPError(f"file not found: {p}")
    if stat.S_ISDIR(st.st_mode):
        raise FastMLPError(f"expected a .npz file for dataset {name!r}, got a directory: {p}")
    if not stat.S_ISREG(st.st_mode):
        raise FastMLPError(f"expected a .npz file for dataset {name!r}, got {file_kind(st)} "
                           f"(not a regular file): {p}")
    return p


def _read_npz(p: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
    """{key: array} for the required and present optional keys; load errors -> FastMLPError."""
    arrays, names = read_npz(p, (*required, *optional))
    missing = [k for k in required if k not in arrays]
    if missing:
        raise FastMLPError(f"{p} is missing key(s) {', '.join(missing)} (it has: "
                           f"{', '.join(names) or 'none'})")
    return arrays


def _features(x: np.ndarray, dtype: np.dtype, where: str) -> np.ndarray:
    """(N, F) or (N, R, C) numeric -> (N, F') C-contiguous float ``dtype``; rejects NaN/inf."""
    if x.ndim not in (2, 3):
        raise FastMLPError(
            f"{where}: features must be 2-D (N, F) or 3-D (N, H, W), got shape {x.shape}"
        )
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise FastMLPError(f"{where}: features must be real numbers, got dtype {x.dtype}")
    flat = x.reshape(len(x), int(np.prod(x.shape[1:])))  # not -1: that fails for 0 rows
    if flat.shape[1] == 0:  # caught here, not later as a model with n_in 0
        raise FastMLPError(f"{where}: features have zero columns, got shape {x.shape}")
    with np.errstate(over="ignore"):  # overflow to inf is reported just below, as an error
        out = np.ascontiguousarray(flat, dtype=dtype)
    # Checked after the cast: float64 values beyond float32's range become inf there.
    if out.size and not np.isfinite(out).all():
        raise FastMLPError(f"{where}: features contain NaN or infinite values")
    return out


def _labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    """(N,) or (N, 1) integer(-valued) labels -> (N,) int64; negatives are rejected."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise FastMLPError(
            f"{where}: labels must be 1-D class indices (N,), got shape {y.shape} "
            "(one-hot labels? use argmax)"
        )
    if len(y) != n:
        raise FastMLPError(f"{where}: {n} feature rows but {len(y)} labels")
    if np.issubdtype(y.dtype, np.integer):  # bool is no np.integer: rejected below
        pass
    elif np.issubdtype(y.dtype, np.floating):
        # Labels saved as floats are fine when every value is a whole number.
        if y.size and not (np.isfinite(y).all() and (y == np.round(y)).all()):
            raise FastMLPError(f"{where}: labels must be integers, got non-integer values")
    else:
        raise FastMLPError(f"{where}: labels must be integers, got dtype {y.dtype}")
    # beyond int64 (uint64, large floats) a cast would wrap: name the value as stored
    if y.size and (int(y.max()) if y.dtype.kind in "iu" else float(y.max())) >= 2**63:
        raise FastMLPError(f"{where}: labels must be class indices 0..K-1, found {y.max()}")
    out = y.astype(np.int64)
    if out.size and out.min() < 0:
        raise FastMLPError(f"{where}: labels must be in 0..K-1, found {out.min()}")
    return out


def _check_range(split: Split, n_classes: int, where: str) -> None:
    if len(split) and int(split.y.max()) >= n_classes:
        raise FastMLPError(
            f"{where}: labels must be in 0..{n_classes - 1}, found {int(split.y.max())}"
        )


def _load_notmnist(p: Path, scale: str, dtype: np.dtype, train_size: int | None) -> Dataset:
    arrays = _read_npz(p, ("images", "labels"))
    images, labels = arrays["images"], arrays["labels"]
    where = f"notMNIST {p}"
    if images.ndim not in (2, 3):
        raise FastMLPError(
            f"{where}: images must be (N, 28, 28) or (N, 784), got shape {images.shape}"
        )
    target = _labels(labels, len(images), where)
    n = len(images)
    if n <= NOTMNIST_VALID_END:
        raise FastMLPError(
            f"{where}: {n} rows, but the course split (train 10000, valid 6000, test the rest) "
            f"needs more than {NOTMNIST_VALID_END}"
        )
    # The course code seeds the global RNG then shuffles; a private RandomState(521) draws the
    # same MT19937 stream, so the order is identical without clobbering the user's global RNG.
    order = np.arange(n)
    np.random.RandomState(NOTMNIST_SEED).shuffle(order)
    n_train = NOTMNIST_TRAIN_END if train_size is None else train_size
    _check_train_size(n_train, NOTMNIST_TRAIN_END, "notmnist")
    # only the rows kept are converted: train_size drops the end of the training split
    keep = np.concatenate([order[:n_train], order[NOTMNIST_TRAIN_END:]])
    # the course's x / 255 in float64, then cast (scale_pixels); uint8 pixels, the usual case,
    # need no checks and go straight through its lookup table, without float64 copies
    kept = images[keep]
    if kept.dtype != np.uint8 or kept[0].size == 0:
        kept = _features(kept, np.dtype(np.float64), where)
    data = scale_pixels(kept, scale, dtype)
    target = target[keep]
    end_valid = n_train + NOTMNIST_VALID_END - NOTMNIST_TRAIN_END
    ds = Dataset(
        name="notmnist",
        train=Split(data[:n_train], target[:n_train]),
        valid=Split(data[n_train:end_valid], target[n_train:end_valid]),
        test=Split(data[end_valid:], target[end_valid:]),
        n_classes=10,
    )
    for split_name in ("train", "valid", "test"):
        _check_range(getattr(ds, split_name), 10, f"{where} ({split_name})")
    return ds


def _load_npz(p: Path, dtype: np.dtype | None) -> Dataset:
    arrays = _read_npz(p, ("x_train", "y_train"), ("x_valid", "y_valid", "x_test", "y_test"))
    if dtype is None:  # as given: float64 features stay float64
        dtype = np.dtype(np.float64 if arrays["x_train"].dtype == np.float64 else np.float32)
    for part in ("valid", "test"):
        have = [k for k in (f"x_{part}", f"y_{part}") if k in arrays]
        if len(have) == 1:
            other = f"y_{part}" if have[0].startswith("x") else f"x_{part}"
            raise FastMLPError(f"{p} has {have[0]} but is missing key {other}")
    splits: dict[str, Split] = {}
    for part in ("train", "valid", "test"):
        if f"x_{part}" not in arrays:
            continue
        where = f"{p} ({part})"
        x = _features(arrays[f"x_{part}"], dtype, where)
        splits[part] = Split(x, _labels(arrays[f"y_{part}"], len(x), where))
    width = splits["train"].x.shape[1]
    if len(splits["train"]) == 0:
        raise FastMLPError(f"{p}: x_train has no rows")
    for part, split in splits.items():
        if split.x.shape[1] != width:
            raise FastMLPError(
                f"{p}: x_{part} has {split.x.shape[1]} features but x_train has {width}"
            )
    empty = Split(np.empty((0, width), dtype=dtype), np.empty(0, dtype=np.int64))
    n_classes = max(2, 1 + max((int(s.y.max()) for s in splits.values() if len(s)), default=0))
    n_rows = sum(len(s) for s in splits.values())
    if n_classes > max(n_rows, NPZ_MAX_SPARSE_CLASSES):
        # K = max label + 1 would build a huge output layer: these are ids, not class indices.
        raise FastMLPError(
            f"{p}: labels must be class indices 0..K-1, but the largest is {n_classes - 1} for "
            f"{n_rows} rows (remap them, e.g. with numpy.unique(y, return_inverse=True))"
        )
    return Dataset(
        name="npz",
        train=splits["train"],
        valid=splits.get("valid", empty),
        test=splits.get("test", empty),
        n_classes=n_classes,
    )


# -- synthetic ----------------------------------------------------------------------------------


def _make_synthetic(
    seed: int,
    n_train: int,
    n_valid: int,
    n_test: int,
    n_features: int,
    n_classes: int,
    dtype: np.dtype,
) -> Dataset:
    """``n_classes`` unit-variance Gaussian blobs whose means sit ~8 noise std-devs apart."""
    checks: list[tuple[str, Any, int]] = [
        ("seed", seed, 0),
        ("n_train", n_train, 1),
        ("n_valid", n_valid, 0),
        ("n_test", n_test, 0),
        ("n_features", n_features, 1),
        ("n_classes", n_classes, 2),
    ]
    for arg, value, low in checks:
        if not is_int(value) or value < low:
            raise FastMLPError(f"synthetic: {arg} must be an integer >= {low}, got {value!r}")
    rng = np.random.default_rng(seed)
    # Means ~ N(0, s^2 / 2F) per coordinate put any two means ~s apart whatever F is, so the task
    # is equally easy at every width: two classes overlap with probability ~Phi(-s/2) ~ 3e-5.
    means = rng.standard_normal((n_classes, n_features)) * (
        SYNTHETIC_SEPARATION / np.sqrt(2.0 * n_features)
    )

    def draw(n: int) -> Split:
        y = rng.permutation(np.arange(n) % n_classes).astype(np.int64)  # balanced classes
        x = means[y] + rng.standard_normal((n, n_features))
        return Split(np.ascontiguousarray(x, dtype=dtype), y)

    train, valid, test = draw(n_train), draw(n_valid), draw(n_test)
    return Dataset("synthetic", train, valid, test, n_classes=n_classes)


# -- helpers ------------------------------------------------------------------------------------


def _float_dtype(dtype: Any) -> np.dtype:
    dt: np.dtype | None = None
    # np.dtype(None) means float64; refuse it so a forgotten option is not silently accepted.
    if dtype is not None:
        try:
            dt = np.dtype(dtype)
        except TypeError:
            pass
    # Compared by name: `np.dtype(...) == None` is True (None reads as float64).
    if dt is None or dt.name not in DTYPES:
        raise FastMLPError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
    return dt


class TrainSizeError(FastMLPError):
    """``train_size`` outside 1..``rows``, the training rows there are: a caller whose option
    has another name can say so (``fastmlp gradcheck --samples``)."""

    rows: int


def _check_train_size(train_size: int, n: int, name: str) -> None:
    """A clear FastMLPError unless ``train_size`` is in [1, n], the training rows of ``name``."""
    if not 1 <= train_size <= n:
        exc = TrainSizeError(f"train_size must be between 1 and {n} for {name!r}, got "
                             f"{train_size}")
        exc.rows = n  # an attribute, not an __init__ argument: the error still pickles
        raise exc


def _take_train(ds: Dataset, train_size: int | None) -> Dataset:
    """Keep the first ``train_size`` training rows (copied, so the rest can be freed)."""
    if train_size is None:
        return ds
    _check_train_size(train_size, len(ds.train), ds.name)
    train = Split(ds.train.x[:train_size].copy(), ds.train.y[:train_size].copy())
    return Dataset(ds.name, train, ds.valid, ds.test, ds.n_classes)
