"""Tests for fastmlp.datasets: bundled MNIST facts, IDX parsing, the ECE421 notMNIST split,
generic .npz files, synthetic blobs, and a one-line FastMLPError for every bad input."""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastmlp
from fastmlp.datasets import Dataset, Split, load_dataset, parse_idx, scale_pixels
from fastmlp.errors import FastMLPError

# From fastmlp/data/mnist/README.md (checked facts about the real data).
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
FIRST_LABELS = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
IDX_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}


def bundled_dir() -> Path:
    return Path(str(importlib.resources.files("fastmlp") / "data" / "mnist"))


def idx_bytes(arr: np.ndarray) -> bytes:
    """Encode ``arr`` as IDX: 0, 0, type code, ndim, big-endian uint32 dims, big-endian data."""
    code = IDX_CODES[arr.dtype.kind + str(arr.dtype.itemsize)]
    header = bytes([0, 0, code, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg, f"error message must be one non-empty line: {msg!r}"
    return msg


def copy_bundled(dst: Path, *, with_sums: bool = True) -> Path:
    """Copy the bundled gz files (and optionally SHA256SUMS) into ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for base in MNIST_FILES:
        shutil.copy(bundled_dir() / f"{base}.gz", dst / f"{base}.gz")
    if with_sums:
        shutil.copy(bundled_dir() / "SHA256SUMS", dst / "SHA256SUMS")
    return dst


# -- MNIST --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    return load_dataset("mnist")


def test_mnist_shapes_and_dtypes(mnist: Dataset) -> None:
    assert mnist.name == "mnist" and mnist.n_classes == 10 and mnist.n_features == 784
    assert mnist.train.x.shape == (50000, 784) and len(mnist.train) == 50000
    assert mnist.valid.x.shape == (10000, 784) and len(mnist.valid) == 10000
    assert mnist.test.x.shape == (10000, 784) and len(mnist.test) == 10000
    for split in (mnist.train, mnist.valid, mnist.test):
        assert split.x.dtype == np.float32 and split.x.flags.c_contiguous
        assert split.y.dtype == np.int64 and split.y.shape == (len(split.x),)
    summary = mnist.summary()
    assert "\n" not in summary and "50000" in summary and "784" in summary


def test_mnist_class_counts_and_first_labels(mnist: Dataset) -> None:
    train_counts = np.bincount(mnist.train.y, minlength=10) + np.bincount(
        mnist.valid.y, minlength=10
    )
    assert train_counts.tolist() == TRAIN_COUNTS
    assert np.bincount(mnist.test.y, minlength=10).tolist() == TEST_COUNTS
    assert mnist.train.y[:10].tolist() == FIRST_LABELS


def test_mnist_pixel_statistics(mnist: Dataset) -> None:
    # Over all 60000 training images; float64 sums in chunks keep it fast and memory-light.
    total = total_sq = 0.0
    for part in (mnist.train.x, mnist.valid.x):
        assert part.min() == 0.0 and part.max() == 1.0
        for chunk in np.array_split(part, 10):
            c = chunk.astype(np.float64)
            total += c.sum()
            total_sq += np.einsum("ij,ij->", c, c)
    n = 60000 * 784
    mean = total / n
    std = np.sqrt(total_sq / n - mean**2)
    assert round(mean, 4) == 0.1307
    assert round(float(std), 4) == 0.3081


@pytest.mark.parametrize("scale", ["unit", "symmetric"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_scale_pixels_gives_load_datasets_values(scale: str, dtype: str) -> None:
    data = load_dataset("mnist", train_size=50, scale=scale, dtype=dtype)
    raw = (data.train.x.astype(np.float64) + (1.0 if scale == "symmetric" else 0.0)) * (
        127.5 if scale == "symmetric" else 255.0)
    pixels = np.rint(raw).astype(np.uint8).reshape(50, 28, 28)
    for images in (pixels, pixels.astype(np.float32), pixels.reshape(50, 784).astype(np.int64)):
        x = scale_pixels(images, scale, dtype)
        assert x.dtype == np.dtype(dtype) and x.shape == (50, 784) and x.flags.c_contiguous
        np.testing.assert_array_equal(x, data.train.x)
    with pytest.raises(FastMLPError, match="unknown scale"):
        scale_pixels(pixels, "minmax", dtype)


def test_mnist_train_size_and_float64(mnist: Dataset) -> None:
    small = load_dataset("mnist", train_size=10000, dtype="float64")
    assert small.train.x.shape == (10000, 784) and small.train.x.dtype == np.float64
    assert small.valid.x.shape == (10000, 784) and small.test.x.shape == (10000, 784)
    assert small.train.x.flags.c_contiguous
    np.testing.assert_array_equal(small.train.y, mnist.train.y[:10000])
    # float32 is exactly the float64 values rounded once (no float32 arithmetic in between).
    np.testing.assert_array_equal(small.train.x.astype(np.float32), mnist.train.x[:10000])
    np.testing.assert_array_equal(small.test.x.astype(np.float32), mnist.test.x)


def test_mnist_scalings() -> None:
    unit = load_dataset("mnist", train_size=2000, dtype="float64")
    sym = load_dataset("mnist", train_size=2000, dtype="float64", scale="symmetric")
    for a, b in ((unit.train, sym.train), (unit.valid, sym.valid), (unit.test, sym.test)):
        assert a.x.min() == 0.0 and a.x.max() == 1.0
        assert b.x.min() == -1.0 and b.x.max() == 1.0
        np.testing.assert_array_equal(b.x, a.x * 2.0 - 1.0)  # x/127.5 - 1 == (x/255)*2 - 1
        np.testing.assert_array_equal(a.y, b.y)
    # Pixel 255 maps to exactly 1 and 0 to exactly -1; all values are k/255 for integers k.
    k = unit.train.x * 255.0
    np.testing.assert_array_equal(k, np.round(k))
    sym32 = load_dataset("mnist", train_size=10, scale="symmetric")
    np.testing.assert_array_equal(sym32.train.x, sym.train.x[:10].astype(np.float32))


def test_mnist_results_do_not_share_state() -> None:
    a = load_dataset("mnist", train_size=5)
    a.train.x[:] = 7.0
    a.train.y[:] = 3
    b = load_dataset("mnist", train_size=5)
    assert b.train.x.max() <= 1.0 and b.train.y.tolist() == FIRST_LABELS[:5]


def test_mnist_from_user_dir_raw_files(tmp_path: Path, mnist: Dataset) -> None:
    # Raw (decompressed) IDX files plus SHA256SUMS: verified and identical to the bundled copy.
    for base in MNIST_FILES:
        with gzip.open(bundled_dir() / f"{base}.gz", "rb") as f:
            (tmp_path / base).write_bytes(f.read())
    shutil.copy(bundled_dir() / "SHA256SUMS", tmp_path / "SHA256SUMS")
    ds = load_dataset("mnist", path=tmp_path)
    np.testing.assert_array_equal(ds.train.x, mnist.train.x)
    np.testing.assert_array_equal(ds.valid.y, mnist.valid.y)
    np.testing.assert_array_equal(ds.test.x, mnist.test.x)


def test_mnist_checksum_mismatch(tmp_path: Path) -> None:
    d = copy_bundled(tmp_path / "mnist")
    target = d / "train-labels-idx1-ubyte.gz"
    payload = bytearray(gzip.decompress(target.read_bytes()))
    payload[8 + 100] = (payload[8 + 100] + 1) % 10  # still a valid label: only the hash can tell
    target.write_bytes(gzip.compress(bytes(payload)))
    with pytest.raises(FastMLPError) as excinfo:
        load_dataset("mnist", path=d)
    msg = one_line(excinfo)
    assert "checksum mismatch" in msg and "train-labels-idx1-ubyte" in msg

    # Without a SHA256SUMS file a user directory is loaded as is (nothing to check against).
    (d / "SHA256SUMS").unlink()
    ds = load_dataset("mnist", path=d, train_size=200)
    assert ds.train.y[100] == payload[8 + 100]


def tiny_mnist(dst: Path, *, gz: bool, dotted: bool = False) -> dict[str, Path]:
    """Write four small MNIST-like IDX files (10001 + 3 images of 2x2) into ``dst``; return
    {canonical base name: file written}. ``dotted`` spells them ``train-images.idx3-ubyte``."""
    dst.mkdir(parents=True, exist_ok=True)
    n_train, n_test = 10_001, 3  # just more than the 10000 validation rows
    arrays = {
        "train-images-idx3-ubyte": (np.arange(n_train * 4) % 256).astype(np.uint8).reshape(
            n_train, 2, 2),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": np.full((n_test, 2, 2), 7, dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(n_test, dtype=np.uint8),
    }
    written = {}
    for base, arr in arrays.items():
        name = (base.replace("-idx", ".idx") if dotted else base) + (".gz" if gz else "")
        payload = idx_bytes(arr)
        (dst / name).write_bytes(gzip.compress(payload, mtime=0) if gz else payload)
        written[base] = dst / name
    return written


def sha256sums_of_files(files: dict[str, Path]) -> str:
    """What ``sha256sum *`` writes: the hash of each file's bytes as stored, by its own name."""
    return "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n"
                   for p in files.values())


def corrupt_one_label(path: Path, *, gz: bool) -> None:
    """Change one label of an IDX labels file to another valid label (only a hash can tell)."""
    payload = bytearray(gzip.decompress(path.read_bytes()) if gz else path.read_bytes())
    payload[8 + 1] = (payload[8 + 1] + 1) % 10
    path.write_bytes(gzip.compress(bytes(payload), mtime=0) if gz else bytes(payload))


@pytest.mark.parametrize("gz, dotted", [(True, False), (False, True), (True, True)])
def test_mnist_sha256sums_by_the_files_own_names(tmp_path: Path, gz: bool, dotted: bool) -> None:
    # `sha256sum *.gz > SHA256SUMS` lists the .gz names and hashes the compressed bytes; a
    # mirror's dotted names are listed as such: both must be verified, not skipped.
    files = tiny_mnist(tmp_path, gz=gz, dotted=dotted)
    (tmp_path / "SHA256SUMS").write_text(sha256sums_of_files(files))
    ds = load_dataset("mnist", path=tmp_path)
    assert len(ds.train) == 1 and ds.train.y.tolist() == [0] and len(ds.test) == 3

    target = files["train-labels-idx1-ubyte"]
    corrupt_one_label(target, gz=gz)
    with pytest.raises(FastMLPError) as excinfo:
        load_dataset("mnist", path=tmp_path)
    msg = one_line(excinfo)
    assert "checksum mismatch" in msg and target.name in msg


def test_mnist_sha256sums_by_decompressed_names_of_dotted_gz_files(tmp_path: Path) -> None:
    # `gunzip -k *.gz; sha256sum *-ubyte`: the dotted names without .gz, decompressed hashes.
    files = tiny_mnist(tmp_path, gz=True, dotted=True)
    (tmp_path / "SHA256SUMS").write_text("".join(
        f"{hashlib.sha256(gzip.decompress(p.read_bytes())).hexdigest()}  {p.name[:-3]}\n"
        for p in files.values()))
    assert len(load_dataset("mnist", path=tmp_path).test) == 3
    corrupt_one_label(files["t10k-labels-idx1-ubyte"], gz=True)
    with pytest.raises(FastMLPError, match="checksum mismatch.*t10k-labels.idx1-ubyte"):
        load_dataset("mnist", path=tmp_path)


def test_mnist_sha256sums_that_omit_a_file_is_an_error(tmp_path: Path) -> None:
    # A SHA256SUMS that names some other file must not let this one through unverified.
    files = tiny_mnist(tmp_path, gz=True)
    lines = sha256sums_of_files(files).splitlines(keepends=True)
    (tmp_path / "SHA256SUMS").write_text(
        "".join(line for line in lines if "t10k-images" not in line)
        + f"{'0' * 64}  t10k-images-idx3-ubyte.tar\n")
    with pytest.raises(FastMLPError) as excinfo:
        load_dataset("mnist", path=tmp_path)
    msg = one_line(excinfo)
    assert "lists no checksum" in msg and "SHA256SUMS" in msg
    assert "t10k-images-idx3-ubyte.gz" in msg


def test_mnist_truncated_and_corrupt_files(tmp_path: Path) -> None:
    d = copy_bundled(tmp_path / "trunc", with_sums=False)
    labels = gzip.decompress((d / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (d / "t10k-labels-idx1-ubyte.gz").unlink()
    (d / "t10k-labels-idx1-ubyte").write_bytes(labels[:-7])  # a raw, truncated file
    with pytest.raises(FastMLPError) as excinfo:
        load_dataset("mnist", path=d)
    msg = one_line(excinfo)
    assert "truncated" in msg and "t10k-labels-idx1-ubyte" in msg

    d2 = copy_bundled(tmp_path / "badgz", with_sums=False)
    gz = (d2 / "train-labels-idx1-ubyte.gz").read_bytes()
    (d2 / "train-labels-idx1-ubyte.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(FastMLPError) as excinfo:
        load_dataset("mnist", path=d2)
    msg = one_line(excinfo)
    assert "gzip" in msg and "train-labels-idx1-ubyte" in msg

    d3 = copy_bundled(tmp_path / "swapped", with_sums=False)
    # Images where labels belong: the magic number check names the file.
    (d3 / "t10k-labels-idx1-ubyte.gz").write_bytes((d3 / "t10k-images-idx3-ubyte.gz").read_bytes())
    with pytest.raises(FastMLPError) as excinfo:
        load_dataset("mnist", path=d3)
    msg = one_line(excinfo)
    assert "magic" in msg and "t10k-labels-idx1-ubyte" in msg


def test_mnist_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(FastMLPError, match="not found"):
        load_dataset("mnist", path=tmp_path / "nope")
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(FastMLPError, match="directory"):
        load_dataset("mnist", path=tmp_path / "file")
    with pytest.raises(FastMLPError, match="train-labels-idx1-ubyte"):
        load_dataset("mnist", path=tmp_path)
    for bad in (0, -1, 50001):
        with pytest.raises(FastMLPError, match="train_size") as excinfo:
            load_dataset("mnist", train_size=bad)
        one_line(excinfo)


# -- IDX parser ---------------------------------------------------------------------------------


def test_parse_idx_raw_and_gzip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 3, 4), dtype=np.uint8)
    labels = rng.integers(0, 10, size=5, dtype=np.uint8)
    ints = rng.integers(-1000, 1000, size=(2, 3), dtype=np.int32)
    for name, arr in (("img", images), ("lab", labels), ("int", ints)):
        raw, gz = tmp_path / name, tmp_path / f"{name}.gz"
        raw.write_bytes(idx_bytes(arr))
        gz.write_bytes(gzip.compress(idx_bytes(arr)))
        for p in (raw, gz, str(raw)):
            out = parse_idx(p)
            assert out.dtype == arr.dtype and out.dtype.isnative and out.flags.writeable
            np.testing.assert_array_equal(out, arr)
    assert parse_idx(tmp_path / "img", magic=0x00000803).shape == (5, 3, 4)
    with pytest.raises(FastMLPError, match="magic") as excinfo:
        parse_idx(tmp_path / "lab.gz", magic=0x00000803)
    assert "lab.gz" in one_line(excinfo)


def test_parse_idx_errors(tmp_path: Path) -> None:
    good = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))
    cases = {
        "short": (good[:3], "truncated"),
        "header": (good[:9], "truncated"),
        "payload": (good[:-1], "truncated"),
        "trailing": (good + b"\x00", "unexpected bytes"),
        "notidx": (b"PK\x03\x04" + good[4:], "not an IDX file"),
        "badtype": (b"\x00\x00\x07\x02" + good[4:], "not an IDX file"),
    }
    for name, (data, expected) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(FastMLPError, match=expected) as excinfo:
            parse_idx(tmp_path / name)
        assert name in one_line(excinfo)
    with pytest.raises(FastMLPError, match="not found"):
        parse_idx(tmp_path / "missing")


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(sorted(IDX_CODES)),
    shape=st.lists(st.integers(0, 4), min_size=1, max_size=4),
    gz=st.booleans(),
)
def test_parse_idx_roundtrip(kind: str, shape: list[int], gz: bool) -> None:
    arr = (np.arange(int(np.prod(shape))) % 97 - (40 if kind[0] != "u" else 0)).astype(kind)
    arr = arr.reshape(shape)
    data = idx_bytes(arr)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "a.idx"
        p.write_bytes(gzip.compress(data) if gz else data)
        out = parse_idx(p)
    assert out.shape == arr.shape and out.dtype == arr.dtype
    np.testing.assert_array_equal(out, arr)


