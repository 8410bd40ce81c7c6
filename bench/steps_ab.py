"""Samples per second of the compiled small-batch loop alone (kernels/steps.py), no evaluation.

    python bench/steps_ab.py --hidden 300 --batch-size 1 --momentum 0 --threads 1 2

The median of the timed epochs (after one untimed) is printed per setting; threads > 1 runs
the parallel kernel on Numba's threads. Used for the thread-count A/B in bench/RESULTS.md
(``threads_for``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from fastmlp.kernels import sparse, steps

import fastmlp


def samples_per_s(X, y, H: int, B: int, mu: float, threads: int, act: str, epochs: int) -> float:
    """Median samples/s of ``epochs`` timed epochs of train_steps over all rows of X (N, F)."""
    n, F = X.shape
    K = 10
    rng = np.random.default_rng(0)
    sizes = {"Wh": (F, H), "bh": (1, H), "Wo": (H, K), "bo": (1, K)}
    flat = (rng.standard_normal(sum(a * b for a, b in sizes.values())) * 0.05).astype(X.dtype)
    vflat = np.full_like(flat, 1e-5)

    def views(buf):
        out, o = {}, 0
        for name, (a, b) in sizes.items():
            out[name] = buf[o:o + a * b].reshape(a, b)
            o += a * b
        return out

    params, velocity = views(flat), views(vflat)
    ws = steps.workspace(B, F, H, K, X.dtype, threads)
    nz = sparse.csr(X, n)
    stats = np.zeros(2)
    times = []
    for _ in range(epochs + 1):
        order = rng.permutation(n).astype(np.int64)
        start = time.perf_counter()
        steps.train_steps(X, y, order, 0, -(-n // B), B, params, velocity, act, 1e-4, mu, ws,
                          stats, nz, threads=threads)
        times.append(time.perf_counter() - start)
    return n / statistics.median(times[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=300)
    p.add_argument("--batch-size", type=int, nargs="+", default=[1])
    p.add_argument("--momentum", type=float, nargs="+", default=[0.0, 0.99])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--activation", default="sigmoid")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--rows", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--random", action="store_true", help="dense random rows instead of MNIST")
    a = p.parse_args()
    if a.random:
        rng = np.random.default_rng(1)
        X, y = rng.random((a.rows, 784)).astype(a.dtype), rng.integers(0, 10, a.rows)
    else:
        ds = fastmlp.load_dataset("mnist", train_size=a.rows, dtype=a.dtype)
        X, y = ds.train.x[:a.rows], ds.train.y[:a.rows]
    for B in a.batch_size:
        for mu in a.momentum:
            for T in a.threads:
                rate = samples_per_s(X, y, a.hidden, B, mu, T, a.activation, a.epochs)
                print(f"H={a.hidden} B={B} momentum={mu} threads={T} {a.activation} "
                      f"{a.dtype} {'random' if a.random else 'mnist'}: {rate:,.0f} samples/s",
                      flush=True)


if __name__ == "__main__":
    main()
