"""The peer of fastmlp's compiled minibatch epoch: JAX with the whole epoch as one ``lax.scan``.

Run: ``/work/peers/bin/python bench/jax_epoch.py [--hidden 64] [--activation relu]
[--batch-size 100] [--rows mnist|mnist-symmetric|dense] [--n 20000] [--epochs 2]``
(JAX in its own venv: ``python3 -m venv /work/peers && /work/peers/bin/pip install jax jaxlib
numpy && /work/peers/bin/pip install -e .``). Not a test; prints samples/s of each epoch.

What a JAX user writes in twenty lines: the course network (x·Wh + bh, relu or sigmoid, ·Wo + bo,
softmax cross-entropy averaged over the batch), gradients by ``jax.grad``, and the course's
momentum rule written out, v ← γ·v + α·g; W ← W − v, over every parameter every step; float32;
the epoch's shuffled rows gathered per step inside the scan (``order`` reshaped to
(steps, B); a short last batch is dropped, since a scan's steps share one shape). The first
epoch compiles; the second is the one to quote (:func:`epoch_rate`).
"""

# ruff: noqa: I001  (fastmlp must be imported before NumPy, see fastmlp/__init__.py)
from __future__ import annotations

import argparse
import time

import fastmlp
import numpy as np

import jax
import jax.numpy as jnp

jax.config.update("jax_platforms", "cpu")


def make_epoch(activation: str, batch_size: int, lr: float, momentum: float):
    """A jitted function (params, velocity, X, y, order) → (params, velocity, loss_sum,
    correct): one epoch of minibatch steps over ``order`` (its whole batches)."""
    act = jax.nn.relu if activation == "relu" else jax.nn.sigmoid

    def loss_fn(params, xb, yb):
        Wh, bh, Wo, bo = params
        logits = act(xb @ Wh + bh) @ Wo + bo
        logp = jax.nn.log_softmax(logits)
        nll = -jnp.take_along_axis(logp, yb[:, None], axis=1)[:, 0]
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
        steps = order[: (order.shape[0] // batch_size) * batch_size].reshape(-1, batch_size)
        (params, velocity), (losses, corrects) = jax.lax.scan(
            lambda c, i: step(c, i, X, y), (params, velocity), steps)
        return params, velocity, jnp.sum(losses), jnp.sum(corrects)

    return epoch


def epoch_rate(X: np.ndarray, y: np.ndarray, hidden: int, activation: str, batch_size: int,
               lr: float = 0.01, momentum: float = 0.9, epochs: int = 2, seed: int = 0,
               weights: dict | None = None) -> dict:
    """Train ``epochs`` epochs of the X (n, F) float32 rows, labels y (n,), with JAX; returns
    samples/s of each epoch (``rates``; the first includes compilation), the last epoch's mean
    loss and accuracy. ``weights``: Wh, bh, Wo, bo to start from (default: fastmlp.MLP(seed))."""
    n, F = X.shape
    K = 10
    if weights is None:
        model = fastmlp.MLP(F, hidden, K, activation=activation, seed=seed)
        weights = {name: np.array(getattr(model, name)) for name in ("Wh", "bh", "Wo", "bo")}
    params = tuple(jnp.asarray(weights[name], jnp.float32) for name in ("Wh", "bh", "Wo", "bo"))
    velocity = tuple(jnp.full_like(p, 1e-5) for p in params)
    Xd, yd = jnp.asarray(X, jnp.float32), jnp.asarray(y, jnp.int32)
    epoch = make_epoch(activation, batch_size, lr, momentum)
    rng = np.random.default_rng(seed)
    rates, loss, acc = [], float("nan"), float("nan")
    used = (n // batch_size) * batch_size
    for _ in range(epochs):
        order = jnp.asarray(rng.permutation(n).astype(np.int32))
        start = time.perf_counter()
        params, velocity, loss_sum, correct = epoch(params, velocity, Xd, yd, order)
        jax.block_until_ready(params)
        rates.append(used / (time.perf_counter() - start))
        loss, acc = float(loss_sum) / used, float(correct) / used
    return {"rates": rates, "loss": loss, "acc": acc}


def load_rows(rows: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The bench's rows: "mnist" ([0, 1]), "mnist-symmetric" ([−1, 1]) or "dense" (standard
    normal, labels uniform), n of them, float32."""
    if rows == "dense":
        rng = np.random.default_rng(seed)
        return (rng.standard_normal((n, 784)).astype(np.float32),
                rng.integers(0, 10, n).astype(np.int64))
    scale = "symmetric" if rows == "mnist-symmetric" else "unit"
    data = fastmlp.load_dataset("mnist", train_size=n, scale=scale, dtype="float32")
    return data.train.x, data.train.y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--activation", choices=("relu", "sigmoid"), default="relu")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--rows", choices=("mnist", "mnist-symmetric", "dense"), default="mnist")
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--momentum", type=float, default=0.9)
    args = parser.parse_args()
    X, y = load_rows(args.rows, args.n)
    out = epoch_rate(X, y, args.hidden, args.activation, args.batch_size, args.lr,
                     args.momentum, args.epochs)
    for e, rate in enumerate(out["rates"], 1):
        print(f"epoch {e}: {rate:,.0f} samples/s")
    print(f"last epoch: loss {out['loss']:.4f}, accuracy {out['acc']:.4f}")


if __name__ == "__main__":
    main()
