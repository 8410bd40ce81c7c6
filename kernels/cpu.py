"""CPU kernels: serial ``numba.njit(cache=True)`` functions for the hot operations, split
between threads by :func:`.runtime.run_shares`.

Same names and semantics as :mod:`reference`. The fused ``hidden_to_loss`` does, per row,
everything between the two big matrix products in one pass over that row of Z, which stays in
L1/L2 cache: bias + activation, the (H×K) output layer, softmax cross-entropy, accuracy and, for
training rows, do, dWo/dbo/dbh partial sums and dz written over the row. Each thread's share
accumulates its own partial gradients, so no atomics are needed; a tiny reduction over the
shares follows. The arithmetic pieces are :mod:`.pieces`'; the thread rule,
:func:`.runtime.threads_for`.
"""

from __future__ import annotations

import numba
import numpy as np

from . import activation_id, check_hidden_to_loss_args, check_momentum_args
from .fpenv import ftz_on, ftz_restore
from .pieces import (
    activation,
    activation_grad,
    flush,
    logsumexp_argmax,
    momentum_step,
    softmax_xent_grad,
    tile_backward,
    tile_logits,
)
from .runtime import (
    HEAD_ROWS,
    MOMENTUM_PARAMS,
    SERIAL_JIT,
    Workspaces,
    run_shares,
    split,
    threads_for,
)

TILE = 4  # rows per tile: each load of a WoT or dWoT row serves 4 rows of Z


@numba.njit(**SERIAL_JIT)
def _hidden_to_loss_tiles(t, T, Z, bh, WoT, bo, y, ends, n_grad, act, scale, zero, one, tiny,
                          dWoT_part, dbo_part, dbh_part, stats_part):
    # share t of T: tiles t, t + T, ... of the rows, into partial sums [t]
    fp = ftz_on()  # subnormals as zero on x86 (fpenv.py); per thread: each has its own register
    N, H = Z.shape
    K = WoT.shape[0]
    n_tiles = (N + TILE - 1) // TILE
    dWoT_part[t, :, :] = zero
    dbo_part[t, :] = zero
    dbh_part[t, :] = zero
    stats_part[t, :, :] = 0.0
    logits = np.empty((TILE, K), Z.dtype)
    dh = np.empty((TILE, H), Z.dtype)
    pad = np.zeros(H, Z.dtype)  # stands in for the rows past N in the last tile
    hbuf = np.zeros((TILE, H), Z.dtype)
    # tiles interleaved across threads: training rows cost ~3x eval rows and come first
    for tile in range(t, n_tiles, T):
        i0 = tile * TILE
        rows = min(TILE, N - i0)
        if i0 < n_grad:
            # training rows: h overwrites z in place, and dz will overwrite h
            z0 = Z[i0]
            z1 = Z[i0 + 1] if i0 + 1 < N else pad
            z2 = Z[i0 + 2] if i0 + 2 < N else pad
            z3 = Z[i0 + 3] if i0 + 3 < N else pad
            for r in range(rows):
                z = Z[i0 + r]
                for j in range(H):
                    z[j] = activation(z[j] + bh[j], act, zero, one)
        else:
            # evaluation rows: h stays in cache, sparing a write of the row to memory
            z0, z1, z2, z3 = hbuf[0], hbuf[1], hbuf[2], hbuf[3]
            for r in range(rows):
                z, h = Z[i0 + r], hbuf[r]
                for j in range(H):
                    h[j] = activation(z[j] + bh[j], act, zero, one)
        tile_logits(z0, z1, z2, z3, WoT, bo, logits)
        # softmax cross-entropy per row; logits[r] becomes do (zero for non-training rows)
        for r in range(TILE):
            i = i0 + r
            o = logits[r]
            if r >= rows:
                o[:] = zero
                continue
            yi = y[i]
            lse, best = logsumexp_argmax(o, zero)
            s = 0
            while ends[s] <= i:
                s += 1
            stats_part[t, s, 0] += lse - o[yi]
            if best == yi:
                stats_part[t, s, 1] += 1.0
            if i < n_grad:
                softmax_xent_grad(o, yi, lse, scale, one, tiny, zero)
                for k in range(K):
                    dbo_part[t, k] += o[k]
            else:
                o[:] = zero
        if i0 >= n_grad:
            continue
        # dWo += hᵀ·do and dh = do·Woᵀ for the tile, one sweep over WoT and dWoT
        dh[:, :] = zero
        d0, d1, d2, d3 = dh[0], dh[1], dh[2], dh[3]
        tile_backward(z0, z1, z2, z3, WoT, logits, dWoT_part[t], d0, d1, d2, d3)
        gb = dbh_part[t]
        for r in range(min(rows, n_grad - i0)):
            z, d = Z[i0 + r], dh[r]  # z holds h; dz = dh ∘ act′ overwrites it
            for j in range(H):
                dz = flush(activation_grad(d[j], z[j], act, zero, one), tiny, zero)
                z[j] = dz
                gb[j] += dz
    ftz_restore(fp)


