"""Minibatch epochs at compiled speed: many whole training steps (2 ≤ B ≤ 512) in one call (CPU).

:func:`train_chunk` runs steps [s0, s1) of an epoch's shuffled order, each one what the per-step
path of :class:`fastmlp.train.Trainer` does with a gather, two BLAS products, the fused head and
the momentum kernel, with no Python and no allocation per step:

1. Z = Xb·Wh over the batch's rows, in one of three forms of the rows (``mode``):
   - ``DENSE``: the batch's rows gathered into a contiguous (B, F) buffer (two of them: the
     previous step's backward pass reads its own), then one ``gemm`` (kernels/blas.py):
     NumPy's own OpenBLAS, called from the compiled code, on one thread. The kernel's own
     blocked loops before it took 1.5-2× OpenBLAS's time per product: epochs of
     784-{64,300,1000}-10 at B 10-100 now take 1.24-1.73× less CPU time
     (bench/results/minibatch_vs_jax/blas_dense.txt). Where NumPy has no OpenBLAS, ``gemm``
     is kernels/blas.py's Numba loops, the same tiles, measured at ~2× those loops' time;
   - ``SPARSE``: each row's nonzeros (CSR of all rows, built once), 8 per sweep over the row of Z;
   - ``OFFSET``: rows sparse around a constant, X = S + 1·cᵀ (kernels/offset.py): Z = S·Wh + 1·u,
     with u = cᵀ·Wh formed during the previous step's update pass over Wh (or at the call's
     start), so it costs no extra pass. Rounding: kernels/offset.py states the bound against
     the dense product (the same order as the dense product's own where |c| ~ |x|).
2. The head: bias and activation over each block's columns of Z (``activate_block``, after
   that block's bh update: elementwise, so the team's blocks share it); then the per-step
   path's fused head (kernels/cpu.py's, which that path runs serially for batches under 512
   rows) for training rows only, with its sums in the same order (tiles of four rows, two
   outputs per sweep): output layer, softmax cross-entropy, accuracy, dWo, dbo, dbh, and dZ
   written over Z (``_head``).
3. dWh = Xbᵀ·dZ fused with the momentum update of Wh: rows of the gradient are summed into a
   small buffer and applied at once (v ← γ·v + α·g, flushed; W ← W − v), so no F×H gradient
   is written and read back. Dense rows: ``gemm`` of ``grad_rows(F, H)`` rows (~GRAD_ENTRIES
   entries, in L2) at a time. (gemm's own beta = γ, folding the update into the product, was
   tried: it rounds γ·v apart from α·g, and diverging float64 runs then left the per-step
   path's 1e-10.) Sparse rows: the batch transposed per step (counting sort, buffers sized
   once), each feature's entries 8 per sweep; OFFSET adds c_k·(1ᵀ·dZ) = c_k·dbh to row k's
   gradient.
   Every row of Wh takes its update every step, gradient or not: the per-step path's formula.
4. The momentum update of Wo and bo with the head's gradients (bh's: in 2, per block, before
   the next step's activation); the batch's summed loss and correct count added to the
   epoch's.

Exactness: the same operations as the per-step path, in the same order per step, except the
summation order inside the two products (BLAS's on the whole batch there; here BLAS's on the
gradient's row blocks, or the sparse products' own order): float64 parameters
agree to 1e-10 relative after epochs (tests/test_compiled_minibatch.py). Subnormals: the call
runs with FTZ/DAZ set on x86 (fpenv.py), and v, do, dz are flushed explicitly as elsewhere.

Threads: the hidden units split into ``blocks`` (``workspace(blocks=...)``), and a team of up
to that many threads (``runtime.run_team``; kernels/team.py) runs the whole call, each thread
the same compiled function on its blocks, meeting at two barriers a step (a spin on a shared
counter, 0.04 µs with two threads on the 2-core VM, bench/team_barrier.py: a Numba parallel
region per step cost 10-60 µs, which lost
to one thread everywhere):
- each block: the previous step's backward pass and Wh update, then this step's forward product,
  over its own columns of Wh, vWh, Z and u only;
- barrier; thread 0: the small parameters' updates and the head; the last thread meanwhile the
  next step's rows (sparse: this step's nonzeros by feature; dense: the next step's rows
  gathered); barrier.
Each element is summed by one block in one order, so the team's size never changes a bit. Sparse
and offset rows: nor do the blocks. Dense rows: OpenBLAS sums a product cut into column blocks in
another order (its micro-kernels' edges), so the blocks do change bits there; the threads still
do not, and OpenBLAS runs on the calling thread (``blas.threads(1)``), since its own threads
change bits too and made these small products 2.7-8.5× slower on the loaded 2-core machine
(bench/results/minibatch_vs_jax/blas_dense.txt). How many threads:
``fastmlp.strategies.compiled_minibatch.threads_for``, measured; the blocks follow from B·H
alone, not from the machine's cores. A member that fails sets the team's stop word, and the
others leave their next barrier (``runtime.run_team``): a team never waits on a member that
is gone.

Compile time: the kernel is compiled per form of the rows (dense; sparse and offset share one),
only the one a run uses, once per dtype, one compilation for any number of threads
(``_specialise``); the dense one under a name that says which ``gemm`` it calls
(``BLAS.tag``). Its helpers are compiled functions of their own, called, not
``inline="always"`` (Numba inlines such a helper by re-typing its body at every call site; LLVM
still inlines the small ones where it pays), and the head is kernels/minibatch_head.py's,
without the per-step head kernel's threads' partial sums and evaluation rows. First call with an
empty cache, 784-64-10, B = 100, dense float32, CPU time of the first epoch in a fresh process
on the shared 2-core machine (load ~2.8): 7.0-7.4 s with the own product loops, 5.7-6.0 s with
``gemm`` (a call compiles to a call); with a warm cache 0.41-0.46 s either way (loading; the
next epoch 0.06 s). Earlier, sparse with ~3 s of kernels/sparse.py's CSR builder: 11 s (load
2). Still far over the issue's target (a first epoch ≤ 2.5× a cached one: ≤ ~1 s of compiling
at this size): what remains is LLVM optimising a few large vectorised loops, the head's the
largest.
"""

