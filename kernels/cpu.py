"""CPU kernels: ``numba.njit(parallel=True, cache=True)`` versions of the hot operations.

Same names and semantics as :mod:`reference`. The head kernel does, per row, everything between
the two big matrix products in one pass over that row of Z, which stays in L1/L2 cache:
bias + activation, the (H×K) output layer, softmax cross-entropy, accuracy and, for training rows,
do, dWo/dbo/dbh partial sums and dz written over the row. Each worker thread accumulates its own
partial gradients, so no atomics are needed; a tiny reduction over threads follows.
"""

from __future__ import annotations

import threading
import types

import numba
import numpy as np
from numba import prange

from . import activation_id, check_head_args, check_momentum_args
from .fpenv import ftz_on, ftz_restore

# fastmath lets LLVM vectorise the length-H reductions; all its flags but "no NaNs" and "no
# infinities", since a diverging run's NaN must reach the loss and the weights as the reference's
# does. error_model="numpy" drops division checks.
_FASTMATH = {"reassoc", "contract", "arcp", "nsz", "afn"}
_JIT = dict(parallel=True, cache=True, fastmath=_FASTMATH, error_model="numpy", nogil=True)


@numba.njit(inline="always")
def _flush(x, tiny, zero):
    # x, or zero when subnormal (|x| < the dtype's smallest normal number), as FTZ hardware
    # would: x86 arithmetic on subnormals takes slow microcode assists. NaN fails the test: kept
    return zero if abs(x) < tiny else x


@numba.njit(inline="always")
def _activate(h, z, bh, act, zero, one):
    # h (H,) ← act(z + bh); h may be z
    if act == 0:
        for j in range(z.shape[0]):
            a = z[j] + bh[j]
            h[j] = zero if a < zero else a  # NaN passes, as in the reference
    else:
        for j in range(z.shape[0]):
            a = z[j] + bh[j]
            if a >= zero:  # two branches: exp never overflows
                h[j] = one / (one + np.exp(-a))
            else:
                e = np.exp(a)
                h[j] = e / (one + e)


@numba.njit(inline="always")
def _activation_backward(z, dh, act, zero, one, tiny, dbh):
    # z (H,) holds h on entry, dz = dh ∘ act′ on return (subnormals flushed); dbh += dz
    if act == 0:
        for j in range(z.shape[0]):
            dz = dh[j] if z[j] > zero else zero
            dz = _flush(dz, tiny, zero)
            z[j] = dz
            dbh[j] += dz
    else:
        for j in range(z.shape[0]):
            dz = dh[j] * z[j] * (one - z[j])
            dz = _flush(dz, tiny, zero)
            z[j] = dz
            dbh[j] += dz


TILE = 4  # rows per tile: each load of a WoT or dWoT row serves 4 rows of Z