@numba.njit(**SERIAL_JIT)
def _reduce_partials(n_grad, zero, dWoT_part, dbo_part, dbh_part, stats_part, dWo, dbo, dbh,
                     stats):
    # the shares' partial sums, reduced (plain loops: no temporaries), once per call; with
    # flush-to-zero, as the tiles (a sum of two normal numbers may be subnormal)
    saved = ftz_on()
    H, K = dWo.shape
    T = stats_part.shape[0]
    for s in range(stats.shape[0]):
        for c in range(2):
            total = 0.0
            for t in range(T):
                total += stats_part[t, s, c]
            stats[s, c] = total
    if n_grad == 0:
        ftz_restore(saved)
        return
    if T == 1:  # one share: a plain transpose, no sums (faster: bench/RESULTS.md, "Kernel
        # micro-benchmarks")
        for j in range(H):
            for k in range(K):
                dWo[j, k] = dWoT_part[0, k, j]
            dbh[j] = dbh_part[0, j]
    else:
        for j in range(H):
            for k in range(K):
                g = zero
                for t in range(T):
                    g += dWoT_part[t, k, j]
                dWo[j, k] = g
            g = zero
            for t in range(T):
                g += dbh_part[t, j]
            dbh[j] = g
    for k in range(K):
        g = zero
        for t in range(T):
            g += dbo_part[t, k]
        dbo[k] = g
    ftz_restore(saved)


@numba.njit(**SERIAL_JIT)
def _momentum_kernel(t, T, params, grads, velocity, lr, mu, tiny, zero):
    # share t of T of the parameters, a contiguous range
    i0, i1 = split(params.shape[0], t, T)
    for i in range(i0, i1):
        momentum_step(params, velocity, i, velocity[i], grads[i], lr, mu, tiny, zero)


_workspaces = Workspaces()


def _partials(T: int, H: int, K: int, S: int, dtype) -> tuple:
    # the per-thread partial sums (and Wo transposed), once per shape and calling thread
    return _workspaces.get((T, H, K, S, np.dtype(dtype)), lambda: (
        np.empty((K, H), dtype),  # WoT
        np.empty((T, K, H), dtype),  # dWoT partials
        np.empty((T, K), dtype),  # dbo partials
        np.empty((T, H), dtype),  # dbh partials
        np.empty((T, S, 2), np.float64),  # stats partials
    ))


def hidden_to_loss(Z, bh, Wo, bo, y, ends, n_grad: int, activation: str, dWo, dbo, dbh,
                   stats) -> None:
    """Fused :func:`reference.hidden_to_loss` on the CPU, same shapes and semantics.

    do and dz values below the dtype's smallest normal number are flushed to zero (a change of
    less than 1.2e-38 in float32): late in training, confident softmax outputs give subnormal
    gradients, and x86 arithmetic on them (here or in the Xᵀ·dZ product that follows; the two
    were not measured apart) takes slow microcode assists (the default run's late epochs:
    316 ms without the flush, 236 ms with it; bench/RESULTS.md, "Subnormal gradients and the
    flush").
    On x86 the kernel runs with flush-to-zero set (``fpenv``), so no intermediate goes subnormal
    either. Threads: one per :data:`~.runtime.HEAD_ROWS` rows (:func:`~.runtime.threads_for`),
    each running a share of the row tiles (:func:`~.runtime.run_shares`); buffers for their
    partial sums are allocated once per shape, thread count and calling thread, and reused.
    """
    ends = np.asarray(check_hidden_to_loss_args(Z, bh, Wo, bo, y, ends, n_grad, activation, dWo,
                                                dbo, dbh, stats), dtype=np.int64)
    N, H = Z.shape
    K = Wo.shape[1]
    T = threads_for(N, HEAD_ROWS)
    dt = Z.dtype.type
    zero = dt(0)
    WoT, dWoT_part, dbo_part, dbh_part, stats_part = _partials(T, H, K, len(ends), Z.dtype)
    bh, bo, dbo, dbh = bh.reshape(-1), bo.reshape(-1), dbo.reshape(-1), dbh.reshape(-1)
    np.copyto(WoT, Wo.T)  # rows of WoT are contiguous over H: the kernel's inner loops vectorise
    run_shares(_hidden_to_loss_tiles, T, Z, bh, WoT, bo, y, ends, n_grad,
               activation_id(activation), dt(1.0 / max(n_grad, 1)), zero, dt(1),
               dt(np.finfo(Z.dtype).tiny), dWoT_part, dbo_part, dbh_part, stats_part)
    _reduce_partials(n_grad, zero, dWoT_part, dbo_part, dbh_part, stats_part, dWo, dbo, dbh,
                     stats)


def momentum(params, grads, velocity, lr: float, mu: float) -> None:
    """v ← mu·v + lr·g; p ← p − v over flat buffers (P,), one pass.

    Velocities below the dtype's smallest normal number are flushed to zero (a change of less
    than 1.2e-38 in float32), so that they never slow the arithmetic down; a velocity whose
    gradient stays zero (a blank pixel's weights, a dead unit) decays by mu every step into the
    subnormal range.
    """
    check_momentum_args(params, grads, velocity)
    dt = params.dtype.type
    run_shares(_momentum_kernel, threads_for(params.shape[0], MOMENTUM_PARAMS), params, grads,
               velocity, dt(lr), dt(mu), dt(np.finfo(params.dtype).tiny), dt(0))
