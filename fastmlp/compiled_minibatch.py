"""The compiled minibatch epoch (kernels/minibatch.py) as an object that owns its buffers.

:class:`CompiledMinibatch` runs a whole epoch of minibatch steps (2 ≤ B ≤ 512, CPU) as a few
compiled calls of many steps each, updating the model's parameters and a flat velocity buffer
(the per-step path's layout: ``flat_views(velocity, model.shapes)``) in place. The rows go to
the kernel in one of three forms, chosen once (``rows="auto"``): dense, their nonzeros
("sparse"), or their entries that differ from a per-feature constant ("offset": MNIST in
[−1, 1], standardised rows; kernels/offset.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from .errors import FastMLPError, is_int
from .kernels import CSR
from .kernels import minibatch as kmb
from .kernels import offset as koffset
from .kernels import sparse as ksparse
from .model import MLP, flat_views

ROW_FORMS = ("auto", "dense", "sparse", "offset")
# Density of the rows' nonzeros (or of their entries off the constant) below which "auto" reads
# only those: the sparse products' crossover (fastmlp/sparse.py's SPARSE_MAX_DENSITY).
MAX_DENSITY = 0.3
MAX_BATCH = 512  # the kernel's tested range; the per-step path serves larger batches
# B·H from which steps split their hidden units between threads. None: never by default. On
# the shared 2-core development machine (load 12-13) two threads ran at 0.35-0.84x of one at
# every point of the JAX comparison (784-{64,300,1000}-10, B 10-100, MNIST and dense rows;
# bench/minibatch_threads.py): re-measure on a quiet machine and set the crossover here.
THREADED_STEP_WORK: int | None = None
CALL_SECONDS = 0.1  # a call's length to aim at: the progress bar moves, Ctrl-C is heard soon


def threads_for(H: int, B: int) -> int:
    """Threads for an epoch of steps of B rows and H hidden units: Numba's all from
    :data:`THREADED_STEP_WORK` rows × hidden units per step, else one (each step is one parallel
    region, whose wake-up costs more than a small step's work)."""
    if THREADED_STEP_WORK is None or B * H < THREADED_STEP_WORK:
        return 1
    return numba.get_num_threads()


def choose_rows(X: np.ndarray, rows: str = "auto") -> tuple[str, CSR | None, np.ndarray | None,
                                                           str]:
    """The form the kernel reads the rows X (n, F) in: ("dense" | "sparse" | "offset", the CSR
    of the nonzeros or of X − 1·cᵀ, c, a one-line reason for logs)."""
    if rows not in ROW_FORMS:
        raise FastMLPError(f"rows must be one of {', '.join(ROW_FORMS)}, got {rows!r}")
    if rows == "dense":
        return "dense", None, None, "dense (asked for)"
    c = koffset.feature_constants(X)
    all_zero = not np.any(c)
    if rows == "sparse" or (rows == "auto" and all_zero):
        d = _density(X, np.zeros_like(c))
        if rows == "auto" and d >= MAX_DENSITY:
            return "dense", None, None, f"dense: density {d:.2f} >= {MAX_DENSITY}"
        return "sparse", ksparse.csr(X), None, f"sparse: density {d:.2f}"
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


class CompiledMinibatch:
    """Minibatch epochs of ``model`` on the training rows ``X_train`` (n, F), ``y_train`` (n,)
    as compiled calls of many steps (kernels/minibatch.py).

    ``velocity``: the flat (P,) velocity buffer to update in place (the per-step path's
    layout); None allocates one filled with ``velocity_init``. ``threads``: the hidden units
    split between that many threads in each step (None: :func:`threads_for`).
    ``rows``: "auto" | "dense" | "sparse" | "offset" (:func:`choose_rows`).
    """

    def __init__(self, model: MLP, X_train: np.ndarray, y_train: np.ndarray, batch_size: int,
                 lr: float, momentum: float, threads: int | None = None,
                 velocity: np.ndarray | None = None, velocity_init: float = 1e-5,
                 rows: str = "auto"):
        if model.backend.name != "cpu":
            raise FastMLPError("the compiled minibatch epoch runs on the CPU only, not on "
                               f"{model.backend.describe()}")
        n = X_train.shape[0] if hasattr(X_train, "shape") else 0
        if not is_int(batch_size) or not 2 <= batch_size <= min(MAX_BATCH, max(n, 2)):
            raise FastMLPError(f"the compiled minibatch epoch takes batch sizes from 2 to "
                               f"{MAX_BATCH} (and at most the {n} rows), got {batch_size!r}")
        X = np.ascontiguousarray(X_train, dtype=model.dtype)
        if X.ndim != 2 or X.shape[1] != model.n_in:
            raise FastMLPError(f"X_train must have shape (n, {model.n_in}), got {X.shape}")
        y = np.ascontiguousarray(y_train, dtype=np.int32)
        if y.shape != (n,):
            raise FastMLPError(f"y_train must have shape ({n},), got {y.shape}")
        if n and (y.min() < 0 or y.max() >= model.n_out):
            raise FastMLPError(f"labels must lie in [0, {model.n_out})")
        self.model, self.X, self.y, self.B = model, X, y, int(batch_size)
        self.lr, self.mu = float(lr), float(momentum)
        if threads is None:
            threads = threads_for(model.n_hidden, self.B)
        if not is_int(threads) or threads < 1:
            raise FastMLPError(f"threads must be a positive integer, got {threads!r}")
        self.threads = min(int(threads), numba.get_num_threads(), model.n_hidden)
        if velocity is None:
            velocity = np.full(model.n_params, velocity_init, model.dtype)
        elif velocity.shape != (model.n_params,) or velocity.dtype != np.dtype(model.dtype):
            raise FastMLPError(f"velocity must be a flat ({model.n_params},) {model.dtype} "
                               f"array, got {velocity.shape} {velocity.dtype}")
        self.velocity = velocity
        self.velocity_views = flat_views(velocity, model.shapes)
        self.mode, csr, c, self.rows_reason = choose_rows(X, rows)
        dt = np.dtype(model.dtype)
        if csr is None:
            csr = CSR(np.zeros(1, np.int64), np.zeros(1, np.int32), np.zeros(1, dt), model.n_in)
        self.csr = csr
        self.c = np.zeros(model.n_in, dt) if c is None else c
        nnz = ksparse.max_rows_nnz(csr, self.B) if self.mode != "dense" else 0
        self.ws = kmb.workspace(self.B, model.n_in, model.n_hidden, model.n_out, dt, nnz,
                                self.threads)
        self.steps_per_call = max(1, 2048 // self.B)  # grown while calls are quick

    def run_epoch(self, order: np.ndarray,
                  progress: Callable[[float], None] | None = None) -> tuple[float, float]:
        """One epoch over the training rows in ``order`` (n,) (a permutation of [0, n); step s
        takes ``order[s·B : (s+1)·B]``, the last batch possibly short): (summed cross-entropy,
        correct count) over the epoch's batches, each at the weights its step started from.
        ``progress(fraction)`` is called after each call but the last."""
        order = np.ascontiguousarray(order, dtype=np.int64)
        n = self.X.shape[0]
        if order.shape != (n,):
            raise FastMLPError(f"order must have shape ({n},), got {order.shape}")
        stats = np.zeros(2, np.float64)
        n_steps = -(-n // self.B)
        s = 0
        while s < n_steps:
            stop = min(n_steps, s + self.steps_per_call)
            start = time.perf_counter()
            self._run(order, s, stop, stats)
            if (time.perf_counter() - start < CALL_SECONDS
                    and stop - s == self.steps_per_call):
                self.steps_per_call *= 2
            s = stop
            if progress is not None and s < n_steps:
                progress(s / n_steps)
        return float(stats[0]), float(stats[1])

    def _run(self, order: np.ndarray, s0: int, s1: int, stats: np.ndarray) -> None:
        kmb.train_chunk(self.mode, self.X, self.y,
                        (self.csr.indptr, self.csr.indices, self.csr.values), self.c, order, s0,
                        s1, self.B, self.model.views, self.velocity_views,
                        self.model.activation, self.lr, self.mu, self.ws, stats)

    def describe(self) -> dict[str, Any]:
        """What runs, for logs: the rows' form and why, batch size, threads."""
        return {"rows": self.mode, "reason": self.rows_reason, "batch_size": self.B,
                "threads": self.threads}
