"""CPU kernels: ``numba.njit(parallel=True, cache=True)`` versions of the hot operations.

Same names and semantics as :mod:`reference`. The head kernel does, per row, everything between
the two big matrix products in one pass over that row of Z, which stays in L1/L2 cache:
bias + activation, the (H×K) output layer, softmax cross-entropy, accuracy and, for training rows,
do, dWo/dbo/dbh partial sums and dz written over the row. Each worker thread accumulates its own
partial gradients, so no atomics are needed; a tiny reduction over threads follows.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from . import activation_id

# fastmath lets LLVM vectorise the length-H reductions; error_model="numpy" drops division checks.
_JIT = dict(parallel=True, cache=True, fastmath=True, error_model="numpy", nogil=True)


@numba.njit(**_JIT)
def _head_kernel(Z, bh, WoT, bo, y, ends, n_grad, act, scale, zero, one,
                 dWoT_part, dbo_part, dbh_part, stats_part):
    N, H = Z.shape
    K = WoT.shape[0]
    T = stats_part.shape[0]
    for t in prange(T):
        dWoT_part[t, :, :] = zero
        dbo_part[t, :] = zero
        dbh_part[t, :] = zero
        stats_part[t, :, :] = 0.0
        o = np.empty(K, Z.dtype)
        dh = np.empty(H, Z.dtype)
        # rows interleaved across threads: training rows cost ~3x eval rows and come first
        for i in range(t, N, T):
            z = Z[i]
            if act == 0:
                for j in range(H):
                    a = z[j] + bh[j]
                    z[j] = a if a > zero else zero
            else:
                for j in range(H):
                    a = z[j] + bh[j]
                    if a >= zero:
                        z[j] = one / (one + np.exp(-a))
                    else:
                        e = np.exp(a)
                        z[j] = e / (one + e)
            for k in range(K):
                w = WoT[k]
                acc = bo[k]
                for j in range(H):
                    acc += z[j] * w[j]
                o[k] = acc
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
            if i >= n_grad:
                continue
            # o becomes do = (softmax − onehot) / n_grad
            for k in range(K):
                p = np.exp(o[k] - lse)
                if k == yi:
                    p -= one
                o[k] = p * scale
                dbo_part[t, k] += o[k]
            for j in range(H):
                dh[j] = zero
            for k in range(K):
                d = o[k]
                w = WoT[k]
                g = dWoT_part[t, k]
                for j in range(H):
                    g[j] += d * z[j]
                    dh[j] += d * w[j]
            gb = dbh_part[t]
            if act == 0:
                for j in range(H):
                    dz = dh[j] if z[j] > zero else zero
                    z[j] = dz
                    gb[j] += dz
            else:
                for j in range(H):
                    dz = dh[j] * z[j] * (one - z[j])
                    z[j] = dz
                    gb[j] += dz


@numba.njit(**_JIT)
def _momentum_kernel(params, grads, velocity, lr, mu):
    for i in prange(params.shape[0]):
        v = mu * velocity[i] + lr * grads[i]
        velocity[i] = v
        params[i] -= v


@numba.njit(cache=True)
def _reduce_into(out, part):
    # out (A, B) = Σ_t part[t] (T, A, B), in part's dtype
    out[...] = part[0]
    for t in range(1, part.shape[0]):
        out += part[t]


_workspaces: dict = {}


def _workspace(T: int, H: int, K: int, S: int, dtype) -> tuple:
    key = (T, H, K, S, np.dtype(dtype))
    ws = _workspaces.get(key)
    if ws is None:
        ws = (
            np.empty((K, H), dtype),  # WoT
            np.empty((T, K, H), dtype),  # dWoT partials
            np.empty((T, K), dtype),  # dbo partials
            np.empty((T, H), dtype),  # dbh partials
            np.empty((T, S, 2), np.float64),  # stats partials
            np.empty((K, H), dtype),  # dWoT
        )
        _workspaces[key] = ws
    return ws


def head(Z, bh, Wo, bo, y, ends, n_grad: int, activation: str, dWo, dbo, dbh, stats) -> None:
    """Fused head on the CPU; see :func:`reference.head` for shapes and semantics.

    Buffers for the per-thread partial sums are allocated once per shape and reused.
    """
    N, H = Z.shape
    K = Wo.shape[1]
    ends = np.asarray(ends, dtype=np.int64)
    if ends.shape[0] == 0 or ends[-1] != N:
        raise ValueError(f"ends must finish at N={N}, got {ends.tolist()}")
    T = max(1, min(numba.get_num_threads(), N))
    WoT, dWoT_part, dbo_part, dbh_part, stats_part, dWoT = _workspace(T, H, K, len(ends), Z.dtype)
    WoT[...] = Wo.T
    dt = Z.dtype.type
    _head_kernel(Z, bh.reshape(-1), WoT, bo.reshape(-1), y, ends, n_grad, activation_id(activation),
                 dt(1.0 / max(n_grad, 1)), dt(0), dt(1), dWoT_part, dbo_part, dbh_part, stats_part)
    _reduce_into(stats, stats_part)
    if n_grad > 0:
        _reduce_into(dWoT, dWoT_part)
        dWo[...] = dWoT.T
        _reduce_into(dbo.reshape(1, K), dbo_part.reshape(T, 1, K))
        _reduce_into(dbh.reshape(1, H), dbh_part.reshape(T, 1, H))


def momentum(params, grads, velocity, lr: float, mu: float) -> None:
    """v ← mu·v + lr·g; p ← p − v over flat buffers (P,), one parallel pass."""
    dt = params.dtype.type
    _momentum_kernel(params, grads, velocity, dt(lr), dt(mu))