# -- notMNIST -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def notmnist_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(421)
    n = 16050
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    path = tmp_path_factory.mktemp("notmnist") / "notMNIST.npz"
    np.savez(path, images=images, labels=labels)
    return path


def course_split(path: Path) -> tuple[np.ndarray, ...]:
    """The ECE421 starter code, verbatim (it seeds and uses the global RNG)."""
    with np.load(path) as data:
        Data, Target = data["images"], data["labels"]
        np.random.seed(521)
        randIndx = np.arange(len(Data))
        np.random.shuffle(randIndx)
        Data = Data[randIndx] / 255.0
        Target = Target[randIndx]
        trainData, trainTarget = Data[:10000], Target[:10000]
        validData, validTarget = Data[10000:16000], Target[10000:16000]
        testData, testTarget = Data[16000:], Target[16000:]
    return trainData, validData, testData, trainTarget, validTarget, testTarget


def test_notmnist_matches_course_split(notmnist_file: Path) -> None:
    expected = course_split(notmnist_file)
    np.random.seed(12345)
    state = np.random.get_state()
    ds = load_dataset("notmnist", path=notmnist_file, dtype="float64")
    after = np.random.get_state()
    assert state[0] == after[0] and state[2:] == after[2:]
    np.testing.assert_array_equal(state[1], after[1])  # the user's global RNG is untouched

    splits = (ds.train, ds.valid, ds.test)
    assert [len(s) for s in splits] == [10000, 6000, 50]
    assert ds.n_classes == 10 and ds.n_features == 784 and ds.name == "notmnist"
    for split, data, target in zip(splits, expected[:3], expected[3:], strict=True):
        assert split.x.dtype == np.float64 and split.x.flags.c_contiguous
        assert split.y.dtype == np.int64
        np.testing.assert_array_equal(split.x, data.reshape(len(data), 784))
        np.testing.assert_array_equal(split.y, target)


