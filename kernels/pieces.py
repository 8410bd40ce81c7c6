"""The arithmetic pieces the CPU kernels share, each written once (``numba.njit(inline="always")``).

Inlined into their callers (``cpu``, ``steps``, ``sparse``, ``minibatch``, ``minibatch_head``), so
they take the caller's fastmath flags and cost no call; scalars ``zero``, ``one`` and ``tiny`` (the
dtype's smallest normal number) come typed from the caller, which keeps float32 arithmetic in
float32. Their references, in array form, are in :mod:`.reference` (named with each piece).

- :func:`flush`: x, or zero when subnormal.
- :func:`activation`: act(a) for one pre-activation a (``ACTIVATIONS`` order: 0 relu, 1 sigmoid);
  reference ``relu_forward`` / ``sigmoid_forward``.
- :func:`activation_grad`: dz = dh ∘ act′, from act's output h; reference ``relu_backward`` /
  ``sigmoid_backward``.
- :func:`logsumexp_argmax`: log Σ exp(o) and the first maximum of one row of logits;
  reference ``crossentropy_forward`` and ``argmax``.
- :func:`softmax_xent_grad`: a row's logits become (softmax(o) − onehot(y))·scale, flushed;
  reference ``softmax_forward`` + ``softmax_crossentropy_backward``.
- :func:`momentum_step`: v ← γ·v + α·g (flushed); W ← W − v, for one parameter; reference
  ``momentum``. :func:`decay_step` is the same with g = 0 (a parameter a step did not use), and
  :func:`plain_step` the same with γ = 0 and no velocity kept (W ← W − α·g).

The parameter pieces index ``W[at]`` and ``V[at]`` with ``at`` an index or an index tuple, so one
piece serves flat buffers and (F, H) matrices.

The output layer of a tile of four rows (``cpu``'s fused head and ``minibatch_head``, whose sums
must stay in the same order; reference ``hidden_to_loss``):

- :func:`tile_logits`: the four rows' logits, two outputs per sweep.
- :func:`tile_backward`: dWoᵀ += doᵀ·h and dh = do·Woᵀ for the tile, one sweep over Woᵀ.

The counting sort of CSR rows by column (``sparse``'s blocks and ``minibatch``'s batches; the
result is the rows' transpose, each column's rows increasing):

- :func:`count_columns`, then :func:`column_starts`, then :func:`scatter_by_column`.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(inline="always")
def flush(x, tiny, zero):
    """x, or zero when subnormal (|x| < ``tiny``), as FTZ hardware would: x86 arithmetic on
    subnormals takes slow microcode assists. NaN fails the test: kept."""
    return zero if abs(x) < tiny else x


@numba.njit(inline="always")
def activation(a, act, zero, one):
    """act(a): relu (act 0) max(a, 0), NaN passing as in the reference; sigmoid (act 1) in two
    branches, so exp never overflows."""
    if act == 0:
        return zero if a < zero else a
    if a >= zero:
        return one / (one + np.exp(-a))
    e = np.exp(a)
    return e / (one + e)


@numba.njit(inline="always")
def activation_grad(dh, h, act, zero, one):
    """dz = dh · act′ from the activation's output h: relu dh·[h > 0], sigmoid dh·h·(1 − h)
    (unflushed)."""
    if act == 0:
        return dh if h > zero else zero
    return dh * h * (one - h)


@numba.njit(inline="always")
def logsumexp_argmax(o, zero):
    """(log Σₖ exp(o[k]), k of the first maximum) of one row of logits o (K,), the maximum
    subtracted before the exps. The row's cross-entropy is the first minus o[y]."""
    m = o[0]
    best = 0
    for k in range(1, o.shape[0]):
        if o[k] > m:  # strict: the first maximum, as np.argmax
            m = o[k]
            best = k
    total = zero
    for k in range(o.shape[0]):
        total += np.exp(o[k] - m)
    return m + np.log(total), best


@numba.njit(inline="always")
def softmax_xent_grad(o, yi, lse, scale, one, tiny, zero):
    """o (K,), a row's logits with log-sum-exp ``lse`` and label ``yi``, becomes the gradient
    of ``scale`` × its cross-entropy: (exp(o[k] − lse) − [k = yi])·scale, flushed."""
    for k in range(o.shape[0]):
        p = np.exp(o[k] - lse)
        if k == yi:
            p -= one
        o[k] = flush(p * scale, tiny, zero)


@numba.njit(inline="always")
def momentum_step(W, V, at, v, g, lr, mu, tiny, zero):
    """One momentum step of parameter ``W[at]`` with gradient g: v ← γ·v + α·g, flushed (a
    velocity whose gradient stays zero decays into the subnormal range); W ← W − v.

    ``v`` is ``V[at]``, read by the caller before it computes g: with fastmath's ``contract``,
    LLVM fuses one of the two products into an FMA, and which one depends on the order of the
    loads; this order is the one the kernels had before the pieces, so the bits stay as they
    were (bench/first_run.sh's before/after check)."""
    v = flush(mu * v + lr * g, tiny, zero)
    V[at] = v
    W[at] -= v


