"""``fastmlp doctor``: is this machine's CUDA stack ready for ``--device cuda``?

Prints each step of :func:`fastmlp.preflight.run_preflight` (CuPy and a GPU, cuBLAS, numba-cuda
with the paths of libNVVM and libdevice it uses, a tiny kernel compiled and run) and the verdict.
Exit 0 when every step passes, 1 otherwise (the report says which step failed and why).
"""

from __future__ import annotations

import argparse

from ..preflight import run_preflight
from .common import EXIT_OK, Command

EXIT_NOT_READY = 1


def _configure_doctor(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-kernels", action="store_true",
                   help="check CuPy and cuBLAS only (enough for the library's fused=False, "
                        "which runs the reference ops)")


def _run_doctor(args: argparse.Namespace) -> int:
    result = run_preflight(kernels=not args.no_kernels)
    print(result.report(), flush=True)
    return EXIT_OK if result.ok else EXIT_NOT_READY


COMMAND = Command(
    name="doctor",
    help="check the CUDA stack: CuPy, cuBLAS, numba-cuda's NVVM, a tiny kernel",
    description="Run the CUDA preflight step by step and print what each found (versions, the "
                "GPU, the libNVVM and libdevice paths) or why it failed. Exit 0 when the CUDA "
                "path is ready (device 'auto' then takes the GPU), 1 otherwise.",
    configure=_configure_doctor,
    run=_run_doctor,
)
