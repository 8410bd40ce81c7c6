"""Small batches: many whole training steps in one compiled call (CPU).

``train_steps`` runs steps [s0, s1) of an epoch's permutation, each one the forward pass, the
backward pass and the momentum update of every parameter, as the per-step path of
:class:`fastmlp.train.Trainer` does with a gather, two products, the fused head and the momentum
kernel. That per-step path is this kernel's reference (``Trainer(compiled=False)``); the tests
hold the two to 1e-10 in float64.

Doing less work, exactly:
- only the rows of Wh whose input is nonzero enter x·Wh and receive a gradient (``skip_zeros``;
  a zero input adds exactly zero to z and to its Wh gradient, so finite results do not change);
- with momentum the velocity of every Wh entry still changes every step (v ← γ·v), so every Wh
  entry is updated every step. With γ = 0, v ← α·g: a row without gradient has v = 0 and
  W − 0 = W, so between the first and the last step of a call only the rows a batch touches are
  updated (W ← W − α·g), and the velocity buffer, which only γ·v reads, is written by the last
  step's full pass as the per-step path leaves it (0·v = 0 for finite v; a NaN v means NaN
  weights, which stay NaN either way).
- each Wh row's gradient is summed in a cache-resident row and applied at once, so no F×H
  gradient buffer is written and read back.

Threads split the hidden units: each owns blocks of ``HB`` columns of Wh (rows of Wo, entries of
bh) and does the backward pass and update of the previous step and then the forward pass of the
current one for its blocks, in one parallel region per step; the 10 logits are reduced and the
softmax taken between regions, serially, in a fixed order (results do not depend on the thread
count). No allocation per step: the caller's :func:`workspace` holds every buffer.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from . import activation_id
from .cpu import _JIT, _flush, _serial

BLOCK_TARGET = 64  # hidden units per block (a block of Wh columns: F×64 floats, 200 KB in f32)


@numba.njit(inline="always")
def _gather(X, order, s, B, skip_zeros, q, idx, val, nnz, rows, marks, touched, n_touched):
    # the nonzero inputs of step s's rows into slot q; marks[q, k] == s when any row uses k
    n = order.shape[0]
    a = s * B
    nb = min(a + B, n) - a
    F = X.shape[1]
    nt = 0
    for r in range(nb):
        i = order[a + r]
        rows[q, r] = i
        c = 0
        for k in range(F):
            x = X[i, k]
            if x != 0 or not skip_zeros:  # NaN != 0: kept
                idx[q, r, c] = k
                val[q, r, c] = x
                c += 1
                if marks[q, k] != s:
                    marks[q, k] = s
                    touched[q, nt] = k
                    nt += 1
        nnz[q, r] = c
    n_touched[q] = nt
    return nb


@numba.njit(inline="always")
def _softmax_step(y, rows, q, nb, nblk, plog, bo, vbo, do, lr, mu, zero, one, tiny):
    # logits from the blocks' shares, softmax cross-entropy and accuracy; do (scaled by 1/nb)
    # overwrites the logits; then the bo step. Returns the summed loss and correct count.
    K = bo.shape[0]
    scale = one / nb
    loss_sum = 0.0
    correct = 0.0
    for r in range(nb):
        o = do[r]
        for k in range(K):
            t = bo[k]
            for blk in range(nblk):
                t += plog[blk, r, k]
            o[k] = t
        yi = y[rows[q, r]]
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
        loss_sum += lse - o[yi]
        if best == yi:
            correct += 1.0
        for k in range(K):
            p = np.exp(o[k] - lse)
            if k == yi:
                p -= one
            o[k] = _flush(p * scale, tiny, zero)
    for k in range(K):
        g = zero
        for r in range(nb):
            g += do[r, k]
        v = _flush(mu * vbo[k] + lr * g, tiny, zero)
        vbo[k] = v
        bo[k] -= v
    return loss_sum, correct


@numba.njit(fastmath=_JIT["fastmath"], error_model="numpy")
def _axpy(y, a, x):
    # y += a·x over 1-D slices: its own function, so LLVM vectorises it (inlined into the big
    # kernel it stayed scalar)
    for j in range(y.shape[0]):
        y[j] += a * x[j]


@numba.njit(inline="always")
def _block_backward(nb, q, s, full, j0, j1, act, lr, mu, zero, one, tiny, X, rows, skip_zeros,
                    Wh, vWh, acc, Wo, vWo, bh, vbh, Hb, D, do, marks, touched, n_touched):
    # step s's backward pass and update for the hidden units [j0, j1): Wh, vWh, Hb, D whole
    # (rows sliced to the block: C-contiguous slices); Wo, vWo, bh, vbh the block's own
    F = Wh.shape[0]
    K = Wo.shape[1]
    n = j1 - j0
    # dz = (do · Woᵀ) ∘ act′ (Wo before its update)
    for r in range(nb):
        h, d, o = Hb[r, j0:j1], D[r, j0:j1], do[r]
        for j in range(n):
            w = Wo[j]
            t = zero
            for k in range(K):
                t += o[k] * w[k]
            if act == 0:
                dz = t if h[j] > zero else zero
            else:
                dz = t * h[j] * (one - h[j])
            d[j] = _flush(dz, tiny, zero)
    # bh and the block's rows of Wo
    for j in range(n):
        g = zero
        for r in range(nb):
            g += D[r, j0 + j]
        v = _flush(mu * vbh[j] + lr * g, tiny, zero)
        vbh[j] = v
        bh[j] -= v
        w, vw = Wo[j], vWo[j]
        for k in range(K):
            g = zero
            for r in range(nb):
                g += Hb[r, j0 + j] * do[r, k]
            v = _flush(mu * vw[k] + lr * g, tiny, zero)
            vw[k] = v
            w[k] -= v
    # Wh: each row's gradient Σ_r x_rk·dz_r is summed in acc (the block's row, in L1) and
    # used at once: no F×H gradient buffer to write and read back
    if full:
        for k in range(F):
            w, vw = Wh[k, j0:j1], vWh[k, j0:j1]
            if marks[q, k] == s:
                _row_gradient(acc, X, rows, q, nb, k, D, j0, j1, skip_zeros, zero)
                for j in range(n):
                    v = _flush(mu * vw[j] + lr * acc[j], tiny, zero)
                    vw[j] = v
                    w[j] -= v
            else:  # no gradient: the velocity decays
                for j in range(n):
                    v = _flush(mu * vw[j], tiny, zero)
                    vw[j] = v
                    w[j] -= v
    else:  # mu == 0 between the call's first and last steps: see the module docstring
        for u in range(n_touched[q]):
            k = touched[q, u]
            w = Wh[k, j0:j1]
            _row_gradient(acc, X, rows, q, nb, k, D, j0, j1, skip_zeros, zero)
            for j in range(n):
                w[j] -= _flush(lr * acc[j], tiny, zero)


@numba.njit(inline="always")
def _row_gradient(acc, X, rows, q, nb, k, D, j0, j1, skip_zeros, zero):
    # acc[:n] = Σ_r X[row r, k] · D[r, j0:j1] over the step's rows
    n = j1 - j0
    for j in range(n):
        acc[j] = zero
    for r in range(nb):
        x = X[rows[q, r], k]
        if x != zero or not skip_zeros:
            d = D[r, j0:j1]
            for j in range(n):
                acc[j] += x * d[j]


@numba.njit(inline="always")
def _block_forward(nb, q, j0, j1, act, zero, one, Wh, Wo, bh, Hb, plog, idx, val, nnz):
    # h = act(x·Wh + bh) for the hidden units [j0, j1), and the block's share of the logits
    K = Wo.shape[1]
    n = j1 - j0
    for r in range(nb):
        h = Hb[r, j0:j1]
        for j in range(n):
            h[j] = zero
        for p in range(nnz[q, r]):
            x = val[q, r, p]
            w = Wh[idx[q, r, p], j0:j1]
            _axpy(h, x, w)
        for j in range(n):
            a = h[j] + bh[j]
            if act == 0:
                h[j] = zero if a < zero else a  # NaN passes
            elif a >= zero:  # two branches: exp never overflows
                h[j] = one / (one + np.exp(-a))
            else:
                e = np.exp(a)
                h[j] = e / (one + e)
        lg = plog[r]
        for k in range(K):
            lg[k] = zero
        for j in range(n):
            hj = h[j]
            w = Wo[j]
            for k in range(K):
                lg[k] += hj * w[k]


@numba.njit(**_JIT)
def _steps_kernel(X, y, order, s0, s1, B, skip_zeros, act, lr, mu, zero, one, tiny, HB,
                  Wh, bh, Wo, bo, vWh, vbh, vWo, vbo,
                  idx, val, nnz, rows, marks, touched, n_touched, Hb, D, plog, do, acc, stats):
    F, H = Wh.shape
    nblk = (H + HB - 1) // HB
    marks[:, :] = -1  # each call is self-contained: steps restart at 0 every epoch
    nb_prev = 0
    loss_sum = 0.0
    correct = 0.0
    for s in range(s0, s1 + 1):
        have_prev = s > s0
        have_cur = s < s1
        q, qp = s & 1, (s - 1) & 1
        nb = 0
        if have_cur:
            nb = _gather(X, order, s, B, skip_zeros, q, idx, val, nnz, rows, marks, touched,
                         n_touched)
        # the first and last updates of the call pass over all of Wh; all do unless mu == 0
        full = s == s0 + 1 or s == s1 or mu != zero
        for blk in prange(nblk):
            # the block's columns as 0-based views: index arithmetic LLVM can prove
            # non-negative, so the inner loops vectorise (offset ranges ran 8x slower)
            j0 = blk * HB
            j1 = min(H, j0 + HB)
            WoB, vWoB = Wo[j0:j1], vWo[j0:j1]
            bhB, vbhB = bh[j0:j1], vbh[j0:j1]
            if have_prev:
                _block_backward(nb_prev, qp, s - 1, full, j0, j1, act, lr, mu, zero, one, tiny,
                                X, rows, skip_zeros, Wh, vWh, acc[blk], WoB, vWoB, bhB, vbhB,
                                Hb, D, do, marks, touched, n_touched)
            if have_cur:
                _block_forward(nb, q, j0, j1, act, zero, one, Wh, WoB, bhB, Hb, plog[blk], idx,
                               val, nnz)
        if not have_cur:
            break
        dl, dc = _softmax_step(y, rows, q, nb, nblk, plog, bo, vbo, do, lr, mu, zero, one,
                               tiny)
        loss_sum += dl
        correct += dc
        nb_prev = nb
    stats[0] += loss_sum
    stats[1] += correct


_steps_kernel_serial = _serial(_steps_kernel, "_steps_kernel_serial")


def workspace(B: int, F: int, H: int, K: int, dtype, threads: int) -> dict[str, np.ndarray]:
    """Every buffer :func:`train_steps` needs for batches of ``B`` rows, allocated once."""
    nblk = n_blocks(H, threads)
    return {
        "idx": np.empty((2, B, F), np.int32), "val": np.empty((2, B, F), dtype),
        "nnz": np.empty((2, B), np.int64), "rows": np.empty((2, B), np.int64),
        "marks": np.empty((2, F), np.int64), "touched": np.empty((2, F), np.int32),
        "n_touched": np.empty(2, np.int64), "Hb": np.empty((B, H), dtype),
        "D": np.empty((B, H), dtype), "plog": np.empty((nblk, B, K), dtype),
        "do": np.empty((B, K), dtype),
        "acc": np.empty((nblk, -(-H // nblk)), dtype),
    }


def n_blocks(H: int, threads: int) -> int:
    """Blocks of about :data:`BLOCK_TARGET` hidden units, a multiple of ``threads`` in number
    (so the threads get equal shares), never more than H."""
    per_thread = max(1, math.ceil(H / (threads * BLOCK_TARGET)))
    return min(H, threads * per_thread)


def train_steps(X, y, order, s0: int, s1: int, B: int, params: dict, velocity: dict,
                activation: str, lr: float, mu: float, ws: dict, stats, *,
                skip_zeros: bool = True, threads: int = 1) -> None:
    """Training steps s0..s1-1 of an epoch, in one call.

    X (N, F) rows and y (N,) integer labels; ``order`` (n,) int64: the epoch's permutation of the
    training rows, step s taking rows ``order[s·B : (s+1)·B]`` (the last one may be short).
    ``params`` and ``velocity``: the views ``Wh (F, H), bh (1, H), Wo (H, K), bo (1, K)`` of the
    flat parameter and velocity buffers, updated in place (v ← mu·v + lr·g; W ← W − v).
    ``ws``: :func:`workspace` of the same B, shapes, dtype and ``threads``. ``stats`` (2,)
    float64: the summed cross-entropy and correct count of the steps' rows are added to it.
    Values of do, dz and v below the dtype's smallest normal number are flushed to zero, as the
    other CPU kernels do; NaN propagates.
    """
    Wh, bh, Wo, bo = (params[n] for n in ("Wh", "bh", "Wo", "bo"))
    vWh, vbh, vWo, vbo = (velocity[n] for n in ("Wh", "bh", "Wo", "bo"))
    F, H = Wh.shape
    dt = Wh.dtype.type
    nblk = ws["plog"].shape[0]
    HB = -(-H // nblk)
    kernel = _steps_kernel if threads > 1 else _steps_kernel_serial
    kernel(X, y, order, s0, s1, B, skip_zeros, activation_id(activation), dt(lr), dt(mu), dt(0),
           dt(1), dt(np.finfo(Wh.dtype).tiny), HB, Wh, bh.reshape(-1), Wo, bo.reshape(-1),
           vWh, vbh.reshape(-1), vWo, vbo.reshape(-1), ws["idx"], ws["val"], ws["nnz"],
           ws["rows"], ws["marks"], ws["touched"], ws["n_touched"], ws["Hb"], ws["D"],
           ws["plog"], ws["do"], ws["acc"], stats)


def threads_for(H: int, B: int) -> int:
    """Threads for :func:`train_steps`: all of Numba's when each gets at least a block of
    hidden units, else one (a parallel region per step costs ~2 µs)."""
    T = numba.get_num_threads()
    return T if H >= T * BLOCK_TARGET // 2 else 1
