"""Minibatches as blocked compiled epochs (kernels/minibatch.py): the per-step path's steps
(gather, the two products, the fused head, the momentum update of every parameter) run many to
a compiled call, with no Python and no allocation per step. CPU fused kernels, 2 ≤ B ≤ 512; the
plan picks it where it measured faster than the per-step path and the compiled steps
(:func:`fastmlp.plan.choose_strategy`).

The training rows go to the kernel in one of three forms: dense, their nonzeros ("sparse"), or
their entries off a per-feature constant ("offset": MNIST in [−1, 1], standardised rows;
kernels/offset.py). Under a plan the form is the plan's products' (:data:`ROWS_OF_PRODUCTS`),
and the kernel reads the products' own CSR (and c); :meth:`CompiledMinibatch.on_rows`
(benchmarks, tests) can also choose it by density.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from ..errors import FastMLPError, is_int
from ..kernels import CSR, runtime
from ..kernels import minibatch as kmb
from ..kernels import offset as koffset
from ..kernels import sparse as ksparse
from ..model import CHUNK_ROWS, MLP, flat_views
from .base import EpochStrategy, TrainingRows

ROW_FORMS = ("auto", "dense", "sparse", "offset")
# the plan's products -> the form the kernel reads the training rows in: the one mapping
ROWS_OF_PRODUCTS = {"dense": "dense", "sparse": "sparse", "offset": "offset"}
# Density of the rows' nonzeros (or of their entries off the constant) below which "auto" reads
# only those: the sparse products' crossover (fastmlp/sparse.py's SPARSE_MAX_DENSITY).
MAX_DENSITY = 0.3
# Below this many hidden units the plan (and "auto") reads sparse and offset rows (MNIST in
# [0, 1], in [-1, 1]) dense for the compiled minibatch epoch: its gemm products beat its sparse
# ones there. Quiet 2-core EPYC, 20 000 MNIST rows, float32, B 10-100, the best team size of each
# form (bench/minibatch_forms.py, bench/results/minibatch_forms/team_quiet.txt): dense over
# sparse/offset at H = 64: 1.41-1.74x; H = 300: 0.88-1.17x (a tie: the rows' form kept);
# H = 1000: 0.74-1.26x
SPARSE_MIN_HIDDEN = 256
MAX_BATCH = 512  # the kernel's tested range; the per-step path serves larger batches
# Most blocks (and threads) a step is split into: two, the most measured (2-core machines); a
# team spins at its barriers, so more threads than free cores (a CPU quota, other processes)
# would cost more than they give
MAX_BLOCKS = 2
CALL_SECONDS = 0.1  # a call's length to aim at: the progress bar moves, Ctrl-C is heard soon


def rows_form(products: str) -> str:
    """The form the kernel reads the rows in under a plan whose products are ``products``."""
    try:
        return ROWS_OF_PRODUCTS[products]
    except KeyError:
        raise FastMLPError(f"the compiled minibatch epoch has no form of the rows for the "
                           f"products {products!r}") from None


def threads_for(H: int, B: int, rows: str = "sparse") -> int:
    """Blocks of hidden units for an epoch of steps of B rows and H hidden units read in the
    form ``rows`` ("dense", "sparse", "offset"), each run by a thread of the call's team where
    the machine has that many (Numba's thread count): one per grain of B·H
    (``runtime.TEAM_STEP_DENSE`` or ``TEAM_STEP_SPARSE``), at most :data:`MAX_BLOCKS`. The team
    meets at two barriers a step, which small steps cannot pay for. Measured on the 2-core
    development machine, one thread against two (bench/minibatch_forms.py,
    bench/results/minibatch_forms/): dense rows won from B·H ~2 000, sparse ones from ~6 000.
    The count depends on B·H only, not on the machine: dense rows' bits depend on the blocks
    (OpenBLAS sums a product cut into column blocks in another order), so the same run gives
    the same bits on any number of cores."""
    grain = runtime.TEAM_STEP_DENSE if rows == "dense" else runtime.TEAM_STEP_SPARSE
    return max(1, min(MAX_BLOCKS, B * H // grain))


def choose_rows(X: np.ndarray, rows: str = "auto", nonzeros: CSR | None = None,
                constants: np.ndarray | None = None, n_hidden: int | None = None
                ) -> tuple[str, CSR | None, np.ndarray | None, str]:
    """The form the kernel reads the rows X (n, F) in: ("dense" | "sparse" | "offset", the CSR
    of the nonzeros or of X − 1·cᵀ, c, a one-line reason for logs). ``nonzeros``: the CSR
    built already (the products'): of X, or of X − 1·cᵀ with ``constants`` c (F,); used
    rather than built again where it is of the form asked for. "auto" with ``n_hidden`` below
    ``SPARSE_MIN_HIDDEN``: dense, the plan's rule (its gemm products win)."""
    if rows not in ROW_FORMS:
        raise FastMLPError(f"rows must be one of {', '.join(ROW_FORMS)}, got {rows!r}")
    if rows == "dense":
        return "dense", None, None, "dense (asked for)"
    if rows == "auto" and n_hidden is not None and n_hidden < SPARSE_MIN_HIDDEN:
        return "dense", None, None, (f"dense: {n_hidden} hidden units < "
                                     f"{SPARSE_MIN_HIDDEN}")
    if rows == "sparse":  # no constants to find
        csr = ksparse.csr(X) if nonzeros is None or constants is not None else nonzeros
        return "sparse", csr, None, f"sparse: density {ksparse.density(csr):.2f}"
    if rows == "offset" and nonzeros is not None and constants is not None:
        return "offset", nonzeros, constants, (f"offset: density {ksparse.density(nonzeros):.2f}"
                                               " around the products' c")
    c = koffset.feature_constants(X)
    if rows == "auto" and not np.any(c):
        d = _density(X, c)
        if d >= MAX_DENSITY:
            return "dense", None, None, f"dense: density {d:.2f} >= {MAX_DENSITY}"
        return ("sparse", ksparse.csr(X) if nonzeros is None else nonzeros, None,
                f"sparse: density {d:.2f}")
    d = _density(X, c)  # counted before S is built: no n×F-entry CSR for dense rows
    if rows == "auto" and d >= MAX_DENSITY:
        return "dense", None, None, (f"dense: density {d:.2f} around the features' most "
                                     f"frequent values >= {MAX_DENSITY}")
    values, counts = np.unique(c, return_counts=True)
    common = values[np.argmax(counts)]
    return "offset", koffset.offset_rows(X, c).S, c, (
        f"offset: density {d:.2f} around c (most often {common:g}, {int(counts.max())} of "
        f"{c.size} features)")


def _density(X: np.ndarray, c: np.ndarray) -> float:
    """Fraction of X's (n, F) entries other than c (F,) (NaN counts as other), in row chunks."""
    if not X.size:
        return 0.0
    other = 0
    for a in range(0, X.shape[0], 4096):
        other += int(np.count_nonzero(X[a:a + 4096] != c))
    return other / X.size


class CompiledMinibatch(EpochStrategy):
    """Minibatch epochs as compiled calls of many steps (kernels/minibatch.py).

    Owns the kernel's workspace (``ws``, for ``blocks`` blocks of hidden units), the
    velocity's views, the training rows in the kernel's form (``mode``; ``csr`` and ``c`` for
    sparse and offset rows) and the steps per call (``steps_per_call``, grown while calls take
    under :data:`CALL_SECONDS`). ``rows_form``: "auto" | "dense" | "sparse" | "offset"
    (:func:`choose_rows`; a plan gives :func:`rows_form` of its products); ``threads``: the
    blocks of hidden units (None: :func:`threads_for`), run on as many threads as Numba has,
    at most. The velocity is the trainer's flat (P,) buffer, updated in place.
    """

    def __init__(self, model: MLP, rows: TrainingRows, velocity: Any, *, batch_size: int,
                 threads: int | None = None, rows_form: str = "auto", **kwargs: Any):
        if model.backend.name != "cpu":
            raise FastMLPError("the compiled minibatch epoch runs on the CPU only, not on "
                               f"{model.backend.describe()}")
        n = rows.n_train
        if not is_int(batch_size) or not 2 <= batch_size <= min(MAX_BATCH, max(n, 2)):
            raise FastMLPError(f"the compiled minibatch epoch takes batch sizes from 2 to "
                               f"{MAX_BATCH} (and at most the {n} rows), got {batch_size!r}")
        super().__init__(model, rows, velocity, **kwargs)
        self.batch_size = int(batch_size)
        if threads is not None and (not is_int(threads) or threads < 1):
            raise FastMLPError(f"threads must be a positive integer, got {threads!r}")
        if velocity.shape != (model.n_params,) or velocity.dtype != np.dtype(model.dtype):
            raise FastMLPError(f"velocity must be a flat ({model.n_params},) {model.dtype} "
                               f"array, got {velocity.shape} {velocity.dtype}")
        self.velocity_views = flat_views(velocity, model.shapes)
        X_train = rows.X[:n]  # the kernel reads training rows only: order's indices are < n
        # the products' CSR of the training rows (of S around their c for the offset ones)
        nonzeros, constants = ((rows.sparse.train, rows.sparse.constants)
                               if rows.sparse is not None else (None, None))
        self.mode, csr, c, self.rows_reason = choose_rows(X_train, rows_form, nonzeros,
                                                          constants, model.n_hidden)
        if threads is None:
            threads = threads_for(model.n_hidden, self.batch_size, self.mode)
        # blocks of hidden units per step (the dense products' bits depend on them), at most a
        # thread each; fewer threads than blocks (Numba's count lowered) run them in turn
        self.blocks = min(int(threads), model.n_hidden)
        self.threads = min(self.blocks, numba.get_num_threads())
        dt = np.dtype(model.dtype)
        if csr is None:
            csr = CSR(np.zeros(1, np.int64), np.zeros(1, np.int32), np.zeros(1, dt), model.n_in)
        self.csr = csr
        self.c = np.zeros(model.n_in, dt) if c is None else c
        nnz = ksparse.max_rows_nnz(csr, self.batch_size) if self.mode != "dense" else 0
        self.ws = kmb.workspace(self.batch_size, model.n_in, model.n_hidden, model.n_out, dt,
                                nnz, self.blocks)
        self.steps_per_call = max(1, 2048 // self.batch_size)  # grown while calls are quick

    @classmethod
    def on_rows(cls, model: MLP, X_train: np.ndarray, y_train: np.ndarray, batch_size: int,
                lr: float, momentum: float, threads: int | None = None,
                velocity: np.ndarray | None = None, velocity_init: float = 1e-5,
                rows: str = "auto", seed: int = 0) -> CompiledMinibatch:
        """The strategy on training rows ``X_train`` (n, F), ``y_train`` (n,) alone, without a
        trainer (benchmarks, tests): run epochs with :meth:`train_order`. ``velocity``: a flat
        (P,) buffer to update in place, or None for one filled with ``velocity_init``."""
        n = X_train.shape[0] if hasattr(X_train, "shape") else 0
        X = np.ascontiguousarray(X_train, dtype=model.dtype)
        if X.ndim != 2 or X.shape[1] != model.n_in:
            raise FastMLPError(f"X_train must have shape (n, {model.n_in}), got {X.shape}")
        y = np.ascontiguousarray(y_train, dtype=np.int32)
        if y.shape != (n,):
            raise FastMLPError(f"y_train must have shape ({n},), got {y.shape}")
        if n and (y.min() < 0 or y.max() >= model.n_out):
            raise FastMLPError(f"labels must lie in [0, {model.n_out})")
        if velocity is None:
            velocity = np.full(model.n_params, velocity_init, model.dtype)
        training = TrainingRows(X, y, (n, 0, 0), (n, n, n))
        return cls(model, training, velocity, batch_size=batch_size, threads=threads,
                   rows_form=rows, lr=float(lr), mu=float(momentum), seed=seed,
                   scratch_rows=max(1, min(n, CHUNK_ROWS)))

    def compile_kernels(self) -> None:
        if not self.kernels_ready:  # steps [0, 0): the kernel with this run's types, no work
            self._call(np.zeros(self.rows.n_train, np.int64), 0, 0, np.zeros(2, np.float64))
        super().compile_kernels()

    def run_epoch(self, evaluate: bool,
                  progress: Callable[[float], None] | None = None) -> dict[str, float]:
        rows = self.rows
        train_stats = self.begin_epoch(evaluate)
        # the per-step path's draw: the same seeded order, step for step
        self.train_order(self.rng.permutation(rows.n_train), progress, train_stats)
        return self.epoch_metrics(self.stats, evaluate)

    def train_order(self, order: np.ndarray, progress: Callable[[float], None] | None = None,
                    stats: np.ndarray | None = None) -> tuple[float, float]:
        """One epoch over the training rows in ``order`` (n,) (a permutation of [0, n); step s
        takes ``order[s·B : (s+1)·B]``, the last batch possibly short). Each batch's summed
        cross-entropy and correct count, at the weights its step started from, is added to
        ``stats`` (2,) float64 (None: zeros) batch by batch, as the per-step path adds them;
        returns ``stats`` then. ``progress(fraction)`` is called after each call but the
        last."""
        order = np.ascontiguousarray(order, dtype=np.int64)
        n = self.rows.n_train
        if order.shape != (n,):
            raise FastMLPError(f"order must have shape ({n},), got {order.shape}")
        if stats is None:
            stats = np.zeros(2, np.float64)
        n_steps = -(-n // self.batch_size)
        s = 0
        while s < n_steps:
            stop = min(n_steps, s + self.steps_per_call)
            start = time.perf_counter()
            self._run(order, s, stop, stats)
            if (time.perf_counter() - start < CALL_SECONDS
                    and stop - s == self.steps_per_call):
                self.steps_per_call *= 2  # a few calls a second: the bar moves, Ctrl-C heard
            s = stop
            if progress is not None and s < n_steps:
                progress(s / n_steps)
        return float(stats[0]), float(stats[1])

    def _run(self, order: np.ndarray, s0: int, s1: int, stats: np.ndarray) -> None:
        self._call(order, s0, s1, stats)  # (tests stop an epoch here)

    def _call(self, order: np.ndarray, s0: int, s1: int, stats: np.ndarray) -> None:
        kmb.train_chunk(self.mode, self.rows.X, self.rows.y,
                        (self.csr.indptr, self.csr.indices, self.csr.values), self.c, order, s0,
                        s1, self.batch_size, self.model.views, self.velocity_views,
                        self.model.activation, self.lr, self.mu, self.ws, stats,
                        self.threads)

    def describe(self) -> dict[str, Any]:
        """What runs, for logs: the rows' form and why, batch size, threads."""
        return {"rows": self.mode, "reason": self.rows_reason, "batch_size": self.batch_size,
                "threads": self.threads}
