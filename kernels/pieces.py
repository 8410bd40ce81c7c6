"""The arithmetic pieces the CPU kernels share, each written once (``numba.njit(inline="always")``).

Inlined into their callers (``cpu``, ``steps``), so they take the caller's fastmath flags and
cost no call; scalars ``zero``, ``one`` and ``tiny`` (the dtype's smallest normal number) come
typed from the caller, which keeps float32 arithmetic in float32. Their references, in array
form, are in :mod:`.reference` (named with each piece).

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
