"""The CUDA kernels through the real compiler, no GPU needed: its own pytest process.

Run it as ``pytest tests/cudacheck`` (a plain ``pytest`` leaves it out, see tests/conftest.py),
with the ``cudacheck`` extra installed. The simulator must be off: under it numba has no real
compiler to call. ``--write-results`` also puts the summary table into bench/RESULTS.md.
"""

import os
import sys
from pathlib import Path

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or (
        "numba" in sys.modules and sys.modules["numba"].config.ENABLE_CUDASIM):
    raise RuntimeError(
        "tests/cudacheck compiles with the real CUDA toolchain and cannot run under Numba's CUDA "
        "simulator: run it in its own process without NUMBA_ENABLE_CUDASIM=1"
    )

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "RESULTS.md"
SECTION = "## 4. CUDA kernels through the real compiler (`tests/cudacheck`)"
COMMAND = ".venv/bin/python -m pytest tests/cudacheck --write-results"
ROWS = pytest.StashKey[list]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--write-results", action="store_true",
                     help=f"write the register/spill table into {RESULTS.name} ({SECTION[3:]})")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[ROWS] = []


@pytest.fixture(scope="session")
def table_rows(pytestconfig: pytest.Config) -> list[dict]:
    """Rows for the summary table; each test that assembled a kernel appends its figures."""
    return pytestconfig.stash[ROWS]


COLUMNS = ("kernel", "arch", "dtype", "registers", "reg bound", "spill st/ld B", "stack B",
           "smem static B", "smem dynamic B", "barriers", "bar.sync", "f64 ops")


def format_table(rows: list[dict]) -> str:
    """The rows as a Markdown table, sorted by kernel, dtype and arch."""
    ordered = sorted(rows, key=lambda r: (r["kernel"], r["dtype"], r["arch"]))
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in ordered]
    return "\n".join(lines)


def _write_results(table: str, toolchain: str) -> None:
    """Replace (or append) this suite's section of bench/RESULTS.md; the next ``## `` ends it."""
    text = RESULTS.read_text()
    body = (f"{SECTION}\n\nProduced by `{COMMAND}` (no GPU needed; {toolchain}). Every kernel in "
            "every signature the backend launches, compiled by numba-cuda's NVVM to PTX and "
            "assembled by the nvcc wheel's `ptxas -v`. *reg bound*: 65536 registers per SM over "
            "the threads the default launch puts on an SM for its intended occupancy (see "
            "tests/cudacheck/test_compile.py); *smem dynamic*: the head's double-buffered do "
            "tile at the default launch for K = 10 (it depends on N: full batch and minibatch "
            "rows); *barriers*: barrier names ptxas reports; *bar.sync*: "
            "barrier instructions in the PTX (the `cuda.syncthreads()` sites left, not how often "
            "they run); *f64 ops*: float64 arithmetic instructions in the PTX "
            "(float32 kernels: only the float64 loss/count accumulators).\n\n"
            f"{table}\n")
    start = text.find(SECTION)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + body + ("" if end < 0 else text[end:])
    RESULTS.write_text(text)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    rows = config.stash.get(ROWS, [])
    if not rows:
        return
    table = format_table(rows)
    terminalreporter.section("CUDA kernels: ptxas registers, spills, shared memory, barriers")
    for line in table.splitlines():
        terminalreporter.write_line(line)
    if config.getoption("--write-results"):
        _write_results(table, rows[0]["toolchain"])
        terminalreporter.write_line(f"written to {RESULTS}")
