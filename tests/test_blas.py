"""kernels/blas.py: ``gemm`` called from compiled code, NumPy's OpenBLAS or Numba loops, against
NumPy's own products: both dtypes, transposed operands, odd shapes, matrices inside larger
buffers (offsets, leading dimensions), alpha and beta (beta = 0 ignores what C held)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
from fastmlp.kernels import blas


@numba.njit(cache=False)
def _call_blas(transa, transb, m, n, k, alpha, A, a_off, lda, B, b_off, ldb, beta, C, c_off,
               ldc):
    blas.gemm_blas(transa, transb, m, n, k, alpha, A, a_off, lda, B, b_off, ldb, beta, C, c_off,
                   ldc)


@numba.njit(cache=False)
def _call_chosen(transa, transb, m, n, k, alpha, A, a_off, lda, B, b_off, ldb, beta, C, c_off,
                 ldc):
    blas.gemm(transa, transb, m, n, k, alpha, A, a_off, lda, B, b_off, ldb, beta, C, c_off, ldc)


IMPLEMENTATIONS = {"loops": blas.gemm_loops, "chosen": _call_chosen}
if blas.BLAS.found:
    IMPLEMENTATIONS["blas"] = _call_blas
TOLERANCE = {np.float32: 2e-5, np.float64: 1e-13}


def check(impl, dtype, transa: bool, transb: bool, m: int, n: int, k: int, alpha: float,
          beta: float, rng: np.random.Generator, pad: int = 0) -> None:
    """C's (m, n) block at row r0, column c0 of a larger (m + 2, n + pad) buffer, A's and B's
    inside wider buffers too; what lies around C must stay as it was."""
    A_full = rng.standard_normal((k, m + pad) if transa else (m, k + pad)).astype(dtype)
    B_full = rng.standard_normal((n, k + pad) if transb else (k, n + pad)).astype(dtype)
    C_full = rng.standard_normal((m + 2, n + pad)).astype(dtype)
    A = A_full[:, :m] if transa else A_full[:, :k]
    B = B_full[:, :k] if transb else B_full[:, :n]
    r0, c0 = 1, pad // 2
    before = C_full.copy()
    opA = (A.T if transa else A).astype(np.float64)
    opB = (B.T if transb else B).astype(np.float64)
    want = alpha * (opA @ opB) + beta * before[r0:r0 + m, c0:c0 + n].astype(np.float64)
    impl(transa, transb, m, n, k, dtype(alpha), A_full, 0, A_full.shape[1], B_full, 0,
         B_full.shape[1], dtype(beta), C_full, r0 * C_full.shape[1] + c0, C_full.shape[1])
    got = C_full[r0:r0 + m, c0:c0 + n].astype(np.float64)
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    assert np.abs(got - want).max(initial=0.0) <= TOLERANCE[dtype] * scale * max(k, 1)
    outside = np.ones(C_full.shape, bool)
    outside[r0:r0 + m, c0:c0 + n] = False
    np.testing.assert_array_equal(C_full[outside], before[outside])


@pytest.mark.parametrize("impl", sorted(IMPLEMENTATIONS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("transa", [False, True])
@pytest.mark.parametrize("transb", [False, True])
def test_gemm_equals_numpy(impl: str, dtype, transa: bool, transb: bool) -> None:
    rng = np.random.default_rng(7)
    for m, n, k in [(1, 1, 1), (7, 13, 5), (17, 3, 31), (100, 64, 784), (5, 37, 2)]:
        for alpha, beta in [(1.0, 0.0), (0.5, 0.9), (-0.01, 1.0)]:
            check(IMPLEMENTATIONS[impl], dtype, transa, transb, m, n, k, alpha, beta, rng,
                  pad=3)


@pytest.mark.parametrize("impl", sorted(IMPLEMENTATIONS))
def test_beta_zero_ignores_what_c_held(impl: str) -> None:
    A = np.ones((3, 4))
    B = np.ones((4, 5))
    C = np.full((3, 5), np.nan)
    IMPLEMENTATIONS[impl](False, False, 3, 5, 4, 2.0, A, 0, 4, B, 0, 5, 0.0, C, 0, 5)
    np.testing.assert_array_equal(C, np.full((3, 5), 8.0))


@pytest.mark.parametrize("impl", sorted(IMPLEMENTATIONS))
def test_empty_product_scales_c(impl: str) -> None:
    C = np.full((2, 3), 4.0)
    IMPLEMENTATIONS[impl](False, False, 2, 3, 0, 1.0, np.zeros(1), 0, 1, np.zeros(1), 0, 3, 0.5,
                          C, 0, 3)
    np.testing.assert_array_equal(C, np.full((2, 3), 2.0))


@pytest.mark.skipif(not blas.BLAS.found, reason="no OpenBLAS bundled with this NumPy")
def test_blas_is_described_and_chosen() -> None:
    assert blas.gemm is blas.gemm_blas
    assert blas.BLAS.tag == f"blas_{blas.BLAS.sgemm}"
    assert blas.BLAS.sgemm in blas.BLAS.describe()
    assert os.path.exists(blas.BLAS.library)


def test_threads_restores_the_count() -> None:
    if blas._THREAD_COUNT is None:
        pytest.skip("no OpenBLAS thread control")
    get, _ = blas._THREAD_COUNT
    before = get()
    with blas.threads(1):
        assert get() == 1
    assert get() == before


def test_forced_loops_train_as_the_per_step_path() -> None:
    # FASTMLP_BLAS=loops: the fallback chosen at import, described, and the dense compiled
    # minibatch epoch (its own compilation, tagged "loops") exact to the per-step path
    tests = Path(__file__).parent
    code = f"""
import sys
sys.path.insert(0, {str(tests)!r})
from fastmlp.kernels import blas, minibatch
assert not blas.BLAS.found and blas.gemm is blas.gemm_loops, blas.BLAS
assert "Numba loops" in blas.BLAS.describe() and blas.BLAS.tag == "loops"
assert minibatch._CHUNK_KERNELS[True].py_func.__name__ == "_chunk_dense_loops"
from test_compiled_minibatch import assert_agree, compiled, dataset, per_step
data = dataset("dense", 61, 23, 10)
fast = compiled(data, 37, 7, "relu", 0.9, 2)
assert fast[1].strategy.mode == "dense"
assert_agree(fast, per_step(data, 37, 7, "relu", 0.9, 2), 1e-10)
print("ok")
"""
    env = dict(os.environ, FASTMLP_BLAS="loops")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
