"""What a team's barrier costs (kernels/team.py): microseconds per barrier for teams of one,
two and three threads, each passing ``--rounds`` pairs of barriers in one call
(``runtime.run_team``). Three threads on two cores wait by yielding: that row shows what an
oversubscribed team pays.

Run: ``python bench/team_barrier.py [--rounds 200000]``. Not a test.
"""

# ruff: noqa: I001  (fastmlp must be imported before NumPy, see fastmlp/__init__.py)
from __future__ import annotations

import argparse
import os
import time

import fastmlp  # noqa: F401
import numba
import numpy as np

from fastmlp.kernels import runtime, team


@numba.njit(**runtime.SERIAL_JIT)
def _rounds(t, T, sync, rounds):
    passed = 0
    for _ in range(rounds):
        passed = team.barrier(sync, T, passed)
        passed = team.barrier(sync, T, passed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200_000)
    args = parser.parse_args()
    print(f"# {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; SPINS {team.SPINS}")
    for members in (1, 2, 3):
        rounds = args.rounds if members <= 2 else max(1, args.rounds // 1000)
        runtime.run_team(_rounds, members, np.zeros(2, np.int64), 1)  # compiles, starts threads
        start = time.perf_counter()
        runtime.run_team(_rounds, members, np.zeros(2, np.int64), rounds)
        seconds = time.perf_counter() - start
        print(f"{members} thread(s): {seconds / (2 * rounds) * 1e6:.3f} µs per barrier "
              f"({2 * rounds} barriers)", flush=True)


if __name__ == "__main__":
    main()