def test_notmnist_private_rng_equals_global_seed_shuffle() -> None:
    for n in (10, 18724):
        np.random.seed(521)
        legacy = np.arange(n)
        np.random.shuffle(legacy)
        private = np.arange(n)
        np.random.RandomState(521).shuffle(private)
        np.testing.assert_array_equal(private, legacy)


def test_notmnist_uint8_and_float_images_give_the_same_data(notmnist_file: Path,
                                                             tmp_path: Path) -> None:
    # uint8 pixels take the lookup-table path, anything else the float64 one: same values
    with np.load(notmnist_file) as f:
        images, labels = f["images"], f["labels"]
    assert images.dtype == np.uint8
    floats = tmp_path / "float_images.npz"
    np.savez(floats, images=images.astype(np.float64), labels=labels)
    for scale in ("unit", "symmetric"):
        for dtype in ("float32", "float64"):
            a = load_dataset("notmnist", path=notmnist_file, scale=scale, dtype=dtype)
            b = load_dataset("notmnist", path=floats, scale=scale, dtype=dtype)
            for split in ("train", "valid", "test"):
                np.testing.assert_array_equal(getattr(a, split).x, getattr(b, split).x)


def test_notmnist_options(notmnist_file: Path) -> None:
    base = load_dataset("notmnist", path=notmnist_file, dtype="float64")
    f32 = load_dataset("notmnist", path=notmnist_file)
    assert f32.train.x.dtype == np.float32
    np.testing.assert_array_equal(f32.test.x, base.test.x.astype(np.float32))
    sym = load_dataset("notmnist", path=notmnist_file, dtype="float64", scale="symmetric")
    # x / 127.5 - 1 in float64, as for mnist (the course's x / 255, rescaled, rounds otherwise)
    np.testing.assert_allclose(sym.valid.x, base.valid.x * 2.0 - 1.0, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(sym.valid.x, scale_pixels(np.rint(base.valid.x * 255.0),
                                                            "symmetric", "float64"))
    assert sym.train.x.min() >= -1.0 and sym.train.x.max() <= 1.0
    small = load_dataset("notmnist", path=notmnist_file, train_size=123, dtype="float64")
    assert len(small.train) == 123 and len(small.valid) == 6000
    np.testing.assert_array_equal(small.train.y, base.train.y[:123])
    for got, full in ((small.train, Split(base.train.x[:123], base.train.y[:123])),
                      (small.valid, base.valid), (small.test, base.test)):
        np.testing.assert_array_equal(got.x, full.x)
        np.testing.assert_array_equal(got.y, full.y)
    with pytest.raises(FastMLPError, match="train_size"):
        load_dataset("notmnist", path=notmnist_file, train_size=10001)


def test_notmnist_errors(tmp_path: Path) -> None:
    with pytest.raises(FastMLPError, match="path") as excinfo:
        load_dataset("notmnist")
    one_line(excinfo)
    with pytest.raises(FastMLPError, match="not found"):
        load_dataset("notmnist", path=tmp_path / "notMNIST.npz")
    small = tmp_path / "small.npz"
    np.savez(small, images=np.zeros((16000, 28, 28), np.uint8), labels=np.zeros(16000, np.uint8))
    with pytest.raises(FastMLPError, match="16000") as excinfo:
        load_dataset("notmnist", path=small)
    one_line(excinfo)
    nokeys = tmp_path / "nokeys.npz"
    np.savez(nokeys, x=np.zeros((3, 2)))
    with pytest.raises(FastMLPError, match="images, labels"):
        load_dataset("notmnist", path=nokeys)
    badlab = tmp_path / "badlab.npz"
    labels = np.zeros(16001, np.int64)
    labels[5] = 10
    np.savez(badlab, images=np.zeros((16001, 28, 28), np.uint8), labels=labels)
    with pytest.raises(FastMLPError, match=r"0\.\.9"):
        load_dataset("notmnist", path=badlab)


# -- generic npz --------------------------------------------------------------------------------


def test_npz_with_all_splits(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    arrays = {
        "x_train": rng.normal(size=(20, 2, 3)),
        "y_train": rng.integers(0, 4, size=20),
        "x_valid": rng.normal(size=(5, 6)).astype(np.float32),
        "y_valid": np.array([0, 1, 2, 3, 4]),
        "x_test": rng.integers(0, 9, size=(4, 6)).astype(np.uint8),
        "y_test": np.array([[0.0], [1.0], [2.0], [3.0]]),  # (N, 1) whole floats are accepted
    }
    p = tmp_path / "d.npz"
    np.savez_compressed(p, **arrays)
    ds = load_dataset("npz", path=p, scale="symmetric", dtype="float32")  # scale: ignored
    assert ds.name == "npz" and ds.n_features == 6 and ds.n_classes == 5
    assert ds.train.x.dtype == np.float32 and ds.train.x.flags.c_contiguous
    np.testing.assert_array_equal(ds.train.x, arrays["x_train"].reshape(20, 6).astype(np.float32))
    np.testing.assert_array_equal(ds.test.x, arrays["x_test"].astype(np.float32))  # as given
    assert ds.test.y.dtype == np.int64 and ds.test.y.tolist() == [0, 1, 2, 3]
    ds64 = load_dataset("npz", path=p, dtype="float64", train_size=7)
    np.testing.assert_array_equal(ds64.train.x, arrays["x_train"].reshape(20, 6)[:7])
    assert len(ds64.valid) == 5
    as_given = load_dataset("npz", path=p)  # the default: float64 x_train stays float64
    assert {s.x.dtype for s in (as_given.train, as_given.valid, as_given.test)} == {
        np.dtype(np.float64)}
    np.testing.assert_array_equal(as_given.train.x, arrays["x_train"].reshape(20, 6))


def test_npz_train_only(tmp_path: Path) -> None:
    p = tmp_path / "t.npz"
    np.savez(p, x_train=np.ones((4, 3), np.float32), y_train=np.zeros(4, np.int32))
    ds = load_dataset("npz", path=p)
    assert ds.n_classes == 2  # at least 2, even when only class 0 appears
    for split in (ds.valid, ds.test):
        assert split.x.shape == (0, 3) and split.x.dtype == np.float32
        assert split.y.shape == (0,) and split.y.dtype == np.int64 and len(split) == 0


def _npz(tmp_path: Path, name: str, **arrays: np.ndarray) -> Path:
    p = tmp_path / f"{name}.npz"
    np.savez(p, **arrays)
    return p


# Cases that tests/test_inputs.py does not already run through the CLI (which checks the same
# messages, one line and the exit status): 1-D features, NaN or overflowing values, bad labels
# and mismatched widths are there.
BAD_NPZ = {
    "x4d": ({"x_train": np.zeros((4, 1, 2, 2)), "y_train": np.zeros(4)}, "2-D"),
    "nocolumns3d": ({"x_train": np.zeros((2, 0, 3)), "y_train": np.zeros(2)}, "zero columns"),
    "boolx": ({"x_train": np.ones((2, 2), bool), "y_train": np.zeros(2)}, "real numbers"),
    "boollabels": ({"x_train": np.zeros((2, 2)), "y_train": np.array([True, False])},
                   "labels must be integers, got dtype bool"),
    "nokeys": ({"x": np.zeros((2, 2))}, "x_train, y_train"),
    "noy": ({"x_train": np.zeros((2, 2))}, "y_train"),
    "half_valid": (
        {"x_train": np.zeros((2, 2)), "y_train": np.zeros(2), "x_valid": np.zeros((1, 2))},
        "y_valid",
    ),
    "badvalid": (
        {
            "x_train": np.zeros((2, 2)),
            "y_train": np.zeros(2),
            "x_valid": np.zeros((1, 2)),
            "y_valid": np.array([np.nan]),
        },
        "integers",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_NPZ))
def test_npz_bad_contents(tmp_path: Path, case: str) -> None:
    arrays, expected = BAD_NPZ[case]
    p = _npz(tmp_path, case, **arrays)
    with pytest.raises(FastMLPError, match=expected) as excinfo:
        load_dataset("npz", path=p)
    one_line(excinfo)


def test_npz_bad_files(tmp_path: Path) -> None:
    good = _npz(tmp_path, "good", x_train=np.zeros((50, 50)), y_train=np.zeros(50))
    data = good.read_bytes()
    cases = {
        "garbage.npz": b"this is not a zip file at all",
        "truncated.npz": data[: len(data) // 2],
        "empty.npz": b"",
    }
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(FastMLPError, match=r"as \.npz \(corrupt or truncated\?\)") as excinfo:
            load_dataset("npz", path=tmp_path / name)
        assert f"cannot read {tmp_path / name} as .npz" in one_line(excinfo)
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(FastMLPError, match="not an .npz"):
        load_dataset("npz", path=tmp_path / "plain.npy")
    obj = _npz(tmp_path, "obj", x_train=np.array([{"a": 1}], dtype=object), y_train=np.zeros(1))
    with pytest.raises(FastMLPError, match="arrays of Python objects") as excinfo:
        load_dataset("npz", path=obj)
    assert f"{obj} holds arrays of Python objects" in one_line(excinfo)
    with pytest.raises(FastMLPError, match="not found"):
        load_dataset("npz", path=tmp_path / "missing.npz")
    with pytest.raises(FastMLPError, match="directory"):
        load_dataset("npz", path=tmp_path)
    with pytest.raises(FastMLPError, match="path"):
        load_dataset("npz")
    with pytest.raises(FastMLPError, match="train_size"):
        load_dataset("npz", path=good, train_size=51)


# -- synthetic ----------------------------------------------------------------------------------


def test_synthetic_deterministic_and_learnable() -> None:
    a = load_dataset("synthetic", seed=3)
    b = load_dataset("synthetic", seed=3)
    c = load_dataset("synthetic", seed=4)
    assert a.name == "synthetic" and a.n_classes == 10 and a.n_features == 784
    assert [len(a.train), len(a.valid), len(a.test)] == [1000, 200, 200]
    for sa, sb in ((a.train, b.train), (a.valid, b.valid), (a.test, b.test)):
        np.testing.assert_array_equal(sa.x, sb.x)
        np.testing.assert_array_equal(sa.y, sb.y)
        assert sa.x.dtype == np.float32 and sa.x.flags.c_contiguous and sa.y.dtype == np.int64
    assert not np.array_equal(a.train.x, c.train.x)
    assert np.bincount(a.train.y).tolist() == [100] * 10  # balanced classes
    # Separable: nearest class mean (estimated on train) classifies test almost perfectly.
    for ds in (a, load_dataset("synthetic", n_features=2, n_classes=3, n_train=300, seed=1)):
        means = np.stack([ds.train.x[ds.train.y == k].mean(0) for k in range(ds.n_classes)])
        d = ((ds.test.x[:, None, :] - means[None]) ** 2).sum(-1)
        assert (d.argmin(1) == ds.test.y).mean() > 0.9


def test_synthetic_sizes_and_dtype() -> None:
    ds = load_dataset(
        "synthetic", n_train=30, n_valid=0, n_test=7, n_features=5, n_classes=2, dtype="float64"
    )
    assert ds.train.x.shape == (30, 5) and ds.valid.x.shape == (0, 5) and ds.test.x.shape == (7, 5)
    assert ds.train.x.dtype == np.float64 and ds.n_classes == 2
    assert set(np.unique(ds.train.y)) == {0, 1}
    assert len(load_dataset("synthetic", train_size=10).train) == 10
    for arg, bad in (
        ("n_train", 0),
        ("n_valid", -1),
        ("n_features", 0),
        ("n_classes", 1),
        ("seed", -1),
        ("n_train", 2.5),
        ("n_classes", True),
    ):
        with pytest.raises(FastMLPError, match=arg) as excinfo:
            load_dataset("synthetic", **{arg: bad})
        one_line(excinfo)


# -- options and containers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"name": "cifar"}, "unknown dataset 'cifar'; choose one of: mnist, notmnist, npz"),
        ({"name": "synthetic", "scale": "minmax"}, "unknown scale 'minmax'"),
        ({"name": "synthetic", "dtype": "int32"}, "unknown dtype 'int32'"),
        ({"name": "synthetic", "dtype": "float16"}, "float32, float64"),
        ({"name": "synthetic", "dtype": "nonsense"}, "unknown dtype"),
        ({"name": "synthetic", "train_size": 0}, "train_size"),
        ({"name": "synthetic", "train_size": 1.5}, "train_size"),
        ({"name": "synthetic", "train_size": 1001}, "between 1 and 1000"),
    ],
)
def test_bad_options(kwargs: dict, expected: str) -> None:
    name = kwargs.pop("name")
    with pytest.raises(FastMLPError) as excinfo:
        load_dataset(name, **kwargs)
    assert expected in one_line(excinfo)


def test_names_and_dtypes_are_forgiving() -> None:
    assert load_dataset(" Synthetic ", n_train=5, n_valid=1, n_test=1).name == "synthetic"
    assert load_dataset("synthetic", dtype=np.float64, n_train=5).train.x.dtype == np.float64


def test_split_and_dataset_validation() -> None:
    with pytest.raises(FastMLPError, match="split"):
        Split(np.zeros((3, 2), np.float32), np.zeros(2, np.int64))
    with pytest.raises(FastMLPError, match="split"):
        Split(np.zeros(3, np.float32), np.zeros(3, np.int64))
    s2 = Split(np.zeros((3, 2), np.float32), np.zeros(3, np.int64))
    s4 = Split(np.zeros((1, 4), np.float32), np.zeros(1, np.int64))
    assert len(s2) == 3
    with pytest.raises(FastMLPError, match="feature counts"):
        Dataset("x", s2, s2, s4, 2)
    ds = Dataset("x", s2, s2, s2, 2)
    assert ds.n_features == 2 and ds.summary().startswith("x: train 3")


def test_bundled_checksums_file_matches_data() -> None:
    # The shipped SHA256SUMS really describes the shipped (decompressed) files.
    sums = dict(
        reversed(line.split())
        for line in (bundled_dir() / "SHA256SUMS").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    for base in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        data = gzip.decompress((bundled_dir() / f"{base}.gz").read_bytes())
        assert hashlib.sha256(data).hexdigest() == sums[base]


def test_float64_npz_trains_in_float64(tmp_path: Path) -> None:
    """Features used as given through the API too: float64 npz data train a float64 model in
    float64, equal to an independent float64 computation of the course rule after 5 epochs."""
    import fastmlp

    rng = np.random.default_rng(3)
    n, F, H, K = 40, 13, 9, 4
    x = rng.standard_normal((n, F))  # float64, not representable in float32
    y = rng.integers(0, K, n)
    path = tmp_path / "f64.npz"
    np.savez(path, x_train=x, y_train=y)
    ds = fastmlp.load_dataset("npz", path=path)
    assert ds.train.x.dtype == np.float64 and np.array_equal(ds.train.x, x)
    model = fastmlp.MLP(F, H, K, dtype="float64")
    p = {name: model.views[name].copy() for name in ("Wh", "bh", "Wo", "bo")}
    v = {name: np.full_like(a, 1e-5) for name, a in p.items()}
    lr, mu = 0.1, 0.9
    for _ in range(5):  # the course rule, full batch, written out
        Z = x @ p["Wh"] + p["bh"]
        h = np.maximum(Z, 0)
        logits = h @ p["Wo"] + p["bo"]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        d = e / e.sum(axis=1, keepdims=True)
        d[np.arange(n), y] -= 1
        d /= n
        dZ = (d @ p["Wo"].T) * (Z > 0)
        g = {"Wh": x.T @ dZ, "bh": dZ.sum(0, keepdims=True), "Wo": h.T @ d,
             "bo": d.sum(0, keepdims=True)}
        for name in p:
            v[name] = mu * v[name] + lr * g[name]
            p[name] = p[name] - v[name]
    fastmlp.train(model, ds, epochs=5, lr=lr, momentum=mu)
    for name, want in p.items():
        got = model.views[name]
        assert np.max(np.abs(got - want)) <= 1e-12 * np.max(np.abs(want)), name


def test_a_float64_model_on_float32_data_is_told(tmp_path: Path) -> None:
    import fastmlp

    ds = fastmlp.load_dataset("synthetic", n_train=20, n_valid=4, n_test=4, n_features=5)
    assert ds.train.x.dtype == np.float32
    with pytest.warns(UserWarning, match="float32 values; load them with dtype='float64'"):
        fastmlp.train(fastmlp.MLP(5, 3, 10, dtype="float64"), ds, epochs=1)


# -- readers that trust nothing (issue 26) -------------------------------------------------------


def _zip_members(path: Path, **members: bytes) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _npy(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


@pytest.mark.parametrize("member", [b"raw bytes", b"1,2,3\n", b""])
def test_an_npz_member_that_is_not_numpy_data_is_one_line(member: bytes, tmp_path: Path) -> None:
    path = _zip_members(tmp_path / "d.npz", **{"x_train.npy": member,
                                               "y_train.npy": _npy(np.zeros(3))})
    with pytest.raises(FastMLPError, match="member x_train.npy: not NumPy data") as excinfo:
        load_dataset("npz", path=path)
    assert str(path) in one_line(excinfo)
    notmnist = _zip_members(tmp_path / "n.npz", **{"images.npy": member,
                                                   "labels.npy": _npy(np.zeros(3))})
    with pytest.raises(FastMLPError, match="member images.npy: not NumPy data"):
        load_dataset("notmnist", path=notmnist)


@pytest.mark.parametrize("array", [
    np.arange(12, dtype=">f8").reshape(3, 4), np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    np.arange(6, dtype=np.uint8), np.zeros((0, 5), np.float32), np.array("text"),
    np.array([[True, False]]), np.arange(24, dtype=np.int16).reshape(2, 3, 4).T,
], ids=["big-endian", "fortran", "uint8", "empty", "0-d string", "bool", "transposed"])
def test_the_readers_give_what_np_load_gives(array: np.ndarray, tmp_path: Path) -> None:
    from fastmlp.npyfile import read_npy, read_npz

    np.save(tmp_path / "a.npy", array)
    np.savez_compressed(tmp_path / "a.npz", a=array)
    for got in (read_npy(tmp_path / "a.npy"), read_npz(tmp_path / "a.npz", ("a",))[0]["a"]):
        expected = np.load(tmp_path / "a.npy")
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert np.array_equal(got, expected)
        assert got.flags.writeable


def test_a_header_claiming_a_huge_shape_is_a_corrupt_file(tmp_path: Path) -> None:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False,
                                               "shape": (10**12, 784)})
    path = _zip_members(tmp_path / "d.npz", **{"x_train.npy": buf.getvalue() + bytes(64),
                                               "y_train.npy": _npy(np.zeros(3))})
    with pytest.raises(FastMLPError, match=r"claims shape \(1000000000000, 784\) of float32 "
                                           r"\(3,136,000,000,000,000 bytes\).*the file is "
                                           r"corrupt") as excinfo:
        load_dataset("npz", path=path)
    assert "memory" not in one_line(excinfo) and "--batch-size" not in one_line(excinfo)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_an_idx_header_of_4e9_cubed_is_counted_in_python_ints(gz: bool, tmp_path: Path) -> None:
    data = bytes([0, 0, 8, 3]) + (4_000_000_000).to_bytes(4, "big") * 3 + bytes(10)
    path = tmp_path / "x.idx"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(FastMLPError, match=r"corrupt IDX file .*\(4000000000, 4000000000, "
                                           r"4000000000\) \(64,000,000,000,000,000,000,000,000,"
                                           r"000 bytes of data\), the file holds 10 bytes"):
        parse_idx(path)


@pytest.mark.parametrize("labels,shown", [
    (np.array([0, 1, 2**63 + 5], dtype=np.uint64), "9223372036854775813"),
    (np.array([0.0, 1.0, 1e19]), "1e+19"),
    (np.array([0.0, 1.0, 2.0**63]), "9.223372036854776e+18"),
])
def test_labels_beyond_int64_are_shown_as_stored(labels: np.ndarray, shown: str,
                                                 tmp_path: Path) -> None:
    path = _npz(tmp_path, "d", x_train=np.zeros((3, 2)), y_train=labels)
    with pytest.raises(FastMLPError, match=f"class indices 0..K-1, found {re.escape(shown)}$"):
        load_dataset("npz", path=path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_devices_and_fifos_are_not_regular_files(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.npz"
    os.mkfifo(fifo)  # nobody writes to it: opening it for reading would block forever
    cases = [("npz", fifo, "a FIFO (named pipe) (not a regular file)"),
             ("npz", "/dev/null", "a character device (not a regular file)"),
             ("notmnist", "/dev/zero", "a character device (not a regular file)"),
             ("mnist", "/dev/null", "got a character device")]
    for name, path, fragment in cases:
        with pytest.raises(FastMLPError, match=re.escape(fragment)):
            load_dataset(name, path=path)
    (tmp_path / "mnist").mkdir()
    os.mkfifo(tmp_path / "mnist" / "train-labels-idx1-ubyte")
    with pytest.raises(FastMLPError, match="is a FIFO .named pipe., not a regular file"):
        load_dataset("mnist", path=tmp_path / "mnist")
    from fastmlp.npyfile import read_npy

    (tmp_path / "zero.npy").symlink_to("/dev/zero")
    with pytest.raises(FastMLPError, match="character device, not a regular file"):
        read_npy(tmp_path / "zero.npy")


def test_permission_denied_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _npz(tmp_path, "d", x_train=np.zeros((3, 2)), y_train=np.zeros(3))
    real_open = os.open

    def refusing(p, *args, **kwargs):  # tests run as root, whom file modes do not stop
        if os.fspath(p) == str(path):
            raise PermissionError(13, "Permission denied", os.fspath(p))
        return real_open(p, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing)
    with pytest.raises(FastMLPError, match=f"^cannot read {re.escape(str(path))}: Permission "
                                           f"denied$"):
        load_dataset("npz", path=path)


@pytest.mark.parametrize("name", ["npz", "notmnist", "mnist"])
def test_paths_that_exists_raises_on_are_one_line(name: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a_file").write_text("x")
    for path in (tmp_path / ("n" * 300), tmp_path.joinpath(*["d" * 99] * 50)):
        with pytest.raises(FastMLPError, match="cannot look at .*: File name too long$"):
            load_dataset(name, path=path)
    with pytest.raises(FastMLPError, match="not found"):  # a file on the way: nothing there
        load_dataset(name, path=tmp_path / "a_file" / "x")
    real_stat = os.stat

    def refusing(p, *args, **kwargs):  # an unreadable folder on the way, as root cannot have
        if "/locked/" in os.fspath(p):
            raise PermissionError(13, "Permission denied", os.fspath(p))
        return real_stat(p, *args, **kwargs)

    monkeypatch.setattr(os, "stat", refusing)
    with pytest.raises(FastMLPError, match="locked/x: Permission denied$"):
        load_dataset(name, path=tmp_path / "locked" / "x")


@pytest.mark.parametrize("name", ["npz", "notmnist", "mnist"])
@pytest.mark.parametrize("path", [3, b"x.npz", ["x.npz"]], ids=["int", "bytes", "list"])
def test_a_path_of_the_wrong_type_is_a_fastmlp_error(name: str, path: object) -> None:
    with pytest.raises(FastMLPError, match="path must be a"):
        load_dataset(name, path=path)


def test_the_data_fingerprint_follows_every_value(tmp_path: Path) -> None:
    from fastmlp.datasets import data_fingerprint

    x, y = np.random.default_rng(0).random((20, 4)), np.arange(20) % 3
    a = load_dataset("npz", path=_npz(tmp_path, "a", x_train=x, y_train=y))
    again = load_dataset("npz", path=_npz(tmp_path, "again", x_train=x.copy(), y_train=y))
    assert data_fingerprint(a) == data_fingerprint(again)
    x2 = x.copy()
    x2[7, 2] = np.nextafter(x2[7, 2], 2.0)  # one value, one ulp
    y2 = y.copy()
    y2[[0, 1]] = y2[[1, 0]]  # two labels swapped
    for changed in (dict(x_train=x2, y_train=y), dict(x_train=x, y_train=y2),
                    dict(x_train=x, y_train=y, x_test=x[:2], y_test=y[:2])):
        other = load_dataset("npz", path=_npz(tmp_path, "b", **changed))
        assert data_fingerprint(other) != data_fingerprint(a)


@pytest.mark.parametrize("method", ["ZIP_BZIP2", "ZIP_LZMA"])
def test_members_numpy_never_writes_still_read_within_their_data(method: str,
                                                                 tmp_path: Path) -> None:
    import io
    import tracemalloc
    import zipfile

    from fastmlp.npyfile import read_npz

    zeros = np.zeros((500, 400))  # compresses far beyond deflate's 1032:1
    with zipfile.ZipFile(tmp_path / "a.npz", "w", getattr(zipfile, method)) as z:
        z.writestr("a.npy", _npy(zeros))
    got = read_npz(tmp_path / "a.npz", ("a",))[0]["a"]
    assert np.array_equal(got, zeros) and got.flags.writeable
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (10**10,)})
    info = zipfile.ZipInfo("a.npy")
    info.compress_type = getattr(zipfile, method)
    with zipfile.ZipFile(tmp_path / "b.npz", "w") as z:
        z.writestr(info, header.getvalue() + bytes(10**6))
    tracemalloc.start()
    with pytest.raises(FastMLPError, match="the file is corrupt|truncated"):
        read_npz(tmp_path / "b.npz", ("a",))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 3 * 10**7  # about the 1 MB there is, never the 80 GB claimed


@pytest.mark.parametrize("scale", ["unit", "symmetric"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("arithmetic", [True, False], ids=["arithmetic", "table"])
def test_pixels_scale_to_the_float64_values_cast(scale, dtype, arithmetic, monkeypatch):
    # computed in the dtype where that was checked equal at all 256 levels, else looked up in
    # row chunks: either way exactly x / 255 or x / 127.5 - 1 in float64, then cast
    from fastmlp.datasets import pixels

    if not arithmetic:  # a formula that is off: the check must reject it and use the table
        monkeypatch.setitem(pixels._ARITHMETIC, scale, (
            lambda raw, dt, out: np.multiply(raw, dt(1 / 250), out=out, dtype=dt),))
        pixels._exact_arithmetic.cache_clear()
    try:
        raw = np.random.default_rng(0).integers(0, 256, (5000, 28, 28), dtype=np.uint8)
        raw[0, 0, :] = np.arange(28) * 9  # 0 and 243 ...
        raw[1, 0, 0], raw[1, 0, 1] = 0, 255
        x = raw.reshape(5000, -1).astype(np.float64)
        expected = (x / 255.0 if scale == "unit" else x / 127.5 - 1.0).astype(dtype)
        got = pixels.scale_uint8(raw, scale, np.dtype(dtype))
        assert (pixels._exact_arithmetic(scale, np.dtype(dtype)) is not None) == arithmetic
        assert got.dtype == dtype and got.flags.c_contiguous and got.shape == (5000, 784)
        np.testing.assert_array_equal(got, expected)
    finally:
        pixels._exact_arithmetic.cache_clear()


def test_mnist_splits_are_consecutive_rows_the_trainer_takes_without_a_copy():
    # the loader scales the three splits into one array; all_rows then views it
    from fastmlp.evaluation import all_rows, consecutive_rows

    for train_size in (None, 3000):
        data = fastmlp.load_dataset("mnist", dtype="float32", train_size=train_size)
        X, y, counts, ends = all_rows(fastmlp.MLP(784, 4, 10, dtype="float32"), data)
        assert np.shares_memory(X, data.train.x)
        for split, a, b in zip((data.train, data.valid, data.test), (0, *ends[:-1]), ends,
                               strict=True):
            np.testing.assert_array_equal(X[a:b], split.x)
            np.testing.assert_array_equal(y[a:b], split.y)
    rows = np.arange(24.0).reshape(6, 4).copy()  # owns its rows, as the loader's array
    assert consecutive_rows([rows[:2], rows[3:]]) is None  # a gap: copied instead
    assert consecutive_rows([rows[2:], rows[:2]]) is None  # out of order
    assert consecutive_rows([rows[:2], np.arange(16.0).reshape(4, 4)]) is None  # other arrays
    np.testing.assert_array_equal(consecutive_rows([rows[1:3], rows[3:6]]), rows[1:])
