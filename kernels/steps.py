"""Small batches: many whole training steps in one compiled call (CPU).

``train_steps`` runs steps [s0, s1) of an epoch's permutation, each one the forward pass, the
backward pass and the momentum update of every parameter, as the per-step path of
:class:`fastmlp.train.Trainer` does with a gather, two products, the fused head and the momentum
kernel. That per-step path is this kernel's reference (``Trainer(compiled=False)``); the tests
hold the two to 1e-10 in float64.

Doing less work, exactly:
- only the rows of Wh whose input is nonzero in a step's rows (``touched``) enter x·Wh and
  receive a gradient: a zero input adds exactly zero to z and to its Wh gradient;
- with momentum every velocity still changes every step (v ← γ·v, W ← W − v where the gradient
  is zero). A row of Wh a step does not use is not read by it either, so its decay steps wait:
  ``last[k]`` is the step row k is up to date through, and before a step reads the row, or when
  the epoch ends, the m steps it sat out are applied to it at once (``_catch_up``): one step as
  the per-step path runs it (the same bits), m ≥ 2 in closed form, v ← γᵐ·v and
  W ← W − (γ + γ² + … + γᵐ)·v, the same sums rounded once instead of m times (the factors come
  from :func:`decay_tables`). So a step costs the rows it uses, not a pass over all of Wh and its
  velocity, and the result depends on the epoch's steps alone, not on how the epoch is cut into
  calls (rows wait across calls; the epoch's last call, ``finish``, brings every row up to date).
  With γ = 0 a step without gradient leaves W as it is and v = 0: the touched rows get
  W ← W − α·g, and every call finishes, its last step and final catch-up writing the velocity as
  the per-step path leaves it (0·v = 0 for finite v; a NaN v means NaN weights, which stay NaN
  either way);
- each Wh row's gradient is summed in a cache-resident row and applied at once, so no F×H
  gradient buffer is written and read back;
- rows sparse around c (X = S + 1·cᵀ, kernels/offset.py) take x·Wh = s·Wh + cᵀ·Wh (cᵀ·Wh once
  a step) and Σ_r x_rk·dz_r = Σ_r s_rk·dz_r + c_k·Σ_r dz_r (bh's gradient): a step costs S's
  nonzeros plus one row of Wh per feature whose c is nonzero (used and updated every step).

Threads split the hidden units: each owns one block of ``HB`` columns of Wh (rows of Wo, entries
of bh) and does the backward pass and update of the previous step and then the forward pass of
the current one for its block, in one parallel region per step (only for big steps: see
:func:`threads_for`); the 10 logits are reduced and the softmax taken between regions, serially,
in a fixed order (results do not depend on the thread count). No allocation per step: the
caller's :func:`workspace` holds every buffer.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange, uintp

from . import activation_id
from .fpenv import ftz_on, ftz_restore
from .pieces import (
    activation,
    activation_grad,
    decay_step,
    flush,
    logsumexp_argmax,
    momentum_step,
    plain_step,
    softmax_xent_grad,
)
from .runtime import FASTMATH, JIT, STEP_PRODUCTS, serial_twin
from .runtime import threads_for as _threads_for

# The block functions index whole arrays with unsigned column indices (``uintp``): no slices
# (each would be a reference-counted array in the loop) and no negative-index wraparound test
# in the inner loops, so LLVM vectorises them.


@numba.njit(inline="always")
def _mark_touched(order, a, nb, indptr, indices, q, s, marks, touched, n_touched, c):
    # the rows of Wh step s's inputs use, once each, into slot q (marks[k] == s when used);
    # offset rows (c given): every feature whose c is nonzero, then S's nonzeros
    nt = 0
    for k in range(c.shape[0]):
        if c[k] != 0:
            marks[k] = s
            touched[q, nt] = k
            nt += 1
    for r in range(nb):
        i = order[a + r]
        for p in range(indptr[i], indptr[i + 1]):
            k = indices[p]
            if marks[k] != s:
                marks[k] = s
                touched[q, nt] = k
                nt += 1
    n_touched[q] = nt


@numba.njit(inline="always")
def _softmax_step(y, order, a, nb, nblk, plog, bo, vbo, do, lr, mu, zero, one, tiny):
    # logits from the blocks' shares, softmax cross-entropy and accuracy; do (scaled by 1/nb)
    # overwrites the logits; then the bo step. Returns the summed loss and correct count.
    K = bo.shape[0]
    scale = one / nb
    loss_sum = 0.0
    correct = 0.0
    for r in range(nb):
        for k in range(K):
            t = bo[k]
            for blk in range(nblk):
                t += plog[blk, r, k]
            do[r, k] = t
        yi = y[order[a + r]]
        o = do[r]
        lse, best = logsumexp_argmax(o, zero)
        loss_sum += lse - o[yi]
        if best == yi:
            correct += 1.0
        softmax_xent_grad(o, yi, lse, scale, one, tiny, zero)
    for k in range(K):
        g = zero
        for r in range(nb):
            g += do[r, k]
        momentum_step(bo, vbo, k, vbo[k], g, lr, mu, tiny, zero)
    return loss_sum, correct


@numba.njit(inline="always")
def _catch_up(k, m, j0, j1, mu, tiny, zero, Wh, vWh, powers, sums):
    # the m steps row k of Wh sat out (v ← γ·v; W ← W − v each, flushed): one as the per-step
    # path runs it, the same bits; more at once, v ← γᵐ·v and W ← W − (γ + … + γᵐ)·v, with
    # powers[m] = γᵐ and sums[m] = γ + … + γᵐ. With γ = 0 one step leaves v = 0 (or NaN) for good.
    if m <= 0:
        return
    p = powers[m]
    c = sums[m]
    if m == 1 or mu == zero or not (np.isfinite(p) and np.isfinite(c)):
        # one step; or γ ≥ 1, whose factors overflow (0·inf would make NaN): replayed
        for _ in range(1 if mu == zero else m):
            for jj in range(j0, j1):
                decay_step(Wh, vWh, (k, uintp(jj)), mu, tiny, zero)
        return
    for jj in range(j0, j1):
        j = uintp(jj)
        v = vWh[k, j]
        vWh[k, j] = flush(p * v, tiny, zero)
        Wh[k, j] -= c * v


@numba.njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _block_forward(X, order, a, nb, s, j0, j1, act, mu, zero, one, tiny, q, touched, n_touched,
                   last, Wh, vWh, bh, Wo, Hb, plog, blk, powers, sums, c, crow):
    # h = act(x·Wh + bh) for the hidden units [j0, j1) of step s's rows order[a : a + nb], and
    # the block's share of their logits; each row of Wh the step uses is first brought up to
    # date (through step s − 1), then read once for all the step's rows. Offset rows (c
    # given): x·Wh = s·Wh + cᵀ·Wh, s = x − c read as S holds it, cᵀ·Wh summed in crow
    K = Wo.shape[1]
    offset = c.shape[0] > 0
    for r in range(nb):
        for jj in range(j0, j1):
            Hb[r, uintp(jj)] = zero
    if offset:
        for jj in range(j0, j1):
            crow[blk, uintp(jj - j0)] = zero
    for u in range(n_touched[q]):
        k = touched[q, u]
        if mu != zero:  # with γ = 0 a step without gradient leaves W as it is
            _catch_up(k, s - 1 - last[k], j0, j1, mu, tiny, zero, Wh, vWh, powers, sums)
        ck = c[k] if offset else zero
        for r in range(nb):
            x = X[order[a + r], k]
            if offset:
                x -= ck
            if x != zero:  # NaN != 0: kept
                for jj in range(j0, j1):
                    j = uintp(jj)
                    Hb[r, j] += x * Wh[k, j]
        if ck != zero:
            for jj in range(j0, j1):
                crow[blk, uintp(jj - j0)] += ck * Wh[k, uintp(jj)]
    if offset:
        for r in range(nb):
            for jj in range(j0, j1):
                Hb[r, uintp(jj)] += crow[blk, uintp(jj - j0)]
    for r in range(nb):
        for jj in range(j0, j1):
            j = uintp(jj)
            Hb[r, j] = activation(Hb[r, j] + bh[j], act, zero, one)
        for k in range(K):
            t = zero
            for jj in range(j0, j1):
                j = uintp(jj)
                t += Hb[r, j] * Wo[j, k]
            plog[blk, r, k] = t


@numba.njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _block_backward(X, order, a, nb, j0, j1, no_velocity, act, lr, mu, zero, one, tiny, q,
                    touched, n_touched, Wh, vWh, bh, vbh, Wo, vWo, Hb, D, do, acc, blk, c,
                    dsum):
    # the backward pass and update of step rows order[a : a + nb] for the hidden units
    # [j0, j1); Wo before its update. Of Wh, only the rows the step used (brought up to date by
    # its forward pass) have a gradient; the others' decay waits for _catch_up. no_velocity
    # (γ = 0, not the call's last step): W ← W − α·g, v left for _catch_up (see the docstring).
    # Offset rows (c given): Σ_r x_rk·dz_r = Σ_r s_rk·dz_r + c_k·Σ_r dz_r, Σ_r dz_r kept in dsum.
    K = Wo.shape[1]
    offset = c.shape[0] > 0
    for r in range(nb):  # dz = (do · Woᵀ) ∘ act′
        for jj in range(j0, j1):
            j = uintp(jj)
            t = zero
            for k in range(K):
                t += do[r, k] * Wo[j, k]
            D[r, j] = flush(activation_grad(t, Hb[r, j], act, zero, one), tiny, zero)
    for jj in range(j0, j1):  # bh and the block's rows of Wo
        j = uintp(jj)
        g = zero
        for r in range(nb):
            g += D[r, j]
        if offset:
            dsum[blk, uintp(jj - j0)] = g
        momentum_step(bh, vbh, j, vbh[j], g, lr, mu, tiny, zero)
        for k in range(K):
            g = zero
            for r in range(nb):
                g += Hb[r, j] * do[r, k]
            momentum_step(Wo, vWo, (j, k), vWo[j, k], g, lr, mu, tiny, zero)
    # Wh: each used row's gradient Σ_r x_rk·dz_r is summed in acc (the block's row, in L1) and
    # applied at once, so no F×H gradient buffer is written and read back
    for u in range(n_touched[q]):
        k = touched[q, u]
        if nb == 1 and no_velocity:  # one row: its gradient x·dz is applied as it is formed
            x = X[order[a], k]
            for jj in range(j0, j1):
                j = uintp(jj)
                plain_step(Wh, (k, j), x * D[0, j], lr, tiny, zero)
            continue
        if nb == 1:
            x = X[order[a], k]
            for jj in range(j0, j1):
                j = uintp(jj)
                momentum_step(Wh, vWh, (k, j), vWh[k, j], x * D[0, j], lr, mu, tiny, zero)
            continue
        for jj in range(j0, j1):
            acc[blk, uintp(jj - j0)] = zero
        ck = c[k] if offset else zero
        for r in range(nb):
            x = X[order[a + r], k]
            if offset:
                x -= ck
            if x != zero:
                for jj in range(j0, j1):
                    acc[blk, uintp(jj - j0)] += x * D[r, uintp(jj)]
        if ck != zero:
            for jj in range(j0, j1):
                acc[blk, uintp(jj - j0)] += ck * dsum[blk, uintp(jj - j0)]
        if no_velocity:
            for jj in range(j0, j1):
                plain_step(Wh, (k, uintp(jj)), acc[blk, uintp(jj - j0)], lr, tiny, zero)
        else:
            for jj in range(j0, j1):
                j = uintp(jj)
                momentum_step(Wh, vWh, (k, j), vWh[k, j], acc[blk, uintp(jj - j0)], lr, mu,
                              tiny, zero)


@numba.njit(**JIT)
def _steps_kernel(X, y, order, s0, s1, B, act, lr, mu, zero, one, tiny, HB, indptr, indices,
                  Wh, bh, Wo, bo, vWh, vbh, vWo, vbo, marks, touched, n_touched, last, Hb, D,
                  plog, do, acc, stats, finish, powers, sums, done, c, crow, dsum):
    saved = ftz_on()  # subnormals as zero on x86 (fpenv.py), here and in each parallel block
    F, H = Wh.shape
    n = order.shape[0]
    nblk = (H + HB - 1) // HB
    marks[:] = -1  # step numbers are unique within a call
    if s0 == 0 or mu == zero:  # an epoch's start, or after a call that finished
        last[:] = s0 - 1  # every row of Wh is up to date through step last[k]
    nb_prev = np.int64(0)  # not the literal 0: _block_backward would compile for it too
    correct = 0.0
    for s in range(s0, s1 + 1):
        have_prev = s > s0
        have_cur = s < s1
        a = s * B
        nb = min(a + B, n) - a if have_cur else 0
        q, qp = s & 1, (s - 1) & 1
        no_velocity = mu == zero and s < s1
        if have_cur:
            _mark_touched(order, a, nb, indptr, indices, q, s, marks, touched, n_touched, c)
        # one parallel region per step: each block does the previous step's backward pass and
        # update, then this step's forward pass (which needs the updated weights)
        for blk in prange(nblk):
            fp = ftz_on()
            j0 = blk * HB
            j1 = min(H, j0 + HB)
            if have_prev:
                _block_backward(X, order, a - B, nb_prev, j0, j1, no_velocity, act, lr, mu,
                                zero, one, tiny, qp, touched, n_touched, Wh, vWh, bh, vbh, Wo,
                                vWo, Hb, D, do, acc, blk, c, dsum)
            if have_cur:
                _block_forward(X, order, a, nb, s, j0, j1, act, mu, zero, one, tiny, q, touched,
                               n_touched, last, Wh, vWh, bh, Wo, Hb, plog, blk, powers, sums, c,
                               crow)
            ftz_restore(fp)
        if not have_cur:
            break
        for u in range(n_touched[q]):  # up to date through s once the next region's update ran
            last[touched[q, u]] = s
        dl, dc = _softmax_step(y, order, a, nb, nblk, plog, bo, vbo, do, lr, mu, zero, one,
                               tiny)
        # into stats step by step, in step order: the epoch's sum is then the same however the
        # calls split it (a resumed run's calls start short again)
        stats[0] += dl
        correct += dc
        nb_prev = nb
    if finish:  # every row of Wh brought up to date through step s1 - 1
        for blk in prange(nblk):
            fp = ftz_on()
            j0 = blk * HB
            j1 = min(H, j0 + HB)
            for k in range(F):
                _catch_up(k, s1 - 1 - last[k], j0, j1, mu, tiny, zero, Wh, vWh, powers, sums)
            ftz_restore(fp)
        last[:] = s1 - 1
    stats[1] += correct  # whole numbers: exact in any order
    done[0] = s1  # steps [0, s1) ran, and done[1]: whether every row is up to date
    done[1] = 1 if finish else 0
    ftz_restore(saved)


_steps_kernel_serial = serial_twin(_steps_kernel, "_steps_kernel_serial")


def workspace(B: int, F: int, H: int, K: int, dtype, threads: int) -> dict:
    """Every buffer :func:`train_steps` needs for batches of ``B`` rows, allocated once (its decay
    tables are added by the first call)."""
    nblk = n_blocks(H, threads)
    return {
        "marks": np.empty(F, np.int64), "touched": np.empty((2, F), np.int32),
        "n_touched": np.empty(2, np.int64), "last": np.full(F, -1, np.int64),
        "done": np.zeros(2, np.int64),
        "Hb": np.empty((B, H), dtype), "D": np.empty((B, H), dtype),
        "plog": np.empty((nblk, B, K), dtype),
        "do": np.empty((B, K), dtype), "acc": np.empty((nblk, -(-H // nblk)), dtype),
        # offset rows only: each block's cᵀ·Wh and Σ_r dz_r
        "crow": np.empty((nblk, -(-H // nblk)), dtype),
        "dsum": np.empty((nblk, -(-H // nblk)), dtype),
    }


def n_blocks(H: int, threads: int) -> int:
    """One block of hidden units per thread (never more than H): wide blocks keep the inner
    loops long, and one thread's block of Wh columns is read once per row (bench/RESULTS.md)."""
    return min(H, threads)


