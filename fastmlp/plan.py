"""The execution plan of a run, decided once: which epoch strategy, which products, how many
threads, and why each.

:func:`make_plan` is the only place these choices are made. The run header (``loop:`` and
``products:``), the bench rows and history.json print the :class:`Plan`; the
:class:`~fastmlp.trainer.Trainer` builds the strategy it names (fastmlp/strategies/).

Epoch strategies (:data:`STRATEGIES`):

- ``full-batch``: every training row in one gradient step per epoch (the course);
- ``per-step``: minibatches, one Python-driven step each (gather, two products, the fused
  head, momentum) through the backend (CPU or GPU): the reference implementation;
- ``compiled-steps``: minibatches as compiled calls of many whole steps (kernels/steps.py),
  CPU fused kernels only; a step touches only the rows of Wh its batch's nonzeros use;
- ``compiled-minibatch``: blocked compiled minibatch epochs (kernels/minibatch.py,
  fastmlp/strategies/compiled_minibatch.py), CPU fused kernels, 2 ≤ B ≤ 512; the rows in the
  form the products name.

Which minibatch strategy runs (:func:`choose_strategy`) was decided by measurement
(``bench/minibatch_plan.py``, ``bench/results/minibatch_plan/``); each is exact to the per-step
path (float64 to 1e-10), so the choice changes speed and rounding only.

Products (:data:`PRODUCTS`): ``dense`` (BLAS), ``sparse`` (over the rows' nonzeros,
fastmlp/sparse.py) or ``offset`` (rows sparse around a constant c per feature: over the
nonzeros of S = X − 1·cᵀ, plus the terms of c; kernels/offset.py), on every strategy built
here: full batch, per step, and the two compiled loops, which read the rows' nonzeros (S's rows
and c) themselves (the products then serve their evaluation passes).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from . import sparse as sparse_products
from .errors import FastMLPError

STRATEGIES = ("full-batch", "per-step", "compiled-steps", "compiled-minibatch")
PRODUCTS = ("dense", "sparse", "offset")

# Rows × hidden units per step up to which the compiled small-batch loop beats the per-step
# path's products (measured crossovers: H = 1000 dense between B = 4 and 10, H = 300 MNIST
# between B = 16 and 32; bench/RESULTS.md). Per-sample steps (B = 1) always run compiled.
COMPILED_MAX_WORK = 6000
# Where the compiled minibatch epoch runs instead: measured with bench/minibatch_plan.py
# (bench/results/minibatch_plan/: six runs on the shared 2-core EPYC, load 1.5-7, float32,
# 784-H-10 relu, training epochs alternated between the strategies; "x" is the blocked kernel's
# minimum epoch time over the other's). Where runs disagree the rule follows most of them; ties
# within a few percent go to the simpler rule.
MINIBATCH_MAX_BATCH = 512  # its kernel's range; the per-step path serves larger batches
# Rows' nonzeros, B < 16: the compiled steps win (B = 2-6: 1.16-3.33x, B = 10: 0.87-1.31x):
# a step updates only the rows of Wh its batch's nonzeros use (~150 of 784 per MNIST row), the
# blocked kernel all of Wh every step. From B = 16 the blocked kernel wins (0.48-0.86x)
SPARSE_MINIBATCH_MIN_BATCH = 16
# Rows' nonzeros, H >= 600: the per-step path's threaded sparse products tie or win (H = 600:
# 0.93-1.09x, H = 1000: 0.98-1.26x, B 16-512); H <= 300: the blocked kernel wins (0.66-0.99x)
SPARSE_MINIBATCH_MAX_HIDDEN = 600
# Dense and offset rows, B < 4 with H > 64: the compiled steps tie or win (B = 2: H = 300
# 1.06-1.31x, H = 1000 1.46-1.57x; H = 64: dense 0.68-0.75x, offset 1.03x). From B = 4 (dense;
# offset: measured from B = 10) the blocked kernel wins against both (0.38-0.97x)
DENSE_MINIBATCH_MIN_BATCH = 4
DENSE_SMALL_HIDDEN = 64
# Dense rows, B > 256: the per-step path's BLAS products (two threads) win (H = 300, B = 384-512:
# 1.38-1.76x; H = 64 and 1000 at B = 384-512: 0.64-1.49x, mixed). Up to B = 256 the blocked
# kernel wins at most points in every run (0.30-0.99x); the per-step path's minimum won at
# H = 64 B = 256 and H = 300 B = 100-256 in one run each (1.17-2.49x), the blocked kernel there
# in the other two or three (0.47-0.99x). Offset rows: the blocked kernel wins or ties the
# per-step path at every B from 10 to 512 (0.52-0.97x; H = 1000, B = 256-512: 1.00-1.01x)
DENSE_MINIBATCH_MAX_BATCH = 256


@dataclass(frozen=True)
class Plan:
    """How a run trains, with the reason for each choice (the texts the run header prints).

    ``device``: the backend (``Backend.describe()``); ``batch_size``: None for full batch (also
    when B is every training row); ``strategy`` (one of :data:`STRATEGIES`) and
    ``strategy_reason``; ``products`` (one of :data:`PRODUCTS`) and ``products_reason``;
    ``threads``: the compiled loop's Numba threads (None on other strategies, which use the
    backend's own); ``constants``: c (F,) of the ``offset`` products (None otherwise; not
    recorded: the reason names it).
    """

    device: str
    batch_size: int | None
    strategy: str
    strategy_reason: str
    products: str
    products_reason: str
    threads: int | None = None
    constants: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def compiled(self) -> bool:
        """Minibatch epochs as compiled calls of many steps (any compiled strategy)."""
        return self.strategy.startswith("compiled")

    @property
    def sparse(self) -> bool:
        """The products go over nonzeros: of the rows (``sparse``) or of the rows less c
        (``offset``)."""
        return self.products != "dense"

    def record(self) -> dict[str, Any]:
        """The plan as history.json records it (JSON-ready; c only as the reason names it)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "constants"}

    def header(self) -> list[str]:
        """The run header's ``loop:`` and ``products:`` lines."""
        return [f"loop:     {self.strategy_reason}", f"products: {self.products_reason}"]

    def label(self) -> str:
        """One phrase for a bench row: products, then (minibatch) the loop and its threads."""
        text = self.products_reason
        if self.batch_size is not None:
            text += f", {self.strategy_reason}"
            if self.threads is not None:
                text += f", {self.threads} thread{'s' if self.threads > 1 else ''}"
        return text


