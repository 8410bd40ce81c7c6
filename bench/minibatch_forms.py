"""The compiled minibatch epoch on MNIST rows read dense or by their nonzeros, on one thread or
a team of two: samples/s, median of ``--repeats`` epochs after a compiling one, all four
alternated so they see the same machine load.

Run: ``python bench/minibatch_forms.py [--n 20000] [--repeats 3]``. Not a test; its ratios set
``fastmlp.strategies.compiled_minibatch.SPARSE_MIN_HIDDEN`` (which form "auto" reads) and the
team's grains (``fastmlp.kernels.runtime.TEAM_STEP_DENSE``, ``TEAM_STEP_SPARSE``). Rows: MNIST
in [0, 1] (sparse form: their nonzeros) and in [−1, 1] (offset form: their entries off −1);
float32, momentum 0.9, lr 0.01; 784-64-10 relu, 784-300-10 sigmoid, 784-1000-10 relu;
B ∈ {10, 32, 100}. Only a quiet machine gives usable ratios.
"""

# ruff: noqa: I001  (fastmlp must be imported before NumPy, see fastmlp/__init__.py)
from __future__ import annotations

import argparse
import os
import statistics
import time

import fastmlp
import numpy as np

from fastmlp.strategies.compiled_minibatch import CompiledMinibatch

NETWORKS = ((64, "relu"), (300, "sigmoid"), (1000, "relu"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n = args.n
    print(f"# {n} MNIST rows, float32, momentum 0.9; samples/s (median of {args.repeats}); "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'rows':9} {'network':18} {'B':>4} {'form':6} {'1 thread':>10} {'2 threads':>10}"
          f" {'dense 1':>10} {'dense 2':>10}  dense/form (best of each)")
    for scale in ("unit", "symmetric"):
        data = fastmlp.load_dataset("mnist", train_size=n, scale=scale, dtype="float32")
        X, y = data.train.x, data.train.y
        for hidden, activation in NETWORKS:
            for B in (10, 32, 100):
                runners = {}
                for form in ("sparse" if scale == "unit" else "offset", "dense"):
                    for threads in (1, 2):
                        model = fastmlp.MLP(784, hidden, 10, activation=activation,
                                            dtype="float32", seed=0)
                        runner = CompiledMinibatch.on_rows(model, X, y, B, 0.01, 0.9,
                                                           rows=form, threads=threads)
                        runner.train_order(np.arange(n))  # compiles
                        runners[form, threads] = runner
                rates: dict[tuple, list[float]] = {key: [] for key in runners}
                rng = np.random.default_rng(0)
                for _ in range(args.repeats):
                    order = rng.permutation(n)
                    for key, runner in runners.items():
                        start = time.perf_counter()
                        runner.train_order(order)
                        rates[key].append(n / (time.perf_counter() - start))
                med = [statistics.median(r) for r in rates.values()]
                form = next(iter(runners))[0]
                print(f"{scale:9} {f'784-{hidden}-10 {activation}':18} {B:>4} {form:6} "
                      + " ".join(f"{m:>10,.0f}" for m in med)
                      + f"  {max(med[2:]) / max(med[:2]):.2f}", flush=True)


if __name__ == "__main__":
    main()
