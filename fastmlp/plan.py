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
  CPU fused kernels only;
- ``compiled-minibatch``: blocked compiled minibatch epochs (kernels/minibatch.py, driven by
  :class:`fastmlp.compiled_minibatch.CompiledMinibatch`, exact to the per-step path). Built and
  tested, but :func:`make_plan` does not pick it yet: its dense products still take 1.5-2x
  OpenBLAS's time and its first compile 10-12 s (bench/RESULTS.md, "Compiled minibatch").

Products (:data:`PRODUCTS`): ``dense`` (BLAS), ``sparse`` (over the rows' nonzeros,
fastmlp/sparse.py) or ``offset`` (rows sparse around a constant c per feature: over the
nonzeros of S = X − 1·cᵀ, plus the terms of c; kernels/offset.py), on every strategy built
here: full batch, per step, and the compiled small-batch loop, which reads S's rows and c
itself (the products then serve its evaluation passes).
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


def choose_strategy(compiled: bool | None, backend: Any, n_hidden: int,
                    batch_size: int | None) -> tuple[str, str]:
    """The epoch strategy and why (for logs). ``batch_size`` None: full batch.

    ``compiled`` None chooses: on the CPU with the fused kernels, B = 1 or B·H up to
    :data:`COMPILED_MAX_WORK` run compiled; True asks for it (a FastMLPError where it cannot
    run); False keeps the per-step path."""
    if batch_size is None:
        return "full-batch", "full batch"
    usable = backend.name == "cpu" and backend.fused
    if compiled is None:
        if not usable:
            return "per-step", "per-step path: the compiled loop is for the CPU's fused kernels"
        work = batch_size * n_hidden
        if batch_size > 1 and work > COMPILED_MAX_WORK:
            return "per-step", (f"per-step path: batch size x hidden units {work} > "
                                f"{COMPILED_MAX_WORK}")
        return "compiled-steps", (f"compiled small-batch loop: batch size x hidden units "
                                  f"{work} <= {COMPILED_MAX_WORK}" if batch_size > 1 else
                                  "compiled small-batch loop: per-sample steps")
    if compiled and not usable:
        raise FastMLPError("the compiled small-batch loop runs on the CPU with fused kernels "
                           f"only, not on {backend.describe()}")
    return (("compiled-steps", "compiled small-batch loop (asked for)") if compiled
            else ("per-step", "per-step path (asked for)"))


def make_plan(model: Any, features: list[np.ndarray], *, batch_size: int | None,
              compiled: bool | None = None, sparse: str = "auto") -> Plan:
    """The plan of training ``model`` (an :class:`~fastmlp.model.MLP`) on rows whose splits'
    features are ``features`` (train first): ``batch_size`` (None or every training row: full
    batch), ``compiled`` (None chooses, see :func:`choose_strategy`) and ``sparse`` ("auto",
    "on", "off"; see :func:`fastmlp.sparse.resolve_sparse`). FastMLPError where a choice that
    was asked for cannot run here."""
    backend = model.backend
    batch = full_batch_size(batch_size, len(features[0]))
    strategy, strategy_reason = choose_strategy(compiled, backend, model.n_hidden, batch)
    products = sparse_products.resolve_sparse(sparse, model, features,
                                              strategy.startswith("compiled"))
    threads = None
    if strategy == "compiled-steps":
        from .kernels import steps

        threads = steps.threads_for(model.n_hidden, batch)
    return Plan(device=backend.describe(), batch_size=batch, strategy=strategy,
                strategy_reason=strategy_reason, products=products.products,
                products_reason=products.reason, threads=threads, constants=products.constants)
