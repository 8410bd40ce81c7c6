"""A team of threads inside one compiled call: a spin barrier for kernels that synchronise every
few microseconds (kernels/minibatch.py's steps).

A Numba parallel region costs ~10-60 µs to start on the 2-core VM (its threads sleep between
regions), more than a small training step's whole work. A team instead runs one compiled
function on every thread for the whole call (``runtime.run_team``), and the threads meet at
:func:`barrier` between the parts of a step: a shared counter, one atomic add per thread and a
spin on an atomic load: 0.04 µs with two threads on their cores (bench/team_barrier.py). A
thread that has waited long (``SPINS`` rounds) yields its core at each further round, so a team
on an oversubscribed machine still progresses (slowly), rather than spinning against the thread
it waits for.

The atomics are LLVM's ``atomicrmw add`` and ``load atomic``, both sequentially consistent:
what a thread wrote before the barrier is seen by every thread after it, and the compiler moves
no memory access across it.
"""

from __future__ import annotations

import platform

import numba
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

SPINS = 50_000  # rounds of spinning (a pause each, ~1 ms in all) before yielding the core
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def _element(context, builder, arrty, arr, idxty, idx):
    # pointer to arr[idx] of a C-contiguous 1-d int64 array
    data = context.make_array(arrty)(context, builder, arr).data
    return builder.gep(data, [context.cast(builder, idx, idxty, types.intp)])


@intrinsic
def atomic_add(typingctx, arr, idx, value):
    """``arr[idx] += value`` as one atomic operation (int64 array); returns the old value."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.ndim == 1
            and isinstance(idx, types.Integer) and isinstance(value, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ptr = _element(context, builder, sig.args[0], args[0], sig.args[1], args[1])
        val = context.cast(builder, args[2], sig.args[2], types.int64)
        return builder.atomic_rmw("add", ptr, val, "seq_cst")

    return types.int64(arr, idx, value), codegen


@intrinsic
def atomic_load(typingctx, arr, idx):
    """``arr[idx]`` read as one atomic operation (int64 array)."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.ndim == 1
            and isinstance(idx, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ptr = _element(context, builder, sig.args[0], args[0], sig.args[1], args[1])
        return builder.load_atomic(ptr, "seq_cst", 8)

    return types.int64(arr, idx), codegen


@intrinsic
def pause(typingctx):
    """The CPU's spin-wait hint (x86 ``pause``; nothing elsewhere)."""
    def codegen(context, builder, sig, args):
        if _X86:
            fn = cgutils.get_or_insert_function(builder.module,
                                                ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def yield_core(typingctx):
    """``sched_yield()``: let another thread run on this core (POSIX; resolved from the C
    library already in the process, so cached code finds it in a new process too)."""
    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module,
                                            ir.FunctionType(ir.IntType(32), []), "sched_yield")
        builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


@numba.njit(cache=True, nogil=True)
def barrier(sync, T, passed):
    """Wait until all ``T`` threads of the team have reached their ``passed + 1``-th barrier of
    the call; ``sync`` (2,) int64: the team's counter, zero at the call's start, and its stop
    word (``runtime.STOP``), set where a member failed; ``passed``: the barriers this thread
    has passed in the call so far. Returns ``passed + 1``, or -1 once the stop word is set: the
    caller then returns at once."""
    atomic_add(sync, 0, 1)
    target = (passed + 1) * T
    spins = 0
    while atomic_load(sync, 0) < target:
        if atomic_load(sync, 1) != 0:
            return -1
        if spins < SPINS:
            spins += 1
            pause()
        else:
            yield_core()
    return passed + 1
