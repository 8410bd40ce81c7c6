"""Training-epoch time of the three minibatch strategies side by side, for the Plan's rule
(fastmlp/plan.py's ``choose_strategy``): per-step, compiled-steps and compiled-minibatch.

Run: ``python bench/minibatch_plan.py [--repeats 5] [--rows mnist dense] [--hidden 64 300 1000]
[--batch-size 2 10 32 100 256 512]``. Not a test. Each point: float32, momentum 0.9, lr 0.01,
784-H-10 relu, the strategy's ``run_epoch`` without evaluation (training only); one untimed
epoch each (compiles), two more each (the better one decides which are timed), then
``--repeats`` rounds, each timing one epoch of every strategy in
turn (alternated, so all see the same load). Rows: MNIST scaled to [0, 1] ("mnist": sparse
products, density ~0.19), to [−1, 1] ("mnist-symmetric": offset products, S's density ~0.19
around c = −1) or standard-normal random rows ("dense": dense products), as many
per epoch as ``ROWS_PER_H`` gives (a similar time per epoch whatever H). A strategy whose better
untimed epoch took over ``--drop`` times the fastest one's is not timed further (shown as ``>``
that time): it cannot win there. Columns: the min and median epoch in ms, and
the winners by min and by median. On a shared machine only the min is a fair comparison.
"""

# ruff: noqa: I001  (fastmlp must be imported before NumPy, see fastmlp/__init__.py)
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import fastmlp
import numpy as np

from fastmlp.datasets import Dataset, Split
from fastmlp.kernels import steps
from fastmlp.plan import make_plan
from fastmlp.strategies import compiled_minibatch
from fastmlp.trainer import Trainer

STRATEGIES = ("per-step", "compiled-steps", "compiled-minibatch")
SHORT = {"per-step": "step", "compiled-steps": "csteps", "compiled-minibatch": "cmb"}
ROWS_PER_H = {64: 20000, 300: 8000, 1000: 4000}
ROW_LABELS = {"mnist": "mnist", "mnist-symmetric": "msym", "dense": "dense"}


def load_rows(rows: str, n: int) -> Dataset:
    """MNIST in [0, 1] ("mnist"), in [−1, 1] ("mnist-symmetric") or standard-normal rows
    ("dense"): n training rows, float32 (valid and test: a few rows, never evaluated here)."""
    if rows == "dense":
        rng = np.random.default_rng(0)
        X = rng.standard_normal((n + 20, 784)).astype(np.float32)
        y = rng.integers(0, 10, n + 20)
        return Dataset("dense", Split(X[:n], y[:n]), Split(X[n:n + 10], y[n:n + 10]),
                       Split(X[n + 10:], y[n + 10:]))
    scale = "symmetric" if rows == "mnist-symmetric" else "unit"
    data = fastmlp.load_dataset("mnist", train_size=n, scale=scale, dtype="float32")
    return Dataset(rows, data.train, Split(data.valid.x[:10], data.valid.y[:10]),
                   Split(data.test.x[:10], data.test.y[:10]))


def trainer_for(data: Dataset, H: int, B: int, strategy: str) -> Trainer:
    """A trainer of 784-H-10 relu running ``strategy`` with the products make_plan picks."""
    model = fastmlp.MLP(784, H, 10, activation="relu", dtype="float32", seed=0)
    plan = make_plan(model, [data.train.x, data.valid.x, data.test.x], batch_size=B,
                     compiled=False)
    threads = {"per-step": None, "compiled-steps": steps.threads_for(H, B),
               "compiled-minibatch": compiled_minibatch.threads_for(
                   H, B, compiled_minibatch.rows_form(plan.products))}[strategy]
    plan = dataclasses.replace(plan, strategy=strategy, strategy_reason=strategy,
                               threads=threads)
    return Trainer(model, data, lr=0.01, momentum=0.9, batch_size=B, plan=plan)


def epoch_s(trainer: Trainer) -> float:
    start = time.perf_counter()
    trainer.strategy.run_epoch(False)
    return time.perf_counter() - start


def ratio(mins: dict[str, float], a: str, b: str) -> str:
    """a's minimum over b's, or "-" where either was not timed."""
    return f"{mins[a] / mins[b]:.2f}" if a in mins and b in mins else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", nargs="+", default=["mnist", "dense"])
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 300, 1000])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[2, 10, 32, 100, 256, 512])
    parser.add_argument("--drop", type=float, default=3.0)
    args = parser.parse_args()
    print(f"# float32, 784-H-10 relu, momentum 0.9, training epoch only; ms per epoch, min / "
          f"median of {args.repeats} alternated; load {os.getloadavg()[0]:.1f} at start")
    head = "  ".join(f"{SHORT[s]:>15}" for s in STRATEGIES)
    print(f"{'rows':5} {'H':>4} {'n':>5} {'B':>4}  {head}  {'best(min)':>9} {'best(med)':>9} "
          f"{'cmb/step':>8} {'cmb/csteps':>10}")
    for rows in args.rows:
        for H in args.hidden:
            n = ROWS_PER_H.get(H, 8000)
            data = load_rows(rows, n)
            for B in args.batch_size:
                trainers = {s: trainer_for(data, H, B, s) for s in STRATEGIES}
                for t in trainers.values():
                    epoch_s(t)  # compiles, grows the calls
                first = {s: min(epoch_s(t), epoch_s(t)) for s, t in trainers.items()}
                fastest = min(first.values())
                timed = [s for s in STRATEGIES if first[s] <= args.drop * fastest]
                times: dict[str, list[float]] = {s: [] for s in timed}
                for _ in range(args.repeats):
                    for s in timed:
                        times[s].append(epoch_s(trainers[s]))
                mins = {s: min(times[s]) for s in timed}
                meds = {s: statistics.median(times[s]) for s in timed}
                cells = []
                for s in STRATEGIES:
                    if s in timed:
                        cells.append(f"{mins[s] * 1e3:7.1f}/{meds[s] * 1e3:7.1f}")
                    else:
                        cells.append(f"{'>' + format(first[s] * 1e3, '.0f'):>15}")

                print(f"{ROW_LABELS[rows]:5} {H:>4} {n:>5} {B:>4}  {'  '.join(cells)}  "
                      f"{SHORT[min(mins, key=mins.get)]:>9} {SHORT[min(meds, key=meds.get)]:>9} "
                      f"{ratio(mins, 'compiled-minibatch', 'per-step'):>8} "
                      f"{ratio(mins, 'compiled-minibatch', 'compiled-steps'):>10}", flush=True)
    print(f"# load {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