def full_batch_size(batch_size: int | None, n_train: int) -> int | None:
    """``batch_size`` as the trainer runs it: None (full batch) when it is every training row."""
    return None if batch_size in (None, n_train) else int(batch_size)


def compiled_choice(n_hidden: int, batch_size: int, products: str = "dense") -> tuple[str, str]:
    """The faster compiled strategy for minibatches of ``batch_size`` rows, ``n_hidden`` hidden
    units and ``products`` (one of :data:`PRODUCTS`), and why: the compiled minibatch epoch for
    2 ≤ B ≤ :data:`MINIBATCH_MAX_BATCH` except where the compiled steps measured faster (small
    batches of sparse rows, B = 2-3 dense or offset rows with more than
    :data:`DENSE_SMALL_HIDDEN` hidden units); the compiled steps for B = 1 and larger batches."""
    B, H = batch_size, n_hidden
    if B == 1:
        return "compiled-steps", "compiled small-batch loop: per-sample steps"
    if B > MINIBATCH_MAX_BATCH:
        return "compiled-steps", (f"compiled small-batch loop: batch size {B} > "
                                  f"{MINIBATCH_MAX_BATCH}")
    if products == "sparse" and B < SPARSE_MINIBATCH_MIN_BATCH:
        return "compiled-steps", (f"compiled small-batch loop: the rows' nonzeros, batch size "
                                  f"{B} < {SPARSE_MINIBATCH_MIN_BATCH}")
    if products != "sparse" and B < DENSE_MINIBATCH_MIN_BATCH and H > DENSE_SMALL_HIDDEN:
        return "compiled-steps", (f"compiled small-batch loop: batch size {B} < "
                                  f"{DENSE_MINIBATCH_MIN_BATCH}, hidden units {H} > "
                                  f"{DENSE_SMALL_HIDDEN}")
    return "compiled-minibatch", f"compiled minibatch epochs: batch size {B}, {products} rows"


