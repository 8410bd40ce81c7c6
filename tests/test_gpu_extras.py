"""The CUDA extras resolve to a working stack: pip's resolver, no GPU and no install.

``pip install --dry-run --report -`` of each extra's requirements, as a new user's pip would
resolve them on this platform, must bring the CUDA libraries the GPU path loads: cuBLAS (CuPy's
products), NVRTC (CuPy's own kernels), NVVM (numba-cuda's compiler) and nvJitLink (numba-cuda's
linker; cuBLAS 13 needs it too). Skipped, saying why, where no package index answers quickly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INDEX = "https://pypi.org/simple/"
PROBE_TIMEOUT_S = 5
RESOLVE_TIMEOUT_S = 240  # measured 1.5-2 min each on a shared 2-core machine

# what must be in the resolved set, as a predicate on the distribution names pip reports
NEEDED = {
    "cuBLAS": lambda names: any(n.startswith("nvidia-cublas") for n in names),
    "NVRTC": lambda names: any(n.startswith("nvidia-cuda-nvrtc") for n in names),
    # CUDA 13 ships libNVVM as its own wheel; CUDA 12 inside the nvcc wheel
    "NVVM": lambda names: any(n.startswith(("nvidia-nvvm", "nvidia-cuda-nvcc")) for n in names),
    "nvJitLink": lambda names: any(n.startswith("nvidia-nvjitlink") for n in names),
}


def _extras() -> dict[str, list[str]]:
    """The optional dependencies as pyproject.toml has them now (not the installed metadata,
    which is as old as the last install)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        pytest.skip("reading pyproject.toml needs tomllib (Python 3.11+)")
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["optional-dependencies"]


def _index_unreachable() -> str | None:
    """Why pip cannot reach a package index from here, or None when one answers."""
    if os.environ.get("PIP_NO_INDEX", "").lower() in ("1", "true", "yes"):
        return "PIP_NO_INDEX is set"
    index = os.environ.get("PIP_INDEX_URL", DEFAULT_INDEX).rstrip("/") + "/pip/"
    try:
        with urllib.request.urlopen(index, timeout=PROBE_TIMEOUT_S) as response:
            response.read(1)
    except Exception as exc:  # offline, proxy refusal, DNS: no index within the timeout
        return f"no package index reachable ({index}: {type(exc).__name__}: {exc})"
    return None


@pytest.fixture(scope="module")
def index() -> None:
    reason = _index_unreachable()
    if reason:
        pytest.skip(reason)


@pytest.mark.parametrize("extra", ["cuda12", "cuda13"])
def test_cuda_extra_resolves_to_cublas_nvrtc_nvvm_and_nvjitlink(extra: str, index) -> None:
    requirements = _extras()[extra]
    done = subprocess.run(
        # fast-deps: metadata by HTTP range requests, not the 1.5 GB of wheels (cuBLAS alone is
        # 444 MB) that pip 23 downloads to read it
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--only-binary=:all:", "--use-feature=fast-deps", "--report", "-", *requirements],
        capture_output=True, text=True, timeout=RESOLVE_TIMEOUT_S)
    assert done.returncode == 0, f"pip could not resolve {extra}:\n{done.stderr[-3000:]}"
    report = json.loads(done.stdout)
    names = {item["metadata"]["name"].lower().replace("_", "-") for item in report["install"]}
    missing = [lib for lib, present in NEEDED.items() if not present(names)]
    assert not missing, f"{extra} ({requirements}) resolves without {missing}: {sorted(names)}"
    # the two packages the extra names, within their bounds
    assert any(n.startswith("cupy-cuda") for n in names), sorted(names)
    assert "numba-cuda" in names, sorted(names)
