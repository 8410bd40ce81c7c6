"""Rows sparse around a constant: X = S + 1·cᵀ with S sparse, and the two products through S.

MNIST scaled to [−1, 1] has its background at −1, standardised rows at −mean/std: no longer
mostly zeros, but mostly one value per feature. With c (F,) that value (the most frequent one of
each feature) and S = X − 1·cᵀ (mostly zeros),

    X·W   = S·W + 1·(cᵀ·W)          (N, H): the sparse product plus one row added to every row
    Xᵀ·dZ = Sᵀ·dZ + c·(1ᵀ·dZ)        (F, H): the sparse transposed product plus a rank-one term

so the products cost S's nonzeros plus one dense row (cᵀ·W: F·H; 1ᵀ·dZ: N·H), not N·F·H.

Rounding (u: the dtype's unit roundoff, 2⁻⁵³ or 2⁻²⁴; γ_m = m·u/(1 − m·u)). S is stored
rounded: s = fl(x − c), so |s − (x − c)| ≤ u·|x − c| (exactly s = x − c where c/2 ≤ x ≤ 2c,
Sterbenz, and where x = c: the background entries, which S leaves out, carry no error at all).
Against the exact products of the true X:

- X·W: each output is the row term r_j = fl(cᵀ·W_j) (F products, error γ_F·Σ_k |c_k||w_kj|)
  then the row's n ≤ F nonzeros of S added to it, so
  |fl(X·W)_ij − (X·W)_ij| ≤ γ_{F+n+1}·(Σ_k |s_ik||w_kj| + Σ_k |c_k||w_kj|);
- Xᵀ·dZ: the sparse sum over the n ≤ N rows where s_ik ≠ 0, plus c_k times the column sum
  fl(1ᵀ·dZ_j) (N terms), one rounding for the product and one for the addition, so
  |fl(Xᵀ·dZ)_kj − (Xᵀ·dZ)_kj| ≤ γ_{N+n+2}·(Σ_i |s_ik||dz_ij| + |c_k|·Σ_i |dz_ij|).

That is the dense product's bound γ_F·Σ_k |x_ik||w_kj| (γ_N·Σ_i |x_ik||dz_ij|) with |x| replaced
by |s| + |c| ≤ |x| + 2|c| and at most twice the terms: the same order of error where |c| is of
the order of |x| (MNIST: c = −1, |x| ≤ 1), hence the tests' 1e-12 (float64) and 1e-5 (float32)
relative to the dense products. c = 0 adds nothing: the row term and the rank-one term are then
exact zeros, and the plain sparse products (fastmlp/sparse.py) skip them.

c is found without a compiled kernel (no compile cost for a run whose c turns out zero): a
feature's value held by more than half its rows is its most frequent one, so each feature's
candidate (the most frequent value of up to :data:`SAMPLE_ROWS` evenly spaced rows) is counted
over all rows, and only the features where it holds no majority are sorted.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from . import CSR
from .runtime import SERIAL_JIT
from .sparse import CSCBlocks, csr, sparse_matmul, sparse_matmul_t, transpose_blocks

SAMPLE_ROWS = 64  # rows whose most frequent values are each feature's candidate for c
_CHUNK_ROWS = 4096  # rows per pass of the counting loops: bounded temporaries


class OffsetRows(NamedTuple):
    """X (N, F) as S + 1·cᵀ: ``c`` (F,) the constant of each feature, ``S`` the CSR of X − 1·cᵀ
    (its entries where x ≠ c; NaN counts as different), ``density`` S's nonzeros / (N·F)."""

    S: CSR
    c: np.ndarray
    density: float


