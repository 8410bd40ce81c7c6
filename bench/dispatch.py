"""What splitting a call between threads costs: ``python bench/dispatch.py [ROUNDS]``, or
``python bench/dispatch.py epoch [B] [H]`` for whole per-step epochs.

The CPU kernels run their shares on a Python thread pool (kernels/runtime.py, ``run_shares``);
before, each was a ``numba.njit(parallel=True)`` shell whose ``prange`` loop ran the same serial
function per thread (one OpenMP parallel region per call). Both forms are timed here on the same
calls, interleaved (A B A B ...), and the minimum and median of ``ROUNDS`` (default 2000) are
printed in µs per call:

- ``tiny``: the momentum step over 64 parameters in 2 shares, so the time is the dispatch;
- ``momentum``: the course network's 795 010 parameters in 2 shares, as each step of a per-step
  minibatch run (B = 100) calls it;
- ``head 100``: ``hidden_to_loss`` of 100 rows (one share: no threads either way), the old
  single compiled call (the serial twin) against today's NumPy transpose of Wo and two compiled
  calls (tiles, reduction) from Python.

``epoch``: per-step epochs (B rows a step, default 100; H hidden units, default 300; 5000 dense
random rows, float32, as bench/epoch_min.py), alternating epoch by epoch between the momentum
step through ``run_shares`` and through the parallel region (the only call of such a step that
takes two threads), 24 epochs, min, first quartile and median of each (the first dropped).

The parallel shells are rebuilt here as they were (their first call compiles them: seconds).
Numba's threads sleep between calls (``import fastmlp`` sets ``OMP_WAIT_POLICY=passive``), as the
pool's threads do.
"""

# ruff: noqa: I001  (fastmlp must be imported before NumPy, see fastmlp/__init__.py)
from __future__ import annotations

import statistics
import sys
import time

import fastmlp  # noqa: F401  (first: it sets the thread-pool variables before NumPy loads)
import numba
import numpy as np
from fastmlp.kernels import activation_id, check_hidden_to_loss_args, cpu
from fastmlp.kernels.fpenv import ftz_on, ftz_restore
from fastmlp.kernels.runtime import HEAD_ROWS, JIT, SERIAL_JIT, run_shares, threads_for
from numba import prange


@numba.njit(**JIT)
def _momentum_region(T, params, grads, velocity, lr, mu, tiny, zero):
    # the old shape: one parallel region, each thread a share (the pool's serial kernel)
    for t in prange(T):
        cpu._momentum_kernel(np.int64(t), T, params, grads, velocity, lr, mu, tiny, zero)


@numba.njit(**SERIAL_JIT)
def _transpose(A, At):
    for j in range(A.shape[0]):
        for k in range(A.shape[1]):
            At[k, j] = A[j, k]


@numba.njit(**SERIAL_JIT)
def _head_one_call(Z, bh, Wo, bo, y, ends, n_grad, act, scale, zero, one, tiny, WoT, dWoT_part,
                   dbo_part, dbh_part, stats_part, dWo, dbo, dbh, stats):
    # the old serial twin of the head: transpose, tiles and reduction in one compiled call
    saved = ftz_on()
    _transpose(Wo, WoT)
    cpu._hidden_to_loss_tiles(0, 1, Z, bh, WoT, bo, y, ends, n_grad, act, scale, zero, one, tiny,
                              dWoT_part, dbo_part, dbh_part, stats_part)
    cpu._reduce_partials(n_grad, zero, dWoT_part, dbo_part, dbh_part, stats_part, dWo, dbo, dbh,
                         stats)
    ftz_restore(saved)


def momentum_case(P: int):
    rng = np.random.default_rng(0)
    p, g, v = (rng.standard_normal(P).astype(np.float32) for _ in range(3))
    dt = np.float32
    args = (p, g, v, dt(1e-6), dt(0.9), dt(np.finfo(dt).tiny), dt(0))
    return (lambda: _momentum_region(2, *args)), (lambda: run_shares(cpu._momentum_kernel, 2,
                                                                     *args))


