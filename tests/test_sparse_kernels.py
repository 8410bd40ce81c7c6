"""Sparse-input products (kernels/sparse.py) against their dense references: awkward shapes and
patterns, both dtypes, one and two Numba threads, NaN inputs."""

from contextlib import contextmanager

import numba
import numpy as np
import pytest
from fastmlp.kernels import CSR, reference, sparse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TOL = {np.float64: 1e-12, np.float32: 1e-5}


@contextmanager
def numba_threads(n: int):
    """Numba's thread count set to n (capped at what the pool has) inside the block."""
    before = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def sparse_matrix(rng, N, F, density, dtype, empty_rows=(), empty_cols=()):
    """(N, F) with about ``density`` of its entries nonzero (standard normal values)."""
    X = rng.standard_normal((N, F)) * (rng.random((N, F)) < density)
    X[list(empty_rows), :] = 0
    X[:, list(empty_cols)] = 0
    return X.astype(dtype)


def rel_error(got, want, terms):
    """Max abs error relative to the summed magnitudes of the products (|X|·|B|): the scale the
    rounding error of either summation order is bounded by."""
    scale = max(float(np.max(terms, initial=0.0)), 1e-30)
    return float(np.max(np.abs(got.astype(np.float64) - want), initial=0.0)) / scale


def check_both(X, W, dZ, bh=None, threads=(1, 2), **kw):
    """Both products on X (N, F) against float64 dense products; same bits for every thread
    count."""
    dtype = X.dtype.type
    A = sparse.csr(X)
    N, F = X.shape
    H = W.shape[1]
    X64 = X.astype(np.float64)
    want_f = X64 @ W.astype(np.float64) + (0 if bh is None else bh.astype(np.float64))
    terms_f = np.abs(X64) @ np.abs(W.astype(np.float64)) + (0 if bh is None else np.abs(bh))
    want_b = X64.T @ dZ.astype(np.float64)
    terms_b = np.abs(X64).T @ np.abs(dZ.astype(np.float64))
    ref_f = np.empty((N, H), dtype)
    reference.sparse_matmul(ref_f, A, W, bh)
    ref_b = np.empty((F, H), dtype)
    reference.sparse_matmul_t(ref_b, A, dZ)
    assert rel_error(ref_f, want_f, terms_f) <= TOL[dtype]
    outs = []
    for t in threads:
        with numba_threads(t):
            Z = np.full((N, H), np.nan, dtype)
            sparse.sparse_matmul(Z, A, W, bh, **kw.get("forward", {}))
            dW = np.full((F, H), np.nan, dtype)
            sparse.sparse_matmul_t(dW, A, dZ, **kw.get("backward", {}))
        assert rel_error(Z, want_f, terms_f) <= TOL[dtype], f"X·W, {t} threads"
        assert rel_error(dW, want_b, terms_b) <= TOL[dtype], f"Xᵀ·dZ, {t} threads"
        outs.append((Z, dW))
    for Z, dW in outs[1:]:  # each output element is summed by one thread in one fixed order
        np.testing.assert_array_equal(Z, outs[0][0])
        np.testing.assert_array_equal(dW, outs[0][1])


SIZES = [1, 7, 1001]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,F,H", [
    (1, 1, 1), (1, 7, 1001), (7, 1001, 1), (1001, 1, 7), (7, 7, 7), (1001, 7, 1001),
    (1001, 1001, 7), (7, 1001, 1001), (1001, 784, 300),
])
def test_sizes(N, F, H, dtype):
    rng = np.random.default_rng(N * 1_000_003 + F * 1009 + H)
    X = sparse_matrix(rng, N, F, 0.2, dtype, empty_rows=range(0, N, 3),
                      empty_cols=range(1, F, 4))
    W = rng.standard_normal((F, H)).astype(dtype)
    dZ = rng.standard_normal((N, H)).astype(dtype)
    bh = rng.standard_normal((1, H)).astype(dtype)
    check_both(X, W, dZ, bh)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("density", [0.0, 1.0])
def test_density_extremes(density, dtype):
    rng = np.random.default_rng(1)
    X = sparse_matrix(rng, 300, 77, density, dtype)
    assert sparse.density(X) == sparse.density(sparse.csr(X)) == density
    W = rng.standard_normal((77, 130)).astype(dtype)
    dZ = rng.standard_normal((300, 130)).astype(dtype)
    check_both(X, W, dZ)
    check_both(X, W, dZ, rng.standard_normal((1, 130)).astype(dtype))