def _modes_of_sorted(R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The most frequent value (the smallest among ties; NaN never, 0 for an all-NaN row) of
    each row of R (m, n ≥ 1), each row sorted (NaN last), and how many entries hold it."""
    m, n = R.shape
    flat = R.ravel()
    starts = np.ones(flat.shape[0], bool)
    np.not_equal(flat[1:], flat[:-1], out=starts[1:])  # NaN != NaN: each NaN a run of its own
    starts[::n] = True  # each row's first entry starts a run
    first = np.flatnonzero(starts)
    lengths = np.diff(np.append(first, flat.shape[0]))
    lengths[np.isnan(flat[first])] = 0
    row = first // n
    longest = np.maximum.reduceat(lengths, np.searchsorted(row, np.arange(m)))
    best = np.flatnonzero(lengths == longest[row])  # runs as long as their row's longest
    rows_best, at = np.unique(row[best], return_index=True)  # each row's first: the smallest
    modes = np.zeros(m, R.dtype)
    modes[rows_best] = flat[first[best[at]]]
    modes[longest == 0] = 0
    return modes, longest


def _modes_of_columns(X: np.ndarray, n: int,
                      columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The most frequent value of each of ``columns`` of X over rows [0, n ≥ 1), and how many
    rows hold it."""
    R = np.ascontiguousarray(X[:n].take(columns, axis=1).T)  # one row per column
    R.sort(axis=1)
    return _modes_of_sorted(R)


def majority_constants(X: np.ndarray, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(c, held) (F,) for rows [0, n) of X (N, F): where ``held``, c is the value more than
    half of the rows hold (so the most frequent one); elsewhere a candidate only."""
    n = X.shape[0] if n is None else n
    F = X.shape[1]
    if n == 0:
        return np.zeros(F, X.dtype), np.ones(F, bool)
    sample = np.sort(X[(np.arange(min(n, SAMPLE_ROWS)) * n) // min(n, SAMPLE_ROWS)].T, axis=1)
    c, _ = _modes_of_sorted(sample)
    count = np.zeros(F, np.int64)
    for a in range(0, n, _CHUNK_ROWS):
        count += np.count_nonzero(X[a:min(n, a + _CHUNK_ROWS)] == c, axis=0)
    return c, 2 * count > n


def feature_constants(X: np.ndarray, n: int | None = None,
                      found: tuple[np.ndarray, np.ndarray] | None = None,
                      counts: np.ndarray | None = None) -> np.ndarray:
    """c (F,): each feature's most frequent value over rows [0, n) of X (N, F) (all when None),
    in X's dtype; the smallest of tied values; 0 for a feature with no finite-or-inf value.
    ``found``: :func:`majority_constants` of the same rows, when already made; ``counts``
    (F,): where given, how many rows hold c is written for the features it sorted (those with
    no majority value)."""
    n = X.shape[0] if n is None else n
    c, held = majority_constants(X, n) if found is None else found
    c = c.copy()
    rest = np.flatnonzero(~held)
    if rest.size:
        c[rest], holding = _modes_of_columns(X, n, rest)
        if counts is not None:
            counts[rest] = holding
    c[c == 0] = 0  # −0.0 as +0.0: "all zeros" reads plainly
    return c


def offset_rows(X: np.ndarray, c: np.ndarray | None = None, n: int | None = None) -> OffsetRows:
    """Rows [0, n) of X (N, F) as :class:`OffsetRows` around ``c`` (default:
    :func:`feature_constants` of those rows). S is built straight from X (no dense copy)."""
    X = np.ascontiguousarray(X)
    n = X.shape[0] if n is None else n
    c = feature_constants(X, n) if c is None else np.ascontiguousarray(c, X.dtype)
    if c.shape != (X.shape[1],):
        raise ValueError(f"c must have shape ({X.shape[1]},), got {c.shape}")
    S = csr(X, n, around=c)
    size = n * X.shape[1]
    return OffsetRows(S, c, S.values.shape[0] / size if size else 0.0)


def offset_matmul(out: np.ndarray, X: OffsetRows, W: np.ndarray, bh: np.ndarray | None = None,
                  row: np.ndarray | None = None) -> None:
    """out (N, H) = X (N, F) @ W (F, H) [+ bh (1, H)], as S·W + 1·(cᵀ·W [+ bh]). ``row``: (H,)
    scratch of W's dtype for cᵀ·W (allocated when None)."""
    H = W.shape[1]
    row = np.empty(H, W.dtype) if row is None else row
    np.matmul(X.c, W, out=row)  # (H,) cᵀ·W: one dense row
    if bh is not None:
        row += bh.reshape(-1)
    # the sparse product with the row as its bias: the row is each sum's first term
    sparse_matmul(out, X.S, W, row.reshape(1, H))


@numba.njit(**SERIAL_JIT)
def _add_outer(out, c, column_sums):
    # out += c·column_sumsᵀ, in place (F·H: small beside the product; one thread)
    for k in range(out.shape[0]):
        ck = c[k]
        for j in range(out.shape[1]):
            out[k, j] += ck * column_sums[j]


def offset_matmul_t(out: np.ndarray, X: OffsetRows, dZ: np.ndarray,
                    St: CSCBlocks | None = None, column_sums: np.ndarray | None = None) -> None:
    """out (F, H) = X (N, F)ᵀ @ dZ (N, H), as Sᵀ·dZ + c·(1ᵀ·dZ). ``St``:
    ``transpose_blocks(X.S)`` (built here when not given; build it once per run);
    ``column_sums``: (H,) scratch of dZ's dtype for 1ᵀ·dZ (allocated when None)."""
    sparse_matmul_t(out, X.S, dZ, transpose_blocks(X.S) if St is None else St)
    column_sums = np.sum(dZ, axis=0, out=column_sums)  # (H,) 1ᵀ·dZ, in dZ's dtype
    _add_outer(out, X.c, column_sums)