from __future__ import annotations

import types

import numba
import numpy as np
from numba import uintp

from . import activation_id
from .blas import BLAS, gemm
from .blas import threads as blas_threads
from .fpenv import ftz_on, ftz_restore
from .minibatch_head import _head, activate_block
from .pieces import column_starts, count_columns, momentum_step, scatter_by_column
from .pieces import flush as _flush
from .runtime import JIT as _JIT
from .runtime import run_team, split
from .sparse import _axpy_run
from .team import barrier

DENSE, SPARSE, OFFSET = 0, 1, 2
MODES = {"dense": DENSE, "sparse": SPARSE, "offset": OFFSET}
GROUP = 8  # sparse entries summed per sweep (kernels/sparse.py's measured best)
GRAD_ENTRIES = 65536  # entries of dWh per product of the dense backward pass (in L2: measured)
_SERIAL = dict(_JIT, parallel=False)


@numba.njit(**_SERIAL)
def _gather_rows(X, order, a, nb, Xb):
    # Xb[:nb] = the batch's rows of X, contiguous: the operand of both dense products
    F = X.shape[1]
    for r in range(nb):
        i = order[a + r]
        for k in range(F):
            Xb[r, k] = X[i, k]


@numba.njit(**_SERIAL)
def _update_row(Wh, vWh, k, G, f, j0, j1, lr, mu, tiny, zero, mode, c, dbh, u):
    # the momentum step of row k of Wh from gradient row G[f] (+ c_k·dbh for OFFSET); then,
    # for OFFSET, u += c_k · (the updated row): u = cᵀ·Wh for the next step's forward pass
    kk = uintp(k)
    if mode == 2:
        ck = c[kk]
        for jj in range(j0, j1):
            j = uintp(jj)
            v = _flush(mu * vWh[kk, j] + lr * (G[f, j] + ck * dbh[j]), tiny, zero)
            vWh[kk, j] = v
            Wh[kk, j] -= v
        if ck != zero:  # a loop of its own: one store stream, so it vectorises
            for jj in range(j0, j1):
                j = uintp(jj)
                u[j] += ck * Wh[kk, j]
    else:
        for jj in range(j0, j1):
            j = uintp(jj)
            v = _flush(mu * vWh[kk, j] + lr * G[f, j], tiny, zero)
            vWh[kk, j] = v
            Wh[kk, j] -= v


