"""Which kernels a run compiles, and for how long: ``python bench/compiled.py [train options]``.

Runs ``fastmlp train`` in this process with the given options (``--quiet --no-progress`` added),
then prints, per Numba kernel of fastmlp.kernels, its compiled specialisations, how many came
from the on-disk cache, and the seconds spent compiling it (Numba's ``numba:compile`` events; a
kernel's time includes the functions it compiled on the way). Point ``NUMBA_CACHE_DIR`` at an
empty folder to see a first run's compilations (bench/first_run.sh does, with INVENTORY=1).
"""

from __future__ import annotations

import sys
import time

import fastmlp  # noqa: F401  (first: it sets OpenBLAS up before NumPy loads)


def main(argv: list[str]) -> None:
    from fastmlp.kernels import runtime
    from numba.core import event

    from fastmlp.cli import main as cli_main

    seconds: dict[str, float] = {}
    top_level = [0.0]

    class Timer(event.Listener):
        def __init__(self):
            self.started: list[float] = []

        def on_start(self, ev):
            self.started.append(time.perf_counter())

        def on_end(self, ev):
            t = time.perf_counter() - self.started.pop()
            name = ev.data["dispatcher"].py_func.__name__
            seconds[name] = seconds.get(name, 0.0) + t
            if not self.started:
                top_level[0] += t

    t0 = time.perf_counter()
    with event.install_listener("numba:compile", Timer()):
        code = cli_main(["train", *argv, "--quiet", "--no-progress"])
    if code:
        sys.exit(code)
    wall = time.perf_counter() - t0
    rows = runtime.compiled_signatures()
    print(f"{'kernel':<40} {'specialisations':>15} {'from cache':>10} {'compile s':>9}")
    for name, (n_sigs, hits) in sorted(rows.items()):
        print(f"{name:<40} {n_sigs:>15} {hits:>10} {seconds.get(name.split('.')[-1], 0.0):>9.2f}")
    print(f"{sum(n for n, _ in rows.values())} specialisations; compiling {top_level[0]:.1f} s "
          f"of the run's {wall:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
