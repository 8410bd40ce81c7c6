"""Sparse inputs: the rows kept as their nonzeros for the full-batch products (CPU).

MNIST rows are ~81 % exact zeros, and a zero input adds exactly zero to z and to its Wh gradient,
so X·Wh and Xᵀ·dZ over the nonzeros alone give the dense products' values (up to the order of
the sums; kernels/sparse.py). The rows are converted once per run: CSR of all rows (train, valid,
test) for X·Wh, and the training rows transposed by blocks for Xᵀ·dZ.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import FastMLPError
from .kernels import CSR
from .kernels import sparse as ksparse

SPARSE_MODES = ("auto", "on", "off")
# Density below which "auto" keeps the rows sparse: where the two sparse products together
# measured faster than OpenBLAS's dense ones (bench/RESULTS.md, section 7).
SPARSE_MAX_DENSITY = 0.3


class SparseRows:
    """Rows X (N, F), the first ``n_train`` of them the training rows, as their nonzeros.

    ``rows``: CSR of all rows; ``train``: CSR of the training rows; ``train_t``: those
    transposed by blocks, for Xᵀ·dZ; ``density``: the fraction of nonzero entries.
    """

    def __init__(self, X: np.ndarray, n_train: int):
        self.rows = ksparse.csr(X)
        self.n_train = n_train
        self.train = self.first(n_train)
        self.train_t = ksparse.transpose_blocks(self.train)
        self.density = ksparse.density(self.rows)

    def first(self, n: int) -> CSR:
        """Rows [0, n) as a CSR (views, no copy)."""
        nnz = int(self.rows.indptr[n])
        return CSR(self.rows.indptr[:n + 1], self.rows.indices[:nnz], self.rows.values[:nnz],
                   self.rows.n_cols)

    def matmul(self, n: int, W: Any, out: Any) -> None:
        """out (n, H) = X[:n] (n, F) @ W (F, H)."""
        ksparse.sparse_matmul(out, self.first(n), W)

    def matmul_t(self, dZ: Any, out: Any) -> None:
        """out (F, H) = X[:n_train]ᵀ @ dZ (n_train, H)."""
        ksparse.sparse_matmul_t(out, self.train, dZ, self.train_t)


def density_of(arrays: list[np.ndarray]) -> float:
    """Fraction of nonzero entries over the (N_i, F) arrays together (NaN counts as nonzero)."""
    size = sum(a.size for a in arrays)
    return sum(int(np.count_nonzero(a)) for a in arrays) / size if size else 0.0


def resolve_sparse(sparse: str, model: Any, arrays: list[np.ndarray],
                   batch_size: int | None) -> tuple[bool, str]:
    """Whether this run's full-batch products go over the nonzeros of its rows (``arrays``:
    the splits' features), and why (for logs).

    ``sparse``: "auto" chooses them for full-batch epochs on the CPU's fused kernels when the
    rows' density is below :data:`SPARSE_MAX_DENSITY`; "on" asks for them (a FastMLPError where
    they cannot run); "off" keeps the dense products.
    """
    if sparse not in SPARSE_MODES:
        raise FastMLPError(f"sparse must be one of {', '.join(SPARSE_MODES)}, got {sparse!r}")
    if sparse == "off":
        return False, "dense (asked for)"
    usable = model.backend.name == "cpu" and model.backend.fused
    if not usable or batch_size is not None:
        if sparse == "on":
            raise FastMLPError("the sparse products run full-batch epochs on the CPU with fused "
                               f"kernels only, not on {model.backend.describe()}"
                               + ("" if batch_size is None else f" with batch size {batch_size}"))
        why = ("minibatches gather dense rows" if usable else
               "the sparse products are for the CPU's fused kernels")
        return False, f"dense: {why}"
    d = density_of(arrays)
    if sparse == "on":
        return True, f"sparse (asked for; density {d:.2f})"
    if d >= SPARSE_MAX_DENSITY:
        return False, f"dense: density {d:.2f} >= {SPARSE_MAX_DENSITY}"
    return True, f"sparse: density {d:.2f} < {SPARSE_MAX_DENSITY}"
