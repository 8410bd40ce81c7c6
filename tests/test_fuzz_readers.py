"""Fuzzing the readers: damaged .npz/.npy/IDX/gzip bytes end in data or one FastMLPError.

Hypothesis mutates sound files (a dataset, a model, a checkpoint, an .npy, IDX raw and gzipped:
truncated, bit-flipped, overwritten, with headers claiming any shape or dtype) and builds archives
of arrays of any dtype. Each goes through the reader that users' files reach (``load_dataset``,
``MLP.load``, ``load_checkpoint``, ``parse_idx``, ``read_npy``), which must return or raise
:class:`FastMLPError`, never another exception, while tracemalloc's peak stays within what the
file can hold: its size times deflate's largest ratio, plus a little (sizes are checked against
the bytes there are before anything is allocated).
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import tempfile
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastmlp
from fastmlp.checkpoint import load_checkpoint
from fastmlp.datasets import load_dataset, parse_idx
from fastmlp.errors import FastMLPError
from fastmlp.npyfile import DEFLATE_MAX_RATIO, read_npy

# 60 examples per test keeps CI within seconds; FASTMLP_FUZZ_EXAMPLES=2000 for a longer hunt
FUZZ = settings(max_examples=int(os.environ.get("FASTMLP_FUZZ_EXAMPLES", "60")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
SLACK_BYTES = 4 << 20  # the interpreter's own allocations while reading (zipfile, JSON, ...)


def _npz_bytes(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _idx_bytes(array: np.ndarray) -> bytes:
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return (0x0800 + array.ndim).to_bytes(4, "big") + dims + array.astype(np.uint8).tobytes()


def _model_bytes(tmp: Path) -> bytes:
    fastmlp.MLP(6, 3, 2).save(tmp / "model.npz")
    return (tmp / "model.npz").read_bytes()


def _checkpoint_bytes(tmp: Path) -> bytes:
    data = load_dataset("synthetic", n_train=20, n_valid=4, n_test=4, n_features=6, n_classes=2)
    fastmlp.train(fastmlp.MLP(6, 3, 2), data, epochs=1, checkpoint=tmp / "checkpoint.npz")
    return (tmp / "checkpoint.npz").read_bytes()


RNG = np.random.default_rng(0)
X, Y = RNG.random((12, 6)), np.arange(12) % 3
IMAGES = RNG.integers(0, 256, (5, 4, 4))

SOUND = {
    "dataset.npz": _npz_bytes(x_train=X, y_train=Y, x_test=X[:4], y_test=Y[:4]),
    "dataset_deflated.npz": _npz_bytes(True, x_train=X.astype(np.float32), y_train=Y),
    "images.npy": _npy_bytes(X.astype(np.float32)),
    "images.idx": _idx_bytes(IMAGES),
    "images.idx.gz": gzip.compress(_idx_bytes(IMAGES)),
}


def _read(kind: str, path: Path) -> object:
    """Read ``path`` as the user's file of ``kind`` would be read."""
    if kind.endswith(".npz") and kind.startswith("dataset"):
        return load_dataset("npz", path=path)
    if kind == "model.npz":
        return fastmlp.MLP.load(path)
    if kind == "checkpoint.npz":
        return load_checkpoint(path)
    if kind == "images.npy":
        return read_npy(path)
    return parse_idx(path)


def _ends_well(kind: str, data: bytes, path: Path) -> None:
    """Reading ``data`` as ``kind`` gives data or FastMLPError, within bounded memory."""
    path.write_bytes(data)
    tracemalloc.start()
    try:
        _read(kind, path)
    except FastMLPError as exc:
        assert "\n" not in str(exc), str(exc)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    bound = 2 * DEFLATE_MAX_RATIO * len(data) + SLACK_BYTES
    assert peak <= bound, f"{kind}: peak {peak:,} bytes for a {len(data):,}-byte file"


@functools.cache
def _sound() -> dict[str, bytes]:
    """Sound files of every kind (a function, not a fixture: Hypothesis would print it)."""
    with tempfile.TemporaryDirectory() as tmp:
        return dict(SOUND, **{"model.npz": _model_bytes(Path(tmp)),
                              "checkpoint.npz": _checkpoint_bytes(Path(tmp))})