def decay_tables(mu: float, n: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """``powers[m] = γᵐ`` and ``sums[m] = γ + γ² + … + γᵐ`` for m in [0, n], γ = ``mu`` in
    ``dtype``: what m decay steps of a velocity (v ← γ·v; W ← W − v) come to, for
    :func:`train_steps`. Summed in NumPy's long double (extended precision on x86 Linux, float64
    elsewhere), rounded once to ``dtype``; factors below the smallest normal number are zero."""
    gamma = np.longdouble(np.dtype(dtype).type(mu))  # the γ the kernels multiply by
    powers = gamma ** np.arange(n + 1, dtype=np.longdouble)
    sums = np.concatenate(([np.longdouble(0)], np.cumsum(powers[1:])))
    with np.errstate(over="ignore"):  # γ ≥ 1: inf past the dtype's range, and _catch_up replays
        powers, sums = powers.astype(dtype), sums.astype(dtype)
    powers[np.abs(powers) < np.finfo(dtype).tiny] = 0  # subnormal factors flushed, as v is
    return powers, sums


def train_steps(X, y, order, s0: int, s1: int, B: int, params: dict, velocity: dict,
                activation: str, lr: float, mu: float, ws: dict, stats, nz: tuple, *,
                threads: int = 1, finish: bool = True, constants=None) -> None:
    """Training steps s0..s1-1 of an epoch, in one call.

    X (N, F) rows and y (N,) integer labels; ``order`` (n,) int64: the epoch's permutation of the
    training rows, step s taking rows ``order[s·B : (s+1)·B]`` (the last one may be short).
    ``params`` and ``velocity``: the views ``Wh (F, H), bh (1, H), Wo (H, K), bo (1, K)`` of the
    flat parameter and velocity buffers, updated in place (v ← mu·v + lr·g; W ← W − v).
    ``ws``: :func:`workspace` of the same B, shapes, dtype and ``threads``; ``nz``:
    :func:`.sparse.csr` of the training rows, or with ``constants`` c (F,) of S = X − 1·cᵀ
    (``csr(X, around=c)``; s = fl(x − c) as S holds it, the bound of kernels/offset.py each
    step). ``stats`` (2,) float64: the summed
    cross-entropy and correct count of the steps' rows are added to it. Values of do, dz and v
    below the dtype's smallest normal number are flushed to zero, as the other CPU kernels do;
    NaN propagates.

    An epoch's calls run its steps in order from s0 = 0, with the same ``ws`` (ValueError
    otherwise, with momentum). With momentum, rows of Wh that the last steps did not use may
    still owe their decay (kept in ``ws``) until a call with ``finish`` (the epoch's last; a
    call with s0 = s1 finishes without a step); with ``mu`` = 0 every call finishes.
    ``ws["done"]`` holds, after a call, the steps run so far and whether the call finished.
    """
    Wh, bh, Wo, bo = (params[n] for n in ("Wh", "bh", "Wo", "bo"))
    vWh, vbh, vWo, vbo = (velocity[n] for n in ("Wh", "bh", "Wo", "bo"))
    H = Wh.shape[1]
    dt = Wh.dtype.type
    nblk = ws["plog"].shape[0]
    HB = -(-H // nblk)
    n_steps = -(-order.shape[0] // B)
    done, up_to_date = (int(d) for d in ws["done"])
    if mu != 0 and s0 != 0 and (s0 != done or up_to_date):  # rows may owe decay up to s0
        raise ValueError(f"steps from {s0}: the epoch's steps run in order from 0, and the "
                         f"last call ran to {done}{' and finished' if up_to_date else ''}")
    key = (float(mu), n_steps, Wh.dtype)
    if ws.get("decay", (None,))[0] != key:  # once per run: m ≤ the epoch's steps
        ws["decay"] = (key, *decay_tables(mu, n_steps, Wh.dtype))
    _, powers, sums = ws["decay"]
    c = (np.zeros(0, Wh.dtype) if constants is None
         else np.ascontiguousarray(constants, Wh.dtype))
    kernel = _steps_kernel if threads > 1 else _steps_kernel_serial
    kernel(X, y, order, s0, s1, B, activation_id(activation), dt(lr), dt(mu), dt(0), dt(1),
           dt(np.finfo(Wh.dtype).tiny), HB, nz[0], nz[1], Wh, bh.reshape(-1), Wo,
           bo.reshape(-1), vWh, vbh.reshape(-1), vWo, vbo.reshape(-1), ws["marks"],
           ws["touched"], ws["n_touched"], ws["last"], ws["Hb"], ws["D"], ws["plog"],
           ws["do"], ws["acc"], stats, finish or mu == 0, powers, sums, ws["done"], c, ws["crow"],
           ws["dsum"])


def threads_for(H: int, B: int) -> int:
    """Threads for :func:`train_steps`: all of Numba's when :func:`.runtime.threads_for` gives a
    step of B rows × H hidden units more than one (:data:`.runtime.STEP_PRODUCTS` a thread),
    each owning one block of hidden units (:func:`n_blocks`), else one. Each step is a parallel
    region, and waking the idle thread for it costs ~60 µs on a 2-core VM, more than a step of
    B ≤ 32 at H = 300 takes (bench/RESULTS.md has the A/B)."""
    return numba.get_num_threads() if _threads_for(B * H, STEP_PRODUCTS) > 1 else 1
