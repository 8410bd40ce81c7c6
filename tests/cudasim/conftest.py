"""Runs this directory under Numba's CUDA simulator, in its own pytest process.

The simulator is chosen when numba is first imported, so the variable must be set before that;
if numba is already loaded without it (this directory collected together with tests that import
numba), the kernels would go to the real driver, so stop at once rather than test the wrong thing.
Run it as ``pytest tests/cudasim``, apart from the rest of the suite.
"""

import os
import sys

os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

# The simulator runs each CUDA thread as a Python thread while its block manager polls them in a
# busy loop that holds the GIL; every barrier and warp shuffle then waits for that loop to give
# the GIL up, after the default 5 ms switch interval. 0.5 ms makes the head's shuffle-heavy
# tests 5-8 times faster (measured: 40 s -> 7.5 s on three of them); results are unaffected.
sys.setswitchinterval(5e-4)

if "numba" in sys.modules and not sys.modules["numba"].config.ENABLE_CUDASIM:
    raise RuntimeError(
        "numba was imported before tests/cudasim could enable the CUDA simulator; run these tests "
        "in their own process: NUMBA_ENABLE_CUDASIM=1 pytest tests/cudasim"
    )


def pytest_terminal_summary(terminalreporter):
    """The worst kernel-vs-reference errors the tests recorded, per dtype and tensor."""
    errors = {}
    for name, module in list(sys.modules.items()):
        if name.rpartition(".")[2] == "test_cuda_kernels":
            errors.update(getattr(module, "MAX_ERRORS", {}))
    if errors:
        terminalreporter.section("kernels.cuda vs kernels.reference: worst relative error")
        for (dtype, tensor), err in sorted(errors.items()):
            terminalreporter.write_line(f"{dtype:8s} {tensor:11s} {err:.2e}")