@numba.njit(**_SERIAL)
def _transpose_batch(order, a, nb, indptr, indices, values, cnt, cptr, crow, cval):
    # the batch's nonzeros feature by feature: feature k's are crow/cval[cptr[k] : cptr[k+1]]
    # (batch rows increasing); cnt is scratch (F + 1)
    for k in range(cnt.shape[0]):
        cnt[k] = 0
    for r in range(nb):
        count_columns(indptr, indices, order[a + r], cnt)
    column_starts(cnt, 0, cptr)
    for r in range(nb):
        scatter_by_column(indptr, indices, values, order[a + r], r, cnt, crow, cval)


@numba.njit(**_SERIAL)
def _small_momentum(p, v, g, lr, mu, tiny, zero):
    for t in range(p.shape[0]):
        momentum_step(p, v, t, v[t], g[t], lr, mu, tiny, zero)


@numba.njit(**_SERIAL)
def _forward_sparse(order, a, nb, indptr, indices, values, Wh, Z, u, mode, zero, h0, h1):
    # Z[:nb, h0:h1] = (u for OFFSET, else 0) + each row's nonzeros times their rows of
    # Wh[:, h0:h1], eight per sweep
    for r in range(nb):
        i = order[a + r]
        if mode == 2:
            for j in range(h0, h1):
                Z[r, j] = u[j]
        else:
            for j in range(h0, h1):
                Z[r, j] = zero
        _axpy_run(Z, r, Wh, indptr[i], indptr[i + 1], indices, values, h0, h1, GROUP)


@numba.njit(**_SERIAL)
def _backward_sparse(cptr, crow, cval, D, G, g, Wh, vWh, lr, mu, tiny, zero, mode, c, dbh, u,
                     h0, h1):
    # dWh[:, h0:h1] = Sᵀ·D (+ c·dbh for OFFSET) feature by feature over the batch transposed
    # (_transpose_batch), each row applied by the momentum step (rows without an entry: their
    # decay); OFFSET: u[h0:h1] = cᵀ·Wh after the update
    F = Wh.shape[0]
    if mode == 2:
        for j in range(h0, h1):
            u[j] = zero
    for k in range(F):
        for j in range(h0, h1):
            G[g, j] = zero
        _axpy_run(G, g, D, cptr[k], cptr[k + 1], crow, cval, h0, h1, GROUP)
        _update_row(Wh, vWh, k, G, g, h0, h1, lr, mu, tiny, zero, mode, c, dbh, u)


@numba.njit(inline="always")
def _forward_rows_dense(X, order, a, nb, indptr, indices, values, Wh, Z, u, mode, Xb, zero, h0,
                        h1):
    # Z[:nb, h0:h1] = Xb[:nb]·Wh[:, h0:h1], Xb the batch's rows gathered (_gather_rows)
    F, H = Wh.shape
    if h1 > h0:
        gemm(False, False, nb, h1 - h0, F, zero + 1, Xb, 0, F, Wh, h0, H, zero, Z, h0, H)


@numba.njit(inline="always")
def _forward_rows_sparse(X, order, a, nb, indptr, indices, values, Wh, Z, u, mode, Xb, zero,
                         h0, h1):
    _forward_sparse(order, a, nb, indptr, indices, values, Wh, Z, u, mode, zero, h0, h1)


@numba.njit(inline="always")
def _backward_rows_dense(X, order, a, nb, cptr, crow, cval, D, G, g, Xb, Wh, vWh, lr, mu,
                         tiny, zero, mode, c, dbh, u, h0, h1):
    # dWh[:, h0:h1] = Xb[:nb]ᵀ·D[:, h0:h1], G[g].shape[0] rows at a time into G[g] (in L2),
    # each row then applied by the momentum step: no F×H gradient is written and read back
    F, H = Wh.shape
    rows = G.shape[1]
    if h1 > h0:
        for k0 in range(0, F, rows):
            kn = min(rows, F - k0)
            gemm(True, False, kn, h1 - h0, nb, zero + 1, Xb, k0, F, D, h0, H, zero, G[g], h0, H)
            for q in range(kn):
                _update_row(Wh, vWh, k0 + q, G[g], q, h0, h1, lr, mu, tiny, zero, 0, c, dbh, u)


