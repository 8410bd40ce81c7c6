"""Backends: the array module (``xp``) plus the hot operations, behind one object.

Model and training code never import numpy or cupy for array math: they call a backend. The CPU
backend runs NumPy + OpenBLAS for the big products and the Numba CPU kernels for the fused ops;
the CUDA backend swaps in CuPy (cuBLAS) and the ``numba.cuda`` kernels; ``cudasim`` keeps NumPy
arrays but runs every CUDA kernel in Numba's simulator. ``fused=False`` swaps the kernels for the
plain references in :mod:`fastmlp.kernels.reference`, on any device.
"""

from __future__ import annotations

import importlib
import math
from types import ModuleType
from typing import Any

import numpy as np

from .errors import FastMLPError
from .kernels import warmup
from .kernels.reference import library

DEVICES = ("auto", "cpu", "cuda", "cudasim")
CUDA_EXTRA_HINT = "install a CUDA extra: pip install 'fastmlp[cuda12]' (or 'fastmlp[cuda13]')"


class Backend:
    """Array module and hot operations for one device.

    Attributes: ``name`` ("cpu", "cuda" or "cudasim"), ``xp`` (numpy or cupy), ``fused`` (fused
    kernels or the references), ``reason`` (why this device was picked, for ``auto``).
    """

    name = "cpu"

    def __init__(self, xp: ModuleType, ops: ModuleType, *, fused: bool = True, reason: str = ""):
        self.xp = xp
        self.ops = ops
        self.fused = fused
        self.reason = reason

    # -- copying and pickling: the modules inside cannot be copied, and need not be ------------
    def __copy__(self) -> Backend:
        return self  # stateless apart from its settings: a copy may share it

    def __deepcopy__(self, memo: dict[int, Any]) -> Backend:
        return self  # e.g. scikit-learn's clone() deep-copies an estimator's device parameter

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # rebuilt by get_backend where it is unpickled, from its constructor arguments
        return _rebuild_backend, (self.name, self.fused, getattr(self, "tf32", False),
                                  self.reason)

    # -- data movement: every device<->host copy goes through these two ------------------------
    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """A C-contiguous array of this backend (a host->device copy on CUDA)."""
        return self.xp.ascontiguousarray(self.xp.asarray(a, dtype=dtype))

    def to_host(self, a: Any, *, copy: bool = False) -> np.ndarray:
        """An explicit device->host copy; on the CPU a view, unless ``copy`` asks for an array
        of its own (a snapshot that later updates must not change)."""
        return np.array(a, copy=True) if copy else np.asarray(a)

    def check(self, a: Any, what: str = "array") -> Any:
        """``a`` itself if it lives on this backend, else a clear TypeError."""
        module = library(a)
        expected = self.xp.__name__.split(".")[0]
        if module != expected:
            raise TypeError(
                f"{what} is a {module} array but the model lives on {self.name!r} ({expected}); "
                f"move it first with model.backend.asarray(...) or model.backend.to_host(...)"
            )
        return a

    # -- buffers -------------------------------------------------------------------------------
    def empty(self, shape: int | tuple[int, ...], dtype: Any) -> Any:
        """An uninitialised C-contiguous array; on the host its data start on a cache line.

        NumPy aligns large arrays to 16 bytes only, so a row of Wh, Z or dWh that the sparse
        products stream vector by vector straddles two cache lines: the sparse MNIST epoch
        was ~5 % slower so (bench/RESULTS.md, "Full-batch epoch, MNIST course layout").
        CuPy's allocations are already 256-byte aligned."""
        if self.xp is not np:
            return self.xp.empty(shape, dtype=dtype)
        return aligned_empty(shape, dtype)

    def zeros(self, shape: int | tuple[int, ...], dtype: Any) -> Any:
        """:meth:`empty`, filled with zeros."""
        a = self.empty(shape, dtype)
        a.fill(0)
        return a

    def full(self, shape: int | tuple[int, ...], value: float, dtype: Any) -> Any:
        """:meth:`empty`, filled with ``value``."""
        a = self.empty(shape, dtype)
        a.fill(value)
        return a

    # -- hot operations ------------------------------------------------------------------------
    def matmul(self, a: Any, b: Any, out: Any) -> None:
        """out (M, N) = a (M, K) @ b (K, N), written into ``out`` (no allocation)."""
        with np.errstate(over="ignore", invalid="ignore"):  # the divergence guard reports it
            self.xp.matmul(a, b, out=out)

    def hidden_to_loss(self, Z, bh, Wo, bo, y, ends, n_grad, activation, dWo, dbo, dbh,
                       stats) -> None:
        """The fused per-row pass from the hidden layer to the loss and back; see
        :func:`fastmlp.kernels.reference.hidden_to_loss`."""
        warmup.wait()  # a first run's head compiling in a second process: loaded after it
        self.ops.hidden_to_loss(Z, bh, Wo, bo, y, ends, n_grad, activation, dWo, dbo, dbh, stats)

    def momentum(self, params, grads, velocity, lr: float, mu: float) -> None:
        """v ← mu·v + lr·g; p ← p − v over flat buffers."""
        self.ops.momentum(params, grads, velocity, lr, mu)

    def synchronize(self) -> None:
        """Wait for queued device work (for timing); nothing to wait for on the CPU."""

    def describe(self) -> str:
        """One line for logs and result files."""
        kind = "fused kernels" if self.fused else "reference ops"
        return f"{self.name} ({self.xp.__name__}, {kind})"


CACHE_LINE = 64  # bytes: also one AVX-512 vector


