"""Exact sparse-input products on the CPU: Z = X·Wh and dWh = Xᵀ·dZ with X (N, F) mostly zeros.

MNIST rows are ~81% exact zeros; a zero input adds exactly zero to z and to its Wh gradient, so
skipping it changes nothing but the summation order (for finite Wh: see :func:`sparse_matmul`).
Same names and semantics as :mod:`reference`, whose dense products are the oracles.

Layouts and blocking (widths picked by measurement: see the constants and bench/sparse_ab.py):

- ``sparse_matmul``: X as :class:`~fastmlp.kernels.CSR`. Threads split the rows, each a
  contiguous range of chunks of ``ROWS_PER_CHUNK``; per chunk, the hidden units go in panels of
  ``FORWARD_PANEL`` columns (by default one panel up to H = 1024: narrower ones measured
  slower). Each row's panel of out is the accumulator (in L1); the row's nonzeros add
  x_ik·Wh[k, panel], ``GROUP`` of them per sweep (one load and store of the accumulator per
  ``GROUP`` products).
- ``sparse_matmul_t``: X's rows transposed once into :class:`CSCBlocks`: per block of
  ``ROWS_PER_BLOCK`` rows, the block's entries column by column. Threads split the output's
  rows (dWh[k] for k ≡ thread mod threads: no atomics, no per-thread partial sums); for each
  row block in order, dWh[k, panel] (panels of ``BACKWARD_PANEL``) accumulates the block's
  column k, ``GROUP`` entries per sweep; the block's rows of dZ stay in L2 meanwhile.

Threads: :func:`.runtime.run_shares` runs a kernel's shares at once, one serial compiled call per
thread. Summation order, which does not depend on the thread count (each output element is
summed by one thread, in a loop structure the thread count does not change): z[i, j] = (bh[j] +)
the nonzeros of row i in increasing column order, and dWh[k, j] = the rows with nonzero x_k in
increasing row order (row block by row block), each taken in groups of ``GROUP`` consecutive
terms, then 4, then single ones (each group summed as a balanced tree, then added; fastmath may
reassociate within a group).
NaN and ±inf inputs are nonzero: they are kept and propagate as in the dense product.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from numba import uintp

from . import CSR, check_sparse_args
from .pieces import column_starts, count_columns, scatter_by_column
from .runtime import (
    NONZERO_ROWS,
    SERIAL_JIT,
    SPARSE_PRODUCTS,
    TRANSPOSE_BLOCKS,
    run_shares,
    split,
    threads_for,
)

# Measured on MNIST rows (bench/sparse_ab.py, 2-core EPYC, 1 MiB L2 per core): Numba's inner
# loops pay a fixed cost per entry (LLVM's runtime alias checks and remainder loop), so long
# panels win over cache-sized ones: forward, whole rows of Wh (H ≤ 1024) beat 256-wide panels
# (f32, H = 1000: 0.60 vs 0.71 of the dense time) and 128-wide ones (0.72). Backward, threads
# splitting the output rows with whole-row panels beat threads splitting ~500-wide column panels
# (H = 300: 0.50 vs 0.91 in f32, 0.26 vs 0.45 in f64; H = 1000: 0.55-0.60 vs 0.62).
ROWS_PER_CHUNK = 8  # forward: rows a thread takes at once (4 and 32 measured the same)
FORWARD_PANEL = 1024  # forward: hidden units per panel
ROWS_PER_BLOCK = 256  # backward: rows per transposed block (64 and 128 no better)
BACKWARD_PANEL = 1024  # backward: output columns per panel (512 no better)
GROUP = 8  # entries summed per sweep over a panel, 8 or 4 (8: 3-10% faster)


@numba.njit(**SERIAL_JIT)
def _nonzeros_kernel(t, T, X, c, indptr, indices, values, fill):
    # share t of T of the rows. not fill: indptr[i + 1] = the count of row i's entries
    # x_ik != c_k; fill: their columns and x_ik − c_k from indptr[i] on. One kernel for both
    # passes: one compilation
    i0, i1 = split(indptr.shape[0] - 1, t, T)
    for i in range(i0, i1):
        p = indptr[i] if fill else 0
        for k in range(X.shape[1]):
            x = X[i, k]
            if x != c[k]:  # NaN != c: kept
                if fill:
                    indices[p] = k
                    values[p] = x - c[k]  # x itself where c_k = 0
                p += 1
        if not fill:
            indptr[i + 1] = p


def csr(X: np.ndarray, n: int | None = None, around: np.ndarray | None = None) -> CSR:
    """Rows [0, n) of X (N, F) (all when n is None) as a :class:`CSR` (NaN counts as nonzero);
    ``around`` (F,): of X − 1·aroundᵀ instead, its entries where x_ik != around_k, each
    fl(x_ik − around_k) (kernels/offset.py)."""
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}")
    n = X.shape[0] if n is None else n
    if not 0 <= n <= X.shape[0]:
        raise ValueError(f"n={n} outside [0, N={X.shape[0]}]")
    X = np.ascontiguousarray(X)
    c = (np.zeros(X.shape[1], X.dtype) if around is None
         else np.ascontiguousarray(around, X.dtype))
    if c.shape != (X.shape[1],):
        raise ValueError(f"around must have shape ({X.shape[1]},), got {c.shape}")
    indptr = np.zeros(n + 1, np.int64)
    T = threads_for(n, NONZERO_ROWS)
    run_shares(_nonzeros_kernel, T, X, c, indptr, np.empty(0, np.int32), np.empty(0, X.dtype),
               False)
    np.cumsum(indptr, out=indptr)
    indices = np.empty(indptr[-1], np.int32)
    values = np.empty(indptr[-1], X.dtype)
    run_shares(_nonzeros_kernel, T, X, c, indptr, indices, values, True)
    return CSR(indptr, indices, values, X.shape[1])


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


@numba.njit(**SERIAL_JIT)
def _transpose_blocks_kernel(t, T, indptr, indices, values, RB, colptr, rows, tvalues):
    # share t of T of the row blocks, each transposed on its own
    n = indptr.shape[0] - 1
    b0, b1 = split(colptr.shape[0], t, T)
    counts = np.empty(colptr.shape[1], np.int64)
    for b in range(b0, b1):
        r0 = b * RB
        r1 = min(n, r0 + RB)
        counts[:] = 0
        for r in range(r0, r1):
            count_columns(indptr, indices, r, counts)
        column_starts(counts, indptr[r0], colptr[b])  # absolute offsets: the block's own range
        for r in range(r0, r1):  # rows in increasing order: each column's rows come out sorted
            scatter_by_column(indptr, indices, values, r, r, counts, rows, tvalues)


def transpose_blocks(X: CSR, rows_per_block: int = ROWS_PER_BLOCK,
                     out: CSCBlocks | None = None) -> CSCBlocks:
    """X (N, F) as :class:`CSCBlocks`, for :func:`sparse_matmul_t`; built once per run, or per
    minibatch into ``out`` (buffers from :func:`csc_buffers`; the result is views of them).
    X's indptr must start at 0."""
    N, F = X.shape
    nb = -(-N // rows_per_block)
    nnz = X.indices.shape[0]
    if out is None:
        colptr = np.empty((nb, F + 1), np.int64)
        rows = np.empty(nnz, np.int32)
        tvalues = np.empty_like(X.values)
    else:
        if (out.colptr.shape[0] < nb or out.colptr.shape[1] != F + 1
                or out.rows.shape[0] < nnz or out.values.dtype != X.values.dtype):
            raise ValueError("out is too small for X, or of another dtype")
        colptr, rows, tvalues = out.colptr[:nb], out.rows[:nnz], out.values[:nnz]
    if nb:  # one block (a minibatch) runs serially: no threads to wake for ~10 µs of work
        run_shares(_transpose_blocks_kernel, threads_for(nb, TRANSPOSE_BLOCKS), X.indptr,
                   X.indices, X.values, rows_per_block, colptr, rows, tvalues)
    return CSCBlocks(colptr, rows, tvalues, N, rows_per_block)


def csc_buffers(n_rows: int, n_cols: int, nnz: int, dtype: np.dtype,
                rows_per_block: int = ROWS_PER_BLOCK) -> CSCBlocks:
    """Empty :class:`CSCBlocks` buffers for up to ``n_rows`` rows of ``n_cols`` columns with
    ``nnz`` nonzeros: the ``out`` of :func:`transpose_blocks`."""
    nb = -(-n_rows // rows_per_block)
    return CSCBlocks(np.empty((nb, n_cols + 1), np.int64), np.empty(nnz, np.int32),
                     np.empty(nnz, dtype), n_rows, rows_per_block)


@numba.njit(**SERIAL_JIT)
def _gather_kernel(indptr, indices, values, idx, bindptr, bindices, bvalues):
    # the rows' nonzeros, counted first: -(their count) when the buffers cannot hold them
    nnz = 0
    for r in range(idx.shape[0]):
        nnz += indptr[idx[r] + 1] - indptr[idx[r]]
    if nnz > bindices.shape[0]:
        return -nnz
    p = 0
    bindptr[0] = 0
    for r in range(idx.shape[0]):
        i = idx[r]
        for c in range(indptr[i], indptr[i + 1]):
            bindices[p] = indices[c]
            bvalues[p] = values[c]
            p += 1
        bindptr[r + 1] = p
    return nnz


def max_rows_nnz(X: CSR, n: int) -> int:
    """The most nonzeros any ``n`` of X's rows hold together: a minibatch buffer's size."""
    counts = np.diff(X.indptr)
    return int(np.sort(counts)[::-1][:n].sum())


def gather_rows(X: CSR, idx: np.ndarray, out: CSR) -> CSR:
    """Rows ``idx`` (B,) of X, in that order, as a CSR of views of ``out``'s buffers
    (``out.indptr`` at least B + 1 long, ``out.indices``/``out.values`` large enough:
    :func:`max_rows_nnz`); X's values dtype."""
    B = idx.shape[0]
    if out.indptr.shape[0] < B + 1 or out.values.dtype != X.values.dtype:
        raise ValueError("out is too small for the rows, or of another dtype")
    nnz = _gather_kernel(X.indptr, X.indices, X.values, idx, out.indptr, out.indices,
                         out.values)
    if nnz < 0:
        raise ValueError(f"out holds {out.indices.shape[0]} nonzeros, the rows {-nnz}")
    return CSR(out.indptr[:B + 1], out.indices[:nnz], out.values[:nnz], X.n_cols)


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
def _axpy8(acc, i, src, s, rows, values, j0, j1):
    # as _axpy4, eight entries per sweep
    k0, k1, k2, k3 = rows[s], rows[s + 1], rows[s + 2], rows[s + 3]
    k4, k5, k6, k7 = rows[s + 4], rows[s + 5], rows[s + 6], rows[s + 7]
    x0, x1, x2, x3 = values[s], values[s + 1], values[s + 2], values[s + 3]
    x4, x5, x6, x7 = values[s + 4], values[s + 5], values[s + 6], values[s + 7]
    for jj in range(j0, j1):
        j = uintp(jj)
        acc[i, j] += (((x0 * src[k0, j] + x1 * src[k1, j]) + (x2 * src[k2, j] + x3 * src[k3, j]))
                      + ((x4 * src[k4, j] + x5 * src[k5, j]) + (x6 * src[k6, j] + x7 * src[k7, j])))


@numba.njit(inline="always")
def _axpy_run(acc, i, src, s, e, rows, values, j0, j1, G):
    # acc[i, j0:j1] += Σ over entries [s, e), in groups of G (8 or 4), then of 4, then singly
    c = s
    if G == 8:
        while c + 8 <= e:
            _axpy8(acc, i, src, c, rows, values, j0, j1)
            c += 8
    while c + 4 <= e:
        _axpy4(acc, i, src, c, rows, values, j0, j1)
        c += 4
    while c < e:
        _axpy1(acc, i, src, c, rows, values, j0, j1)
        c += 1


@numba.njit(inline="always")
def _axpy1(acc, i, src, c, rows, values, j0, j1):
    k = rows[c]
    x = values[c]
    for jj in range(j0, j1):
        j = uintp(jj)
        acc[i, j] += x * src[k, j]


@numba.njit(**SERIAL_JIT)
def _matmul_rows(t, T, indptr, indices, values, W, bh, has_bias, RC, PW, G, zero, out):
    # share t of T of the chunks of RC rows; per chunk, one panel of Wh at a time
    N = indptr.shape[0] - 1
    H = W.shape[1]
    c0, c1 = split((N + RC - 1) // RC, t, T)
    for chunk in range(c0, c1):
        i0 = chunk * RC
        i1 = min(N, i0 + RC)
        for j0 in range(0, H, PW):
            j1 = min(H, j0 + PW)
            for ii in range(i0, i1):
                i = uintp(ii)
                for jj in range(j0, j1):
                    out[i, uintp(jj)] = bh[uintp(jj)] if has_bias else zero
                _axpy_run(out, i, W, indptr[i], indptr[i + 1], indices, values, j0, j1, G)


@numba.njit(**SERIAL_JIT)
def _matmul_t_rows(q, NQ, colptr, rows, values, dZ, PW, G, zero, out):
    # share q of NQ: the output rows k ≡ q mod NQ (border and centre pixels interleaved, so the
    # work is even), whole: every out[k, j] is summed here, in the same order whatever NQ is.
    # Each share reads the whole block of dZ, from L2
    F, H = out.shape
    for kk in range(q, F, NQ):
        for jj in range(H):
            out[uintp(kk), uintp(jj)] = zero
    for b in range(colptr.shape[0]):
        for j0 in range(0, H, PW):
            j1 = min(H, j0 + PW)
            for kk in range(q, F, NQ):
                k = uintp(kk)
                _axpy_run(out, k, dZ, colptr[b, k], colptr[b, k + 1], rows, values, j0, j1, G)


def sparse_matmul(out: np.ndarray, X: CSR, W: np.ndarray, bh: np.ndarray | None = None,
                  *, panel: int = FORWARD_PANEL, rows_per_chunk: int = ROWS_PER_CHUNK,
                  group: int = GROUP) -> None:
    """out (N, H) = X (N, F, sparse) @ W (F, H) [+ bh (1, H)]; out, W and X's values of one dtype.

    Only the rows of W that a row's nonzeros name are read for it: a non-finite W[k, j] reaches
    the rows whose x_k is nonzero, not (as 0·inf = NaN in the dense product) every row.
    """
    N, F = X.shape
    H = W.shape[1]
    check_sparse_args(out, X, W, (N, H), F)
    if group not in (4, 8):
        raise ValueError(f"group must be 4 or 8, got {group}")
    if bh is not None and bh.shape != (1, H):
        raise ValueError(f"bh must have shape (1, {H}), got {bh.shape}")
    W = np.ascontiguousarray(W)
    bias = np.zeros(0, W.dtype) if bh is None else np.ascontiguousarray(bh, W.dtype).reshape(-1)
    nnz = int(X.indptr[-1] - X.indptr[0])
    run_shares(_matmul_rows, threads_for(nnz * H, SPARSE_PRODUCTS), X.indptr, X.indices,
               X.values, W, bias, bh is not None, rows_per_chunk, panel, group, W.dtype.type(0),
               out)


def sparse_matmul_t(out: np.ndarray, X: CSR, dZ: np.ndarray, Xt: CSCBlocks | None = None,
                    *, panel: int = BACKWARD_PANEL, group: int = GROUP) -> None:
    """out (F, H) = X (N, F, sparse)ᵀ @ dZ (N, H); out, dZ and X's values of one dtype.

    ``Xt``: :func:`transpose_blocks` of X, built here when not given (build it once per run).
    """
    N, F = X.shape
    H = dZ.shape[1]
    check_sparse_args(out, X, dZ, (F, H), N)
    if group not in (4, 8):
        raise ValueError(f"group must be 4 or 8, got {group}")
    if Xt is None:
        Xt = transpose_blocks(X)
    elif Xt.n_rows != N or Xt.colptr.shape[1] != F + 1 or Xt.rows.shape != X.indices.shape:
        raise ValueError("Xt is not transpose_blocks of this X")
    dZ = np.ascontiguousarray(dZ)
    run_shares(_matmul_t_rows, threads_for(Xt.values.shape[0] * H, SPARSE_PRODUCTS), Xt.colptr,
               Xt.rows, Xt.values, dZ, panel, group, dZ.dtype.type(0), out)
