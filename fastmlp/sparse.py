"""Sparse inputs: the rows kept as their nonzeros for the products X·Wh and Xᵀ·dZ (CPU).

MNIST rows are ~81 % exact zeros, and a zero input adds exactly zero to z and to its Wh gradient,
so X·Wh and Xᵀ·dZ over the nonzeros alone give the dense products' values (up to the order of
the sums; kernels/sparse.py). The rows are converted once per run: CSR of all rows (train, valid,
test) for X·Wh, and (full batch) the training rows transposed by blocks for Xᵀ·dZ. A minibatch
gathers its rows from the CSR into buffers sized once, and transposes them per step.

Rows mostly at one value per feature (MNIST in [−1, 1]: −1) are kept the same way around that
value c (F,): the CSR of S = X − 1·cᵀ, and X·Wh = S·Wh + 1·(cᵀ·Wh), Xᵀ·dZ = Sᵀ·dZ + c·(1ᵀ·dZ)
(kernels/offset.py, which states the rounding bound against the dense products).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .errors import FastMLPError
from .kernels import CSR
from .kernels import offset as koffset
from .kernels import sparse as ksparse

SPARSE_MODES = ("auto", "on", "off")
# Density below which "auto" keeps the rows sparse: where the two sparse products together
# measured faster than OpenBLAS's dense ones (bench/RESULTS.md, "When the sparse products win").
SPARSE_MAX_DENSITY = 0.3
OTHER_CHUNK_ROWS = 4096  # rows per pass when counting the entries other than c
# what the products' reason adds where the compiled small-batch loop runs: it reads the rows'
# nonzeros itself
COMPILED_STEPS_NOTE = " (evaluation; the compiled loop reads each row's nonzeros itself)"


class SparseRows:
    """Rows X (N, F), the first ``n_train`` of them the training rows, as their nonzeros, or
    (``constants`` c (F,) given) as the nonzeros of S = X − 1·cᵀ.

    ``rows``: CSR of all rows (of S); ``train``: CSR of the training rows; ``train_t``: those
    transposed by blocks, for Xᵀ·dZ (``full_batch`` only); ``density``: the fraction of
    nonzero entries (of S).
    """

    def __init__(self, X: np.ndarray, n_train: int, full_batch: bool = True,
                 constants: np.ndarray | None = None):
        self.constants = (None if constants is None
                          else np.ascontiguousarray(constants, X.dtype))
        self.rows = ksparse.csr(X, around=self.constants)
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
        Products(self.first(n), self.constants).matmul(W, out)

    def between(self, a: int, b: int) -> RowsView:
        """Rows [a, b) for forward passes (evaluation), as ``forward_backward``'s ``sparse``."""
        return RowsView(CSR(self.rows.indptr[a:b + 1], self.rows.indices, self.rows.values,
                            self.rows.n_cols), self.constants)

    def matmul_t(self, dZ: Any, out: Any) -> None:
        """out (F, H) = X[:n_train]ᵀ @ dZ (n_train, H)."""
        Products(self.train, self.constants).matmul_t(dZ, out, self.train_t)


class RowsView:
    """Rows of a :class:`SparseRows` for a forward pass only (no training rows)."""

    n_train = 0

    def __init__(self, rows: CSR, constants: np.ndarray | None = None):
        self.csr, self.constants = rows, constants

    def matmul(self, n: int, W: Any, out: Any) -> None:
        """out (n, H) = the rows (n, F) @ W (F, H)."""
        if n != self.csr.shape[0]:
            raise ValueError(f"the view holds {self.csr.shape[0]} rows, not {n}")
        Products(self.csr, self.constants).matmul(W, out)