@numba.njit(inline="always")
def decay_step(W, V, at, mu, tiny, zero):
    """:func:`momentum_step` without a gradient: v ← γ·v, flushed; W ← W − v."""
    v = flush(mu * V[at], tiny, zero)
    V[at] = v
    W[at] -= v


@numba.njit(inline="always")
def plain_step(W, at, g, lr, tiny, zero):
    """W ← W − α·g (the step flushed), where γ = 0 and the velocity is not kept."""
    W[at] -= flush(lr * g, tiny, zero)


@numba.njit(inline="always")
def tile_logits(z0, z1, z2, z3, WoT, bo, o):
    """o[r, k] = bo[k] + Σⱼ z_r[j]·WoT[k, j] for the tile's rows z0..z3 (H,) (zeros stand in for
    rows past the batch), o (4, K). Two outputs per sweep, so each load of a z element serves 8
    products; then the last output when K is odd."""
    K, H = WoT.shape
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
        o[0, k], o[1, k], o[2, k], o[3, k] = a0, a1, a2, a3
        o[0, k + 1], o[1, k + 1] = b0, b1
        o[2, k + 1], o[3, k + 1] = b2, b3
    for k in range(K - K % 2, K):
        w = WoT[k]
        a0 = a1 = a2 = a3 = bo[k]
        for j in range(H):
            a0 += z0[j] * w[j]
            a1 += z1[j] * w[j]
            a2 += z2[j] * w[j]
            a3 += z3[j] * w[j]
        o[0, k], o[1, k], o[2, k], o[3, k] = a0, a1, a2, a3


@numba.njit(inline="always")
def tile_backward(z0, z1, z2, z3, WoT, o, dWoT, d0, d1, d2, d3):
    """For the tile's rows z0..z3 (H,) (h; zeros past the batch) and their do in o (4, K)
    (zero past the batch): dWoT[k] += Σ_r o[r, k]·z_r and d_r += Σₖ o[r, k]·WoT[k] (d_r: dh
    rows, zeroed by the caller). Two outputs per sweep: half the loads and stores of the dh
    rows; then the last output when K is odd."""
    K, H = WoT.shape
    for k in range(0, K - 1, 2):
        w, u = WoT[k], WoT[k + 1]
        g, f = dWoT[k], dWoT[k + 1]
        c0, c1, c2, c3 = o[0, k], o[1, k], o[2, k], o[3, k]
        e0, e1 = o[0, k + 1], o[1, k + 1]
        e2, e3 = o[2, k + 1], o[3, k + 1]
        for j in range(H):
            x0, x1, x2, x3 = z0[j], z1[j], z2[j], z3[j]
            g[j] += c0 * x0 + c1 * x1 + c2 * x2 + c3 * x3
            f[j] += e0 * x0 + e1 * x1 + e2 * x2 + e3 * x3
            wj, uj = w[j], u[j]
            d0[j] += c0 * wj + e0 * uj
            d1[j] += c1 * wj + e1 * uj
            d2[j] += c2 * wj + e2 * uj
            d3[j] += c3 * wj + e3 * uj
    for k in range(K - K % 2, K):
        w = WoT[k]
        g = dWoT[k]
        c0, c1, c2, c3 = o[0, k], o[1, k], o[2, k], o[3, k]
        for j in range(H):
            g[j] += c0 * z0[j] + c1 * z1[j] + c2 * z2[j] + c3 * z3[j]
            d0[j] += c0 * w[j]
            d1[j] += c1 * w[j]
            d2[j] += c2 * w[j]
            d3[j] += c3 * w[j]


@numba.njit(inline="always")
def count_columns(indptr, indices, i, counts):
    """counts[k + 1] += the entries of CSR row i in column k, for every k."""
    for p in range(indptr[i], indptr[i + 1]):
        counts[indices[p] + 1] += 1


@numba.njit(inline="always")
def column_starts(counts, start, colptr):
    """colptr (F + 1,): where each column's entries start, from ``start`` on, by the counts
    (:func:`count_columns`); counts[k + 1] becomes column k's next free slot."""
    colptr[0] = start
    for k in range(colptr.shape[0] - 1):
        colptr[k + 1] = colptr[k] + counts[k + 1]
        counts[k + 1] = colptr[k]


@numba.njit(inline="always")
def scatter_by_column(indptr, indices, values, i, r, counts, rows, tvalues):
    """CSR row i's entries into their columns' next free slots (counts, :func:`column_starts`),
    each as (row number r, value). Rows scattered in increasing r come out sorted."""
    for p in range(indptr[i], indptr[i + 1]):
        k = indices[p]
        q = counts[k + 1]
        rows[q] = r
        tvalues[q] = values[p]
        counts[k + 1] = q + 1
