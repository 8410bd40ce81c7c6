"""The CUDA kernels through the real compiler, no GPU needed: its own pytest process.

Run it as ``pytest tests/cudacheck`` (a plain ``pytest`` leaves it out, see tests/conftest.py),
with the ``cudacheck`` extra installed. The simulator must be off: under it numba has no real
compiler to call. The summary table it prints is quoted in bench/RESULTS.md (no test writes it).
"""

import os
import sys

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or (
        "numba" in sys.modules and sys.modules["numba"].config.ENABLE_CUDASIM):
    raise RuntimeError(
        "tests/cudacheck compiles with the real CUDA toolchain and cannot run under Numba's CUDA "
        "simulator: run it in its own process without NUMBA_ENABLE_CUDASIM=1"
    )

ROWS = pytest.StashKey[list]()


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


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    rows = config.stash.get(ROWS, [])
    if not rows:
        return
    table = format_table(rows)
    terminalreporter.section("CUDA kernels: ptxas registers, spills, shared memory, barriers")
    for line in table.splitlines():
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"toolchain: {rows[0]['toolchain']}")