@numba.njit(**_JIT)
def _head_kernel(Z, bh, Wo, bo, y, ends, n_grad, act, scale, zero, one, tiny,
                 WoT, dWoT_part, dbo_part, dbh_part, stats_part, dWo, dbo, dbh, stats):
    saved = ftz_on()  # subnormals as zero on x86 (fpenv.py), here and in each thread's part
    N, H = Z.shape
    K = WoT.shape[0]
    T = stats_part.shape[0]
    n_tiles = (N + TILE - 1) // TILE
    for j in range(H):  # rows of WoT are contiguous over H: the inner loops vectorise over j
        for k in range(K):
            WoT[k, j] = Wo[j, k]
    for t in prange(T):
        fp = ftz_on()
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
                    _activate(Z[i0 + r], Z[i0 + r], bh, act, zero, one)
            else:
                # evaluation rows: h stays in cache, sparing a write of the row to memory
                z0, z1, z2, z3 = hbuf[0], hbuf[1], hbuf[2], hbuf[3]
                for r in range(rows):
                    _activate(hbuf[r], Z[i0 + r], bh, act, zero, one)
            # two outputs per sweep: each load of a z element serves 8 products
            for k in range(0, K - 1, 2):
                w, u = WoT[k], WoT[k + 1]
                a0 = a1 = a2 = a3 = bo[k]
                b0 = b1 = b2 = b3 = bo[k + 1]
                for j in range(H):
                    x0, x1, x2, x3 = z0[j], z1[j], z2[j], z3[j]
                    a0 += x0 * w[j]
                    a1 += x1 * w[j]
                    a2 += x2 * w[j]
                    a3 += x3 * w[j]
                    b0 += x0 * u[j]
                    b1 += x1 * u[j]
                    b2 += x2 * u[j]
                    b3 += x3 * u[j]
                logits[0, k], logits[1, k], logits[2, k], logits[3, k] = a0, a1, a2, a3
                logits[0, k + 1], logits[1, k + 1] = b0, b1
                logits[2, k + 1], logits[3, k + 1] = b2, b3
            for k in range(K - K % 2, K):  # the last output when K is odd
                w = WoT[k]
                a0 = a1 = a2 = a3 = bo[k]
                for j in range(H):
                    a0 += z0[j] * w[j]
                    a1 += z1[j] * w[j]
                    a2 += z2[j] * w[j]
                    a3 += z3[j] * w[j]
                logits[0, k], logits[1, k], logits[2, k], logits[3, k] = a0, a1, a2, a3
            # softmax cross-entropy per row; logits[r] becomes do (zero for non-training rows)
            for r in range(TILE):
                i = i0 + r
                o = logits[r]
                if r >= rows:
                    o[:] = zero
                    continue
                yi = y[i]
                m = o[0]
                best = 0
                for k in range(1, K):
                    if o[k] > m:
                        m = o[k]
                        best = k
                total = zero
                for k in range(K):
                    total += np.exp(o[k] - m)
                lse = m + np.log(total)
                s = 0
                while ends[s] <= i:
                    s += 1
                stats_part[t, s, 0] += lse - o[yi]
                if best == yi:
                    stats_part[t, s, 1] += 1.0
                if i < n_grad:
                    for k in range(K):
                        p = np.exp(o[k] - lse)
                        if k == yi:
                            p -= one
                        d = p * scale
                        o[k] = _flush(d, tiny, zero)
                        dbo_part[t, k] += o[k]
                else:
                    o[:] = zero
            if i0 >= n_grad:
                continue
            # dWo += hᵀ·do and dh = do·Woᵀ for the tile, one sweep over WoT and dWoT
            dh[:, :] = zero
            d0, d1, d2, d3 = dh[0], dh[1], dh[2], dh[3]
            # two outputs per sweep: half the loads and stores of the dh rows
            for k in range(0, K - 1, 2):
                w, u = WoT[k], WoT[k + 1]
                g, f = dWoT_part[t, k], dWoT_part[t, k + 1]
                c0, c1, c2, c3 = logits[0, k], logits[1, k], logits[2, k], logits[3, k]
                e0, e1 = logits[0, k + 1], logits[1, k + 1]
                e2, e3 = logits[2, k + 1], logits[3, k + 1]
                for j in range(H):
                    x0, x1, x2, x3 = z0[j], z1[j], z2[j], z3[j]
                    g[j] += c0 * x0 + c1 * x1 + c2 * x2 + c3 * x3
                    f[j] += e0 * x0 + e1 * x1 + e2 * x2 + e3 * x3
                    wj, uj = w[j], u[j]
                    d0[j] += c0 * wj + e0 * uj
                    d1[j] += c1 * wj + e1 * uj
                    d2[j] += c2 * wj + e2 * uj
                    d3[j] += c3 * wj + e3 * uj
            for k in range(K - K % 2, K):  # the last output when K is odd
                w = WoT[k]
                g = dWoT_part[t, k]
                c0, c1, c2, c3 = logits[0, k], logits[1, k], logits[2, k], logits[3, k]
                for j in range(H):
                    g[j] += c0 * z0[j] + c1 * z1[j] + c2 * z2[j] + c3 * z3[j]
                    d0[j] += c0 * w[j]
                    d1[j] += c1 * w[j]
                    d2[j] += c2 * w[j]
                    d3[j] += c3 * w[j]
            gb = dbh_part[t]
            for r in range(min(rows, n_grad - i0)):
                _activation_backward(Z[i0 + r], dh[r], act, zero, one, tiny, gb)
        ftz_restore(fp)
    # the threads' partial sums, reduced here (plain loops: no temporaries): one call per head
    for s in range(stats.shape[0]):
        for c in range(2):
            total = 0.0
            for t in range(T):
                total += stats_part[t, s, c]
            stats[s, c] = total
    if n_grad == 0:
        ftz_restore(saved)
        return
    if T == 1:  # the serial compilation: a plain transpose, no sums (faster: RESULTS.md §2)
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