def head_case(N: int = 100, H: int = 1000, K: int = 10):
    rng = np.random.default_rng(0)
    dt = np.float32
    Z = rng.standard_normal((N, H)).astype(dt)
    bh, Wo, bo = (rng.standard_normal(s).astype(dt) for s in ((1, H), (H, K), (1, K)))
    y = rng.integers(0, K, N).astype(np.int32)
    dWo, dbo, dbh = np.empty((H, K), dt), np.empty((1, K), dt), np.empty((1, H), dt)
    stats = np.empty((1, 2))
    Z0 = Z.copy()

    def old():  # the old cpu.hidden_to_loss: the same checks and buffers, one compiled call
        Z[:] = Z0
        ends_ = np.asarray(check_hidden_to_loss_args(Z, bh, Wo, bo, y, (N,), N, "relu", dWo, dbo,
                                                     dbh, stats), dtype=np.int64)
        T = threads_for(N, HEAD_ROWS)
        _head_one_call(Z, bh.reshape(-1), Wo, bo.reshape(-1), y, ends_, N, activation_id("relu"),
                       dt(1 / N), dt(0), dt(1), dt(np.finfo(dt).tiny),
                       *cpu._partials(T, H, K, 1, dt), dWo, dbo.reshape(-1), dbh.reshape(-1),
                       stats)

    def new():
        Z[:] = Z0
        cpu.hidden_to_loss(Z, bh, Wo, bo, y, (N,), N, "relu", dWo, dbo, dbh, stats)

    return old, new


def epochs(B: int = 100, H: int = 300) -> None:
    from fastmlp.datasets import Dataset, Split
    from fastmlp.kernels import check_momentum_args
    from fastmlp.model import MLP
    from fastmlp.kernels.runtime import MOMENTUM_PARAMS, threads_for

    new = cpu.momentum

    def old(params, grads, velocity, lr, mu):  # the momentum step as it was, on a region
        check_momentum_args(params, grads, velocity)
        dt = params.dtype.type
        args = (params, grads, velocity, dt(lr), dt(mu), dt(np.finfo(params.dtype).tiny), dt(0))
        if threads_for(params.shape[0], MOMENTUM_PARAMS) > 1:
            _momentum_region(numba.get_num_threads(), *args)
        else:
            cpu._momentum_kernel(0, 1, *args)

    n = 5000
    rng = np.random.default_rng(0)
    X = rng.random((n + 20, 784), dtype=np.float32)
    y = rng.integers(0, 10, n + 20)
    data = Dataset("random", Split(X[:n], y[:n]), Split(X[n:n + 10], y[n:n + 10]),
                   Split(X[n + 10:], y[n + 10:]))
    trainer = fastmlp.Trainer(MLP(784, H, 10, dtype="float32", seed=0), data, lr=0.01,
                              momentum=0.9, batch_size=B, compiled=False)
    ms: dict[str, list[float]] = {"region": [], "run_shares": []}
    try:
        for i in range(24):
            name = "region" if i % 2 == 0 else "run_shares"
            cpu.momentum = old if name == "region" else new
            t0 = time.perf_counter()
            trainer.run_epoch()
            ms[name].append((time.perf_counter() - t0) * 1e3)
    finally:
        cpu.momentum = new
    print(f"per-step epochs, B = {B}, H = {H}, 5000 rows, ms (the first of each dropped):")
    for name, t in ms.items():
        t = sorted(t[1:])
        print(f"{name:<11} min {t[0]:7.1f}  p25 {t[len(t) // 4]:7.1f}  "
              f"median {t[len(t) // 2]:7.1f}")


def timed(fn) -> float:
    t0 = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t0) / 1e3


def main(rounds: int) -> None:
    print(f"numba {numba.__version__}, threading layer after the first parallel call below; "
          f"{numba.get_num_threads()} threads; {rounds} interleaved rounds, µs per call")
    cases = {"tiny (64 params, 2 shares)": momentum_case(64),
             "momentum (795 010 params, 2 shares)": momentum_case(795_010),
             "head 100 rows x 1000 (1 share)": head_case()}
    print(f"threading layer: {numba.threading_layer() if cases and _warm(cases) else '?'}")
    print(f"{'call':<36} {'old min':>8} {'new min':>8} {'old med':>8} {'new med':>8}")
    for name, (old, new) in cases.items():
        a, b = [], []
        for _ in range(rounds):
            a.append(timed(old))
            b.append(timed(new))
        print(f"{name:<36} {min(a):8.1f} {min(b):8.1f} {statistics.median(a):8.1f} "
              f"{statistics.median(b):8.1f}")


def _warm(cases) -> bool:
    for old, new in cases.values():  # compile both, and start both pools
        for _ in range(3):
            old()
            new()
    return True


if __name__ == "__main__":
    if sys.argv[1:2] == ["epoch"]:
        epochs(*(int(a) for a in sys.argv[2:4]))
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
