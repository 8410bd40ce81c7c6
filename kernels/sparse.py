"""Exact sparse-input products on the CPU: Z = X·Wh and dWh = Xᵀ·dZ with X (N, F) mostly zeros.

MNIST rows are ~81% exact zeros; a zero input adds exactly zero to z and to its Wh gradient, so
skipping it changes nothing but the summation order (for finite Wh: see :func:`sparse_matmul`).
Same names and semantics as :mod:`reference`, whose dense products are the oracles.

Layouts and blocking (the panel widths were picked by measurement, bench/sparse_ab.py):

- ``sparse_matmul``: X as :class:`~fastmlp.kernels.CSR`. Threads split the rows, in chunks of
  ``ROWS_PER_CHUNK``; per chunk, the hidden units go in panels of ``FORWARD_PANEL`` columns, so
  that the panel of Wh (F × panel) the chunk's nonzeros read stays in L2 and the output row's
  panel (the accumulator) in L1. Each nonzero k of row i adds x_ik·Wh[k, panel], four nonzeros
  per sweep (a quarter of the accumulator's loads and stores).
- ``sparse_matmul_t``: X's rows transposed once into :class:`CSCBlocks`: per block of
  ``ROWS_PER_BLOCK`` rows, the block's entries column by column. Threads split the output's
  columns in panels of ``BACKWARD_PANEL`` (no atomics, no per-thread partial sums); per panel,
  for each row block, dWh[k, panel] accumulates the block's column k, four entries per sweep,
  so the block's dZ panel (rows × panel) stays in L2 and dWh's row in L1.

Summation order, which does not depend on the thread count (each output element is summed by
one thread, in a loop structure the thread count does not change; panel boundaries depend on H
alone): z[i, j] = (bh[j] +) Σ over the nonzeros of row i in increasing column order, and
dWh[k, j] = Σ over the rows with nonzero x_k in increasing row order, both taken in groups of four
consecutive terms (each group summed, then added; fastmath may reassociate within a group).
NaN and ±inf inputs are nonzero: they are kept and propagate as in the dense product.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from numba import prange, uintp

from . import CSR, check_sparse_args
from .cpu import _JIT, _serial
from .steps import nonzeros

ROWS_PER_CHUNK = 32  # forward: rows a thread takes at once (each chunk re-reads the Wh panel)
FORWARD_PANEL = 128  # forward: hidden units per panel
ROWS_PER_BLOCK = 256  # backward: rows per transposed block (its dZ panel stays in L2)
BACKWARD_PANEL = 64  # backward: output columns per panel
SERIAL_BELOW = 65_536  # nonzeros × H below which the serial compilation runs (no thread wake-up)


def csr(X: np.ndarray, n: int | None = None) -> CSR:
    """Rows [0, n) of X (N, F) (all when n is None) as a :class:`CSR` (NaN counts as nonzero)."""
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}")
    n = X.shape[0] if n is None else n
    if not 0 <= n <= X.shape[0]:
        raise ValueError(f"n={n} outside [0, N={X.shape[0]}]")
    return CSR(*nonzeros(np.ascontiguousarray(X), n), X.shape[1])


def density(X: np.ndarray | CSR) -> float:
    """Fraction of X's (N, F) entries that are nonzero (NaN counts as nonzero); 0 when empty."""
    if isinstance(X, CSR):
        N, F = X.shape
        nnz = X.values.shape[0]
    else:
        N, F = X.shape
        nnz = int(np.count_nonzero(X))  # NaN is nonzero here too
    return nnz / (N * F) if N * F else 0.0


class CSCBlocks(NamedTuple):
    """X (N, F) transposed by blocks of ``rows_per_block`` rows: block b's entries of column k are
    ``rows[colptr[b, k] : colptr[b, k + 1]]`` (row numbers, increasing) and the same slice of
    ``values``. ``colptr`` (n_blocks, F + 1) int64 holds absolute offsets; block b's entries
    occupy the same range as its rows' in the source CSR."""

    colptr: np.ndarray
    rows: np.ndarray
    values: np.ndarray
    n_rows: int
    rows_per_block: int


@numba.njit(**_JIT)
def _transpose_blocks_kernel(indptr, indices, values, RB, colptr, rows, tvalues):
    n = indptr.shape[0] - 1
    F = colptr.shape[1] - 1
    for b in prange(colptr.shape[0]):
        r0 = b * RB
        r1 = min(n, r0 + RB)
        counts = np.zeros(F + 1, np.int64)
        for c in range(indptr[r0], indptr[r1]):
            counts[indices[c] + 1] += 1
        colptr[b, 0] = indptr[r0]
        for k in range(F):
            colptr[b, k + 1] = colptr[b, k] + counts[k + 1]
            counts[k + 1] = colptr[b, k]  # now the next free slot of column k
        for r in range(r0, r1):  # rows in increasing order: each column's rows come out sorted
            for c in range(indptr[r], indptr[r + 1]):
                k = indices[c]
                p = counts[k + 1]
                rows[p] = r
                tvalues[p] = values[c]
                counts[k + 1] = p + 1