@numba.njit(**_JIT)
def _momentum_kernel(params, grads, velocity, lr, mu, tiny, zero):
    for i in prange(params.shape[0]):
        # flushed: a velocity whose gradient stays zero (a blank pixel's weights, a dead unit)
        # decays by mu every step into the subnormal range
        v = _flush(mu * velocity[i] + lr * grads[i], tiny, zero)
        velocity[i] = v
        params[i] -= v


# The same kernels compiled without threads: starting a parallel region wakes the pool's
# threads, which sleep between calls, and that costs more than the whole work of a small batch
# or network.
def _serial(kernel, name: str):
    # a copy of the Python function under its own name, so the two compilations keep separate
    # on-disk caches
    fn = kernel.py_func
    copy = types.FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = name
    return numba.njit(**dict(_JIT, parallel=False))(copy)


_head_kernel_serial = _serial(_head_kernel, "_head_kernel_serial")
_momentum_kernel_serial = _serial(_momentum_kernel, "_momentum_kernel_serial")
SERIAL_MOMENTUM_BELOW = 65_536  # parameters; the course network has 795 010


_workspaces: dict = {}
_WORKSPACE_LIMIT = 64  # distinct shapes/threads seen; beyond it something is churning, start over


def _workspace(T: int, H: int, K: int, S: int, dtype) -> tuple:
    # keyed on the calling thread too: the kernels release the GIL, so two threads training
    # same-shape models (Dask worker threads, say) would otherwise write the same buffers at once
    key = (T, H, K, S, np.dtype(dtype), threading.get_ident())
    ws = _workspaces.get(key)
    if ws is None:
        if len(_workspaces) >= _WORKSPACE_LIMIT:
            _workspaces.clear()  # a call in flight keeps its own references
        ws = (
            np.empty((K, H), dtype),  # WoT
            np.empty((T, K, H), dtype),  # dWoT partials
            np.empty((T, K), dtype),  # dbo partials
            np.empty((T, H), dtype),  # dbh partials
            np.empty((T, S, 2), np.float64),  # stats partials
        )
        _workspaces[key] = ws
    return ws


def head(Z, bh, Wo, bo, y, ends, n_grad: int, activation: str, dWo, dbo, dbh, stats) -> None:
    """Fused head on the CPU; see :func:`reference.head` for shapes and semantics.

    do and dz values below the dtype's smallest normal number are flushed to zero (a change of
    less than 1.2e-38 in float32): late in training, confident softmax outputs give subnormal
    gradients, and x86 arithmetic on them (here or in the Xᵀ·dZ product that follows; the two
    were not measured apart) takes slow microcode assists (the default run's late epochs:
    316 ms without the flush, 236 ms with it; bench/RESULTS.md §1).
    On x86 the kernel runs with flush-to-zero set (``fpenv``), so no intermediate goes subnormal
    either. Buffers for the per-thread partial sums are allocated once per shape and calling
    thread, and reused.
    """
    ends = np.asarray(check_head_args(Z, bh, Wo, bo, y, ends, n_grad, activation, dWo, dbo, dbh,
                                      stats), dtype=np.int64)
    N, H = Z.shape
    K = Wo.shape[1]
    # one thread per 512 rows at most: for a 100-row batch, waking a second thread cost more
    # than it saved (an ad hoc measurement, not recorded)
    T = max(1, min(numba.get_num_threads(), N // 512))
    dt = Z.dtype.type
    kernel = _head_kernel if T > 1 else _head_kernel_serial
    kernel(Z, bh.reshape(-1), Wo, bo.reshape(-1), y, ends, n_grad, activation_id(activation),
           dt(1.0 / max(n_grad, 1)), dt(0), dt(1), dt(np.finfo(Z.dtype).tiny),
           *_workspace(T, H, K, len(ends), Z.dtype), dWo, dbo.reshape(-1), dbh.reshape(-1), stats)


def momentum(params, grads, velocity, lr: float, mu: float) -> None:
    """v ← mu·v + lr·g; p ← p − v over flat buffers (P,), one pass.

    Velocities below the dtype's smallest normal number are flushed to zero (a change of less
    than 1.2e-38 in float32), so that they never slow the arithmetic down.
    """
    check_momentum_args(params, grads, velocity)
    dt = params.dtype.type
    small = params.shape[0] < SERIAL_MOMENTUM_BELOW
    kernel = _momentum_kernel_serial if small else _momentum_kernel
    kernel(params, grads, velocity, dt(lr), dt(mu), dt(np.finfo(params.dtype).tiny), dt(0))
