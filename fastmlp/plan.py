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
# between B = 16 and 32; bench/RESULTS.md): the bound for B > MINIBATCH_MAX_BATCH. Below it the
# compiled minibatch epochs or, at small B, the compiled steps beat the per-step path (below).
COMPILED_MAX_WORK = 6000
# Which minibatch strategy runs for 2 <= B <= 512: measured with bench/minibatch_plan.py on the
# shared 2-core EPYC (bench/results/minibatch_plan/, runs 7-10 on this code: float32, 784-H-10
# relu, H 64-1000, training epochs alternated between the strategies, load 1.3-5; "x" is the
# compiled minibatch epoch's minimum time over the other's). Where runs disagree the rule
# follows most of them; ties within a few percent go to the simpler rule.
MINIBATCH_MAX_BATCH = 512  # its kernel's range; the per-step path serves larger batches
# Rows' nonzeros, B < 12: the compiled steps win (B = 2: 2.6-2.9x; B = 10: 0.95-1.26x): a step
# updates only the rows of Wh its batch's nonzeros use (~150 of 784 per MNIST row), the blocked
# kernel all of Wh every step. From B = 12 the blocked kernel wins (0.34-0.91x; H = 1000 at
# B = 12: 1.04x, a tie), and against the per-step path at every B (B 12-100: 0.28-0.78x;
# B 256-512: 0.74-1.14x, ties)
SPARSE_MINIBATCH_MIN_BATCH = 12
# Offset rows (sparse around c), B < 8: the compiled steps win or tie (B = 2-4: 1.02-1.43x;
# B = 6: 0.84-1.03x); from B = 8 the blocked kernel wins (0.36-0.91x; H = 1000 at B = 8: 1.07x)
# and against the per-step path at every B (0.35-0.99x)
OFFSET_MINIBATCH_MIN_BATCH = 8
# Dense rows, B < 4 with H > 300: the compiled steps tie or win (H = 1000, B = 2-3:
# 1.01-1.10x); at H <= 300 the blocked kernel wins from B = 2 (0.36-0.90x)
DENSE_MINIBATCH_MIN_BATCH = 4
DENSE_SMALL_HIDDEN = 300
# Dense rows, B·H above this: the per-step path's BLAS products (two threads; the blocked
# kernel's gemm runs on one) win (H = 300, B 256-512: 1.45-1.53x; H = 1000, B 100-512:
# 1.16-1.88x; quiet machine, load 1.3-1.5); up to it the blocked kernel wins (H = 64 at every B:
# 0.35-0.63x; H = 300 and 1000, B 4-64: 0.44-0.80x; H = 300, B = 100: 1.03x, a tie). Under
# load the per-step path's two threads lose more (H = 300 and 1000, B = 128: 0.49-0.86x at load
# 3-5)
DENSE_MINIBATCH_MAX_WORK = 32768


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
    batches: :data:`SPARSE_MINIBATCH_MIN_BATCH`, :data:`OFFSET_MINIBATCH_MIN_BATCH`,
    :data:`DENSE_MINIBATCH_MIN_BATCH`); the compiled steps for B = 1 and larger batches."""
    B, H = batch_size, n_hidden
    if B == 1:
        return "compiled-steps", "compiled small-batch loop: per-sample steps"
    if B > MINIBATCH_MAX_BATCH:
        return "compiled-steps", (f"compiled small-batch loop: batch size {B} > "
                                  f"{MINIBATCH_MAX_BATCH}")
    least = {"sparse": SPARSE_MINIBATCH_MIN_BATCH,
             "offset": OFFSET_MINIBATCH_MIN_BATCH}.get(products)
    if least is not None and B < least:
        return "compiled-steps", (f"compiled small-batch loop: {products} rows, batch size "
                                  f"{B} < {least}")
    if least is None and B < DENSE_MINIBATCH_MIN_BATCH and H > DENSE_SMALL_HIDDEN:
        return "compiled-steps", (f"compiled small-batch loop: batch size {B} < "
                                  f"{DENSE_MINIBATCH_MIN_BATCH}, hidden units {H} > "
                                  f"{DENSE_SMALL_HIDDEN}")
    return "compiled-minibatch", f"compiled minibatch epochs: batch size {B}, {products} rows"


def per_step_wins(n_hidden: int, batch_size: int, products: str = "dense") -> str | None:
    """Why the per-step path measured faster than the compiled minibatch epoch here (a phrase
    for logs), or None where it did not: dense rows with B·H over
    :data:`DENSE_MINIBATCH_MAX_WORK` (the rows' nonzeros, offset rows: nowhere)."""
    work = batch_size * n_hidden
    if products == "dense" and work > DENSE_MINIBATCH_MAX_WORK:
        return (f"dense rows, batch size x hidden units {work} > "
                f"{DENSE_MINIBATCH_MAX_WORK}")
    return None


def choose_strategy(compiled: bool | None, backend: Any, n_hidden: int,
                    batch_size: int | None, products: str = "dense") -> tuple[str, str]:
    """The epoch strategy and why (for logs). ``batch_size`` None: full batch; ``products``:
    the plan's (one of :data:`PRODUCTS`), which the rule depends on.

    ``compiled`` None chooses, on the CPU with the fused kernels: for 2 ≤ B ≤ 512 the faster
    compiled strategy (:func:`compiled_choice`), or the per-step path where it measured faster
    than the compiled minibatch epoch (:func:`per_step_wins`); the compiled steps for B = 1;
    for B > 512 the compiled steps up to B·H = :data:`COMPILED_MAX_WORK`, else the per-step
    path. True asks for a compiled strategy, the faster of the two (:func:`compiled_choice`; a
    FastMLPError where none can run); False keeps the per-step path."""
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
            return (strategy, why) if per_step_why is None else (
                "per-step", f"per-step path: {per_step_why}")
        if batch_size > MINIBATCH_MAX_BATCH and work > COMPILED_MAX_WORK:
            return "per-step", (f"per-step path: batch size x hidden units {work} > "
                                f"{COMPILED_MAX_WORK}")
        return strategy, why
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
    from .strategies.compiled_minibatch import SPARSE_MIN_HIDDEN, rows_form, threads_for

    if (strategy == "compiled-minibatch" and sparse == "auto" and products.products != "dense"
            and model.n_hidden < SPARSE_MIN_HIDDEN):
        dense = choose_strategy(compiled, backend, model.n_hidden, batch, "dense")
        if dense[0] == strategy:  # the same strategy on dense rows: their faster products
            strategy, strategy_reason = dense
            products = sparse_products.Choice(
                "dense", f"dense: the compiled minibatch epoch's products are faster on dense "
                f"rows below {SPARSE_MIN_HIDDEN} hidden units ({products.reason})")
    threads = None
    products_reason = products.reason
    if strategy == "compiled-steps":
        from .kernels import steps

        threads = steps.threads_for(model.n_hidden, batch)
        products_reason += sparse_products.COMPILED_STEPS_NOTE
    elif strategy == "compiled-minibatch":
        threads = threads_for(model.n_hidden, batch, rows_form(products.products))
    return Plan(device=backend.describe(), batch_size=batch, strategy=strategy,
                strategy_reason=strategy_reason, products=products.products,
                products_reason=products_reason, threads=threads, constants=products.constants)
