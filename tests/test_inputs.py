"""The hardened-inputs table: every bad input a user can hand the command line, and the one-line
error it gets.

Each row runs ``fastmlp.cli.main`` in-process and asserts: a non-zero exit; exactly one stderr
line, starting ``fastmlp: error:`` and containing the row's fragment; no traceback anywhere; and no
complete-looking output (no history.json / model.npz in the train --out directory, no predict
--out file). Files are built on demand, per row, by :class:`Files`. At the end: the inputs
``evaluate`` and ``predict`` accept, and that their results agree with training and each other.
"""

from __future__ import annotations

import errno
import gzip
import importlib
import io
import json
import os
import re
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp.cli import main
from fastmlp.config import recorded_run
from fastmlp.errors import FastMLPError

# -- files, built lazily: "{name}" in a row's argv creates tmp/<name> the first time -------------


def _idx(magic: int, array: np.ndarray) -> bytes:
    """IDX bytes: big-endian magic, one big-endian uint32 per dimension, then the uint8 data."""
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return magic.to_bytes(4, "big") + dims + array.astype(np.uint8).tobytes()


def _mnist_dir(d: Path, *, n_train: int = 10_020, labels: np.ndarray | None = None,
               gz: bool = True) -> dict[str, Path]:
    """A small MNIST directory (4x4 images, enough rows for the 10000-row validation split)."""
    d.mkdir()
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": (0x803, rng.integers(0, 256, (n_train, 4, 4))),
        "train-labels-idx1-ubyte": (0x801, rng.integers(0, 10, n_train) if labels is None
                                    else labels),
        "t10k-images-idx3-ubyte": (0x803, rng.integers(0, 256, (5, 4, 4))),
        "t10k-labels-idx1-ubyte": (0x801, rng.integers(0, 10, 5)),
    }
    paths = {}
    for base, (magic, arr) in arrays.items():
        data = _idx(magic, arr)
        paths[base] = d / (base + (".gz" if gz else ""))
        paths[base].write_bytes(gzip.compress(data) if gz else data)
    return paths


def _truncated_gz(d: Path) -> None:
    p = _mnist_dir(d)["train-images-idx3-ubyte"]
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _bad_magic(d: Path) -> None:
    p = _mnist_dir(d, gz=False)["train-labels-idx1-ubyte"]
    p.write_bytes(b"\x00\x00\x08\x02" + p.read_bytes()[4:])  # 0x802: not the labels magic


def _trailing_bytes(d: Path) -> None:
    p = _mnist_dir(d, gz=False)["t10k-labels-idx1-ubyte"]
    p.write_bytes(p.read_bytes() + b"\x00\x00")


def _truncated_idx(d: Path) -> None:
    p = _mnist_dir(d, gz=False)["train-images-idx3-ubyte"]
    p.write_bytes(p.read_bytes()[:-7])


def _missing_idx(d: Path) -> None:
    _mnist_dir(d)["t10k-labels-idx1-ubyte"].unlink()


def _npz(**arrays) -> Callable[[Path], None]:
    return lambda p: np.savez(p, **arrays)


def _truncated_npz(p: Path) -> None:
    np.savez_compressed(p, x_train=np.random.default_rng(0).random((50, 784)),
                        y_train=np.arange(50) % 10)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _random_bytes(p: Path) -> None:
    p.write_bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())


def _truncated_file(make: Callable[[Path], None]) -> Callable[[Path], None]:
    def build(p: Path) -> None:
        make(p)
        p.write_bytes(p.read_bytes()[: p.stat().st_size - 40])
    return build


def _model(F: int = 784, H: int = 8, K: int = 10) -> Callable[[Path], None]:
    return lambda p: fastmlp.MLP(F, H, K).save(p)


def _model_with(name: str, value: float) -> Callable[[Path], None]:
    """A small 784-4-10 model whose tensor ``name`` holds ``value`` in every entry."""
    def build(p: Path) -> None:
        model = fastmlp.MLP(784, 4, 10)
        model.views[name][...] = value
        model.save(p)
    return build


def _earlier_run(d: Path) -> None:
    """A directory holding a run's files (their presence is what counts)."""
    d.mkdir()
    fastmlp.MLP(784, 8, 10).save(d / "model.npz")
    (d / "checkpoint.npz").write_bytes(b"a checkpoint")


def _locked_dir(d: Path) -> None:
    """A directory locked by a live run: this test process."""
    from fastmlp.rundir import LOCK_FILE, RunLock

    d.mkdir()
    (d / LOCK_FILE).write_text(json.dumps(RunLock(d, "fastmlp train --out locked")._record()))


def _npy(array: np.ndarray, allow_pickle: bool = False) -> Callable[[Path], None]:
    return lambda p: np.save(p, array, allow_pickle=allow_pickle)


