"""Sparse inputs: the rows kept as their nonzeros for the products X·Wh and Xᵀ·dZ (CPU).

MNIST rows are ~81 % exact zeros, and a zero input adds exactly zero to z and to its Wh gradient,
so X·Wh and Xᵀ·dZ over the nonzeros alone give the dense products' values (up to the order of
the sums; kernels/sparse.py). The rows are converted once per run: CSR of all rows (train, valid,
test) for X·Wh, and (full batch) the training rows transposed by blocks for Xᵀ·dZ. A minibatch
gathers its rows from the CSR into buffers sized once, and transposes them per step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import FastMLPError
from .kernels import CSR
from .kernels import sparse as ksparse

SPARSE_MODES = ("auto", "on", "off")
# Density below which "auto" keeps the rows sparse: where the two sparse products together
# measured faster than OpenBLAS's dense ones (bench/RESULTS.md, "When the sparse products win").
SPARSE_MAX_DENSITY = 0.3


class SparseRows:
    """Rows X (N, F), the first ``n_train`` of them the training rows, as their nonzeros.

    ``rows``: CSR of all rows; ``train``: CSR of the training rows; ``train_t``: those
    transposed by blocks, for Xᵀ·dZ (``full_batch`` only); ``density``: the fraction of
    nonzero entries.
    """

    def __init__(self, X: np.ndarray, n_train: int, full_batch: bool = True):
        self.rows = ksparse.csr(X)
        self.n_train = n_train
        self.train = self.first(n_train)
        # only full-batch epochs read all training rows transposed (minibatches: SparseBatch)
        self.train_t = ksparse.transpose_blocks(self.train) if full_batch else None
        self.density = ksparse.density(self.rows)

    def first(self, n: int) -> CSR:
        """Rows [0, n) as a CSR (views, no copy)."""
        nnz = int(self.rows.indptr[n])
        return CSR(self.rows.indptr[:n + 1], self.rows.indices[:nnz], self.rows.values[:nnz],
                   self.rows.n_cols)

    def matmul(self, n: int, W: Any, out: Any) -> None:
        """out (n, H) = X[:n] (n, F) @ W (F, H)."""
        ksparse.sparse_matmul(out, self.first(n), W)

    def between(self, a: int, b: int) -> RowsView:
        """Rows [a, b) for forward passes (evaluation), as ``forward_backward``'s ``sparse``."""
        return RowsView(CSR(self.rows.indptr[a:b + 1], self.rows.indices, self.rows.values,
                            self.rows.n_cols))

    def matmul_t(self, dZ: Any, out: Any) -> None:
        """out (F, H) = X[:n_train]ᵀ @ dZ (n_train, H)."""
        ksparse.sparse_matmul_t(out, self.train, dZ, self.train_t)


class RowsView:
    """Rows of a :class:`SparseRows` for a forward pass only (no training rows)."""

    n_train = 0

    def __init__(self, rows: CSR):
        self.csr = rows

    def matmul(self, n: int, W: Any, out: Any) -> None:
        """out (n, H) = the rows (n, F) @ W (F, H)."""
        if n != self.csr.shape[0]:
            raise ValueError(f"the view holds {self.csr.shape[0]} rows, not {n}")
        ksparse.sparse_matmul(out, self.csr, W)


class SparseBatch:
    """One minibatch's rows at a time, gathered from a :class:`SparseRows`' training rows in
    sparse form, into buffers sized once for the largest batch (no per-step allocation but
    views). Same products as :class:`SparseRows`; ``n_train``: the batch's row count."""

    def __init__(self, rows: SparseRows, batch_size: int):
        X = rows.train
        nnz = ksparse.max_rows_nnz(X, batch_size)
        self.source = X
        self.buffers = CSR(np.empty(batch_size + 1, np.int64), np.empty(nnz, np.int32),
                           np.empty(nnz, X.values.dtype), X.n_cols)
        self.t_buffers = ksparse.csc_buffers(batch_size, X.n_cols, nnz, X.values.dtype)
        self.batch = self.batch_t = None
        self.n_train = 0

    def gather(self, idx: np.ndarray) -> None:
        """Make training rows ``idx`` (B,) the batch (and its transpose for Xᵀ·dZ)."""
        self.batch = ksparse.gather_rows(self.source, idx, self.buffers)
        self.batch_t = ksparse.transpose_blocks(self.batch, out=self.t_buffers)
        self.n_train = idx.shape[0]

    def matmul(self, n: int, W: Any, out: Any) -> None:
        """out (n, H) = the batch (n, F) @ W (F, H)."""
        if n != self.n_train:
            raise ValueError(f"the batch holds {self.n_train} rows, not {n}")
        ksparse.sparse_matmul(out, self.batch, W)

    def matmul_t(self, dZ: Any, out: Any) -> None:
        """out (F, H) = the batchᵀ @ dZ (B, H)."""
        ksparse.sparse_matmul_t(out, self.batch, dZ, self.batch_t)


def density_of(arrays: list[np.ndarray]) -> float:
    """Fraction of nonzero entries over the (N_i, F) arrays together (NaN counts as nonzero)."""
    size = sum(a.size for a in arrays)
    return sum(int(np.count_nonzero(a)) for a in arrays) / size if size else 0.0


def resolve_sparse(sparse: str, model: Any, arrays: list[np.ndarray],
                   compiled: bool = False) -> tuple[bool, str]:
    """Whether this run's products go over the nonzeros of its rows (``arrays``: the splits'
    features), and why (for logs).

    ``sparse``: "auto" chooses them on the CPU's fused kernels when the rows' density is below
    :data:`SPARSE_MAX_DENSITY`; "on" asks for them (a FastMLPError where they cannot run); "off"
    keeps the dense products. ``compiled``: the epochs run the compiled small-batch loop, which
    reads each row's nonzeros itself; the choice is then the evaluation's products'.
    """
    if sparse not in SPARSE_MODES:
        raise FastMLPError(f"sparse must be one of {', '.join(SPARSE_MODES)}, got {sparse!r}")
    if sparse == "off":
        return False, "dense (asked for)"
    if not (model.backend.name == "cpu" and model.backend.fused):
        if sparse == "on":
            raise FastMLPError("the sparse products run on the CPU with fused kernels only, "
                               f"not on {model.backend.describe()}")
        return False, "dense: the sparse products are for the CPU's fused kernels"
    d = density_of(arrays)
    if sparse == "auto" and d >= SPARSE_MAX_DENSITY:
        use, why = False, f"dense: density {d:.2f} >= {SPARSE_MAX_DENSITY}"
    else:
        use, why = True, (f"sparse (asked for; density {d:.2f})" if sparse == "on" else
                          f"sparse: density {d:.2f} < {SPARSE_MAX_DENSITY}")
    if compiled:
        why += " (evaluation; the compiled loop reads each row's nonzeros itself)"
    return use, why