@pytest.mark.parametrize("panel,rows", [(1, 1), (8, 5), (17, 3), (300, 1000)])
def test_blocking_parameters(panel, rows):
    # panels and row chunks/blocks that do not divide the sizes, and ones larger than them
    rng = np.random.default_rng(panel)
    X = sparse_matrix(rng, 501, 50, 0.3, np.float64)
    W = rng.standard_normal((50, 77))
    dZ = rng.standard_normal((501, 77))
    A = sparse.csr(X)
    Z = np.empty((501, 77))
    sparse.sparse_matmul(Z, A, W, panel=panel, rows_per_chunk=rows)
    np.testing.assert_allclose(Z, X @ W, rtol=1e-12, atol=1e-12)
    dW = np.empty((50, 77))
    sparse.sparse_matmul_t(dW, A, dZ, sparse.transpose_blocks(A, rows), panel=panel)
    np.testing.assert_allclose(dW, X.T @ dZ, rtol=1e-12, atol=1e-12)


def test_nan_and_inf_inputs_propagate():
    rng = np.random.default_rng(2)
    X = sparse_matrix(rng, 600, 40, 0.2, np.float64)
    X[3, 5] = np.nan
    X[400, 7] = np.inf
    W = rng.standard_normal((40, 200))
    dZ = rng.standard_normal((600, 200))
    A = sparse.csr(X)
    Z = np.empty((600, 200))
    ref = np.empty_like(Z)
    sparse.sparse_matmul(Z, A, W)
    reference.sparse_matmul(ref, A, W)
    np.testing.assert_array_equal(np.isnan(Z), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(Z), np.isinf(ref))
    assert np.isnan(Z[3]).all()
    dW = np.empty((40, 200))
    ref = np.empty_like(dW)
    sparse.sparse_matmul_t(dW, A, dZ)
    reference.sparse_matmul_t(ref, A, dZ)
    np.testing.assert_array_equal(np.isnan(dW), np.isnan(ref))
    assert np.isnan(dW[5]).all() and not np.isnan(np.delete(dW, [5, 7], axis=0)).any()


def test_csr_layout():
    X = np.array([[0, 1.5, 0, np.nan], [0, 0, 0, 0], [2, 0, 0, -0.0]])
    A = sparse.csr(X)
    assert isinstance(A, CSR) and A.shape == (3, 4)
    np.testing.assert_array_equal(A.indptr, [0, 2, 2, 3])
    np.testing.assert_array_equal(A.indices, [1, 3, 0])
    np.testing.assert_array_equal(A.toarray(), np.where(X == -0.0, 0, X))
    assert sparse.csr(X, 1).shape == (1, 4)
    T = sparse.transpose_blocks(A, 2)
    np.testing.assert_array_equal(T.colptr, [[0, 0, 1, 1, 2], [2, 3, 3, 3, 3]])
    np.testing.assert_array_equal(T.rows, [0, 0, 2])


def test_argument_checks():
    X = sparse.csr(np.eye(3, 4, dtype=np.float32))
    W = np.zeros((4, 5), np.float32)
    for fn in (sparse.sparse_matmul, reference.sparse_matmul):
        with pytest.raises(ValueError, match="shape"):
            fn(np.empty((3, 4), np.float32), X, W)
        with pytest.raises(ValueError, match=r"\(4, H\)"):
            fn(np.empty((3, 5), np.float32), X, W.T)
        with pytest.raises(TypeError, match="dtype"):
            fn(np.empty((3, 5)), X, W)
    with pytest.raises(ValueError, match="transpose_blocks"):
        sparse.sparse_matmul_t(np.empty((4, 5), np.float32), X, np.zeros((3, 5), np.float32),
                               sparse.transpose_blocks(sparse.csr(np.eye(2, 4))))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(N=st.integers(1, 70), F=st.integers(1, 70), H=st.integers(1, 140),
       density=st.sampled_from([0.0, 0.05, 0.3, 1.0]), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from([np.float32, np.float64]), bias=st.booleans(),
       panel=st.integers(1, 40), rows=st.integers(1, 20), threaded=st.booleans(),
       group=st.sampled_from([4, 8]))
