"""Shared test setup: the `gpu` marker and the separate CUDA-simulator process."""

import os

import pytest

import fastmlp  # noqa: F401  (first, before NumPy: it sets the thread-pool variables OpenBLAS reads)

# tests/cudasim needs NUMBA_ENABLE_CUDASIM=1 before numba is imported, so it runs in its own
# pytest process (see README): a plain `pytest` run leaves it out.
if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    collect_ignore = ["cudasim"]


def _gpu_unavailable_reason() -> str | None:
    try:
        import cupy
    except Exception as exc:
        return f"needs a CUDA GPU with CuPy (pip install 'fastmlp[cuda12]'): {exc}"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "needs a CUDA GPU: CuPy sees none"
    except Exception as exc:
        return f"needs a CUDA GPU: {exc}"
    return None


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    reason = _gpu_unavailable_reason()
    if reason is None and os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        reason = "real-GPU tests do not run under the CUDA simulator"
    if reason is None:
        return
    for item in gpu_items:
        item.add_marker(pytest.mark.skip(reason=reason))