class SparseBatch:
    """One minibatch's rows at a time, gathered from a :class:`SparseRows`' training rows in
    sparse form, into buffers sized once for the largest batch (no per-step allocation but
    views). Same products as :class:`SparseRows`; ``n_train``: the batch's row count."""

    def __init__(self, rows: SparseRows, batch_size: int):
        X = rows.train
        nnz = ksparse.max_rows_nnz(X, batch_size)
        self.source, self.constants = X, rows.constants
        self.buffers = CSR(np.empty(batch_size + 1, np.int64), np.empty(nnz, np.int32),
                           np.empty(nnz, X.values.dtype), X.n_cols)
        self.t_buffers = ksparse.csc_buffers(batch_size, X.n_cols, nnz, X.values.dtype)
        self.batch = self.batch_t = None
        self.n_train = 0
        self.scratch: dict[int, np.ndarray] = {}  # (H,) rows for the offset's terms, by H

    def gather(self, idx: np.ndarray) -> None:
        """Make training rows ``idx`` (B,) the batch (and its transpose for Xᵀ·dZ)."""
        self.batch = ksparse.gather_rows(self.source, idx, self.buffers)
        self.batch_t = ksparse.transpose_blocks(self.batch, out=self.t_buffers)
        self.n_train = idx.shape[0]

    def matmul(self, n: int, W: Any, out: Any) -> None:
        """out (n, H) = the batch (n, F) @ W (F, H)."""
        if n != self.n_train:
            raise ValueError(f"the batch holds {self.n_train} rows, not {n}")
        Products(self.batch, self.constants).matmul(W, out, self._row(W))

    def matmul_t(self, dZ: Any, out: Any) -> None:
        """out (F, H) = the batchᵀ @ dZ (B, H)."""
        Products(self.batch, self.constants).matmul_t(dZ, out, self.batch_t, self._row(dZ))

    def _row(self, A: np.ndarray) -> np.ndarray:
        # an (H,) scratch row of A's dtype, made once (the forward and backward passes use it
        # in turn)
        H = A.shape[1]
        if H not in self.scratch:
            self.scratch[H] = np.empty(H, A.dtype)
        return self.scratch[H]


class Products(NamedTuple):
    """The products X·Wh and Xᵀ·dZ of rows held as a CSR: of X itself (``constants`` None,
    kernels/sparse.py), or of S = X − 1·cᵀ with c = ``constants`` (kernels/offset.py)."""

    rows: CSR
    constants: np.ndarray | None

    def matmul(self, W: np.ndarray, out: np.ndarray, row: np.ndarray | None = None) -> None:
        """out (N, H) = X @ W (F, H); ``row``: (H,) scratch (offset only)."""
        if self.constants is None:
            ksparse.sparse_matmul(out, self.rows, W)
        else:  # S·W + 1·(cᵀ·W): rounding bound in kernels/offset.py
            koffset.offset_matmul(out, koffset.OffsetRows(self.rows, self.constants, 0.0), W,
                                  row=row)

    def matmul_t(self, dZ: np.ndarray, out: np.ndarray, transposed: ksparse.CSCBlocks | None,
                 column_sums: np.ndarray | None = None) -> None:
        """out (F, H) = Xᵀ @ dZ (N, H); ``transposed``: the rows' transpose_blocks;
        ``column_sums``: (H,) scratch (offset only)."""
        if self.constants is None:
            ksparse.sparse_matmul_t(out, self.rows, dZ, transposed)
        else:  # Sᵀ·dZ + c·(1ᵀ·dZ): rounding bound in kernels/offset.py
            koffset.offset_matmul_t(out, koffset.OffsetRows(self.rows, self.constants, 0.0),
                                    dZ, transposed, column_sums)


def density_of(arrays: list[np.ndarray], constants: np.ndarray | None = None) -> float:
    """Fraction of nonzero entries over the (N_i, F) arrays together (NaN counts as nonzero);
    with ``constants`` c (F,), of the entries other than c (those of S = X − 1·cᵀ)."""
    size = sum(a.size for a in arrays)
    if constants is None:
        return sum(int(np.count_nonzero(a)) for a in arrays) / size if size else 0.0
    return int(other_counts(arrays, constants).sum()) / size if size else 0.0


def other_counts(arrays: list[np.ndarray], c: np.ndarray) -> np.ndarray:
    """(F,) int64: per feature, the entries of the (N_i, F) arrays other than c (F,) (NaN counts
    as other), counted in chunks of rows (no N×F temporary)."""
    counts = np.zeros(c.shape[0], np.int64)
    for a in arrays:
        ca = c.astype(a.dtype, copy=False)
        for i in range(0, a.shape[0], OTHER_CHUNK_ROWS):
            counts += np.count_nonzero(a[i:i + OTHER_CHUNK_ROWS] != ca, axis=0)
    return counts


class Choice(NamedTuple):
    """What :func:`resolve_sparse` decided: ``products`` ("dense", "sparse" or "offset"), why
    (``reason``, for logs) and, for "offset", c (``constants``, (F,) in the rows' dtype)."""

    products: str
    reason: str
    constants: np.ndarray | None = None