def test_hypothesis(N, F, H, density, seed, dtype, bias, panel, rows, threaded, group):
    rng = np.random.default_rng(seed)
    X = sparse_matrix(rng, N, F, density, dtype)
    W = rng.standard_normal((F, H)).astype(dtype)
    dZ = rng.standard_normal((N, H)).astype(dtype)
    bh = rng.standard_normal((1, H)).astype(dtype) if bias else None
    # shapes this small run in one share unless the threshold says otherwise
    policy = sparse.threads_for
    if threaded:  # two shares, on two threads
        sparse.threads_for = lambda work, grain: 2
    try:
        check_both(X, W, dZ, bh, forward=dict(panel=panel, rows_per_chunk=rows, group=group),
                   backward=dict(panel=panel, group=group))
    finally:
        sparse.threads_for = policy


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(N=st.integers(1, 60), F=st.integers(1, 40), B=st.integers(1, 60),
       density=st.sampled_from([0.0, 0.1, 0.5, 1.0]), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from([np.float32, np.float64]), rows_per_block=st.integers(1, 9))
def test_minibatch_gather_and_transpose(N, F, B, density, seed, dtype, rows_per_block):
    # a minibatch's rows gathered into buffers sized for the densest B rows, then transposed
    # into reused buffers: the same CSR and blocks as built from the dense rows directly
    rng = np.random.default_rng(seed)
    X = sparse_matrix(rng, N, F, density, dtype, empty_rows=[0])
    A = sparse.csr(X)
    B = min(B, N)
    nnz = sparse.max_rows_nnz(A, B)
    assert nnz == np.sort(np.count_nonzero(X, axis=1))[::-1][:B].sum()
    buffers = CSR(np.empty(B + 1, np.int64), np.empty(nnz, np.int32), np.empty(nnz, dtype), F)
    t_buffers = sparse.csc_buffers(B, F, nnz, np.dtype(dtype), rows_per_block)
    for _ in range(3):  # buffers reused, batches of every size up to B
        idx = rng.permutation(N)[:rng.integers(1, B + 1)].astype(np.int64)
        got = sparse.gather_rows(A, idx, buffers)
        want = sparse.csr(X[idx])
        for a, b in zip(got[:3], want[:3], strict=True):
            np.testing.assert_array_equal(a, b)
        got_t = sparse.transpose_blocks(got, rows_per_block, out=t_buffers)
        want_t = sparse.transpose_blocks(want, rows_per_block)
        for a, b in zip(got_t[:3], want_t[:3], strict=True):
            np.testing.assert_array_equal(a, b)
        dZ = rng.standard_normal((len(idx), 5)).astype(dtype)
        out = np.empty((F, 5), dtype)
        sparse.sparse_matmul_t(out, got, dZ, got_t)
        ref = np.empty((F, 5), dtype)
        reference.sparse_matmul_t(ref, want, dZ)
        scale = np.abs(X[idx].astype(np.float64)).T @ np.abs(dZ.astype(np.float64))
        assert rel_error(out, ref.astype(np.float64), scale) <= 2 * TOL[dtype]


def test_minibatch_buffers_too_small_are_refused():
    A = sparse.csr(np.ones((4, 3)))
    small = CSR(np.empty(3, np.int64), np.empty(5, np.int32), np.empty(5), 3)
    with pytest.raises(ValueError, match="holds 5 nonzeros, the rows 6"):
        sparse.gather_rows(A, np.array([0, 1]), small)
    with pytest.raises(ValueError, match="too small"):
        sparse.gather_rows(A, np.array([0, 1, 2]), small)
    with pytest.raises(ValueError, match="too small"):
        sparse.transpose_blocks(A, 2, out=sparse.csc_buffers(2, 3, 12, np.dtype(np.float64), 2))


def test_a_view_of_later_rows_multiplies_as_those_rows():
    # evaluation's forward passes take rows [a, b) of the run's CSR without copying them
    rng = np.random.default_rng(3)
    X = sparse_matrix(rng, 30, 11, 0.3, np.float64)
    A = sparse.csr(X)
    W = rng.standard_normal((11, 4))
    view = CSR(A.indptr[10:21], A.indices, A.values, 11)
    out = np.empty((10, 4))
    sparse.sparse_matmul(out, view, W)
    np.testing.assert_allclose(out, X[10:20] @ W, rtol=1e-13, atol=1e-13)
