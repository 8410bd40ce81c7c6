"""The warp shuffle the CUDA head uses, for Numba's CUDA simulator, which lacks it.

numba-cuda's simulator (``numba/cuda/simulator/kernelapi.py``, ``FakeCUDAModule``) offers
``syncthreads``, atomics, ``laneid`` and ``warpsize`` but no ``shfl_*_sync`` and no ``syncwarp``.
:func:`install` adds ``cuda.shfl_down_sync`` to it, so that the simulator suite runs the very
kernel source the GPU runs. Semantics as on the hardware (``shfl.sync.down`` with width 32): every
lane named in ``mask`` must call it; lane l gets the value of lane l + delta, or its own value
where l + delta > 31. Reading a lane outside ``mask`` is undefined on the GPU: here it gives NaN
(a poison value for integers), so a kernel that lets such a value through fails its tests.
"""

from __future__ import annotations

import threading

WARP = 32
TIMEOUT_S = 60.0  # a lane named in the mask that never calls: fail rather than hang
INT_POISON = -(2**31)

_LOCK = threading.Lock()


class _Exchange:
    """One warp's slots for one mask, two sets used in turn, and the barrier of the lanes the
    mask names."""

    def __init__(self, parties: int):
        self.values: list = [[None] * WARP, [None] * WARP]
        self.barrier = threading.Barrier(parties, timeout=TIMEOUT_S)


def _exchange(thread, mask: int) -> _Exchange:
    # kept on the block's manager (one per simulated block): it goes away with the block
    manager = thread._manager
    key = (thread.thread_id // WARP, mask)
    with _LOCK:
        table = manager.__dict__.setdefault("_fastmlp_warp_exchanges", {})
        ex = table.get(key)
        if ex is None:
            ex = table[key] = _Exchange(bin(mask).count("1"))
    return ex


def _undefined(value):
    if isinstance(value, int):
        return type(value)(INT_POISON)
    return type(value)(float("nan"))


def shfl_down_sync(self, mask, value, delta):
    """``cuda.shfl_down_sync(mask, value, delta)`` for one simulated thread (``self``: the
    simulator's fake cuda module, unused)."""
    thread = threading.current_thread()
    lane = thread.thread_id % WARP
    mask = int(mask) & 0xFFFFFFFF
    if not mask >> lane & 1:
        raise RuntimeError(f"shfl_down_sync: lane {lane} is not in its mask {mask:#010x}")
    ex = _exchange(thread, mask)
    # one barrier per call: call c uses slot set c % 2, and a lane writes set c % 2 again (call
    # c + 2) only past call c + 1's barrier, so after every lane has read it (call c's reads
    # come before its call c + 1)
    calls = thread.__dict__.setdefault("_fastmlp_shuffles", {})
    c = calls.get(mask, 0)
    calls[mask] = c + 1
    values = ex.values[c % 2]
    values[lane] = value
    ex.barrier.wait()  # every named lane has put its value
    src = lane + int(delta)
    if src >= WARP:
        return value
    if mask >> src & 1:
        return values[src]
    return _undefined(value)


def install() -> None:
    """Give the simulator's fake cuda module the intrinsics above where it lacks them (a numba
    that simulates them itself keeps its own)."""
    from numba.cuda.simulator import kernelapi

    if not hasattr(kernelapi.FakeCUDAModule, "shfl_down_sync"):
        kernelapi.FakeCUDAModule.shfl_down_sync = shfl_down_sync
