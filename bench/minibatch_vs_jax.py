"""fastmlp's compiled minibatch epoch against JAX's whole-epoch ``lax.scan``, on the same rows in
the same run: a table of samples/s and their ratio (fastmlp / JAX).

Run (JAX's venv, with fastmlp installed there: see bench/jax_epoch.py):
``/work/peers/bin/python bench/minibatch_vs_jax.py [--n 20000] [--repeats 3] [--quick]``.
Not a test. Each point: float32, momentum 0.9, lr 0.01, training epoch only; fastmlp the median
of ``--repeats`` epochs after a first (compiling) one, JAX the median of as many epochs after its
first (compiling) one, alternated so both see the same machine load. Networks 784-64-10 relu,
784-300-10 sigmoid, 784-1000-10 relu; B ∈ {10, 32, 100}; rows MNIST in [0, 1], MNIST in
[−1, 1] and dense standard-normal rows. On a shared machine the ratios are indicative only.
"""

# ruff: noqa: I001  (fastmlp must be imported before NumPy, see fastmlp/__init__.py)
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import fastmlp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jax_epoch  # noqa: E402  (the JAX peer, beside this file)

from fastmlp.compiled_minibatch import CompiledMinibatch  # noqa: E402

NETWORKS = ((64, "relu"), (300, "sigmoid"), (1000, "relu"))
BATCHES = (10, 32, 100)
ROWS = ("mnist", "mnist-symmetric", "dense")


def fastmlp_rates(X: np.ndarray, y: np.ndarray, hidden: int, activation: str, B: int,
                  epochs: int) -> tuple[list[float], str]:
    """samples/s of ``epochs`` compiled minibatch epochs (the first compiles) and the rows' form."""
    model = fastmlp.MLP(X.shape[1], hidden, 10, activation=activation, dtype="float32", seed=0)
    runner = CompiledMinibatch(model, X, y, B, 0.01, 0.9)
    rng = np.random.default_rng(0)
    rates = []
    for _ in range(epochs):
        order = rng.permutation(X.shape[0])
        start = time.perf_counter()
        runner.run_epoch(order)
        rates.append(X.shape[0] / (time.perf_counter() - start))
    return rates, runner.mode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="784-64-10 relu, B = 100 only")
    args = parser.parse_args()
    networks = NETWORKS[:1] if args.quick else NETWORKS
    batches = (100,) if args.quick else BATCHES
    print(f"# {args.n} rows, float32, momentum 0.9; samples/s (median of {args.repeats}); "
          f"ratio = fastmlp / JAX; machine load {os.getloadavg()[0]:.1f}")
    print(f"{'rows':16} {'network':18} {'B':>4} {'form':7} {'fastmlp':>10} {'JAX':>10} "
          f"{'ratio':>6}")
    for rows in ROWS:
        X, y = jax_epoch.load_rows(rows, args.n)
        for hidden, activation in networks:
            for B in batches:
                ours, jaxs = [], []
                form = "?"
                for _ in range(args.repeats):  # alternated: both see the same load
                    r, form = fastmlp_rates(X, y, hidden, activation, B, 2)
                    ours.append(r[-1])
                    jaxs.append(jax_epoch.epoch_rate(X, y, hidden, activation, B,
                                                     epochs=2)["rates"][-1])
                a, b = statistics.median(ours), statistics.median(jaxs)
                print(f"{rows:16} {f'784-{hidden}-10 {activation}':18} {B:>4} {form:7} "
                      f"{a:>10,.0f} {b:>10,.0f} {a / b:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