@st.composite
def _damaged(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` truncated, bit-flipped, overwritten and/or extended."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["truncate", "flip", "overwrite", "extend"]))
        if how == "truncate":
            del data[draw(st.integers(0, len(data))):]
        elif how == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif how == "overwrite" and data:
            i = draw(st.integers(0, len(data) - 1))
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[i:i + len(chunk)] = chunk
        else:
            data += draw(st.binary(max_size=32))
    return bytes(data)


KINDS = ["dataset.npz", "dataset_deflated.npz", "model.npz", "checkpoint.npz", "images.npy",
         "images.idx", "images.idx.gz"]


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(seed_data=st.data())
def test_damaged_files_end_in_data_or_one_error(kind: str, seed_data: st.DataObject,
                                                tmp_path: Path) -> None:
    data = seed_data.draw(_damaged(_sound()[kind]))
    _ends_well(kind, data, tmp_path / kind)


# -- headers claiming anything ------------------------------------------------------------------

DESCRS = ["<f4", ">f8", "|u1", "<u8", "|b1", "<c8", "<U3", "|S0", "|O", "|V8", "<M8[s]",
          [("a", "<f4")], "<f4 junk", 7]


def _npy_with_header(descr: object, fortran: object, shape: object, payload: bytes) -> bytes:
    """An .npy stream whose header says exactly this, right or wrong."""
    text = f"{{'descr': {descr!r}, 'fortran_order': {fortran!r}, 'shape': {shape!r}, }}"
    text += " " * ((-len(text) - 11) % 64) + "\n"
    header = text.encode("latin1")
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + payload


_shapes = st.one_of(
    st.lists(st.integers(0, 2**70), max_size=4).map(tuple),
    st.lists(st.integers(-5, 50), max_size=3).map(tuple),
    st.sampled_from([(10**12, 784), (2**31, 2**31, 2**31), (0, 2**40, 2**40), "x", (1.5,),
                     None]),
)


@FUZZ
@given(descr=st.sampled_from(DESCRS), fortran=st.sampled_from([False, True, 1, "no"]),
       shape=_shapes, payload=st.binary(max_size=256), as_member=st.booleans(),
       deflated=st.booleans())
def test_any_header_ends_in_data_or_one_error(descr, fortran, shape, payload: bytes,
                                              as_member: bool, deflated: bool,
                                              tmp_path: Path) -> None:
    member = _npy_with_header(descr, fortran, shape, payload)
    if not as_member:
        _ends_well("images.npy", member, tmp_path / "x.npy")
        return
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if deflated else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as z:
        z.writestr("x_train.npy", member)
        z.writestr("y_train.npy", _npy_bytes(Y))
        z.writestr("Wh.npy", member)
    _ends_well("dataset.npz", buf.getvalue(), tmp_path / "d.npz")
    _ends_well("model.npz", buf.getvalue(), tmp_path / "m.npz")


@FUZZ
@given(arrays=st.dictionaries(
    st.sampled_from(["x_train", "y_train", "x_valid", "y_valid", "x_test", "y_test"]),
    hnp.arrays(dtype=st.one_of(hnp.scalar_dtypes(), hnp.byte_string_dtypes(max_len=3),
                               hnp.unicode_string_dtypes(max_len=3)),
               shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)),
    min_size=1, max_size=6))
def test_arrays_of_any_dtype_end_in_data_or_one_error(arrays: dict[str, np.ndarray],
                                                      tmp_path: Path) -> None:
    _ends_well("dataset.npz", _npz_bytes(**arrays), tmp_path / "d.npz")


@FUZZ
@given(shape=st.one_of(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=3),
                       st.sampled_from([[0, 2**32 - 1, 2**32 - 1], [2**32 - 1] * 3])),
       payload=st.binary(max_size=64), gz=st.booleans(), type_code=st.sampled_from([8, 9, 11,
                                                                                    12, 13, 14]))
def test_any_idx_header_ends_in_data_or_one_error(shape: list[int], payload: bytes, gz: bool,
                                                  type_code: int, tmp_path: Path) -> None:
    dims = b"".join(d.to_bytes(4, "big") for d in shape)
    data = bytes([0, 0, type_code, len(shape)]) + dims + payload
    _ends_well("images.idx", gzip.compress(data) if gz else data, tmp_path / "x.idx")


# -- the readers' guarantees, one by one -----------------------------------------------------------

Check = Callable[[Path], object]


@pytest.mark.parametrize("read", [
    lambda p: load_dataset("npz", path=p), fastmlp.MLP.load, load_checkpoint,
], ids=["load_dataset", "MLP.load", "load_checkpoint"])
def test_a_huge_claimed_shape_is_refused_before_allocating(read: Check, tmp_path: Path) -> None:
    member = _npy_with_header("<f4", False, (10**12, 784), bytes(64))
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as z:
        for name in ("x_train", "y_train", "Wh", "bh", "Wo", "bo", "params", "velocity"):
            z.writestr(f"{name}.npy", member)
        z.writestr("meta.npy", _npy_bytes(np.array("{}")))
    tracemalloc.start()
    with pytest.raises(FastMLPError, match="corrupt"):
        read(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < SLACK_BYTES


def test_a_gzip_bomb_costs_no_more_than_its_data(tmp_path: Path) -> None:
    # the header claims 10**9 bytes; 10**7 zeros compress to ~10 kB
    bomb = gzip.compress(_idx_bytes(np.zeros(0, np.uint8))[:4] + (10**9).to_bytes(4, "big")
                         + bytes(10**7))
    path = tmp_path / "bomb.idx.gz"
    path.write_bytes(bomb)
    tracemalloc.start()
    with pytest.raises(FastMLPError, match="corrupt IDX file .* 10,000,000 bytes"):
        parse_idx(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 3 * 10**7  # the 10 MB there are (and a copy while joining), not 1 GB
