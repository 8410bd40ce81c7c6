"""How the CPU kernels are compiled and run: one place for each rule.

- ``SERIAL_JIT``: the options of every CPU kernel; ``JIT``, the same with Numba's threads, for
  the kernels that need a barrier inside one call (kernels/steps.py, one parallel region per
  step; :func:`serial_twin` makes such a kernel without threads).
- :func:`run_shares`: a kernel's call split between threads by a plain Python thread pool, each
  thread running the same serial compiled function on its share; :func:`run_team`, the same for
  kernels whose threads meet at barriers inside the call (kernels/team.py). Numba's
  ``parallel=True`` compilation re-optimises a kernel's callees and runs its parfor passes,
  which cost about as much again as compiling the work itself (most of a first run's wait);
  this way only serial kernels compile, and a kernel and its one-thread form are one
  compilation.
- :func:`threads_for`: the thread policy, the one rule that sizes the per-thread work.
- :class:`Workspaces`: a self-clearing cache of per-shape buffers, keyed on the calling thread.
- :func:`compiled_signatures`: what has been compiled so far (first-run cost, tests).
"""

from __future__ import annotations

import _thread
import collections
import os
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
# nogil: run_shares' threads, and the callers' own (Dask worker threads), run kernels at once
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
# on the calling thread alone. Each was measured on a 2-core VM (bench/RESULTS.md where recorded):
HEAD_ROWS = 512  # rows of the fused hidden_to_loss per thread: a 100-row batch lost on a 2nd thread
MOMENTUM_PARAMS = 32_768  # parameters per thread (the course network has 795 010)
SPARSE_PRODUCTS = 32_768  # nonzeros × H per thread, for the sparse products
NONZERO_ROWS = 1  # rows per thread for the CSR builder: always threaded
STEP_PRODUCTS = 8_000  # B × H per thread for a compiled training step (~60 µs to wake a thread)
TRANSPOSE_BLOCKS = 1  # row blocks per thread when transposing a CSR (one block: serial)
# B × H per thread for a compiled minibatch step (kernels/minibatch.py's team, two barriers a
# step), by the form of its rows: sparse rows' blocks each sweep all F features, so they need more
TEAM_STEP_DENSE = 1_000
TEAM_STEP_SPARSE = 3_000