def _npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    """The bytes of an .npy header announcing ``shape`` (no data follows it)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue()


def _zip(**members: bytes) -> Callable[[Path], None]:
    """An archive of raw members (name -> bytes), as np.load would open it."""
    def build(p: Path) -> None:
        with zipfile.ZipFile(p, "w") as z:
            for name, data in members.items():
                z.writestr(name, data)
    return build


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _idx_huge_header(d: Path) -> None:
    p = _mnist_dir(d, gz=False)["train-images-idx3-ubyte"]
    p.write_bytes(p.read_bytes()[:4] + (4_000_000_000).to_bytes(4, "big") * 3 + bytes(100))


def _patch_os(functions: str, marker: str, errno_: int) -> Callable[[pytest.MonkeyPatch], None]:
    """Make each of ``os.<functions>`` (space-separated names) fail with ``errno_`` for paths
    holding ``marker``: tests run as root, whom no folder or file mode refuses."""
    def patch(mp: pytest.MonkeyPatch) -> None:
        for function in functions.split():
            mp.setattr(os, function, _refusing(getattr(os, function), marker, errno_))
    return patch


def _refusing(real: Callable, marker: str, errno_: int) -> Callable:
    def refusing(path, *args, **kwargs):
        if isinstance(path, (str, os.PathLike)) and marker in os.fspath(path):
            raise OSError(errno_, os.strerror(errno_), os.fspath(path))
        return real(path, *args, **kwargs)
    return refusing


X10 = np.random.default_rng(2).random((10, 5))
Y10 = np.arange(10) % 3
IMAGES = np.random.default_rng(3).random((3, 784)).astype(np.float32)

BUILDERS: dict[str, Callable[[Path], None]] = {
    # datasets
    "truncated.npz": _truncated_npz,
    "random.npz": _random_bytes,
    "rows_mismatch.npz": _npz(x_train=X10, y_train=np.arange(12) % 3),
    "x_1d.npz": _npz(x_train=X10[:, 0], y_train=Y10),
    "width_mismatch.npz": _npz(x_train=X10, y_train=Y10, x_test=X10[:, :4], y_test=Y10),
    "onehot.npz": _npz(x_train=X10, y_train=np.eye(3)[Y10]),
    "no_y_test.npz": _npz(x_train=X10, y_train=Y10, x_test=X10),
    "negative_labels.npz": _npz(x_train=X10, y_train=Y10 - 1),
    "fractional_labels.npz": _npz(x_train=X10, y_train=Y10 + 0.5),
    "string_labels.npz": _npz(x_train=X10, y_train=np.array(list("abcdefghij"))),
    "nan.npz": _npz(x_train=np.where(X10 > 0.9, np.nan, X10), y_train=Y10),
    "inf.npz": _npz(x_train=np.where(X10 > 0.9, np.inf, X10), y_train=Y10),
    "ninf_valid.npz": _npz(x_train=X10, y_train=Y10, x_valid=-np.inf * X10, y_valid=Y10),
    "huge.npz": _npz(x_train=X10 * 1e300, y_train=Y10),  # inf once cast to float32
    "no_rows.npz": _npz(x_train=X10[:0], y_train=Y10[:0]),
    "no_features.npz": _npz(x_train=X10[:, :0], y_train=Y10),
    "string_x.npz": _npz(x_train=X10.astype(str), y_train=Y10),
    "object_x.npz": lambda p: np.savez(p, x_train=np.array([[1], "a"], dtype=object),
                                       y_train=Y10[:2]),
    "not_npz.npy": _npy(X10),
    "notmnist_label10.npz": _npz(images=np.zeros((16_001, 2, 2), np.uint8),
                                 labels=np.r_[np.zeros(16_000, int), 10]),
    "notmnist_small.npz": _npz(images=np.zeros((100, 28, 28), np.uint8), labels=np.zeros(100)),
    "mnist_trunc_gz": _truncated_gz,
    "mnist_bad_magic": _bad_magic,
    "mnist_trailing": _trailing_bytes,
    "mnist_trunc_idx": _truncated_idx,
    "mnist_missing": _missing_idx,
    "mnist_label12": lambda d: _mnist_dir(d, labels=np.r_[np.zeros(10_019, int), 12]),
    "mnist_few_rows": lambda d: _mnist_dir(d, n_train=50),
    "mnist_20_rows": _mnist_dir,  # 20 training rows besides the 10000 validation rows
    "label_ids.npz": _npz(x_train=X10, y_train=np.r_[Y10[:9], 10**9]),
    "label_2_62.npz": _npz(x_train=X10, y_train=np.r_[Y10[:9], 2**62]),
    "member_bytes.npz": _zip(**{"x_train.npy": b"raw bytes, not NumPy data",
                                "y_train.npy": _npy_bytes(Y10)}),
    "member_text.npz": _zip(**{"images.npy": b"1,2,3\n", "labels.npy": _npy_bytes(Y10)}),
    "huge_header.npz": _zip(**{"x_train.npy": _npy_header((10**12, 784)) + bytes(64),
                               "y_train.npy": _npy_bytes(Y10)}),
    "labels_u64.npz": _npz(x_train=X10,
                           y_train=np.array([*Y10[:9], 2**63 + 5], dtype=np.uint64)),
    "mnist_idx_huge": _idx_huge_header,
    "fifo.npz": os.mkfifo,
    "model_wh_bytes.npz": _zip(**{"Wh.npy": b"raw bytes", "bh.npy": _npy_bytes(np.zeros((1, 8))),
                                  "Wo.npy": _npy_bytes(np.zeros((8, 10))),
                                  "bo.npy": _npy_bytes(np.zeros((1, 10)))}),
    "model_huge_header.npz": _zip(**{"Wh.npy": _npy_header((784, 10**12)) + bytes(64)}),
    "fifo.npy": os.mkfifo,
    "zero.npy": lambda p: p.symlink_to("/dev/zero"),
    "denied.npz": _npz(x_train=X10, y_train=Y10),
    "a_file": lambda p: p.write_text("not a directory"),
    "text.npz": lambda p: p.write_text("1,2,3\n"),
    "dir.csv": lambda p: p.mkdir(),
    "earlier_run": _earlier_run,
    "locked": _locked_dir,
    # models
    "model.npz": _model(),
    "model_5in.npz": _model(F=5, H=4, K=3),
    "model_3out.npz": _model(K=3),
    "model_random.npz": _random_bytes,
    "model_truncated.npz": _truncated_file(_model()),
    "model_no_wh.npz": _npz(Wo=np.zeros((8, 10)), bo=np.zeros((1, 10))),
    "model_bad_shapes.npz": _npz(Wh=np.zeros((784, 8)), bh=np.zeros((1, 8)),
                                 Wo=np.zeros((9, 10)), bo=np.zeros((1, 10))),
    "model_int.npz": _npz(Wh=np.zeros((4, 3), int), bh=np.zeros((1, 3), int),
                          Wo=np.zeros((3, 2), int), bo=np.zeros((1, 2), int)),
    "model_nan.npz": _model_with("Wh", np.nan),
    "model_inf.npz": _model_with("bo", -np.inf),
    "good.npz": _npz(x_train=X10, y_train=Y10),
    "history.json": lambda p: p.write_text(json.dumps({"epochs": 2, "train_loss": [1.0, 0.5]})),
    "model_objects.npz": _npz(Wh=np.array([[0.5, "x"]], dtype=object), bh=np.zeros((1, 2)),
                              Wo=np.zeros((2, 2)), bo=np.zeros((1, 2))),
    # images
    "images.npy": _npy(IMAGES),
    "images.txt": lambda p: p.write_text("0.5 0.5\n"),
    "images_csv.npy": lambda p: p.write_text("1,2,3\n"),
    "images_random.npy": _random_bytes,
    "images_truncated.npy": _truncated_file(_npy(IMAGES)),
    "images_object.npy": _npy(np.array([IMAGES[0], "x"], dtype=object), allow_pickle=True),
    "images_strings.npy": _npy(np.array([["a"] * 784])),
    "images_complex.npy": _npy(IMAGES.astype(np.complex64)),
    "images_bool.npy": _npy(IMAGES > 0.5),
    "images_npz.npy": lambda p: p.write_bytes(_savez_bytes(p, x=IMAGES)),
    "images_wrong_width.npy": _npy(IMAGES[:, :100]),
    "images_wrong_square.npy": _npy(np.zeros((3, 20, 20), np.float32)),
    "images_flat_1d.npy": _npy(IMAGES[0]),
    "images_empty.npy": _npy(IMAGES[:0]),
    "images_nan.npy": _npy(np.where(IMAGES > 0.99, np.nan, IMAGES)),
    "images_inf.npy": _npy(np.where(IMAGES > 0.99, np.inf, IMAGES)),
    "images_huge.npy": _npy(IMAGES.astype(np.float64) * 1e300),  # inf in a float32 model
    "images_huge_header.npy": lambda p: p.write_bytes(_npy_header((10**12, 784)) + bytes(64)),
}


def _savez_bytes(p: Path, **arrays) -> bytes:
    tmp = p.with_name(p.name + ".zip.npz")
    np.savez(tmp, **arrays)
    data = tmp.read_bytes()
    tmp.unlink()
    return data


class Files(dict):
    """``files["name"]``: the path tmp/<name>, built by BUILDERS[name] on first use; names
    without a builder (``out``, ``preds.npy``, ``missing.npz``) are just paths."""

    def __init__(self, root: Path):
        super().__init__()
        self.root = root

    def __missing__(self, name: str) -> str:
        path = self.root / name
        if name in BUILDERS:
            BUILDERS[name](path)
        self[name] = str(path)
        return self[name]

    def expand(self, arg: str) -> str:
        """``arg`` with every ``{name}`` replaced by that file's path."""
        return re.sub(r"\{([^{}]+)\}", lambda m: self[m.group(1)], arg)


# -- the table ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    argv: tuple[str, ...]
    fragment: str
    patch: Callable[[pytest.MonkeyPatch], None] | None = None
    needs_no_cupy: bool = False  # run with CuPy made unimportable


def _train(*options: str, **kw) -> Row:
    """A small train run (synthetic data unless the options say otherwise) plus ``options``."""
    fragment = kw.pop("fragment")
    base = ("train", "--dataset", "synthetic", "--hidden", "8", "--epochs", "2", "--device",
            "cpu", "--no-progress", "--out", "{out}")
    return Row(base + options, fragment, **kw)


def _data(path_key: str, fragment: str, dataset: str = "npz", *extra: str) -> Row:
    return _train("--dataset", dataset, "--data-path", "{" + path_key + "}", *extra,
                  fragment=fragment)


def _evaluate(*options: str, fragment: str, **kw) -> Row:
    return Row(("evaluate", *options, "--device", "cpu"), fragment, **kw)


def _predict(*options: str, fragment: str, **kw) -> Row:
    return Row(("predict", *options, "--device", "cpu"), fragment, **kw)


class OutOfMemoryError(MemoryError):
    """Stands in for cupy.cuda.memory.OutOfMemoryError (matched by type name, not by import)."""


OutOfMemoryError.__module__ = "cupy.cuda.memory"


def _gpu_oom(*args, **kwargs):
    raise OutOfMemoryError("Out of memory allocating 4,000,000,000 bytes "
                           "(allocated so far: 1,000,000 bytes).")


class FakeTorchOOM(RuntimeError):  # not a MemoryError at all: only the name tells
    pass


FakeTorchOOM.__name__ = FakeTorchOOM.__qualname__ = "OutOfMemoryError"


def _patch_trainer(mp: pytest.MonkeyPatch) -> None:
    # fastmlp.train (the attribute) is the function; the module is in sys.modules
    mp.setattr(importlib.import_module("fastmlp.train"), "Trainer", _gpu_oom)


def _patch_trainer_torch(mp: pytest.MonkeyPatch) -> None:
    def boom(*a, **k):
        raise FakeTorchOOM("CUDA out of memory. Tried to allocate 2.00 GiB")
    mp.setattr(importlib.import_module("fastmlp.train"), "Trainer", boom)


