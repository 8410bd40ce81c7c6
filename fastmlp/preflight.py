"""The CUDA preflight: does this machine's GPU stack run fastmlp's CUDA path?

Each step names what it checked and, when it fails, why: CuPy imports and sees a GPU; its cuBLAS
loads (a tiny product); numba-cuda imports and finds libNVVM and libdevice (their paths are
reported); a tiny kernel compiles and runs on CuPy's stream. ``device="auto"`` takes the GPU only
when every step passes (:func:`fastmlp.backend.get_backend`), and ``fastmlp doctor`` prints the
report. Nothing here is imported until it runs: importing fastmlp never imports CuPy or numba-cuda.

Where no libNVVM is found but a CUDA toolkit is (``nvcc`` on the PATH, or /usr/local/cuda), and
neither CUDA_HOME nor CUDA_PATH is set, :func:`point_numba_at_toolkit` sets CUDA_HOME to it
before numba-cuda looks: numba-cuda searches the nvidia wheels, the system loader and then those
variables, and its fallback from NVRTC's location gives up when NVRTC came from a wheel.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SYSTEM_TOOLKITS = ("/usr/local/cuda",)


@dataclass
class Step:
    """One check: its ``name``, whether it passed (``ok``), and what it found or why it failed."""

    name: str
    ok: bool
    detail: str
    failed_as: str = ""  # what a failure means, for a run header ("CuPy is not importable")


@dataclass
class Preflight:
    """The steps run, in order; the run stops at the first failure."""

    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every step passed (and there was at least one)."""
        return bool(self.steps) and all(s.ok for s in self.steps)

    @property
    def failure(self) -> Step | None:
        """The step that failed, or None."""
        return next((s for s in self.steps if not s.ok), None)

    def report(self) -> str:
        """One line per step, ``ok``/``FAILED``, then the verdict."""
        lines = [f"{'ok' if s.ok else 'FAILED':6s} {s.name}: {s.detail}" for s in self.steps]
        verdict = ("the CUDA path is ready: device 'auto' takes the GPU" if self.ok else
                   "the CUDA path is NOT ready: device 'auto' takes the CPU")
        return "\n".join([*lines, verdict])

    def why_not(self) -> str:
        """One phrase for a run header: the failed step and its reason."""
        failed = self.failure
        return "" if failed is None else f"{failed.failed_as} ({failed.detail})"


def _toolkit_with_nvvm() -> Path | None:
    """A CUDA toolkit directory holding libNVVM (``nvvm/lib64/libnvvm.so*``): nvcc's, else
    /usr/local/cuda; None when there is none."""
    candidates = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(Path(nvcc).resolve().parent.parent)
    candidates += [Path(p) for p in SYSTEM_TOOLKITS]
    for home in candidates:
        if any((home / "nvvm" / "lib64").glob("libnvvm.so*")):
            return home
    return None


def point_numba_at_toolkit(environ: dict[str, str] | None = None) -> str:
    """Set CUDA_HOME to a toolkit with libNVVM when numba-cuda would otherwise have none to find:
    neither CUDA_HOME nor CUDA_PATH set, no ``nvidia-nvvm``/``nvidia-cuda-nvcc`` wheel
    installed. Returns what it did, for the report ("" when nothing was needed or found)."""
    env = os.environ if environ is None else environ
    if env.get("CUDA_HOME") or env.get("CUDA_PATH"):
        return ""
    if _nvvm_wheel() is not None:
        return ""
    home = _toolkit_with_nvvm()
    if home is None:
        return ""
    env["CUDA_HOME"] = str(home)
    return f"set CUDA_HOME={home} (no NVVM wheel; the toolkit of nvcc or {SYSTEM_TOOLKITS[0]})"


def _nvvm_wheel() -> Path | None:
    """libNVVM from an nvidia wheel in site-packages, if any."""
    import importlib.util

    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        for lib in sorted(Path(root).glob("*/**/libnvvm.so*")):
            return lib
    return None


