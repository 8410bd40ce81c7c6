"""Shared test setup: the `gpu` marker, the separate CUDA-simulator process, and checks several
test files make (one-line CLI errors, PNG files, no temp files left behind).

The shared checks are plain functions handed out by fixtures of the same name: a test module
must not ``from conftest import ...``, since with more than one conftest.py loaded (``pytest
tests bench``) the module named ``conftest`` may be another directory's.
"""

import os
import struct
from collections.abc import Callable
from pathlib import Path

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


# -- shared checks ------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _one_line_error(stderr: str, fragment: str) -> None:
    """The CLI error policy: one line ``fastmlp: error: ...`` naming ``fragment``, no traceback."""
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("fastmlp: error: "), stderr
    assert fragment in lines[0], stderr


def _png_size(path: Path) -> tuple[int, int]:
    """Assert ``path`` is a PNG (signature, IHDR first); return its (width, height)."""
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR", f"{path}: no IHDR chunk first"
    return struct.unpack(">II", data[16:24])


def _no_temp_files(directory: Path) -> None:
    """Assert no atomic-write temp file (``*.tmp``) is left in ``directory``."""
    left = sorted(p.name for p in Path(directory).iterdir() if p.name.endswith(".tmp"))
    assert not left, f"temp files left in {directory}: {left}"


@pytest.fixture
def assert_one_line_error() -> Callable[[str, str], None]:
    """``assert_one_line_error(stderr, fragment)``: see :func:`_one_line_error`."""
    return _one_line_error


@pytest.fixture
def png_size() -> Callable[[Path], tuple[int, int]]:
    """``png_size(path)``: asserts a PNG, returns (width, height); see :func:`_png_size`."""
    return _png_size


@pytest.fixture
def assert_no_temp_files() -> Callable[[Path], None]:
    """``assert_no_temp_files(directory)``: see :func:`_no_temp_files`."""
    return _no_temp_files