def transpose_blocks(X: CSR, rows_per_block: int = ROWS_PER_BLOCK) -> CSCBlocks:
    """X (N, F) as :class:`CSCBlocks`, for :func:`sparse_matmul_t`; built once per run."""
    N, F = X.shape
    nb = -(-N // rows_per_block)
    colptr = np.empty((nb, F + 1), np.int64)
    rows = np.empty(X.indices.shape[0], np.int32)
    tvalues = np.empty_like(X.values)
    if nb:
        _transpose_blocks_kernel(X.indptr, X.indices, X.values, rows_per_block, colptr, rows,
                                 tvalues)
    return CSCBlocks(colptr, rows, tvalues, N, rows_per_block)


@numba.njit(inline="always")
def _axpy4(acc, i, src, s, rows, values, j0, j1):
    # acc[i, j0:j1] += Σ over entries [s, s + 4): values[c]·src[rows[c], j0:j1], summed in one
    # sweep: one load and store of acc per four products
    k0, k1, k2, k3 = rows[s], rows[s + 1], rows[s + 2], rows[s + 3]
    x0, x1, x2, x3 = values[s], values[s + 1], values[s + 2], values[s + 3]
    for jj in range(j0, j1):
        j = uintp(jj)
        acc[i, j] += (x0 * src[k0, j] + x1 * src[k1, j]) + (x2 * src[k2, j] + x3 * src[k3, j])


@numba.njit(inline="always")
def _axpy1(acc, i, src, c, rows, values, j0, j1):
    k = rows[c]
    x = values[c]
    for jj in range(j0, j1):
        j = uintp(jj)
        acc[i, j] += x * src[k, j]


@numba.njit(**_JIT)
def _matmul_kernel(indptr, indices, values, W, bh, has_bias, RC, PW, zero, out):
    N = indptr.shape[0] - 1
    H = W.shape[1]
    for chunk in prange((N + RC - 1) // RC):
        i0 = chunk * RC
        i1 = min(N, i0 + RC)
        for j0 in range(0, H, PW):  # the chunk's rows, one panel of Wh at a time
            j1 = min(H, j0 + PW)
            for ii in range(i0, i1):
                i = uintp(ii)
                for jj in range(j0, j1):
                    out[i, uintp(jj)] = bh[uintp(jj)] if has_bias else zero
                s, e = indptr[i], indptr[i + 1]
                for c in range(s, e - 3, 4):
                    _axpy4(out, i, W, c, indices, values, j0, j1)
                for c in range(s + (e - s) // 4 * 4, e):
                    _axpy1(out, i, W, c, indices, values, j0, j1)


@numba.njit(**_JIT)
def _matmul_t_kernel(colptr, rows, values, dZ, PW, zero, out):
    F, H = out.shape
    for p in prange((H + PW - 1) // PW):
        j0 = p * PW
        j1 = min(H, j0 + PW)
        for kk in range(F):
            for jj in range(j0, j1):
                out[uintp(kk), uintp(jj)] = zero
        for b in range(colptr.shape[0]):  # row blocks in order: each sum runs over rows in order
            for kk in range(F):
                k = uintp(kk)
                s, e = colptr[b, k], colptr[b, k + 1]
                for c in range(s, e - 3, 4):
                    _axpy4(out, k, dZ, c, rows, values, j0, j1)
                for c in range(s + (e - s) // 4 * 4, e):
                    _axpy1(out, k, dZ, c, rows, values, j0, j1)


_matmul_kernel_serial = _serial(_matmul_kernel, "_matmul_kernel_serial")
_matmul_t_kernel_serial = _serial(_matmul_t_kernel, "_matmul_t_kernel_serial")


def sparse_matmul(out: np.ndarray, X: CSR, W: np.ndarray, bh: np.ndarray | None = None,
                  *, panel: int = FORWARD_PANEL, rows_per_chunk: int = ROWS_PER_CHUNK) -> None:
    """out (N, H) = X (N, F, sparse) @ W (F, H) [+ bh (1, H)]; out, W and X's values of one dtype.

    Only the rows of W that a row's nonzeros name are read for it: a non-finite W[k, j] reaches
    the rows whose x_k is nonzero, not (as 0·inf = NaN in the dense product) every row.
    """
    N, F = X.shape
    H = W.shape[1]
    check_sparse_args(out, X, W, (N, H), F)
    if bh is not None and bh.shape != (1, H):
        raise ValueError(f"bh must have shape (1, {H}), got {bh.shape}")
    W = np.ascontiguousarray(W)
    bias = np.zeros(0, W.dtype) if bh is None else np.ascontiguousarray(bh, W.dtype).reshape(-1)
    small = X.values.shape[0] * H < SERIAL_BELOW
    kernel = _matmul_kernel_serial if small else _matmul_kernel
    kernel(X.indptr, X.indices, X.values, W, bias, bh is not None, rows_per_chunk, panel,
           W.dtype.type(0), out)


def sparse_matmul_t(out: np.ndarray, X: CSR, dZ: np.ndarray, Xt: CSCBlocks | None = None,
                    *, panel: int = BACKWARD_PANEL) -> None:
    """out (F, H) = X (N, F, sparse)ᵀ @ dZ (N, H); out, dZ and X's values of one dtype.

    ``Xt``: :func:`transpose_blocks` of X, built here when not given (build it once per run).
    """
    N, F = X.shape
    H = dZ.shape[1]
    check_sparse_args(out, X, dZ, (F, H), N)
    if Xt is None:
        Xt = transpose_blocks(X)
    elif Xt.n_rows != N or Xt.colptr.shape[1] != F + 1 or Xt.rows.shape != X.indices.shape:
        raise ValueError("Xt is not transpose_blocks of this X")
    dZ = np.ascontiguousarray(dZ)
    small = Xt.values.shape[0] * H < SERIAL_BELOW
    kernel = _matmul_t_kernel_serial if small else _matmul_t_kernel
    kernel(Xt.colptr, Xt.rows, Xt.values, dZ, panel, dZ.dtype.type(0), out)
