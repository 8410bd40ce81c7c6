"""Epoch times of the compiled minibatch epoch (CompiledMinibatch) on dense standard-normal rows:
wall and CPU seconds of each epoch after a first (compiling) one, one JSON line.

Run: ``python bench/minibatch_epoch_times.py 64x10,300x100,... [--n 20000] [--repeats 3]
[--rows dense]`` (points as HIDDENxBATCH; 784-H-10 relu, float32, momentum 0.9). For an A/B, run
it alternately from two checkouts' environments (each with its own ``NUMBA_CACHE_DIR``). Not a
test. On a shared machine compare CPU seconds: the epoch runs on one thread, so its CPU time
is what it cost, whatever else ran beside it.
"""

# ruff: noqa: I001  (fastmlp must be imported before NumPy, see fastmlp/__init__.py)
from __future__ import annotations

import argparse
import json
import os
import time

import fastmlp
import numpy as np

from fastmlp.strategies.compiled_minibatch import CompiledMinibatch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("points", help="comma-separated HIDDENxBATCH, e.g. 64x10,1000x100")
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", default="dense", help="CompiledMinibatch's rows")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.n, 784)).astype(np.float32)
    y = rng.integers(0, 10, args.n)
    times = {}
    for point in args.points.split(","):
        H, B = (int(v) for v in point.split("x"))
        model = fastmlp.MLP(784, H, 10, activation="relu", dtype="float32", seed=0)
        runner = CompiledMinibatch.on_rows(model, X, y, B, 0.01, 0.9, rows=args.rows)
        runner.train_order(rng.permutation(args.n))  # compiles (or loads) the kernel
        times[point] = []
        for _ in range(args.repeats):
            order = rng.permutation(args.n)
            wall, cpu = time.perf_counter(), time.process_time()
            runner.train_order(order)
            times[point].append((time.perf_counter() - wall, time.process_time() - cpu))
    print(json.dumps({"load": os.getloadavg()[0], "seconds (wall, cpu)": times}))


if __name__ == "__main__":
    main()