def resolve_sparse(sparse: str, model: Any, arrays: list[np.ndarray],
                   compiled: bool = False) -> Choice:
    """Which products this run's rows take (``arrays``: the splits' features, train first),
    and why (for logs): over the rows' nonzeros ("sparse"), over the nonzeros of S = X − 1·cᵀ
    ("offset", c each feature's most frequent value over the training rows), or "dense".

    ``sparse``: "auto" chooses on the CPU's fused kernels by the density of the nonzeros: of X
    where c = 0 (and where the rows are mostly zeros already and no feature has a nonzero value
    in most rows: a c the majority does not show could only trim features more than half
    nonzero), else of S; below :data:`SPARSE_MAX_DENSITY` the sparse or the offset products.
    "on" asks for products over nonzeros (a FastMLPError where they cannot run): the offset
    ones where S is that sparse, else the sparse ones. "off" keeps the dense products.
    ``compiled``: the epochs run the compiled small-batch loop, which reads each row's nonzeros
    (of X, or of S around c) itself; the choice is then the evaluation's products' (and c the
    loop's): the reason says so (:data:`COMPILED_STEPS_NOTE`).
    """
    if sparse not in SPARSE_MODES:
        raise FastMLPError(f"sparse must be one of {', '.join(SPARSE_MODES)}, got {sparse!r}")
    if sparse == "off":
        return Choice("dense", "dense (asked for)")
    if not (model.backend.name == "cpu" and model.backend.fused):
        if sparse == "on":
            raise FastMLPError("the sparse products run on the CPU with fused kernels only, "
                               f"not on {model.backend.describe()}")
        return Choice("dense", "dense: the sparse products are for the CPU's fused kernels")
    d = density_of(arrays)
    found = _constants(arrays, d)
    if found is None:  # c = 0, or no c makes the rows sparse: the nonzeros of X decide
        if sparse == "auto" and d >= SPARSE_MAX_DENSITY:
            choice = Choice("dense", f"dense: density {d:.2f} >= {SPARSE_MAX_DENSITY}")
        else:
            choice = Choice("sparse", f"sparse (asked for; density {d:.2f})" if sparse == "on"
                            else f"sparse: density {d:.2f} < {SPARSE_MAX_DENSITY}")
    else:
        c, d_c = found
        around = f"around c ({describe_constants(c)})"
        if d_c < SPARSE_MAX_DENSITY:
            choice = Choice("offset", f"offset{' (asked for)' if sparse == 'on' else ''}: "
                            f"density {d_c:.2f} {around}", c)
        elif sparse == "on":
            choice = Choice("sparse", f"sparse (asked for; density {d:.2f}; {d_c:.2f} {around})")
        else:
            choice = Choice("dense", f"dense: density {d_c:.2f} {around} >= "
                            f"{SPARSE_MAX_DENSITY}")
    if compiled:
        return choice._replace(reason=choice.reason + COMPILED_STEPS_NOTE)
    return choice


def _constants(arrays: list[np.ndarray], d: float) -> tuple[np.ndarray, float] | None:
    """(c, the density of S around it): c (F,) of the training rows ``arrays[0]``
    (:func:`kernels.offset.feature_constants`); or None where the products need none: c = 0;
    or a majority shows no nonzero c while the rows' ``d`` (density of nonzeros) is below
    :data:`SPARSE_MAX_DENSITY`; or no c could bring S's density below it (each feature's most
    frequent value held by at most half the training rows leaves at least half of them in S).
    Sorts only features with no majority value."""
    train = arrays[0]
    n = train.shape[0]
    found = koffset.majority_constants(train)
    c, held = found
    if not c[held].any() and d < SPARSE_MAX_DENSITY:
        return None
    size = sum(a.size for a in arrays)
    counts = other_counts(arrays, c)  # exact where held
    if not size or (counts[held].sum() + (~held).sum() * (n - n // 2)) / size >= \
            SPARSE_MAX_DENSITY:
        return None
    holding = np.zeros_like(counts)
    c = koffset.feature_constants(train, found=found, counts=holding)
    if not c.any():
        return None
    rest = np.flatnonzero(~held)  # recounted around their sorted-out c (the other splits')
    if rest.size:
        counts[rest] = n - holding[rest] + other_counts([a[:, rest] for a in arrays[1:]],
                                                        c[rest])
    return c, int(counts.sum()) / size


def describe_constants(c: np.ndarray) -> str:
    """c in words for logs: its most common value and on how many features."""
    values, counts = np.unique(c, return_counts=True)
    return (f"most often {values[np.argmax(counts)]:g}, {int(counts.max())} of {c.size} "
            f"features")