def per_step_wins(n_hidden: int, batch_size: int, products: str = "dense") -> str | None:
    """Why the per-step path measured faster than the compiled minibatch epoch here (a phrase
    for logs), or None where it did not (see :data:`SPARSE_MINIBATCH_MAX_HIDDEN`,
    :data:`DENSE_MINIBATCH_MAX_BATCH`)."""
    if products == "sparse" and n_hidden >= SPARSE_MINIBATCH_MAX_HIDDEN:
        return f"the rows' nonzeros, hidden units {n_hidden} >= {SPARSE_MINIBATCH_MAX_HIDDEN}"
    if products == "dense" and batch_size > DENSE_MINIBATCH_MAX_BATCH:
        return f"dense rows, batch size {batch_size} > {DENSE_MINIBATCH_MAX_BATCH}"
    return None  # offset rows: it wins or ties at every batch size it takes


def choose_strategy(compiled: bool | None, backend: Any, n_hidden: int,
                    batch_size: int | None, products: str = "dense") -> tuple[str, str]:
    """The epoch strategy and why (for logs). ``batch_size`` None: full batch; ``products``:
    the plan's (one of :data:`PRODUCTS`), which the rule depends on.

    ``compiled`` None chooses, on the CPU with the fused kernels: the compiled minibatch epoch
    where it measured faster than both the compiled steps and the per-step path (2 ≤ B ≤ 512;
    :func:`compiled_choice`, :func:`per_step_wins`); elsewhere the compiled steps
    for B = 1 or B·H up to :data:`COMPILED_MAX_WORK`, else the per-step path. True asks for a
    compiled strategy, the faster of the two (:func:`compiled_choice`; a FastMLPError where none
    can run); False keeps the per-step path."""
    if batch_size is None:
        return "full-batch", "full batch"
    usable = backend.name == "cpu" and backend.fused
    if compiled is None:
        if not usable:
            return "per-step", "per-step path: the compiled loop is for the CPU's fused kernels"
        strategy, why = compiled_choice(n_hidden, batch_size, products)
        work = batch_size * n_hidden
        if strategy == "compiled-minibatch":
            per_step_why = per_step_wins(n_hidden, batch_size, products)
            if per_step_why is None:
                return strategy, why
            if work > COMPILED_MAX_WORK:
                return "per-step", f"per-step path: {per_step_why}"
        if batch_size > 1 and work > COMPILED_MAX_WORK:
            return "per-step", (f"per-step path: batch size x hidden units {work} > "
                                f"{COMPILED_MAX_WORK}")
        return "compiled-steps", (f"compiled small-batch loop: batch size x hidden units "
                                  f"{work} <= {COMPILED_MAX_WORK}" if batch_size > 1 else
                                  "compiled small-batch loop: per-sample steps")
    if compiled and not usable:
        raise FastMLPError("the compiled small-batch loop runs on the CPU with fused kernels "
                           f"only, not on {backend.describe()}")
    if not compiled:
        return "per-step", "per-step path (asked for)"
    strategy, why = compiled_choice(n_hidden, batch_size, products)
    if strategy == "compiled-steps":
        return strategy, "compiled small-batch loop (asked for)"
    return strategy, f"compiled minibatch epochs (asked for): batch size {batch_size}, " \
        f"{products} rows"


def make_plan(model: Any, features: list[np.ndarray], *, batch_size: int | None,
              compiled: bool | None = None, sparse: str = "auto") -> Plan:
    """The plan of training ``model`` (an :class:`~fastmlp.model.MLP`) on rows whose splits'
    features are ``features`` (train first): ``batch_size`` (None or every training row: full
    batch), ``compiled`` (None chooses, see :func:`choose_strategy`) and ``sparse`` ("auto",
    "on", "off"; see :func:`fastmlp.sparse.resolve_sparse`). FastMLPError where a choice that
    was asked for cannot run here."""
    backend = model.backend
    batch = full_batch_size(batch_size, len(features[0]))
    # the products first: which minibatch strategy wins depends on them
    products = sparse_products.resolve_sparse(sparse, model, features)
    strategy, strategy_reason = choose_strategy(compiled, backend, model.n_hidden, batch,
                                                products.products)
    threads = None
    products_reason = products.reason
    if strategy == "compiled-steps":
        from .kernels import steps

        threads = steps.threads_for(model.n_hidden, batch)
        products_reason += sparse_products.COMPILED_STEPS_NOTE
    elif strategy == "compiled-minibatch":
        from .strategies.compiled_minibatch import threads_for

        threads = threads_for(model.n_hidden, batch)
    return Plan(device=backend.describe(), batch_size=batch, strategy=strategy,
                strategy_reason=strategy_reason, products=products.products,
                products_reason=products_reason, threads=threads, constants=products.constants)
