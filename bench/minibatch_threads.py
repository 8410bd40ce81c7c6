"""The compiled minibatch epoch with one thread against two (hidden units split per step), on
the JAX comparison's points: samples/s, best of ``--repeats`` epochs after a compiling one.

Run: ``python bench/minibatch_threads.py [--n 10000] [--repeats 2]``. Not a test; its ratios
set ``fastmlp.strategies.compiled_minibatch.THREADED_STEP_WORK``. Only a quiet machine gives
usable ratios.
Dense rows run on one thread whatever is asked (their OpenBLAS products: kernels/minibatch.py's
"Threads"), so only the sparse points compare two threads with one.
"""

# ruff: noqa: I001  (fastmlp must be imported before NumPy, see fastmlp/__init__.py)
from __future__ import annotations

import argparse
import os
import time

import fastmlp
import numpy as np

from fastmlp.strategies.compiled_minibatch import CompiledMinibatch


def load_rows(rows: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """MNIST in [0, 1] ("mnist") or standard-normal rows ("dense"), n of them, float32."""
    if rows == "dense":
        rng = np.random.default_rng(0)
        return rng.standard_normal((n, 784)).astype(np.float32), rng.integers(0, 10, n)
    data = fastmlp.load_dataset("mnist", train_size=n, dtype="float32")
    return data.train.x, data.train.y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    n = args.n
    print(f"# {n} rows, float32, momentum 0.9; load {os.getloadavg()[0]:.1f}")
    rng = np.random.default_rng(1)
    for rows in ("mnist", "dense"):
        X, y = load_rows(rows, n)
        for H, act in ((64, "relu"), (300, "sigmoid"), (1000, "relu")):
            for B in (10, 32, 100):
                runners = {}
                for t in (1, 2):
                    model = fastmlp.MLP(784, H, 10, activation=act, seed=0)
                    runners[t] = CompiledMinibatch.on_rows(model, X, y, B, 0.01, 0.9, threads=t)
                    runners[t].train_order(np.arange(n))  # compiles
                rates: dict[int, list[float]] = {1: [], 2: []}
                for _ in range(args.repeats):  # alternated: both see the same load
                    for t in (1, 2):
                        start = time.perf_counter()
                        runners[t].train_order(rng.permutation(n))
                        rates[t].append(n / (time.perf_counter() - start))
                a, b = max(rates[1]), max(rates[2])
                print(f"{rows:6} 784-{H}-10 {act:8} B {B:4}: 1 thread {a:10,.0f}/s, "
                      f"{runners[2].threads} threads {b:10,.0f}/s, x{b / a:.2f}", flush=True)


if __name__ == "__main__":
    main()
