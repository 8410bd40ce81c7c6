"""MNIST: the bundled copy or a user's directory of the four IDX files, checked against
``SHA256SUMS``, split into train (the first 50000 official training images), valid (the last
10000) and test (the official 10000)."""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import FastMLPError, file_kind, os_errors, probe_path
from .idx import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, gunzip_if_gzip, parse_idx_bytes, read_bytes
from .pixels import scale_uint8
from .splits import Dataset, Split, check_train_size

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

# Training rows, then test rows; labels before images so a small broken file fails fast.
_MNIST_FILES = (
    "train-labels-idx1-ubyte",
    "train-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
)
MNIST_VALID_ROWS = 10_000  # the last 10000 official training images form the validation split


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
        raw = read_bytes(src, label)
        data = gunzip_if_gzip(raw, label)
        is_images = "images" in base
        arr = parse_idx_bytes(data, label, IDX_IMAGES_MAGIC if is_images else IDX_LABELS_MAGIC)
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


def load_mnist(
    path: str | os.PathLike[str] | None, scale: str, dtype: np.dtype, train_size: int | None
) -> Dataset:
    """MNIST from ``path`` (None: the bundled copy): the first ``train_size`` (default all 50000)
    training images, the last 10000 as valid, the official test images; x (N, 784) of ``dtype``
    scaled as ``scale`` says, y (N,) int64."""
    x_tr, y_tr, x_te, y_te = _mnist_raw(path)
    cut = len(x_tr) - MNIST_VALID_ROWS
    keep = cut if train_size is None else train_size
    check_train_size(keep, cut, "mnist")
    # the three splits as consecutive rows of one array: the trainer's rows of every split
    # (evaluation.all_rows) are then a view of it, not a copy
    sources = (x_tr[:keep], x_tr[cut:], x_te)
    rows = np.empty((sum(len(x) for x in sources), x_tr[0].size), dtype)
    ends = np.cumsum([0, *(len(x) for x in sources)])
    x = [scale_uint8(raw, scale, dtype, out=rows[a:b])
         for raw, a, b in zip(sources, ends[:-1], ends[1:], strict=True)]
    return Dataset(
        name="mnist",
        train=Split(x[0], y_tr[:keep].astype(np.int64)),
        valid=Split(x[1], y_tr[cut:].astype(np.int64)),
        test=Split(x[2], y_te.astype(np.int64)),
        n_classes=10,
    )