def threads_for(work: int, grain: int) -> int:
    """Threads for a call of ``work`` units, ``grain`` units per thread: one per grain, at
    least one, at most Numba's thread count (``numba.get_num_threads()``, which
    ``numba.set_num_threads`` and ``NUMBA_NUM_THREADS`` set). The kernels of kernels/cpu.py and
    kernels/sparse.py run :func:`run_shares` with this many shares. Where a kernel's per-thread
    buffers are sized by the count (the fused ``hidden_to_loss``), its results depend on it;
    elsewhere each output is summed by one share in a fixed order, and the count changes only
    speed. (The compiled steps take all of Numba's threads or one, one block of hidden units
    each: :func:`.steps.threads_for`.)"""
    return max(1, min(numba.get_num_threads(), work // grain))


@numba.njit(inline="always")
def split(n, t, T):
    """Share ``t`` of ``T`` of ``range(n)`` as ``(start, stop)``: contiguous and as even as can
    be (as Numba's static ``prange`` schedule split a loop). For the kernels (compiled)."""
    return n * t // T, n * (t + 1) // T


# -- the thread pool ------------------------------------------------------------------------------


class _Worker:
    """A daemon thread that runs one share per call: the caller hands it ``job`` and releases
    ``go``; it runs the share, records the call's number in ``completed`` and releases the
    call's own lock. Raw locks (``_thread``): no Python-level condition on the way (a parallel
    region's cost, ~10 µs on the 2-core VM; bench/dispatch.py)."""

    def __init__(self):
        self.go = _thread.allocate_lock()
        self.go.acquire()  # held while idle
        self.job: tuple = ()
        self.completed = 0
        self.error: BaseException | None = None
        threading.Thread(target=self._loop, name="fastmlp-kernels", daemon=True).start()

    def _loop(self) -> None:
        while True:
            self.go.acquire()
            kernel, args, call, done, team = self.job
            try:
                kernel(*args)
            except BaseException as exc:  # the caller raises it
                self.error = exc
                if team is not None:  # the other members stop at their barrier
                    team[STOP] = 1
            self.completed = call  # first: the caller reads it to know the share has ended
            done.release()


class _Pool:
    """Worker threads, started as calls need them and kept (each sleeps on its ``go`` lock
    between calls). One call at a time uses them; a call that finds them busy (another
    thread's) runs its shares itself, one after another: the same results, since each share
    computes the same thing wherever it runs.

    A signal's exception (Ctrl-C) is raised in the main thread between bytecodes, so it could
    leave the call while the workers still write its outputs, which the trainer then restores
    or checkpoints. So the workers start in one C call (no bytecode between their ``go``
    releases: all or none), and after it every exception waits until each worker's
    ``completed`` names this call (an interrupted wait is simply waited again), then is raised,
    as a compiled kernel's call would have let it through only after returning."""

    def __init__(self):
        self.lock = threading.Lock()  # one call at a time
        self.workers: list[_Worker] = []
        self.gos: list = []  # the workers' go locks
        self.calls = 0

    def run(self, kernel: Callable, shares: int, args: tuple, team: Any = None) -> None:
        if shares <= 1 or not self.lock.acquire(blocking=False):
            if team is not None:  # its shares wait for each other: one runs them all as one
                kernel(0, 1, *args)
                return
            for t in range(shares):
                kernel(t, shares, *args)
            return
        try:
            self._run(kernel, shares, args, team)
        finally:
            self.lock.release()

    def _run(self, kernel: Callable, shares: int, args: tuple, team: Any = None) -> None:
        while len(self.workers) < shares - 1:
            self.workers.append(_Worker())
            self.gos.append(self.workers[-1].go)
        self.calls += 1
        call = self.calls
        used = self.workers[:shares - 1]
        done = []
        for t, worker in enumerate(used, 1):
            lock = _thread.allocate_lock()  # a new one per call: no stale release to mistake
            lock.acquire()
            done.append(lock)
            worker.job = (kernel, (t, shares, *args), call, lock, team)
        releases = map(_thread.LockType.release, self.gos[:shares - 1])
        error = None
        try:  # from here on no bytecode that could raise runs before the releases, all in C
            collections.deque(releases, maxlen=0)
            kernel(0, shares, *args)  # this thread's share
        except BaseException as exc:
            error = exc
            if team is not None:  # a team's other members stop at their barrier, not wait on
                team[STOP] = 1
        for worker, lock in zip(used, done, strict=True):
            while worker.completed != call:
                try:
                    lock.acquire()
                except BaseException as exc:  # a signal's, while waiting: the worker runs on
                    error = error or exc
            if worker.error is not None:
                error, worker.error = error or worker.error, None
        if error is not None:
            raise error


_pool = _Pool()
# a forked child has none of the parent's threads: it starts a pool of its own
os.register_at_fork(after_in_child=lambda: globals().update(_pool=_Pool()))


def run_shares(kernel: Callable, shares: int, *args) -> None:
    """``kernel(t, shares, *args)`` for t in ``range(shares)``: t = 0 on the calling thread, the
    others at the same time on the pool's threads; returns when all have (an exception of any of
    them is raised then). ``kernel`` is a serial compiled function (``nogil``) that computes share
    t of the call's work and writes it where no other share writes, so the result does not
    depend on which thread runs which share. ``shares``: :func:`threads_for`."""
    _pool.run(kernel, shares, args)


STOP = 1  # index of a team's stop word in its ``sync`` array (kernels/team.py)


def run_team(kernel: Callable, threads: int, sync, *args) -> None:
    """``kernel(t, threads, sync, *args)`` for t in ``range(threads)``, all at once (t = 0 on
    the calling thread): a team whose members wait for each other inside the call at
    kernels/team.py's barrier, on ``sync`` ((2,) int64 zeros: the barrier's counter, then the
    stop word), so they must all run together. Where the pool is busy (another thread's call)
    or ``threads`` is 1, ``kernel(0, 1, sync, *args)`` does the whole work on the calling thread
    instead: ``kernel`` must compute the same whatever its team's size.

    ``kernel`` (a Numba dispatcher) is compiled for these arguments before any member starts,
    so a Ctrl-C during a first call's compilation leaves no member waiting; where a member
    raises all the same (a signal's exception before share 0 starts, say), ``sync``'s stop word
    is set and the others return from their next barrier (:func:`.team.barrier`), and the
    exception is raised once all have ended."""
    compile_for = getattr(kernel, "compile", None)
    if threads > 1 and compile_for is not None:
        compile_for(tuple(numba.typeof(a) for a in (0, threads, sync, *args)))
    _pool.run(kernel, threads, (sync, *args), team=sync)


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
