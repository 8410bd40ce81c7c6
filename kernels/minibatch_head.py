"""The head of a compiled minibatch step (kernels/minibatch.py), every row a training row.

``_head`` does what the per-step path's fused head kernel (kernels/cpu.py, run serially for
batches under 512 rows) does for a batch of training rows, with its sums in the same order
(tiles of four rows, two outputs per sweep), so float64 runs stay within 1e-10 of that path
even where training diverges: bias + activation over Z, the output layer, softmax
cross-entropy, accuracy, do, dWo, dbo, dh = do·Woᵀ, dz over Z, dbh. Without that kernel's
threads' partial sums and evaluation rows, and with its parts as called (not inlined)
functions, it compiles in a fraction of the time. No allocation: the buffers come from
``minibatch.workspace``.
"""

from __future__ import annotations

import numba

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
from .runtime import JIT as _JIT

_SERIAL = dict(_JIT, parallel=False)


@numba.njit(**_SERIAL)
def activate_block(Z, nb, h0, h1, bh, vbh, dbh, have_prev, lr, mu, tiny, zero, one, act):
    """Columns [h0, h1) of a block of hidden units, before the head: the momentum step of
    bh[h0:h1] with the previous step's gradient dbh (where ``have_prev``), then h = act(z + bh)
    over rows [0, nb) of Z, as the per-step path's head computes each entry. Elementwise, so a
    team's blocks do it at once (sigmoid's exps are much of a small network's step)."""
    if have_prev:
        for j in range(h0, h1):
            momentum_step(bh, vbh, j, vbh[j], dbh[j], lr, mu, tiny, zero)
    for r in range(nb):
        z = Z[r]
        for j in range(h0, h1):
            z[j] = activation(z[j] + bh[j], act, zero, one)


@numba.njit(**_SERIAL)
def _softmax_rows(o, rows, y, order, a, scale, zero, one, tiny, dbo, bstats):
    # per row r < rows of the tile: cross-entropy and accuracy into bstats, o[r] becomes
    # do = (p − onehot)·scale (flushed), dbo += do; rows past the batch get do = 0
    K = o.shape[1]
    for r in range(o.shape[0]):
        if r >= rows:
            for k in range(K):
                o[r, k] = zero
            continue
        yi = y[order[a + r]]
        lse, best = logsumexp_argmax(o[r], zero)
        bstats[0, 0] += lse - o[r, yi]
        if best == yi:
            bstats[0, 1] += 1.0
        softmax_xent_grad(o[r], yi, lse, scale, one, tiny, zero)
        for k in range(K):
            dbo[k] += o[r, k]


@numba.njit(**_SERIAL)
def _head(Z, nb, Wo, bo, y, order, a, act, scale, zero, one, tiny, WoT, o, dh, dWoT, pad,
          dWo, dbo, dbh, bstats):
    # Z holds h (activate_block, run by each block before). The per-step path's fused head
    # (kernels/cpu.py, serial, every row a training row) with the same sums in the same
    # order, so float64 runs stay within 1e-10 of that path even
    # where training diverges; non-inlined helpers keep its compile time small. Tiles of four
    # rows (o: (4, K) logits then do, dh: (4, H), pad: H zeros for rows past nb): h over z,
    # logits, softmax cross-entropy, dbo, dWoᵀ, dh = do·Woᵀ, dz over z, dbh; bstats = batch sums
    H = Z.shape[1]
    K = Wo.shape[1]
    for j in range(H):
        dbh[j] = zero
        for k in range(K):
            WoT[k, j] = Wo[j, k]
            dWoT[k, j] = zero
    for k in range(K):
        dbo[k] = zero
    bstats[0, 0] = 0.0
    bstats[0, 1] = 0.0
    for i0 in range(0, nb, 4):
        rows = min(4, nb - i0)
        z0 = Z[i0]
        z1 = Z[i0 + 1] if i0 + 1 < nb else pad
        z2 = Z[i0 + 2] if i0 + 2 < nb else pad
        z3 = Z[i0 + 3] if i0 + 3 < nb else pad
        tile_logits(z0, z1, z2, z3, WoT, bo, o)  # the per-step head's sums, in its order
        _softmax_rows(o, rows, y, order, a + i0, scale, zero, one, tiny, dbo, bstats)
        for r in range(4):
            for j in range(H):
                dh[r, j] = zero
        d0, d1, d2, d3 = dh[0], dh[1], dh[2], dh[3]
        tile_backward(z0, z1, z2, z3, WoT, o, dWoT, d0, d1, d2, d3)
        for r in range(rows):
            _activation_backward(Z[i0 + r], dh[r], act, zero, one, tiny, dbh)
    for j in range(H):
        for k in range(K):
            dWo[j, k] = dWoT[k, j]


@numba.njit(**_SERIAL)
def _activation_backward(z, dh, act, zero, one, tiny, dbh):
    # z (H,) holds h on entry, dz = dh ∘ act′ on return (subnormals flushed); dbh += dz
    for j in range(z.shape[0]):
        dz = flush(activation_grad(dh[j], z[j], act, zero, one), tiny, zero)
        z[j] = dz
        dbh[j] += dz
