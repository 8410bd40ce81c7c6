"""The JAX peer of ``fastmlp bench --compare``: the whole training epoch as one ``jax.lax.scan``.

What a JAX user writes in twenty lines: the course network (x·Wh + bh, relu or sigmoid, ·Wo + bo,
softmax cross-entropy averaged over the batch), gradients by ``jax.grad``, and the course's
momentum rule written out, v ← γ·v + α·g; W ← W − v, on every parameter every step. The epoch's
rows are shuffled inside the compiled program and gathered per step inside the scan (``order``
cut into (steps, B)); a short last batch is one more step after the scan (a scan's steps share
one shape), so every training row is used, as in fastmlp's epoch. Training only: no evaluation.

JAX is imported by the functions here, never at import time: ``import fastmlp`` and the bench's
other rows never load it. It runs on the CPU; float64 turns on JAX's x64 mode, process-wide
(each bench row has its own process).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

PARAMS = ("Wh", "bh", "Wo", "bo")


def _jax(dtype: str) -> Any:
    """JAX on the CPU, with x64 where ``dtype`` is float64 (before any array is made)."""
    import jax

    jax.config.update("jax_platforms", "cpu")
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    return jax


def make_epoch(activation: str, batch_size: int, lr: float, momentum: float,
               dtype: str = "float32") -> Callable:
    """A jitted ``epoch(params, velocity, X, y, order) → (params, velocity, loss_sum,
    correct)``: minibatch steps of ``batch_size`` rows of X (n, F) over ``order`` (n,) (step s
    takes ``order[s·B : (s+1)·B]``, the last batch possibly short); params and velocity are
    (Wh (F, H), bh (1, H), Wo (H, K), bo (1, K)); loss_sum is the summed cross-entropy and correct
    the count of right argmaxes over the epoch's batches, each at the weights its step started
    from."""
    jax = _jax(dtype)
    jnp = jax.numpy
    act = jax.nn.relu if activation == "relu" else jax.nn.sigmoid

    def loss_fn(params, xb, yb):
        Wh, bh, Wo, bo = params
        logits = act(xb @ Wh + bh) @ Wo + bo
        nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), yb[:, None], axis=1)[:, 0]
        correct = jnp.sum(jnp.argmax(logits, axis=1) == yb)
        return jnp.mean(nll), (jnp.sum(nll), correct)

    grad_fn = jax.grad(loss_fn, has_aux=True)

    def step(carry, idx, X, y):
        params, velocity = carry
        grads, (loss_sum, correct) = grad_fn(params, X[idx], y[idx])
        velocity = tuple(momentum * v + lr * g for v, g in zip(velocity, grads, strict=True))
        params = tuple(p - v for p, v in zip(params, velocity, strict=True))
        return (params, velocity), (loss_sum, correct)

    @jax.jit
    def epoch(params, velocity, X, y, order):
        whole = (order.shape[0] // batch_size) * batch_size  # shapes are static under jit
        (params, velocity), (losses, corrects) = jax.lax.scan(
            lambda c, i: step(c, i, X, y), (params, velocity),
            order[:whole].reshape(-1, batch_size))
        loss_sum, correct = jnp.sum(losses), jnp.sum(corrects)
        if whole < order.shape[0]:
            (params, velocity), (last_loss, last_correct) = step(
                (params, velocity), order[whole:], X, y)
            loss_sum, correct = loss_sum + last_loss, correct + last_correct
        return params, velocity, loss_sum, correct

    return epoch


def scan_trainer(X: np.ndarray, y: np.ndarray, weights: dict[str, np.ndarray], activation: str,
                 batch_size: int, lr: float, momentum: float, velocity_init: float = 1e-5,
                 seed: int = 0) -> tuple[Callable[[], tuple[float, float]], str]:
    """``(epoch, label)``: ``epoch()`` trains one more shuffled epoch of the rows X (n, F),
    labels y (n,), in X's dtype, from ``weights`` (Wh, bh, Wo, bo, as :meth:`MLP.state`) and
    returns its (summed cross-entropy, correct count), read to the host (the epoch's one read);
    the first call compiles. ``label`` names JAX's version."""
    dtype = str(np.dtype(X.dtype))
    jax = _jax(dtype)
    jnp = jax.numpy
    params = tuple(jnp.asarray(weights[name], dtype) for name in PARAMS)
    state = {"params": params, "velocity": tuple(jnp.full_like(p, velocity_init) for p in params),
             "key": jax.random.PRNGKey(seed)}
    Xd, yd = jnp.asarray(X), jnp.asarray(y, jnp.int32)
    steps = make_epoch(activation, batch_size, lr, momentum, dtype)

    @jax.jit
    def shuffled(params, velocity, key, X, y):
        key, sub = jax.random.split(key)
        order = jax.random.permutation(sub, X.shape[0])
        return (*steps(params, velocity, X, y, order), key)

    def epoch() -> tuple[float, float]:
        params, velocity, loss_sum, correct, key = shuffled(
            state["params"], state["velocity"], state["key"], Xd, yd)
        state.update(params=params, velocity=velocity, key=key)
        return float(loss_sum), float(correct)

    return epoch, f"cpu (jax {jax.__version__}, lax.scan epoch, training rows only)"
