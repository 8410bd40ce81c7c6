"""fastmlp's compiled minibatch epoch against JAX's whole-epoch ``lax.scan``, on the same rows in
the same run: a table of samples/s and their ratio (fastmlp / JAX).

Run (in an environment that holds JAX and fastmlp, as README's "fastmlp bench" says:
``python3 -m venv peers && peers/bin/pip install jax -e .``):
``peers/bin/python bench/minibatch_vs_jax.py [--n 20000] [--repeats 3] [--quick]
[--form auto|dense] [--rows mnist,mnist-symmetric,dense] [--batches 10,32,100]``
(``--form dense``: fastmlp reads every row dense, its OpenBLAS products, whatever the rows).
Not a test. Each point: float32, momentum 0.9, lr 0.01, training epoch only; samples/s per
wall second, and the ratio of samples per CPU second too (both sides ran on one core here: on a
shared machine a fairer figure than wall time); fastmlp the median
of ``--repeats`` epochs after a first (compiling) one, JAX (``fastmlp/bench_jax.py``, the peer of
``fastmlp bench --compare``) the median of as many epochs after its first (compiling) one,
alternated so both see the same machine load. Networks 784-64-10 relu,
784-300-10 sigmoid, 784-1000-10 relu; B ∈ {10, 32, 100}; rows MNIST in [0, 1], MNIST in
[−1, 1] and dense standard-normal rows. On a shared machine the ratios are indicative only.
"""

# ruff: noqa: I001  (fastmlp must be imported before NumPy, see fastmlp/__init__.py)
from __future__ import annotations

import argparse
import os
import statistics
import time

import fastmlp
import numpy as np

from fastmlp.bench_jax import scan_trainer
from fastmlp.strategies.compiled_minibatch import CompiledMinibatch
from fastmlp.kernels.blas import BLAS

NETWORKS = ((64, "relu"), (300, "sigmoid"), (1000, "relu"))
BATCHES = (10, 32, 100)
ROWS = ("mnist", "mnist-symmetric", "dense")


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


def jax_rates(X: np.ndarray, y: np.ndarray, hidden: int, activation: str, B: int,
              epochs: int) -> list[tuple[float, float]]:
    """samples per wall and per CPU second of ``epochs`` JAX scan epochs (the first compiles)
    from fastmlp's weights."""
    model = fastmlp.MLP(X.shape[1], hidden, 10, activation=activation, dtype="float32", seed=0)
    epoch, _ = scan_trainer(X, y, model.state(), activation, B, 0.01, 0.9)
    rates = []
    for _ in range(epochs):
        start, cpu = time.perf_counter(), time.process_time()
        epoch()
        rates.append((X.shape[0] / (time.perf_counter() - start),
                      X.shape[0] / (time.process_time() - cpu)))
    return rates


def fastmlp_rates(X: np.ndarray, y: np.ndarray, hidden: int, activation: str, B: int,
                  epochs: int, form: str = "auto") -> tuple[list[tuple[float, float]], str]:
    """samples per wall and per CPU second of ``epochs`` compiled minibatch epochs (the first
    compiles) and the rows' form."""
    model = fastmlp.MLP(X.shape[1], hidden, 10, activation=activation, dtype="float32", seed=0)
    runner = CompiledMinibatch.on_rows(model, X, y, B, 0.01, 0.9, rows=form)
    rng = np.random.default_rng(0)
    rates = []
    for _ in range(epochs):
        order = rng.permutation(X.shape[0])
        start, cpu = time.perf_counter(), time.process_time()
        runner.train_order(order)
        rates.append((X.shape[0] / (time.perf_counter() - start),
                      X.shape[0] / (time.process_time() - cpu)))
    return rates, runner.mode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="784-64-10 relu, B = 100 only")
    parser.add_argument("--form", choices=("auto", "dense"), default="auto",
                        help="the form fastmlp reads the rows in (CompiledMinibatch's rows)")
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated, of " +
                        ", ".join(ROWS))
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    args = parser.parse_args()
    networks = NETWORKS[:1] if args.quick else NETWORKS
    batches = (100,) if args.quick else tuple(int(b) for b in args.batches.split(","))
    print(f"# {args.n} rows, float32, momentum 0.9; samples/s (median of {args.repeats}); "
          f"ratio = fastmlp / JAX; machine load {os.getloadavg()[0]:.1f}; {BLAS.describe()}")
    print(f"{'rows':16} {'network':18} {'B':>4} {'form':7} {'fastmlp':>10} {'JAX':>10} "
          f"{'ratio':>6} {'cpu ratio':>9}")
    for rows in args.rows.split(","):
        X, y = load_rows(rows, args.n)
        for hidden, activation in networks:
            for B in batches:
                ours, jaxs = [], []
                form = "?"
                for _ in range(args.repeats):  # alternated: both see the same load
                    r, form = fastmlp_rates(X, y, hidden, activation, B, 2, args.form)
                    ours.append(r[-1])
                    jaxs.append(jax_rates(X, y, hidden, activation, B, 2)[-1])
                a, b = (statistics.median(r[0] for r in rs) for rs in (ours, jaxs))
                ca, cb = (statistics.median(r[1] for r in rs) for rs in (ours, jaxs))
                print(f"{rows:16} {f'784-{hidden}-10 {activation}':18} {B:>4} {form:7} "
                      f"{a:>10,.0f} {b:>10,.0f} {a / b:>6.2f} {ca / cb:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