def _patch_memory_16gib(mp: pytest.MonkeyPatch) -> None:
    # the check's own estimate against a 16 GiB machine, whatever this one has
    mp.setattr(importlib.import_module("fastmlp.gradcheck"), "available_memory",
               lambda backend: 16 * 2**30)


def _patch_evaluate(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(importlib.import_module("fastmlp.cli.evaluate"), "evaluate", _gpu_oom)


ROWS: dict[str, Row] = {
    # -- corrupt or truncated data files
    "truncated npz": _data("truncated.npz", "corrupt or truncated"),
    "corrupt npz (random bytes)": _data("random.npz", "corrupt or truncated"),
    "npz is an .npy": _data("not_npz.npy", "not an .npz archive"),
    "npz is a text file": _data("text.npz", "it is not an .npz archive (no zip header)"),
    "npz is missing": _data("missing.npz", "not found"),
    "npz path is a directory": _data("mnist_few_rows", "directory"),
    "notmnist missing": _data("missing.npz", "not found", "notmnist"),
    "truncated IDX .gz": _data("mnist_trunc_gz", "corrupt or truncated gzip", "mnist"),
    "corrupt IDX (bad magic)": _data("mnist_bad_magic", "bad magic number", "mnist"),
    "IDX with trailing bytes": _data("mnist_trailing", "unexpected bytes", "mnist"),
    "truncated IDX data": _data("mnist_trunc_idx", "truncated IDX file", "mnist"),
    "IDX file missing": _data("mnist_missing", "not found in", "mnist"),
    "MNIST dir missing": _data("no_such_dir", "not found", "mnist"),
    "MNIST path is a file": _data("a_file", "must be a directory", "mnist"),
    "MNIST too few rows": _data("mnist_few_rows", "more are needed", "mnist"),
    # -- files that are not what they claim (np.load would allocate, hand back bytes, or block)
    "npz member is raw bytes": _data("member_bytes.npz", "member x_train.npy: not NumPy data"),
    "notmnist member is text": _data("member_text.npz", "member images.npy: not NumPy data",
                                     "notmnist"),
    "npz header claims a huge shape": _data("huge_header.npz", "the file is corrupt"),
    "IDX header claims 4e9 cubed": _data("mnist_idx_huge", "corrupt IDX file", "mnist"),
    "uint64 labels 2**63+5": _data("labels_u64.npz", "found 9223372036854775813"),
    "/dev/null as the npz": _data("/dev/null", "character device (not a regular file)"),
    "/dev/zero as notmnist": _data("/dev/zero", "not a regular file", "notmnist"),
    "/dev/null as the MNIST folder": _data("/dev/null", "got a character device", "mnist"),
    "a FIFO as the npz": _data("fifo.npz", "FIFO (named pipe) (not a regular file)"),
    "npz permission denied": Row(_data("denied.npz", "").argv, "denied.npz: Permission denied",
                                 patch=_patch_os("open", "denied.npz", errno.EACCES)),
    # -- paths that Path.exists() raises on
    "--data-path under an unreadable folder": Row(
        _data("locked/x.npz", "").argv, "locked/x.npz: Permission denied",
        patch=_patch_os("stat open mkdir", "/locked/", errno.EACCES)),
    "--data-path 300-character file name": _data("n" * 300 + ".npz", "File name too long"),
    "--data-path 5000-character path": _data("/".join(["d" * 99] * 50) + "/x.npz",
                                             "File name too long"),
    "--data-path through a file": _train("--dataset", "npz", "--data-path", "{a_file}/x.npz",
                                         fragment="file not found: "),
    "MNIST folder 300-character name": _data("n" * 300, "File name too long", "mnist"),
    "--out under an unreadable folder": _train(
        "--out", "{locked}/out", fragment="locked/out: Permission denied",
        patch=_patch_os("stat open mkdir", "/locked/", errno.EACCES)),
    "--out 300-character name": _train("--out", "{" + "o" * 300 + "}",
                                       fragment="File name too long"),
    "--out 5000-character path": _train("--out", "{" + "/".join(["o" * 99] * 50) + "}",
                                        fragment="File name too long"),
    "--resume 300-character name": Row(("train", "--resume", "{" + "r" * 300 + "}"),
                                       "File name too long"),
    # -- wrong shapes and values
    "npz rows vs labels": _data("rows_mismatch.npz", "10 feature rows but 12 labels"),
    "npz 1-D features": _data("x_1d.npz", "2-D"),
    "npz split widths differ": _data("width_mismatch.npz", "x_test has 4 features"),
    "npz one-hot labels": _data("onehot.npz", "one-hot"),
    "npz x_test without y_test": _data("no_y_test.npz", "missing key y_test"),
    "npz no rows": _data("no_rows.npz", "no rows"),
    "npz no features": _data("no_features.npz", "(train): features have zero columns, got "
                                                "shape (10, 0)"),
    "npz string features": _data("string_x.npz", "real numbers"),
    "npz object features": _data("object_x.npz", "arrays of Python objects"),
    "labels out of range (negative)": _data("negative_labels.npz", "labels must be in 0..K-1"),
    "labels out of range (notmnist 10)": _data("notmnist_label10.npz", "labels must be in 0..9",
                                               "notmnist"),
    "labels out of range (MNIST 12)": _data("mnist_label12", "labels outside 0..9", "mnist"),
    "labels are ids (10**9)": _data("label_ids.npz", "class indices 0..K-1"),
    "labels are ids (2**62)": _data("label_2_62.npz", "class indices 0..K-1"),
    "fractional labels": _data("fractional_labels.npz", "non-integer"),
    "string labels": _data("string_labels.npz", "labels must be integers"),
    "notmnist too small": _data("notmnist_small.npz", "needs more than 16000", "notmnist"),
    "NaN features": _data("nan.npz", "NaN or infinite"),
    "inf features": _data("inf.npz", "NaN or infinite"),
    "-inf in the valid split": _data("ninf_valid.npz", "(valid): features contain NaN"),
    "float32 overflow to inf": _data("huge.npz", "NaN or infinite", "npz", "--dtype",
                                     "float32"),
    # -- sizes
    "--hidden 0": _train("--hidden", "0", fragment="--hidden"),
    "--hidden -3": _train("--hidden", "-3", fragment="--hidden"),
    "--epochs 0 (zero epochs)": _train("--epochs", "0", fragment="--epochs"),
    "--epochs -1": _train("--epochs", "-1", fragment="--epochs"),
    "--train-size 0": _train("--train-size", "0", fragment="--train-size"),
    "--train-size -5": _train("--train-size", "-5", fragment="--train-size"),
    "--train-size too big": _train("--train-size", "1001", fragment="between 1 and 1000"),
    "--batch-size 0": _train("--batch-size", "0", fragment="--batch-size"),
    "batch larger than the data": _train("--batch-size", "1001", fragment="--batch-size must "
                                         "be between 1 and the 1000 training rows, got 1001"),
    "--eval-every 0": _train("--eval-every", "0", fragment="--eval-every"),
    "--lr nan": _train("--lr", "nan", fragment="--lr"),
    "--momentum inf": _train("--momentum", "inf", fragment="--momentum"),
    "--velocity-init nan": _train("--velocity-init", "nan", fragment="--velocity-init"),
    "--velocity-init -1": _train("--velocity-init", "-1", fragment="--velocity-init"),
    # -- names and option syntax
    "unknown device": _train("--device", "tpu", fragment="--device"),
    "unknown dataset": _train("--dataset", "cifar", fragment="--dataset"),
    "unknown activation": _train("--activation", "tanh", fragment="--activation"),
    "unknown dtype": _train("--dtype", "float16", fragment="--dtype"),
    "--lr abc": _train("--lr", "abc", fragment="--lr"),
    "--hidden ten": _train("--hidden", "ten", fragment="--hidden"),
    "--epochs 2.5": _train("--epochs", "2.5", fragment="--epochs"),
    "--seed -1": _train("--seed", "-1", fragment="--seed"),
    "--lr without a value": _train("--lr", fragment="--lr"),
    "unknown option": _train("--bogus", fragment="--bogus"),
    "--out is a file": _train("--out", "{a_file}", fragment="not a directory"),
    # -- options that would be ignored: refused, like --data-path with --dataset synthetic
    "--compiled with full batch": _train("--compiled", fragment="--compiled is for minibatch "
                                         "epochs (--batch-size B)"),
    "--scale with synthetic data": _train("--scale", "symmetric", fragment="--scale symmetric "
                                          "applies to the pixel datasets (mnist, notmnist)"),
    "--scale with npz data": _data("good.npz", "--dataset npz features are used as given", "npz",
                                   "--scale", "symmetric"),
    # -- an output directory in use: nothing lost, never two runs in one directory
    "--out is empty": _train("--out", "", fragment="--out is empty; give a directory"),
    "--out holds an earlier run": _train("--out", "{earlier_run}", fragment="holds an earlier "
                                         "run (checkpoint.npz, model.npz); continue it with "
                                         "--resume"),
    "--out locked by a live run": _train("--out", "{locked}", fragment="is in use by another "
                                         "fastmlp run (pid "),
    "--resume is empty": Row(("train", "--resume", ""), "--resume is empty"),
    "--overwrite with --resume": _train("--resume", "{earlier_run}", "--overwrite",
                                        fragment="use one or the other"),
    # -- devices and memory
    "missing CuPy (train)": _train("--device", "cuda", fragment="fastmlp[cuda12]",
                                   needs_no_cupy=True),
    "missing CuPy (evaluate)": Row(("evaluate", "{model.npz}", "--device", "cuda"),
                                   "fastmlp[cuda12]", needs_no_cupy=True),
    "missing CuPy (predict)": Row(("predict", "{model.npz}", "{images.npy}", "--device", "cuda"),
                                  "fastmlp[cuda12]", needs_no_cupy=True),
    "missing CuPy (gradcheck)": Row(("gradcheck", "--device", "cuda"), "fastmlp[cuda12]",
                                    needs_no_cupy=True),
    "GPU out of memory (train)": _train(fragment="out of GPU memory", patch=_patch_trainer),
    "GPU OOM suggests --batch-size": _train(fragment="--batch-size", patch=_patch_trainer),
    "torch-style OOM by name only": _train(fragment="OutOfMemoryError",
                                           patch=_patch_trainer_torch),
    "GPU out of memory (evaluate)": _evaluate("{model.npz}", "--dataset", "synthetic",
                                              fragment="out of GPU memory",
                                              patch=_patch_evaluate),
    "host out of memory (huge --hidden)": _train("--hidden", "1000000000000",
                                                 fragment="out of memory"),
    "network beyond any array (--hidden 1e20)": _train("--hidden", "1" + "0" * 20,
                                                       fragment="too large"),
    # -- evaluate
    "evaluate: model missing": _evaluate("{missing.npz}", fragment="model file not found"),
    "evaluate: model random bytes": _evaluate("{model_random.npz}", fragment="cannot read model"),
    "evaluate: model truncated": _evaluate("{model_truncated.npz}",
                                           fragment="cannot read model"),
    "evaluate: not a fastmlp model": _evaluate("{model_no_wh.npz}",
                                               fragment="model_no_wh.npz is not a fastmlp model "
                                                        "(no Wh, bh)"),
    "evaluate: inconsistent model": _evaluate("{model_bad_shapes.npz}",
                                              fragment="inconsistent arrays"),
    "evaluate: integer weights": _evaluate("{model_int.npz}", fragment="dtype"),
    "evaluate: model of Python objects": _evaluate("{model_objects.npz}",
                                                   fragment="arrays of Python objects"),
    "evaluate: model is a JSON file": _evaluate("{history.json}", fragment="history.json: not an "
                                                ".npz archive (a model file written by fastmlp)"),
    "evaluate: model is a dataset": _evaluate("{nan.npz}", fragment="nan.npz is not a fastmlp "
                                              "model (no Wh, bh, Wo, bo)"),
    "evaluate: model member is raw bytes": _evaluate("{model_wh_bytes.npz}",
                                                     fragment="cannot read model "),
    "evaluate: model weights claim a huge shape": _evaluate("{model_huge_header.npz}",
                                                            fragment="the file is corrupt"),
    "evaluate: model under an unreadable folder": _evaluate(
        "{locked}/model.npz", fragment="Permission denied",
        patch=_patch_os("stat open mkdir", "/locked/", errno.EACCES)),
    "evaluate: model 300-character name": _evaluate("{" + "m" * 300 + ".npz}",
                                                    fragment="File name too long"),
    "evaluate: model is /dev/zero": _evaluate("/dev/zero", fragment="not a regular file"),
    "evaluate: features differ": _evaluate("{model_5in.npz}", "--dataset", "synthetic",
                                           fragment="784 features but the model takes 5"),
    "evaluate: too few outputs": _evaluate("{model_3out.npz}", "--dataset", "synthetic",
                                           fragment="10 classes but the model outputs 3"),
    "evaluate: NaN data": _evaluate("{model_5in.npz}", "--dataset", "npz", "--data-path",
                                    "{nan.npz}", fragment="NaN or infinite"),
    "evaluate: npz without --data-path": _evaluate("{model.npz}", "--dataset", "npz",
                                                   fragment="--data-path"),
    "evaluate: --train-size 0": _evaluate("{model.npz}", "--train-size", "0",
                                          fragment="--train-size"),
    "evaluate: unknown dataset": _evaluate("{model.npz}", "--dataset", "cifar",
                                           fragment="--dataset"),
    "evaluate: no model argument": Row(("evaluate",), "MODEL.npz"),
    # -- predict
    "predict: images missing": _predict("{model.npz}", "{missing.npy}", fragment="not found"),
    "predict: images not .npy": _predict("{model.npz}", "{images.txt}", fragment=".npy file"),
    "predict: images are text under .npy": _predict("{model.npz}", "{images_csv.npy}",
                                                    fragment="images_csv.npy is not a .npy file"),
    "predict: images random bytes": _predict("{model.npz}", "{images_random.npy}",
                                             fragment="corrupt or truncated"),
    "predict: images truncated": _predict("{model.npz}", "{images_truncated.npy}",
                                          fragment="corrupt or truncated"),
    "predict: pickled objects": _predict("{model.npz}", "{images_object.npy}",
                                         fragment="arrays of Python objects"),
    "predict: strings": _predict("{model.npz}", "{images_strings.npy}", fragment="real numbers"),
    "predict: complex": _predict("{model.npz}", "{images_complex.npy}", fragment="real numbers"),
    "predict: booleans": _predict("{model.npz}", "{images_bool.npy}", fragment="real numbers"),
    "predict: an .npz named .npy": _predict("{model.npz}", "{images_npz.npy}",
                                            fragment="archive"),
    "predict: shape mismatch": _predict("{model.npz}", "{images_wrong_width.npy}",
                                        fragment="shape (3, 100) but the model takes 784"),
    "predict: wrong image size": _predict("{model.npz}", "{images_wrong_square.npy}",
                                          fragment="(N, 28, 28)"),
    "predict: one flat image": _predict("{model.npz}", "{images_flat_1d.npy}",
                                        fragment="expected (N, 784)"),
    "predict: shape vs a 5-input model": _predict("{model_5in.npz}", "{images.npy}",
                                                  fragment="takes 5 features"),
    "predict: no images": _predict("{model.npz}", "{images_empty.npy}", fragment="no images"),
    "predict: NaN": _predict("{model.npz}", "{images_nan.npy}", fragment="NaN or infinite"),
    "predict: inf": _predict("{model.npz}", "{images_inf.npy}", fragment="NaN or infinite"),
    "predict: float32 overflow": _predict("{model.npz}", "{images_huge.npy}",
                                          fragment="overflow float32"),
    "predict: model missing": _predict("{missing.npz}", "{images.npy}", fragment="not found"),
    "predict: model corrupt": _predict("{model_random.npz}", "{images.npy}",
                                       fragment="cannot read model"),
    "predict: a dataset as the model": _predict("{nan.npz}", "{images.npy}",
                                                fragment="is not a fastmlp model (no Wh"),
    "predict: model is a FIFO": _predict("{fifo.npz}", "{images.npy}",
                                         fragment="FIFO (named pipe), not a regular file"),
    "predict: header claims a huge shape": _predict("{model.npz}", "{images_huge_header.npy}",
                                                    fragment=".npy: the header claims shape "
                                                    "(1000000000000, 784) of float32"),
    "predict: images are /dev/zero": _predict("{model.npz}", "{zero.npy}",
                                              fragment="character device, not a regular file"),
    "predict: images are a FIFO": _predict("{model.npz}", "{fifo.npy}",
                                           fragment="not a regular file"),
    "predict: --out suffix": _predict("{model.npz}", "{images.npy}", "--out", "{preds.txt}",
                                      fragment=".npy or .csv"),
    "predict: --out directory missing": _predict("{model.npz}", "{images.npy}", "--out",
                                                 "{no_such_dir}/p.csv",
                                                 fragment="does not exist"),
    "predict: --out is a directory": _predict("{model.npz}", "{images.npy}", "--out",
                                              "{dir.csv}", fragment="is a directory"),
    "predict: --out 300-character name": _predict("{model.npz}", "{images.npy}", "--out",
                                                  "{" + "o" * 300 + ".npy}",
                                                  fragment="characters): File name too long"),
    "predict: images 300-character name": _predict("{model.npz}", "{" + "i" * 300 + ".npy}",
                                                   fragment="File name too long"),
    "predict: --out is the images file": _predict("{model.npz}", "{images.npy}", "--out",
                                                  "{images.npy}", fragment="is the images "
                                                  "file; it would be replaced"),
    "predict: --out is the model file": _predict("{model.npz}", "{images.npy}", "--out",
                                                 "{model.npz}", fragment="is the model file"),
    "predict: bad --scale": _predict("{model.npz}", "{images.npy}", "--scale", "x",
                                     fragment="--scale"),
    # -- doctor
    "doctor: unknown option": Row(("doctor", "--bogus"), "unrecognized arguments: --bogus"),
    # -- gradcheck
    "gradcheck: model missing": Row(("gradcheck", "--model", "{missing.npz}"), "not found"),
    "gradcheck: --model with --hidden": Row(("gradcheck", "--model", "{model.npz}", "--hidden",
                                             "4"), "--hidden describes the random network; "
                                                   "leave it out with --model"),
    "gradcheck: --model with two shape options": Row(
        ("gradcheck", "--model", "{model.npz}", "--hidden", "4", "--n-in", "3"),
        "--hidden, --n-in describe the random network; leave them out"),
    "gradcheck: NaN weights": Row(("gradcheck", "--model", "{model_nan.npz}"),
                                  "weights are not finite (Wh holds NaN or inf)"),
    "gradcheck: -inf weights": Row(("gradcheck", "--model", "{model_inf.npz}"),
                                   "cannot be checked"),
    "gradcheck: --n-in 1e8 past memory": Row(("gradcheck", "--n-in", "100000000"),
                                             "100000000-8-10 network is too large to check here",
                                             patch=_patch_memory_16gib),
    "gradcheck: past any machine's memory": Row(("gradcheck", "--n-in", "100000000", "--hidden",
                                                 "100000"), "too large to check here"),
    "gradcheck: a full check of hours": Row(("gradcheck", "--n-in", "1000000"),
                                            "pass --max-entries M"),
    "gradcheck: mnist needs 784 inputs": Row(("gradcheck", "--dataset", "mnist", "--n-in", "5"),
                                             "784 features"),
    "gradcheck: one class": Row(("gradcheck", "--n-classes", "1"), "at least 2"),
    "gradcheck: --tol 0": Row(("gradcheck", "--tol", "0"), "--tol"),
    "gradcheck: --eps abc": Row(("gradcheck", "--eps", "abc"), "--eps"),
    "gradcheck: --samples 0": Row(("gradcheck", "--samples", "0"), "--samples"),
    "gradcheck: --samples past the mnist rows": Row(
        ("gradcheck", "--dataset", "mnist", "--data-path", "{mnist_20_rows}", "--samples", "21"),
        "--samples must be between 1 and 20 (the training rows of mnist), got 21"),
    "gradcheck: network too large": Row(("gradcheck", "--hidden", "1" + "0" * 17), "too large"),
    "gradcheck: --max-entries -1": Row(("gradcheck", "--max-entries", "-1"), "--max-entries"),
}


def _complete_outputs(files: Files) -> list[Path]:
    """Output files that must not exist after a failure."""
    out = files.root / "out"
    return [out / "history.json", out / "model.npz", files.root / "preds.npy",
            files.root / "preds.txt", files.root / "no_such_dir" / "p.csv"]


@pytest.mark.parametrize("case", list(ROWS))
def test_bad_input_gets_one_clear_line(case: str, tmp_path: Path, capsys: pytest.CaptureFixture,
                                       monkeypatch: pytest.MonkeyPatch,
                                       assert_one_line_error) -> None:
    row = ROWS[case]
    if row.needs_no_cupy:  # CuPy missing, whether or not it is installed: the row always runs
        # (fastmlp.preflight imports anew on each call and keeps only a pass)
        monkeypatch.setitem(sys.modules, "cupy", None)
    if row.patch is not None:
        row.patch(monkeypatch)
    files = Files(tmp_path)
    argv = [files.expand(arg) for arg in row.argv]
    code = main(argv)
    captured = capsys.readouterr()
    assert code != 0, f"exit 0 for {argv}"
    assert "Traceback" not in captured.err + captured.out  # on stdout neither
    # NumPy's advice for a file it cannot place; fastmlp never loads pickles
    assert "allow_pickle" not in captured.err
    assert_one_line_error(captured.err, row.fragment)
    for path in _complete_outputs(files):
        assert not path.exists(), f"{path} left behind"


def test_every_command_has_rows() -> None:
    from fastmlp.cli import COMMANDS

    exempt = {"bench", "sweep"}  # sweep: its own table in test_sweep.py; bench: test_bench.py
    covered = {row.argv[0] for row in ROWS.values()}
    assert covered == set(COMMANDS) - exempt


def test_a_genuine_bug_still_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only out-of-memory errors are caught by type: anything else keeps its traceback."""
    def bug(*args, **kwargs):
        raise ZeroDivisionError("a real bug")

    monkeypatch.setattr(importlib.import_module("fastmlp.train"), "Trainer", bug)
    with pytest.raises(ZeroDivisionError):
        main(["train", "--dataset", "synthetic", "--hidden", "4", "--epochs", "1",
              "--no-progress", "--quiet", "--device", "cpu", "--out", str(tmp_path / "o")])


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0])
def test_velocity_init_must_be_finite_and_non_negative(value: float) -> None:
    """One rule for train(), the estimator and the CLI: NaN must not pass as a start value and
    be reported later as a divergence."""
    from fastmlp.datasets import load_dataset
    from fastmlp.errors import FastMLPError
    from fastmlp.estimator import MLPClassifier

    data = load_dataset("synthetic", n_train=20, n_valid=5, n_test=5, n_features=5, n_classes=3)
    with pytest.raises(FastMLPError, match="velocity_init") as excinfo:
        fastmlp.train(fastmlp.MLP(5, 4, 3), data, epochs=1, velocity_init=value)
    assert not isinstance(excinfo.value, fastmlp.DivergenceError)
    with pytest.raises(FastMLPError, match="velocity_init"):
        MLPClassifier(hidden=4, epochs=1, velocity_init=value).fit(X10, Y10)


@pytest.mark.parametrize("value, message", [
    (0, "batch_size must be an integer >= 1, got 0"),  # the rule every entry point shares
    (2.5, "batch_size must be an integer >= 1, got 2.5"),
    (True, "batch_size must be an integer >= 1, got True"),
    (21, "batch_size must be between 1 and the 20 training rows, got 21"),  # and the data's
])
def test_train_checks_the_batch_size(value: object, message: str) -> None:
    from fastmlp.datasets import load_dataset
    from fastmlp.errors import FastMLPError

    data = load_dataset("synthetic", n_train=20, n_valid=5, n_test=5, n_features=5, n_classes=3)
    with pytest.raises(FastMLPError, match=re.escape(message)):
        fastmlp.train(fastmlp.MLP(5, 4, 3), data, epochs=1, batch_size=value)


@pytest.mark.parametrize("split,labels,fragment", [
    ("train", [0, 1, 3], "train labels of the data (hand-built) must lie in [0, 3) for this "
                         "model, got 0 to 3"),
    ("valid", [0, -1, 2], "valid labels of the data (hand-built) must lie in [0, 3)"),
    ("test", [0.0, 1.0, 2.0], "test labels of the data (hand-built) must be integers, got float64"),
])
def test_hand_built_labels_outside_the_model_are_refused(split: str, labels: list,
                                                         fragment: str) -> None:
    # the kernels index by label: an out-of-range one used to be read out of bounds on the CPU
    from fastmlp.datasets import Dataset, Split
    from fastmlp.errors import FastMLPError
    from fastmlp.train import evaluate

    rng = np.random.default_rng(0)
    parts = {s: Split(rng.random((3, 5)), np.array([0, 1, 2])) for s in ("train", "valid", "test")}
    parts[split] = Split(rng.random((3, 5)), np.array(labels))
    data = Dataset("hand-built", **parts, n_classes=3)
    for run in (lambda: fastmlp.train(fastmlp.MLP(5, 4, 3), data, epochs=1),
                lambda: evaluate(fastmlp.MLP(5, 4, 3), data)):
        with pytest.raises(FastMLPError, match=re.escape(fragment)):
            run()


# -- the API's table: every bad argument is a FastMLPError, never a built-in exception ----------
# InvalidInputError is also a ValueError and InvalidTypeError a TypeError, as Python's and
# scikit-learn's conventions expect; none of them is a DivergenceError.


def _hand_built(train_x: np.ndarray = X10, valid_x: np.ndarray | None = None,
                test_x: np.ndarray | None = None) -> fastmlp.Dataset:
    """10 rows of 5 features, 3 classes, in each split given (empty splits otherwise)."""
    from fastmlp.datasets import Dataset, Split

    def split(x):
        return Split(X10[:0], Y10[:0]) if x is None else Split(x, Y10[:len(x)])
    return Dataset("hand-built", split(train_x), split(valid_x), split(test_x), n_classes=3)


def _weights_without(name: str) -> dict:
    return {k: v for k, v in fastmlp.MLP(5, 4, 3).state().items() if k != name}


def _train_api(**kw):
    return lambda: fastmlp.train(fastmlp.MLP(5, 4, 3), _hand_built(), **dict({"epochs": 1}, **kw))


def _with(x: np.ndarray, row: int, column: int, value: float) -> np.ndarray:
    out = x.copy()
    out[row, column] = value
    return out


_NAN_X = _with(_with(X10, 3, 1, np.nan), 7, 0, np.nan)  # the first NaN: row 3, column 1

API_ROWS: dict[str, tuple[Callable[[], object], type, str]] = {
    # the model
    "MLP(seed=-1)": (lambda: fastmlp.MLP(5, 4, 3, seed=-1), ValueError,
                     "seed must be an integer >= 0, got -1"),
    "MLP(seed=1.5)": (lambda: fastmlp.MLP(5, 4, 3, seed=1.5), ValueError, "seed must be"),
    "MLP hidden 0": (lambda: fastmlp.MLP(5, 0, 3), ValueError, "n_hidden must be a positive"),
    "MLP n_in -1": (lambda: fastmlp.MLP(-1, 4, 3), ValueError, "n_in must be a positive"),
    "MLP one class": (lambda: fastmlp.MLP(5, 4, 1), ValueError, "at least 2 classes"),
    "MLP dtype int8": (lambda: fastmlp.MLP(5, 4, 3, dtype="int8"), ValueError,
                       "unknown dtype 'int8'"),
    "MLP activation tanh": (lambda: fastmlp.MLP(5, 4, 3, activation="tanh"), ValueError,
                            "unknown activation 'tanh'"),
    "MLP init zeros": (lambda: fastmlp.MLP(5, 4, 3, init="zeros"), ValueError, "unknown init"),
    "MLP fused 'yes'": (lambda: fastmlp.MLP(5, 4, 3, fused="yes"), ValueError,
                        "fused must be None, True or False"),
    "MLP device tpu": (lambda: fastmlp.MLP(5, 4, 3, device="tpu"), FastMLPError,
                       "unknown device 'tpu'"),
    "from_weights without bo": (lambda: fastmlp.MLP.from_weights(_weights_without("bo")),
                                ValueError, "weights lack bo"),
    "from_weights of a list": (lambda: fastmlp.MLP.from_weights([1, 2]), TypeError,
                               "weights must be a mapping"),
    "from_weights of strings": (lambda: fastmlp.MLP.from_weights(
        dict(fastmlp.MLP(5, 4, 3).state(), bo=np.array([["a", "b", "c"]]))), ValueError,
        "bo has dtype str32"),
    "from_weights wrong bo shape": (lambda: fastmlp.MLP.from_weights(
        dict(fastmlp.MLP(5, 4, 3).state(), bo=np.zeros((1, 4), np.float32))), ValueError,
        "bo must have shape (1, 3), got (1, 4)"),
    "save into a folder": (lambda: fastmlp.MLP(5, 4, 3).save("."), FastMLPError,
                           "cannot write model .: Is a directory"),
    "save into a missing folder": (lambda: fastmlp.MLP(5, 4, 3).save("missing/m.npz"),
                                   FastMLPError, "cannot write model missing/m.npz"),
    "forward, wrong width": (lambda: fastmlp.MLP(5, 4, 3).forward(X10[:, :4]), ValueError,
                             "x must have shape (N, 5), got (10, 4)"),
    "loss_and_grads, labels past K": (lambda: fastmlp.MLP(5, 4, 3).loss_and_grads(X10, Y10 + 3),
                                      ValueError, "labels must lie in 0..2"),
    "forward of strings": (lambda: fastmlp.MLP(5, 4, 3).forward([["a"] * 5]), ValueError,
                           "x must hold real numbers, got dtype <U1"),
    "predict of a string": (lambda: fastmlp.MLP(5, 4, 3).predict("abc"), ValueError,
                            "x must hold real numbers, got dtype <U3"),
    "loss_and_grads, string labels": (lambda: fastmlp.MLP(5, 4, 3).loss_and_grads(
        X10, np.array(list("abcdefghij"))), ValueError, "y must hold integer labels"),
    # training
    "train((X, y))": (lambda: fastmlp.train(fastmlp.MLP(5, 4, 3), (X10, Y10), epochs=1),
                      TypeError, "the data must be a fastmlp.Dataset"),
    "train(None model)": (lambda: fastmlp.train(None, _hand_built(), epochs=1), TypeError,
                          "the model must be a fastmlp.MLP, got NoneType"),
    "evaluate((X, y))": (lambda: importlib.import_module("fastmlp.train").evaluate(
        fastmlp.MLP(5, 4, 3), (X10, Y10)), TypeError, "fastmlp.Dataset"),
    "train epochs 0": (_train_api(epochs=0), FastMLPError, "epochs must be a positive integer"),
    "train lr nan": (_train_api(lr=float("nan")), ValueError, "lr must be a finite"),
    "train lr '0.1'": (_train_api(lr="0.1"), ValueError, "got '0.1'"),
    "train momentum None": (_train_api(momentum=None), ValueError, "momentum must be a finite"),
    "train eval_every 1.5": (_train_api(eval_every=1.5), ValueError, "eval_every must be a "
                                                                     "positive integer, got 1.5"),
    "train seed -1": (_train_api(seed=-1), ValueError, "seed must be an integer >= 0, got -1"),
    "train compiled 'yes'": (_train_api(compiled="yes", batch_size=2), ValueError,
                             "compiled must be True, False or None"),
    # non-finite features: refused where they enter training, naming split, row and column
    "NaN in the train features": (lambda: fastmlp.train(fastmlp.MLP(5, 4, 3),
                                                        _hand_built(_NAN_X), epochs=1),
                                  ValueError, "the train features of the data (hand-built) are "
                                              "not finite: nan at row 3, column 1 (as "
                                              "float32), 2 row(s) in all"),
    "inf in the valid features": (lambda: fastmlp.train(
        fastmlp.MLP(5, 4, 3), _hand_built(X10, valid_x=_with(X10, 2, 4, np.inf)),
        epochs=1), ValueError, "the valid features of the data (hand-built) are not finite: "
                               "inf at row 2, column 4"),
    "-inf in the test features (minibatch)": (lambda: fastmlp.train(
        fastmlp.MLP(5, 4, 3), _hand_built(X10, test_x=-np.inf * X10), epochs=1, batch_size=2),
        ValueError, "the test features"),
    "float64 1e300 in a float32 model": (lambda: fastmlp.train(
        fastmlp.MLP(5, 4, 3), _hand_built(X10 * 1e300), epochs=1), ValueError,
        "(as float32)"),
    "NaN features to evaluate": (lambda: importlib.import_module("fastmlp.train").evaluate(
        fastmlp.MLP(5, 4, 3), _hand_built(_NAN_X)), ValueError, "not finite: nan at row 3"),
    # the run's settings
    "RunConfig compiled with full batch": (lambda: fastmlp.RunConfig(compiled=True),
                                           FastMLPError, "--compiled is for minibatch epochs"),
    "RunConfig scale with synthetic": (lambda: fastmlp.RunConfig(dataset="synthetic",
                                                                 scale="symmetric"),
                                       FastMLPError, "--scale symmetric applies to the pixel"),
}


@pytest.mark.parametrize("case", list(API_ROWS))
def test_api_bad_input_raises_fastmlp_error(case: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the save rows write relative paths
    call, kind, fragment = API_ROWS[case]
    with pytest.raises(FastMLPError, match=re.escape(fragment)) as info:
        call()
    assert isinstance(info.value, kind)
    assert not isinstance(info.value, fastmlp.DivergenceError)


def test_the_api_takes_lists_as_host_arrays() -> None:
    model = fastmlp.MLP(5, 4, 3)
    np.testing.assert_array_equal(model.predict(X10.tolist()), model.predict(X10))


def test_the_api_error_classes_are_the_conventional_built_ins_too() -> None:
    from fastmlp.errors import InvalidInputError, InvalidTypeError
    from fastmlp.estimator import InvalidInputError as EstimatorError

    assert issubclass(InvalidInputError, ValueError) and issubclass(InvalidTypeError, TypeError)
    assert EstimatorError is InvalidInputError  # one class, still importable from the estimator


def test_a_checkpoint_recording_ignored_options_still_resumes() -> None:
    # before they were refused, --compiled with full batch and --scale with synthetic data
    # were recorded (and ignored): such a record is read as what ran
    record = fastmlp.RunConfig(dataset="synthetic", hidden=4).checkpoint_record()
    record.update(compiled=True, scale="symmetric")
    config = fastmlp.RunConfig.from_record(record)
    assert (config.compiled, config.scale, config.batch_size) == (None, "unit", None)


# -- accepted inputs: what evaluate and predict take, and that they agree ------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, products: str) -> Path:
    """A small run of ``fastmlp train`` on synthetic data; its output directory."""
    out = tmp_path_factory.mktemp("run")
    argv = ["train", "--dataset", "synthetic", "--hidden", "8", "--epochs", "3", "--device",
            "cpu", "--no-progress", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    return out


def test_evaluate_reproduces_the_final_metrics_of_training(trained: Path, capsys) -> None:
    capsys.readouterr()
    final = json.loads((trained / "history.json").read_text())["final"]
    assert main(["evaluate", str(trained / "model.npz"), "--dataset", "synthetic", "--json",
                 "--device", "cpu"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["dataset"] == "synthetic" and data["scale"] == "unit"
    for split in ("train", "valid", "test"):
        got = data["splits"][split]
        assert got["loss"] == pytest.approx(final[f"{split}_loss"], rel=1e-6)
        assert got["accuracy"] == pytest.approx(final[f"{split}_acc"], abs=1e-12)
    assert [data["splits"][s]["rows"] for s in ("train", "valid", "test")] == [1000, 200, 200]
    assert main(["evaluate", str(trained / "model.npz"), "--dataset", "synthetic"]) == 0
    table = capsys.readouterr().out
    assert "784-8-10" in table and f"{final['test_acc']:.4f}" in table


def test_evaluate_takes_left_out_data_options_from_the_training_run(tmp_path: Path,
                                                                    capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic", "--seed", "3", "--train-size", "150",
                 "--hidden", "8", "--epochs", "2", "--device", "cpu", "--quiet", "--out",
                 str(out)]) == 0
    final = json.loads((out / "history.json").read_text())["final"]
    capsys.readouterr()
    # no data options at all: the run's dataset, training rows and seed
    assert main(["evaluate", str(out / "model.npz"), "--device", "cpu"]) == 0
    table = capsys.readouterr().out
    # (no --scale: synthetic features are used as given, so the run records no scaling)
    assert ("(--dataset synthetic --train-size 150 --seed 3: as in the model's "
            "training run)") in table
    assert f"{final['train_acc']:.4f}" in table and f"{final['test_acc']:.4f}" in table
    assert main(["evaluate", str(out / "model.npz"), "--device", "cpu", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["seed"], data["train_size"], data["splits"]["train"]["rows"]) == (3, 150, 150)
    for split in ("train", "valid", "test"):
        assert data["splits"][split]["loss"] == pytest.approx(final[f"{split}_loss"], rel=1e-6)
    # an option given on the command line wins over the recorded one
    assert main(["evaluate", str(out / "model.npz"), "--device", "cpu", "--json", "--seed", "4",
                 "--train-size", "all"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["seed"] == 4 and data["splits"]["train"]["rows"] == 1000
    assert data["splits"]["test"]["loss"] != pytest.approx(final["test_loss"], rel=1e-6)
    # --dataset given: none of the run's data options carry over (the scaling does)
    assert main(["evaluate", str(out / "model.npz"), "--device", "cpu", "--dataset", "synthetic",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["dataset"], data["seed"], data["train_size"]) == ("synthetic", 0, None)
    assert data["splits"]["train"]["rows"] == 1000


def test_evaluate_finds_the_recorded_data_file_from_anywhere(tmp_path: Path, capsys,
                                                             monkeypatch,
                                                             assert_one_line_error) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.random((60, 5)), rng.integers(0, 3, 60)
    np.savez(tmp_path / "d.npz", x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:])
    np.savez(tmp_path / "other.npz", x_train=x[:10], y_train=y[:10])
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--dataset", "npz", "--data-path", "d.npz", "--hidden", "4",
                 "--epochs", "2", "--device", "cpu", "--quiet", "--out", "run"]) == 0
    config = json.loads((tmp_path / "run" / "history.json").read_text())["config"]
    assert config["run"]["data_path"] == str(tmp_path / "d.npz")  # recorded absolute
    final = json.loads((tmp_path / "run" / "history.json").read_text())["final"]
    capsys.readouterr()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    model = str(tmp_path / "run" / "model.npz")
    assert main(["evaluate", model, "--device", "cpu", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["data_path"] == str(tmp_path / "d.npz") and data["splits"]["train"]["rows"] == 40
    assert data["splits"]["test"]["loss"] == pytest.approx(final["test_loss"], rel=1e-6)
    # --data-path alone: the dataset kind from the record, not its training rows
    assert main(["evaluate", model, "--device", "cpu", "--json", "--data-path",
                 str(tmp_path / "other.npz")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["dataset"] == "npz" and data["splits"]["train"]["rows"] == 10
    # a recorded file that is gone: one line saying where the path came from
    (tmp_path / "d.npz").rename(tmp_path / "moved.npz")
    assert main(["evaluate", model, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err, "trained on --dataset npz --data-path")
    assert "pass --data-path" in err
    # the file there again but shorter: the error names the options taken from the record
    np.savez(tmp_path / "d.npz", x_train=x[:20], y_train=y[:20])
    assert main(["evaluate", model, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err, "--train-size must be between 1 and 20")
    assert "--train-size 40: taken from the model's training run" in err


def test_resume_help_and_error_name_every_option_that_may_change(trained: Path, capsys,
                                                                  monkeypatch) -> None:
    import argparse

    from fastmlp.cli.train import RESUME_MAY_CHANGE, configure_train

    options = [f"--{key.replace('_', '-')}" for key in RESUME_MAY_CHANGE if key != "resume"]
    monkeypatch.setenv("COLUMNS", "1000")  # no line breaks (textwrap splits at hyphens)
    parser = argparse.ArgumentParser()
    configure_train(parser)
    help_text = parser.format_help()
    resume_help = help_text[help_text.index("--resume DIR  "):]
    assert main(["train", "--resume", str(trained), "--lr", "0.5"]) == 2
    error = capsys.readouterr().err
    for option in options:
        assert option in resume_help and option in error, option


def test_resume_after_the_data_file_moved(tmp_path: Path, capsys,
                                          assert_one_line_error) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.random((30, 6)), y_train=rng.integers(0, 3, 30))
    np.savez(tmp_path / "other.npz", x_train=rng.random((25, 6)), y_train=rng.integers(0, 3, 25))
    run = tmp_path / "run"
    assert main(["train", "--dataset", "npz", "--data-path", str(tmp_path / "d.npz"),
                 "--hidden", "4", "--epochs", "2", "--device", "cpu", "--quiet", "--out",
                 str(run)]) == 0
    (tmp_path / "d.npz").rename(tmp_path / "moved.npz")
    capsys.readouterr()
    # the recorded path is gone: the error says where it came from and what to do
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err, "(the data path recorded by the run in ")
    assert "give --data-path if the file has moved" in err
    # other data is still refused; the moved file continues the run, and is recorded
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet", "--data-path",
                 str(tmp_path / "other.npz")]) == 2
    assert_one_line_error(capsys.readouterr().err, "no longer match the checkpoint")
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet", "--data-path",
                 str(tmp_path / "moved.npz")]) == 0
    history = json.loads((run / "history.json").read_text())
    assert history["epochs"] == 3
    assert history["config"]["run"]["data_path"] == str(tmp_path / "moved.npz")


def test_resume_compares_the_train_size_by_the_rows_it_means(tmp_path: Path, capsys,
                                                            assert_one_line_error) -> None:
    def first_epoch(*data_options: str) -> Path:
        out = tmp_path / data_options[1]
        assert main(["train", *data_options, "--hidden", "4", "--epochs", "1", "--device", "cpu",
                     "--quiet", "--out", str(out)]) == 0
        return out

    # recorded: --train-size left out (None), which means every row of synthetic data ...
    out = first_epoch("--dataset", "synthetic")
    assert main(["train", "--resume", str(out), "--train-size", "all", "--epochs", "2",
                 "--quiet"]) == 0
    # ... and the course's first 10000 rows of mnist
    _mnist_dir(tmp_path / "idx", n_train=20_001)  # 10001 training rows
    out = first_epoch("--dataset", "mnist", "--data-path", str(tmp_path / "idx"))
    assert main(["train", "--resume", str(out), "--train-size", "10000", "--epochs", "2",
                 "--quiet"]) == 0
    assert json.loads((out / "history.json").read_text())["epochs"] == 2
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--train-size", "all", "--epochs", "3"]) == 2
    assert_one_line_error(capsys.readouterr().err, "--train-size all (recorded: 10000)")


def test_evaluate_empty_splits_are_null_in_json(tmp_path: Path, capsys) -> None:
    data = tmp_path / "d.npz"
    np.savez(data, x_train=X10, y_train=Y10)  # no valid/test split
    model = tmp_path / "m.npz"
    fastmlp.MLP(5, 4, 3).save(model)
    assert main(["evaluate", str(model), "--dataset", "npz", "--data-path", str(data), "--json",
                 "--device", "cpu"]) == 0
    splits = json.loads(capsys.readouterr().out)["splits"]
    assert splits["valid"] == {"rows": 0, "loss": None, "accuracy": None}
    assert splits["train"]["rows"] == 10 and 0 <= splits["train"]["accuracy"] <= 1


def test_evaluate_ignores_a_path_recorded_by_a_synthetic_run(tmp_path: Path, capsys) -> None:
    # older versions recorded an (unused) --data-path with --dataset synthetic; evaluate must
    # not insist that it still exists
    model = fastmlp.MLP(784, 8, 10)
    model.save(tmp_path / "m.npz", extra={"dataset": "synthetic", "seed": 2, "n_train": 100,
                                          "data_path": str(tmp_path / "gone")})
    assert main(["evaluate", str(tmp_path / "m.npz"), "--device", "cpu", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["dataset"], data["seed"], data["splits"]["train"]["rows"]) == ("synthetic", 2,
                                                                              100)


def test_predict_uses_uint8_as_given_for_a_model_trained_on_npz_features(tmp_path: Path,
                                                                          capsys) -> None:
    # npz features are used as given in training (--scale does not apply), so predict must not
    # divide uint8 input by 255; the run records no scale for them
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (60, 784), dtype=np.uint8)
    y = rng.integers(0, 10, 60)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y)
    out = tmp_path / "run"
    assert main(["train", "--dataset", "npz", "--data-path", str(tmp_path / "d.npz"),
                 "--hidden", "8", "--epochs", "1", "--lr", "1e-4", "--device", "cpu",
                 "--quiet", "--out", str(out)]) == 0
    model = fastmlp.MLP.load(out / "model.npz")
    assert recorded_run(model.saved_config)["scale"] is None
    np.save(tmp_path / "x.npy", x[:6])
    capsys.readouterr()
    assert main(["predict", str(out / "model.npz"), str(tmp_path / "x.npy"),
                 "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    expected = model.forward(x[:6].astype(np.float32)).argmax(axis=1)
    assert [int(v) for v in captured.out.split()] == expected.tolist()
    assert "scaled to" not in captured.err


def test_predict_formats_agree(tmp_path: Path, capsys) -> None:
    model_path = tmp_path / "m.npz"
    model = fastmlp.MLP(784, 8, 10, seed=4)
    model.save(model_path, extra={"scale": "symmetric"})  # as a --scale symmetric run records
    pixels = np.random.default_rng(5).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    scaled = (pixels.reshape(6, 784) / 127.5 - 1.0).astype(np.float32)
    expected = model.forward(scaled)
    np.save(tmp_path / "u8.npy", pixels)
    np.save(tmp_path / "f.npy", scaled)
    run = ["predict", str(model_path), "--device", "cpu"]
    # uint8 (N, 28, 28): scaled as the model was trained, with a note on stderr
    assert main([*run[:2], str(tmp_path / "u8.npy"), *run[2:]]) == 0
    captured = capsys.readouterr()
    assert "[-1, 1]" in captured.err and "--scale symmetric" in captured.err
    assert [int(v) for v in captured.out.split()] == expected.argmax(axis=1).tolist()
    # floats (N, 784), already scaled: used as given, silently; probabilities to .npy and .csv
    for out in ("p.npy", "p.csv"):
        assert main([*run[:2], str(tmp_path / "f.npy"), *run[2:], "--proba", "--out",
                     str(tmp_path / out)]) == 0
        assert capsys.readouterr().err == ""
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, rtol=1e-6)
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0] == "row,prediction," + ",".join(f"p{k}" for k in range(10))
    table = np.array([r.split(",") for r in rows[1:]], dtype=float)
    np.testing.assert_array_equal(table[:, 1], expected.argmax(axis=1))
    np.testing.assert_allclose(table[:, 2:], expected, rtol=1e-6)
    # labels to .npy; --scale unit overrides the recorded scale
    assert main([*run[:2], str(tmp_path / "u8.npy"), *run[2:], "--scale", "unit", "--out",
                 str(tmp_path / "l.npy")]) == 0
    unit = model.forward((pixels.reshape(6, 784) / 255.0).astype(np.float32)).argmax(axis=1)
    np.testing.assert_array_equal(np.load(tmp_path / "l.npy"), unit)
    assert capsys.readouterr().err == ""


def test_finite_weights_whose_loss_is_not_are_not_blamed_on_the_learning_rate() -> None:
    # input that turns non-finite after the checks (here: written into the trainer's copy)
    # must not read "not finite either; try a smaller learning rate": no update has been made
    from fastmlp.train import Trainer, fit_epochs

    trainer = Trainer(fastmlp.MLP(5, 4, 3), _hand_built(), sparse="off")  # rows in trainer.X
    trainer.X[0, 0] = np.nan
    with pytest.raises(fastmlp.DivergenceError) as info:
        fit_epochs(trainer, fastmlp.History(), 2)
    message = str(info.value)
    assert "kept the initial weights, the oldest held: finite, though their loss is nan" in message
    assert "the learning rate is not the cause" in message
    assert "not finite either" not in message and "smaller learning rate" not in message
    assert bool(np.isfinite(trainer.model.params).all())


@pytest.mark.parametrize("momentum", [1.0, 1.5])
def test_momentum_of_one_or_more_warns_and_its_divergence_says_so(momentum: float) -> None:
    # accepted (the rule is well defined, the kernels run it) but warned about: the velocity
    # never decays, so the weights cannot settle
    from fastmlp.estimator import MLPClassifier

    with pytest.warns(RuntimeWarning, match=f"momentum {momentum:g} >= 1: the velocity"):
        MLPClassifier(hidden=4, epochs=1, momentum=momentum).fit(X10, Y10)
    if momentum > 1:  # the weights grow as momentum**t: a divergence, and it names the cause
        with pytest.warns(RuntimeWarning, match="grow without bound"), \
                pytest.raises(fastmlp.DivergenceError, match="use a momentum below 1"):
            fastmlp.train(fastmlp.MLP(5, 4, 3), _hand_built(), epochs=3000, lr=10.0,
                          momentum=momentum)
