"""How the CPU kernels are compiled and run: one place for each rule.

- ``JIT``: the options of every CPU kernel (``parallel=True``; :func:`serial_twin` makes the
  same kernel without threads, for calls too small to wake the pool).
- :func:`threads_for`: the thread policy, the one rule that picks between the two compilations
  and sizes the per-thread work.
- :class:`Workspaces`: a self-clearing cache of per-shape buffers, keyed on the calling thread.
- :func:`compiled_signatures`: what has been compiled so far (first-run cost, tests).
"""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Callable, Hashable
from typing import Any

import numba
from numba.core.registry import CPUDispatcher

# fastmath lets LLVM vectorise the length-H reductions; all its flags but "no NaNs" and "no
# infinities", since a diverging run's NaN must reach the loss and the weights as the reference's
# does. error_model="numpy" drops division checks.
FASTMATH = {"reassoc", "contract", "arcp", "nsz", "afn"}
JIT = dict(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)
SERIAL_JIT = dict(JIT, parallel=False)


def serial_twin(kernel, name: str):
    """``kernel`` compiled without threads (its ``prange`` loops run as plain loops), under
    ``name``: a copy of its Python function, so the two compilations keep separate on-disk
    caches. Starting a parallel region wakes the pool's threads, which sleep between calls, and
    that costs more than the whole work of a small call."""
    fn = kernel.py_func
    copy = types.FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = name
    return numba.njit(**SERIAL_JIT)(copy)


# -- the thread policy ----------------------------------------------------------------------------
# Grains: the work one thread must have before a call uses another. Below two grains a call runs
# the serial compilation. Each was measured on a 2-core VM (bench/RESULTS.md where recorded):
HEAD_ROWS = 512  # rows of the fused hidden_to_loss per thread: a 100-row batch lost on a 2nd thread
MOMENTUM_PARAMS = 32_768  # parameters per thread (the course network has 795 010)
SPARSE_PRODUCTS = 32_768  # nonzeros × H per thread, for the sparse products
STEP_PRODUCTS = 8_000  # B × H per thread for a compiled training step (~60 µs to wake a thread)
TRANSPOSE_BLOCKS = 1  # row blocks per thread when transposing a CSR (one block: serial)


def threads_for(work: int, grain: int) -> int:
    """Threads for a call of ``work`` units, ``grain`` units per thread: one per grain, at
    least one, at most Numba's thread count. One means the serial compilation; more, the
    parallel one. Where a kernel's per-thread buffers are sized by the count (the fused
    ``hidden_to_loss``), its results depend on it; elsewhere each output is summed by one
    thread in a fixed order, the parallel compilation runs on all of Numba's threads whenever
    this is above one, and the count changes only speed. (The compiled steps also take all
    threads, one block of hidden units each: :func:`.steps.threads_for`.) The CSR builder is
    always threaded."""
    return max(1, min(numba.get_num_threads(), work // grain))


# -- per-shape buffers ----------------------------------------------------------------------------


class Workspaces:
    """Buffers built once per key and reused, per calling thread: kernels release the GIL, so
    two threads training same-shape models (Dask worker threads, say) would otherwise write the
    same buffers at once. Past ``limit`` keys something is churning, and it starts over (a call
    in flight keeps its own references)."""

    def __init__(self, limit: int = 64):
        self.limit = limit
        self.entries: dict[Hashable, Any] = {}

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """The buffers for ``key`` on this thread, ``build()`` the first time."""
        key = (key, threading.get_ident())
        found = self.entries.get(key)
        if found is None:
            if len(self.entries) >= self.limit:
                self.entries.clear()
            found = self.entries[key] = build()
        return found

    def __len__(self) -> int:
        return len(self.entries)

    def clear(self) -> None:
        """Drop every entry."""
        self.entries.clear()

    def values(self):
        """The cached entries."""
        return self.entries.values()


# -- what has been compiled ------------------------------------------------------------------


def compiled_signatures() -> dict[str, tuple[int, int]]:
    """Per CPU kernel of the fastmlp.kernels modules imported so far (``module.name``): the
    specialisations compiled in this process and how many of them were loaded from Numba's
    on-disk cache. Inlined helpers are left out (they compile into their callers)."""
    found: dict[str, tuple[int, int]] = {}
    for mod_name, mod in list(sys.modules.items()):
        if not mod_name.startswith("fastmlp.kernels.") or mod is None:
            continue
        for name, obj in vars(mod).items():
            if (isinstance(obj, CPUDispatcher) and obj.targetoptions.get("inline") != "always"
                    and obj.__module__ == mod_name and obj.signatures):
                found[f"{mod_name.rsplit('.', 1)[1]}.{name}"] = (
                    len(obj.signatures), sum(obj.stats.cache_hits.values()))
    return found
