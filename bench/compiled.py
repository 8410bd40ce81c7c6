"""Which kernels a run compiles, and for how long: ``python bench/compiled.py [train options]``.

Runs ``fastmlp train`` in this process with the given options (``--quiet --no-progress`` added),
then prints, per Numba kernel of fastmlp.kernels, its compiled specialisations, how many came
from the on-disk cache, and the seconds spent compiling it, wall clock and the process's CPU
time (Numba's ``numba:compile`` events; a kernel's time includes the functions it compiled on
the way). On a shared machine the CPU seconds are the steadier figure. Point
``NUMBA_CACHE_DIR`` at an empty folder to see a first run's compilations (bench/first_run.sh
does, with INVENTORY=1).
"""

from __future__ import annotations

import sys
import time

import fastmlp  # noqa: F401  (first: it sets OpenBLAS up before NumPy loads)


def main(argv: list[str]) -> None:
    from fastmlp.kernels import runtime
    from numba.core import event

    from fastmlp.cli import main as cli_main

    seconds: dict[str, tuple[float, float]] = {}  # name: (wall, CPU)
    top_level = [(0.0, 0.0)]

    def now() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def add(a: tuple[float, float], b: tuple[float, float], sign: int = 1) -> tuple[float, float]:
        return a[0] + sign * b[0], a[1] + sign * b[1]

    class Timer(event.Listener):
        def __init__(self):
            self.started: list[tuple[float, float]] = []

        def on_start(self, ev):
            self.started.append(now())

        def on_end(self, ev):
            spent = add(now(), self.started.pop(), -1)
            name = ev.data["dispatcher"].py_func.__name__
            seconds[name] = add(seconds.get(name, (0.0, 0.0)), spent)
            if not self.started:
                top_level[0] = add(top_level[0], spent)

    start = now()
    with event.install_listener("numba:compile", Timer()):
        code = cli_main(["train", *argv, "--quiet", "--no-progress"])
    if code:
        sys.exit(code)
    wall, cpu = add(now(), start, -1)
    rows = runtime.compiled_signatures()
    print(f"{'kernel':<40} {'specialisations':>15} {'from cache':>10} {'compile s':>9} "
          f"{'CPU s':>6}")
    for name, (n_sigs, hits) in sorted(rows.items()):
        w, c = seconds.get(name.split(".")[-1], (0.0, 0.0))
        print(f"{name:<40} {n_sigs:>15} {hits:>10} {w:>9.2f} {c:>6.2f}")
    print(f"{sum(n for n, _ in rows.values())} specialisations; compiling {top_level[0][0]:.1f} s "
          f"(CPU {top_level[0][1]:.1f} s) of the run's {wall:.1f} s (CPU {cpu:.1f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