def aligned_empty(shape: int | tuple[int, ...], dtype: Any, align: int = CACHE_LINE) -> np.ndarray:
    """An uninitialised C-contiguous NumPy array of ``shape`` whose data start on a multiple of
    ``align`` bytes (a view into a slightly larger byte buffer)."""
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + align, np.uint8)
    start = -raw.ctypes.data % align
    return raw[start:start + nbytes].view(dtype).reshape(shape)


class CudaSimBackend(Backend):
    """NumPy arrays, every CUDA kernel run by Numba's CUDA simulator (for testing without a GPU)."""

    name = "cudasim"


class CupyBackend(Backend):
    """CuPy arrays, cuBLAS products, ``numba.cuda`` kernels on CuPy's current stream."""

    name = "cuda"

    def __init__(self, xp, ops, *, fused=True, reason="", tf32: bool = False):
        super().__init__(xp, ops, fused=fused, reason=reason)
        self.tf32 = tf32

    def to_host(self, a: Any, *, copy: bool = False) -> np.ndarray:
        return self.xp.asnumpy(a)  # always a fresh host array

    def matmul(self, a, b, out) -> None:
        if self.tf32 and out.dtype == self.xp.float32:
            # explicit opt-in only: TF32 trades mantissa bits for tensor-core speed
            with _cublas_tf32(self.xp):
                self.xp.matmul(a, b, out=out)
        else:
            self.xp.matmul(a, b, out=out)

    def synchronize(self) -> None:
        self.xp.cuda.get_current_stream().synchronize()

    def describe(self) -> str:
        props = self.xp.cuda.runtime.getDeviceProperties(self.xp.cuda.Device().id)
        gpu = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        tf32 = ", TF32 products" if self.tf32 else ""
        return f"{super().describe()}, {gpu}{tf32}"


class _cublas_tf32:
    """Context: CuPy's TF32 compute type for the products inside, restored afterwards."""

    def __init__(self, cupy: ModuleType):
        self.cupy = cupy

    def __enter__(self):
        from cupy._core import _routines_linalg as linalg

        self.linalg = linalg
        self.old = linalg.get_compute_type(self.cupy.float32)
        linalg.set_compute_type(self.cupy.float32, linalg.COMPUTE_TYPE_TF32)

    def __exit__(self, *exc):
        self.linalg.set_compute_type(self.cupy.float32, self.old)


def _kernels(module: str, fused: bool = True) -> ModuleType:
    """The kernels module ``module`` ("cpu" or "cuda"), or the references when not ``fused``."""
    return importlib.import_module(f"fastmlp.kernels.{module if fused else 'reference'}")


def _rebuild_backend(name: str, fused: bool, tf32: bool, reason: str) -> Backend:
    """The unpickled form of a :class:`Backend`: ``get_backend`` with its settings, keeping the
    reason it was picked for."""
    backend = get_backend(name, fused=fused, tf32=tf32)
    backend.reason = reason
    return backend


def get_backend(device: str | Backend = "cpu", *, fused: bool | None = None,
                tf32: bool = False) -> Backend:
    """The backend for ``device`` in {"auto", "cpu", "cuda", "cudasim"}, or ``device`` itself
    when it is a Backend (a ``fused`` or ``tf32`` that contradicts it is an error).

    ``auto`` picks CUDA only when the CUDA preflight passes (:mod:`fastmlp.preflight`: CuPy and
    a GPU, cuBLAS, numba-cuda with NVVM and libdevice, a tiny kernel), else the CPU; the
    returned backend's ``reason`` says which and why (the failed step). ``fused`` (None: True)
    picks the fused kernels, else the NumPy references. ``tf32=True`` allows TF32 float32
    products on the GPU.
    """
    if isinstance(device, Backend):
        if fused is not None and fused != device.fused:
            raise FastMLPError(f"the backend given has fused={device.fused}, but fused={fused} "
                               f"was asked for; give the device by name to choose")
        if tf32 and not getattr(device, "tf32", False):
            raise FastMLPError("the backend given does not allow TF32 products, but tf32=True "
                               "was asked for; give the device by name to choose")
        return device
    fused = True if fused is None else fused
    if device not in DEVICES:
        raise FastMLPError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if tf32 and device not in ("cuda", "auto"):
        raise FastMLPError("TF32 products are a GPU option: use it with --device cuda")
    if device == "cudasim":
        import numba

        if not numba.config.ENABLE_CUDASIM:
            raise FastMLPError(
                "device 'cudasim' needs Numba's CUDA simulator: set NUMBA_ENABLE_CUDASIM=1 in the "
                "environment before Python starts (numba reads it once, at import)"
            )
        ops = _kernels("cuda", fused)
        return CudaSimBackend(np, ops, fused=fused, reason="requested")
    if device in ("cuda", "auto"):
        from .preflight import cached_preflight

        check = cached_preflight(kernels=fused)  # the fused kernels need numba-cuda too
        if check.ok:
            cupy = importlib.import_module("cupy")
            ops = _kernels("cuda", fused)
            reason = ("requested" if device == "cuda"
                      else "auto: the CUDA preflight passed (fastmlp doctor)")
            return CupyBackend(cupy, ops, fused=fused, reason=reason, tf32=tf32)
        why_not = check.why_not()
        if device == "cuda":
            raise FastMLPError(f"device 'cuda' is unavailable: {why_not}; 'fastmlp doctor' "
                               f"checks each step; {CUDA_EXTRA_HINT}")
        reason = f"auto: {why_not}, using the CPU" + ("; TF32 does not apply" if tf32 else "")
    else:
        reason = "requested"
    ops = _kernels("cpu", fused)
    return Backend(np, ops, fused=fused, reason=reason)

