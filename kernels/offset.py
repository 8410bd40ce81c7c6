"""Rows sparse around a constant: X = S + 1·cᵀ with S sparse, and the two products through S.

MNIST scaled to [−1, 1] has its background at −1, standardised rows at −mean/std: no longer
mostly zeros, but mostly one value per feature. With c (F,) that value (the most frequent one of
each feature) and S = X − 1·cᵀ (mostly zeros),

    X·W   = S·W + 1·(cᵀ·W)          (N, H): the sparse product plus one row added to every row
    Xᵀ·dZ = Sᵀ·dZ + c·(1ᵀ·dZ)        (F, H): the sparse transposed product plus a rank-one term

so the products cost S's nonzeros plus one dense row (cᵀ·W: F·H; 1ᵀ·dZ: N·H), not N·F·H.

Rounding (u: the dtype's unit roundoff, 2⁻⁵³ or 2⁻²⁴). S is stored rounded: s = fl(x − c), so
|s − (x − c)| ≤ u·|x − c| (exactly s = x − c where c/2 ≤ x ≤ 2c, Sterbenz, and where x = c: the
background entries, which S leaves out, carry no error at all). Each output element is then a sum
of at most n + 1 rounded products (n = the nonzeros it sums, ≤ F or N), so, against the exact
product of the true X,

    |fl(X·W)_ij − (X·W)_ij|   ≤ (γ_{n+2} + u)·(Σ_k |s_ik||w_kj| + Σ_k |c_k||w_kj|)
    |fl(Xᵀ·dZ)_kj − (Xᵀ·dZ)_kj| ≤ (γ_{n+2} + u)·(Σ_i |s_ik||dz_ij| + |c_k|·Σ_i |dz_ij|)

with γ_m = m·u/(1 − m·u): the dense product's bound γ_F·Σ_k |x_ik||w_kj| with |x| replaced by
|s| + |c| ≤ |x| + 2|c|: the same order of error where |c| is of the order of |x| (MNIST: c = −1,
|x| ≤ 1), hence the tests' 1e-12 (float64) and 1e-5 (float32) relative to the dense products.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from . import CSR
from .runtime import JIT as _JIT
from .sparse import CSCBlocks, csr, sparse_matmul, sparse_matmul_t, transpose_blocks


class OffsetRows(NamedTuple):
    """X (N, F) as S + 1·cᵀ: ``c`` (F,) the constant of each feature, ``S`` the CSR of X − 1·cᵀ
    (its entries where x ≠ c; NaN counts as different), ``density`` S's nonzeros / (N·F)."""

    S: CSR
    c: np.ndarray
    density: float


@numba.njit(**dict(_JIT, parallel=False))
def _mode_of_columns(X, n, c):
    # c[k] = the most frequent value of column k over rows [0, n) (the smallest among ties; NaN
    # never chosen): each column sorted once, runs counted
    col = np.empty(n, X.dtype)
    for k in range(X.shape[1]):
        m = 0
        for i in range(n):
            x = X[i, k]
            if x == x:  # NaN left out
                col[m] = x
                m += 1
        if m == 0:
            c[k] = 0
            continue
        run = np.sort(col[:m])
        best, best_count, count = run[0], 1, 1
        for i in range(1, m):
            count = count + 1 if run[i] == run[i - 1] else 1
            if count > best_count:
                best, best_count = run[i], count
        c[k] = best


@numba.njit(**dict(_JIT, parallel=False))
def _subtract(X, n, c, S):
    for i in range(n):
        for k in range(X.shape[1]):
            S[i, k] = X[i, k] - c[k]  # exactly 0 where x == c; NaN stays NaN


def feature_constants(X: np.ndarray, n: int | None = None) -> np.ndarray:
    """c (F,): each feature's most frequent value over rows [0, n) of X (N, F) (all when None),
    in X's dtype; the smallest of tied values; 0 for a feature with no finite-or-inf value."""
    n = X.shape[0] if n is None else n
    c = np.zeros(X.shape[1], X.dtype)
    if n:
        _mode_of_columns(np.ascontiguousarray(X), n, c)
    c[c == 0] = 0  # −0.0 as +0.0: "all zeros" reads plainly
    return c


def offset_rows(X: np.ndarray, c: np.ndarray | None = None, n: int | None = None) -> OffsetRows:
    """Rows [0, n) of X (N, F) as :class:`OffsetRows` around ``c`` (default:
    :func:`feature_constants` of those rows). One temporary (n, F) copy while building."""
    X = np.ascontiguousarray(X)
    n = X.shape[0] if n is None else n
    c = feature_constants(X, n) if c is None else np.ascontiguousarray(c, X.dtype)
    if c.shape != (X.shape[1],):
        raise ValueError(f"c must have shape ({X.shape[1]},), got {c.shape}")
    diff = np.empty((n, X.shape[1]), X.dtype)
    _subtract(X, n, c, diff)
    S = csr(diff, n)
    size = n * X.shape[1]
    return OffsetRows(S, c, S.values.shape[0] / size if size else 0.0)


def offset_matmul(out: np.ndarray, X: OffsetRows, W: np.ndarray,
                  bh: np.ndarray | None = None) -> None:
    """out (N, H) = X (N, F) @ W (F, H) [+ bh (1, H)], as S·W + 1·(cᵀ·W [+ bh])."""
    H = W.shape[1]
    row = X.c @ W  # (H,) cᵀ·W: one dense row
    if bh is not None:
        row = row + bh.reshape(-1)
    # the sparse product with the row as its bias: the row is each sum's first term
    sparse_matmul(out, X.S, W, row.reshape(1, H).astype(W.dtype, copy=False))


def offset_matmul_t(out: np.ndarray, X: OffsetRows, dZ: np.ndarray,
                    St: CSCBlocks | None = None) -> None:
    """out (F, H) = X (N, F)ᵀ @ dZ (N, H), as Sᵀ·dZ + c·(1ᵀ·dZ). ``St``:
    ``transpose_blocks(X.S)`` (built here when not given; build it once per run)."""
    sparse_matmul_t(out, X.S, dZ, transpose_blocks(X.S) if St is None else St)
    column_sums = dZ.sum(axis=0, dtype=dZ.dtype)  # (H,) 1ᵀ·dZ
    out += np.multiply.outer(X.c, column_sums)