def _nvvm_paths() -> tuple[str, str]:
    """(libNVVM, libdevice) as numba-cuda finds them, each with how it was found; raises when
    either is missing (numba-cuda 0.30: ``numba.cuda.cuda_paths.get_cuda_paths``)."""
    from numba.cuda.cuda_paths import get_cuda_paths
    from numba.cuda.cudadrv import nvvm

    handle = nvvm.NVVM()  # loads libNVVM: raises NvvmSupportError where there is none
    version = ".".join(map(str, handle.get_version()))
    paths = get_cuda_paths()
    lib, libdevice = paths["nvvm"], paths["libdevice"]
    if not libdevice.info or not Path(libdevice.info).is_file():
        raise FileNotFoundError(f"libdevice not found (numba-cuda looked at {libdevice.info!r})")
    return (f"{lib.info} (libNVVM API {version}, found by {lib.by})",
            f"{libdevice.info} (found by {libdevice.by})")


def _tiny_kernel_source():
    from numba import cuda

    @cuda.jit
    def add_one(a):
        i = cuda.grid(1)
        if i < a.shape[0]:
            a[i] += 1.0

    return add_one


def run_preflight(*, kernels: bool = True) -> Preflight:
    """Run the checks in order, stopping at the first failure. ``kernels=False`` checks only
    CuPy and cuBLAS (the reference ops need no numba-cuda)."""
    result = Preflight()

    def step(name: str, failed_as: str, fn) -> Any:
        try:
            value, detail = fn()
        except Exception as exc:  # any failure of a broken install is a reason, not a crash
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            result.steps.append(Step(name, False, f"{type(exc).__name__}: {first}", failed_as))
            return None
        result.steps.append(Step(name, True, detail))
        return value

    def import_cupy():
        import cupy

        return cupy, f"CuPy {cupy.__version__}"

    cupy = step("CuPy imports", "CuPy is not importable", import_cupy)
    if cupy is None:
        return result

    def device():
        n = cupy.cuda.runtime.getDeviceCount()
        if n < 1:
            raise RuntimeError("CuPy sees no GPU")
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"]
        name = name.decode() if isinstance(name, bytes) else name
        driver = cupy.cuda.runtime.driverGetVersion()
        return n, (f"{n} GPU(s); device {cupy.cuda.Device().id}: {name}, compute capability "
                   f"{props['major']}.{props['minor']}, driver CUDA {driver // 1000}."
                   f"{driver % 1000 // 10}")

    if step("a GPU is visible", "CuPy found no usable GPU", device) is None:
        return result

    def cublas():
        a = cupy.full((4, 4), 0.5, dtype=cupy.float32)
        total = float((a @ a).sum())
        if total != 16.0:
            raise RuntimeError(f"a 4x4 product summed to {total}, not 16")
        return True, "a 4x4 float32 product through cuBLAS is right"

    if step("cuBLAS loads", "CuPy's cuBLAS does not work", cublas) is None or not kernels:
        return result

    note = point_numba_at_toolkit()

    def numba_cuda():
        import numba
        from numba import cuda

        if not cuda.is_available():
            raise RuntimeError("numba.cuda.is_available() is False")
        return cuda, f"numba {numba.__version__}" + (f"; {note}" if note else "")

    cuda = step("numba-cuda sees the GPU", "numba-cuda is missing or sees no GPU",
                numba_cuda)
    if cuda is None:
        return result

    def nvvm():
        lib, libdevice = _nvvm_paths()
        return True, f"libNVVM {lib}; libdevice {libdevice}"

    if step("numba-cuda finds NVVM and libdevice",
            "numba-cuda finds no NVVM or libdevice", nvvm) is None:
        return result

    def tiny_kernel():
        from fastmlp.kernels import cuda as kc  # the np.row_stack alias numba-cuda needs

        kernel = _tiny_kernel_source()
        a = cupy.zeros(64, dtype=cupy.float32)
        stream = kc._cupy_stream()[1]
        kernel[1, 64, stream](kc._device_view(a, True))
        got = float(a.sum())
        if got != 64.0:
            raise RuntimeError(f"the kernel's result summed to {got}, not 64")
        return True, "a tiny kernel compiled and ran on CuPy's stream"

    step("a kernel compiles and runs", "a tiny CUDA kernel does not compile or run", tiny_kernel)
    return result


_PASSED: dict[bool, Preflight] = {}


def cached_preflight(kernels: bool = True) -> Preflight:
    """:func:`run_preflight`; a pass is kept for the process (``device="auto"`` asks each run),
    a failure is not (it is quick, and a later call may find what was missing)."""
    if kernels in _PASSED:
        return _PASSED[kernels]
    result = run_preflight(kernels=kernels)
    if result.ok:
        _PASSED[kernels] = result
    return result

