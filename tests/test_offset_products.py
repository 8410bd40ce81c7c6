"""Rows sparse around a constant (kernels/offset.py): X = S + 1·cᵀ, and the products through S
equal the dense products of X (float64 to 1e-12, float32 to 1e-5, relative to the largest
entry), including features constant in every row, all-background rows and c = 0."""

from __future__ import annotations

import numpy as np
import pytest
from fastmlp.kernels import offset
from fastmlp.kernels.sparse import transpose_blocks
from hypothesis import given, settings
from hypothesis import strategies as st

RTOL = {np.float64: 1e-12, np.float32: 1e-5}


def background_rows(n: int, F: int, seed: int, dtype, c_values=(-1.0, 0.25, 0.0)) -> np.ndarray:
    """(n, F): each feature at its background value (one of ``c_values``) but in ~20% of the
    entries; every 7th row all background, feature 0 background in every row."""
    rng = np.random.default_rng(seed)
    c = rng.choice(c_values, size=F)
    x = np.where(rng.uniform(size=(n, F)) < 0.2, rng.uniform(-1, 1, size=(n, F)), c)
    x[::7] = c
    x[:, 0] = c[0]
    return np.ascontiguousarray(x, dtype=dtype)


def assert_close(a: np.ndarray, b: np.ndarray, rtol: float) -> None:
    err = float(np.abs(a.astype(np.float64) - b).max(initial=0.0))
    scale = float(np.abs(b).max(initial=0.0))
    assert err <= rtol * max(scale, 1e-300), f"max error {err:.3g}, scale {scale:.3g}"


def check_products(X: np.ndarray, H: int = 13, seed: int = 1) -> offset.OffsetRows:
    dtype = X.dtype.type
    rng = np.random.default_rng(seed)
    N, F = X.shape
    W = rng.standard_normal((F, H)).astype(dtype)
    bh = rng.standard_normal((1, H)).astype(dtype)
    dZ = rng.standard_normal((N, H)).astype(dtype)
    rows = offset.offset_rows(X)
    X64 = X.astype(np.float64)  # the dense products, in float64 for the float32 case
    out = np.empty((N, H), dtype)
    offset.offset_matmul(out, rows, W)
    assert_close(out, X64 @ W, RTOL[dtype])
    offset.offset_matmul(out, rows, W, bh)
    assert_close(out, X64 @ W + bh, RTOL[dtype])
    out_t = np.empty((F, H), dtype)
    offset.offset_matmul_t(out_t, rows, dZ)
    assert_close(out_t, X64.T @ dZ, RTOL[dtype])
    offset.offset_matmul_t(out_t, rows, dZ, transpose_blocks(rows.S))
    assert_close(out_t, X64.T @ dZ, RTOL[dtype])
    return rows


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_products_equal_dense_products(dtype) -> None:
    X = background_rows(300, 41, 0, dtype)
    rows = check_products(X)
    assert rows.density < 0.3
    # S + 1·cᵀ gives X back up to s = fl(x − c)'s one rounding: |s − (x − c)| ≤ u·|x − c|
    exact = X.astype(np.float64) - rows.c.astype(np.float64)
    u = np.finfo(dtype).eps / 2
    assert (np.abs(rows.S.toarray() - exact) <= u * np.abs(exact)).all()
    background = X == rows.c  # the entries S leaves out: no error at all
    assert (rows.S.toarray()[background] == 0).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_c_zero_is_the_plain_sparse_case(dtype) -> None:
    X = background_rows(120, 30, 2, dtype, c_values=(0.0,))
    rows = check_products(X)
    assert not rows.c.any() and not np.signbit(rows.c).any()
    np.testing.assert_array_equal(rows.S.toarray(), X)


def test_all_background_rows_and_constant_features() -> None:
    c = np.array([-1.0, 0.5, 0.0, 3.0])
    X = np.tile(c, (9, 1))  # every row all background: S has no entry
    X[4, 2] = 7.0
    rows = check_products(X)
    np.testing.assert_array_equal(rows.c, c)
    assert rows.S.values.shape == (1,) and rows.density == pytest.approx(1 / 36)


def test_mnist_in_symmetric_scale() -> None:
    # the case the offset is for: MNIST in [−1, 1] has its background at −1
    import fastmlp

    data = fastmlp.load_dataset("mnist", train_size=500, scale="symmetric", dtype="float64")
    rows = check_products(data.train.x)
    assert (rows.c == -1).mean() > 0.9 and rows.density < 0.3


def test_feature_constants() -> None:
    X = np.array([[1.0, 2.0, np.nan], [1.0, 3.0, np.nan], [0.0, 3.0, 4.0], [0.0, 2.0, 5.0]])
    # ties go to the smallest value; NaN is never the constant
    np.testing.assert_array_equal(offset.feature_constants(X), [0.0, 2.0, 4.0])
    np.testing.assert_array_equal(offset.feature_constants(X, n=2), [1.0, 2.0, 0.0])
    rows = offset.offset_rows(X)  # NaN differs from every c: kept in S
    assert np.isnan(rows.S.toarray()).sum() == 2


def test_bad_constants_are_refused() -> None:
    with pytest.raises(ValueError, match="c must have shape"):
        offset.offset_rows(np.zeros((3, 4)), c=np.zeros(3))


@settings(max_examples=20, deadline=None)
@given(N=st.integers(1, 30), F=st.integers(1, 20), H=st.integers(1, 17), seed=st.integers(0, 99),
       dtype=st.sampled_from([np.float64, np.float32]))
def test_shapes(N: int, F: int, H: int, seed: int, dtype) -> None:
    check_products(background_rows(N, F, seed, dtype), H, seed)


def mode_reference(column: np.ndarray) -> float:
    """The most frequent non-NaN value (the smallest among ties), 0 when there is none."""
    values, counts = np.unique(column[~np.isnan(column)], return_counts=True)
    return float(values[np.argmax(counts)]) if values.size else 0.0


@settings(max_examples=40, deadline=None)
@given(N=st.integers(1, 200), F=st.integers(1, 12), levels=st.integers(1, 6),
       seed=st.integers(0, 999), nan=st.booleans(),
       dtype=st.sampled_from([np.float64, np.float32]))
def test_feature_constants_are_the_most_frequent_values(N: int, F: int, levels: int, seed: int,
                                                        nan: bool, dtype) -> None:
    # few levels: ties, majorities and features with none; NaN in some entries
    rng = np.random.default_rng(seed)
    X = (rng.integers(0, levels, (N, F)) - levels // 2).astype(dtype) / 4
    X[:, 0] = -1.0  # one feature constant in every row
    if nan:
        X[rng.uniform(size=(N, F)) < 0.3] = np.nan
    counts = np.full(F, -1, np.int64)
    c = offset.feature_constants(X, counts=counts)
    assert c.dtype == dtype
    np.testing.assert_array_equal(c, [mode_reference(X[:, k]) for k in range(F)])
    c_major, held = offset.majority_constants(X)
    np.testing.assert_array_equal(c[held], c_major[held])  # a majority is the mode
    sorted_out = counts >= 0  # the features without one were sorted, and counted
    assert not (sorted_out & held).any()
    np.testing.assert_array_equal(counts[sorted_out], (X == c)[:, sorted_out].sum(axis=0))