@numba.njit(inline="always")
def _backward_rows_sparse(X, order, a, nb, cptr, crow, cval, D, G, g, Xb, Wh, vWh, lr, mu,
                          tiny, zero, mode, c, dbh, u, h0, h1):
    _backward_sparse(cptr, crow, cval, D, G, g, Wh, vWh, lr, mu, tiny, zero, mode, c, dbh, u, h0,
                     h1)


# what _chunk_share calls for the two products; each compilation binds its own (_specialise)
_forward, _backward = _forward_rows_dense, _backward_rows_dense


@numba.njit(inline="always")
def _no_transpose(order, a, nb, indptr, indices, values, cnt, cptr, crow, cval):
    pass  # dense rows: their backward pass reads the gathered rows


@numba.njit(inline="always")
def _no_gather(X, order, a, nb, Xb):
    pass  # sparse and offset rows: their products read the nonzeros


# the batch's nonzeros by feature, and the batch's dense rows gathered: bound per form
_transpose, _gather = _transpose_batch, _gather_rows


def _chunk_share(t, T, sync, mode, X, y, indptr, indices, values, c, order, s0, s1, B, act, lr,
                 mu, zero, one, tiny, scales, nblk, Wh, bh, Wo, bo, vWh, vbh, vWo, vbo, Z, o, G,
                 Xb, u, cnt, cptr, crow, cval, WoT, dWoT, dh, pad, dWo, dWo_flat, dbo, dbh,
                 bstats, stats):
    # thread t of a team of T (runtime.run_team) running steps [s0, s1): it owns blocks
    # split(nblk, t, T) of the nblk blocks of hidden units; the team meets at two barriers a step
    saved = ftz_on()  # subnormals as zero on x86 (fpenv.py), on every thread of the team
    F, H = Wh.shape
    n = order.shape[0]
    # hidden units per block, a multiple of 16 (64 bytes of float32): no two threads write
    # one cache line of a row of Wh, vWh or Z (the last block is the smaller, maybe empty)
    HB = ((H + nblk - 1) // nblk + 15) // 16 * 16
    b0, b1 = split(nblk, t, T)
    last = t == T - 1  # the thread that prepares the next step's rows beside thread 0's head
    vWo_flat = vWo.reshape(-1)
    Wo_flat = Wo.reshape(-1)
    passed = 0  # barriers this thread has passed in the call
    if mode == 2 and s0 < s1:  # u = cᵀ·Wh for the first step; later steps' comes from updates
        h0, h1 = min(H, b0 * HB), min(H, b1 * HB)  # this thread's blocks' columns
        for j in range(h0, h1):
            u[j] = zero
        for k in range(F):
            ck = c[k]
            if ck != zero:
                for j in range(h0, h1):
                    u[j] += ck * Wh[k, j]
    if last and s0 < s1:  # the first step's rows (dense rows: gathered; else none)
        _gather(X, order, s0 * B, min(s0 * B + B, n) - s0 * B, Xb[s0 & 1])
    passed = barrier(sync, T, passed)
    nb_prev = s0 - s0  # an int64 variable, not the literal 0 (a second compile of _backward)
    for s in range(s0, s1 + 1):
        if passed < 0:  # a member failed (runtime.run_team): stop here
            break
        have_prev = s > s0
        have_cur = s < s1
        a = s * B
        nb = min(a + B, n) - a if have_cur else 0
        # each block of hidden units: the previous step's backward pass and Wh update, then
        # this step's Z = Xb·Wh (no bias: the head adds it), which reads only its own block's
        # columns of Wh (and of u); so each entry is summed in the same order whatever T is
        for blk in range(b0, b1):
            h0 = min(H, blk * HB)
            h1 = min(H, h0 + HB)
            if have_prev:
                _backward(X, order, a - B, nb_prev, cptr, crow, cval, Z, G, blk,
                          Xb[(s - 1) & 1], Wh, vWh, lr, mu, tiny, zero, mode, c, dbh, u, h0, h1)
            if have_cur:
                _forward(X, order, a, nb, indptr, indices, values, Wh, Z, u, mode, Xb[s & 1],
                         zero, h0, h1)
                activate_block(Z, nb, h0, h1, bh, vbh, dbh, have_prev, lr, mu, tiny, zero, one,
                               act)
            elif have_prev:  # the last step's bh, with no step after it to activate
                activate_block(Z, 0, h0, h1, bh, vbh, dbh, True, lr, mu, tiny, zero, one, act)
        passed = barrier(sync, T, passed)
        if passed < 0:
            break
        if t == 0:
            if have_prev:  # the previous step's other parameters, from the head's gradients
                _small_momentum(Wo_flat, vWo_flat, dWo_flat, lr, mu, tiny, zero)
                _small_momentum(bo, vbo, dbo, lr, mu, tiny, zero)
            if have_cur:  # the per-step path's head: dZ over Z, dWo, dbo, dbh, the batch's stats
                _head(Z, nb, Wo, bo, y, order, a, act, scales[nb], zero, one, tiny, WoT, o,
                      dh, dWoT, pad, dWo, dbo, dbh, bstats)
                # added step by step, as the per-step path adds its batches': the epoch's sums
                # do not depend on how it is cut into calls (a resumed run records the same)
                stats[0] += bstats[0, 0]
                stats[1] += bstats[0, 1]
        if not have_cur:
            break
        if last:  # this step's nonzeros by feature for its backward pass (sparse and offset
            # rows), the next step's rows gathered beside this one's (dense rows)
            _transpose(order, a, nb, indptr, indices, values, cnt, cptr, crow, cval)
            if s + 1 < s1:
                _gather(X, order, a + B, min(a + 2 * B, n) - a - B, Xb[(s + 1) & 1])
        passed = barrier(sync, T, passed)
        nb_prev = nb
    ftz_restore(saved)


def _specialise(name: str, dense: bool):
    # _chunk_share compiled with its products bound to one form of the rows: a run compiles the
    # one it uses only (each compilation costs seconds), and the dense one compiles no sparse
    # code. A copy of the function under its own name (its own on-disk cache), reading
    # _forward/_backward/_transpose/_gather from its own globals.
    fn = _chunk_share
    scope = dict(fn.__globals__, _forward=_forward_rows_dense if dense else _forward_rows_sparse,
                 _backward=_backward_rows_dense if dense else _backward_rows_sparse,
                 _transpose=_no_transpose if dense else _transpose_batch,
                 _gather=_gather_rows if dense else _no_gather)
    copy = types.FunctionType(fn.__code__, scope, name, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = name
    return numba.njit(**_SERIAL)(copy)


# dense rows? -> the compilation; offset rows run the sparse one
_CHUNK_KERNELS = {
    True: _specialise(f"_chunk_dense_{BLAS.tag}", True),
    False: _specialise("_chunk_sparse", False),
}


def grad_rows(F: int, H: int) -> int:
    """Rows of dWh (F, H) per product in the dense backward pass: ~GRAD_ENTRIES entries."""
    return max(1, min(F, GRAD_ENTRIES // max(H, 1)))


def workspace(B: int, F: int, H: int, K: int, dtype, nnz_max: int = 0, blocks: int = 1) -> dict:
    """Every buffer :func:`train_chunk` needs for batches of up to ``B`` rows of F features, H
    hidden units, K classes in ``dtype``; ``nnz_max``: the most nonzeros any B training rows
    hold together (sparse and offset rows; ``kernels.sparse.max_rows_nnz``); ``blocks``: the
    blocks of hidden units each step's products are split into (at most one thread each; the
    results depend on the blocks of dense rows, not on the threads). Allocated once, but for
    dense rows' gathered rows and gradient rows, sized by :func:`train_chunk`'s first dense
    call."""
    dt = np.dtype(dtype)
    dWo = np.empty(H * K, dt)
    return {
        "Z": np.empty((B, H), dt), "o": np.empty((4, K), dt),
        "dh": np.empty((4, H), dt), "pad": np.zeros(H, dt),
        "G": np.empty((max(1, min(blocks, H)), H), dt),  # a gradient row per block
        "Xb": np.empty((2, 0, F), dt),  # two steps' gathered rows (dense: sized at first use)
        "u": np.zeros(H, dt), "cnt": np.empty(F + 1, np.int64), "cptr": np.empty(F + 1, np.int64),
        "crow": np.empty(max(nnz_max, 1), np.int32), "cval": np.empty(max(nnz_max, 1), dt),
        "WoT": np.empty((K, H), dt), "dWoT": np.empty((K, H), dt), "dWo_flat": dWo,
        "dWo": dWo.reshape(H, K), "dbo": np.empty(K, dt), "dbh": np.empty(H, dt),
        "bstats": np.zeros((1, 2), np.float64),
        # scales[n] = 1/n in the dtype, as the per-step path's head gets it for n rows
        "scales": np.array([1.0] + [1.0 / n for n in range(1, B + 1)], np.float64).astype(dt),
    }


def train_chunk(mode: str, X, y, rows: tuple, c, order, s0: int, s1: int, B: int,
                params: dict, velocity: dict, activation: str, lr: float, mu: float, ws: dict,
                stats, threads: int = 1) -> None:
    """Training steps s0..s1-1 of an epoch, in one compiled call.

    ``mode``: "dense" (X's rows as they are), "sparse" (``rows``: the CSR ``(indptr, indices,
    values)`` of X's training rows, their nonzeros) or "offset" (``rows``: the CSR of S = X −
    1·cᵀ, ``c`` (F,) the per-feature constant; X itself is then not read). X (N, F) rows, y (N,)
    integer labels; ``order`` (n,) int64: the epoch's permutation of the training rows, step s
    taking rows ``order[s·B : (s+1)·B]`` (the last may be short). ``params``/``velocity``: the
    views ``Wh (F, H), bh (1, H), Wo (H, K), bo (1, K)`` of the flat parameter and velocity
    buffers, updated in place (v ← mu·v + lr·g; W ← W − v, every parameter every step).
    ``ws``: :func:`workspace` for B; ``stats`` (2,) float64 gets the steps' summed cross-entropy
    and correct count added, step by step. ``threads``: the team's size (at most the
    workspace's blocks; ``runtime.run_team``). Steps (and the sums) are independent of how an
    epoch is cut into calls and of ``threads``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    Wh, bh, Wo, bo = (params[n] for n in ("Wh", "bh", "Wo", "bo"))
    vWh, vbh, vWo, vbo = (velocity[n] for n in ("Wh", "bh", "Wo", "bo"))
    dt = Wh.dtype.type
    if ws["Z"].shape[0] < B or ws["Z"].dtype != Wh.dtype:
        raise ValueError("the workspace is for smaller batches or another dtype")
    indptr, indices, values = rows
    Xb, G = ws["Xb"], ws["G"]
    nblk = G.shape[0]  # blocks of hidden units
    if mode == "dense":
        if Xb.shape[1] < B:  # sized at the first dense call
            Xb = ws["Xb"] = np.empty((2, ws["Z"].shape[0], Wh.shape[0]), Wh.dtype)
            ws["G_rows"] = np.empty((nblk, grad_rows(*Wh.shape), Wh.shape[1]), Wh.dtype)
        G = ws["G_rows"]
    sync = np.zeros(2, np.int64)  # the team's barrier counter and stop word
    # OpenBLAS on the calling thread: the products are small and many (no wake-ups of its
    # pool), and its own threads would change the bits (the docstring's "Threads")
    with blas_threads(1):
        run_team(_CHUNK_KERNELS[mode == "dense"], max(1, min(threads, nblk)), sync, MODES[mode],
                 X, y, indptr, indices, values, c, order, s0, s1, B, activation_id(activation),
                 dt(lr), dt(mu), dt(0), dt(1), dt(np.finfo(Wh.dtype).tiny), ws["scales"], nblk,
                 Wh, bh.reshape(-1), Wo, bo.reshape(-1), vWh, vbh.reshape(-1), vWo,
                 vbo.reshape(-1), ws["Z"], ws["o"], G, Xb, ws["u"], ws["cnt"], ws["cptr"],
                 ws["crow"], ws["cval"], ws["WoT"], ws["dWoT"], ws["dh"], ws["pad"], ws["dWo"],
                 ws["dWo_flat"], ws["dbo"], ws["dbh"], ws["bstats"], stats)
