"""A NumPy-backed stand-in for CuPy and numba-cuda's launch machinery, so that the GPU-only code
(``CupyBackend``, the CUDA kernels' wrappers: streams, device views, partials, split ends) runs
in CI without a GPU.

:func:`install` puts a fake ``cupy`` module into ``sys.modules``: its arrays are a NumPy subclass
whose type lives in module "cupy" (so fastmlp's ``library()``/``namespace()`` take them for CuPy
arrays), with ``__cuda_array_interface__`` and ``.data.ptr``; its functions are NumPy's, their
array results viewed as that subclass; ``cupy.cuda`` has a device, streams (a ``Stream`` context
sets the current one) and the runtime queries fastmlp makes. The numba-cuda entry points the
kernels module calls (``from_cuda_array_interface``, ``external_stream``, ``default_stream``,
``get_current_device``) and the three kernels are replaced by recorders; a recorded kernel does
its job in NumPy (the head by :func:`fastmlp.kernels.reference.head`, writing block 0's partials
and zeroing the rest), so training through the fake GPU must match training on the CPU.
"""

from __future__ import annotations

import sys
import types
from collections import Counter
from types import SimpleNamespace

import numpy as np
from fastmlp.kernels import ACTIVATIONS, reference
from fastmlp.kernels import cuda as kc


class ndarray(np.ndarray):  # noqa: N801  (CuPy's name)
    """A NumPy array that calls itself a CuPy array."""

    __module__ = "cupy"

    @property
    def data(self):  # CuPy's MemoryPointer: .ptr is the address of the first element
        return SimpleNamespace(ptr=self.__array_interface__["data"][0])

    @property
    def __cuda_array_interface__(self) -> dict:
        contiguous = self.flags.c_contiguous
        return {"shape": self.shape, "typestr": self.dtype.str, "version": 3,
                "strides": None if contiguous else self.strides,
                "data": (self.__array_interface__["data"][0], False),
                "stream": CALLS["stream_ptr"] or 1,
                "_host": self.view(np.ndarray)}  # for the fake numba-cuda only

    def get(self) -> np.ndarray:
        return np.array(self.view(np.ndarray), copy=True)

    def sum(self, *args, **kwargs):  # counted: the head's second pass must not use it
        CALLS["ndarray.sum"] += 1
        return super().sum(*args, **kwargs)


CALLS: Counter = Counter()


def _as_fake(value):
    if isinstance(value, np.ndarray) and not isinstance(value, ndarray):
        return value.view(ndarray)
    return value


def _wrap(fn):
    def wrapped(*args, **kwargs):
        CALLS[f"cupy.{getattr(fn, '__name__', 'fn')}"] += 1
        return _as_fake(fn(*args, **kwargs))
    return wrapped


class _Stream:
    def __init__(self, ptr: int = 0):
        self.ptr = ptr

    def synchronize(self) -> None:
        CALLS["synchronize"] += 1

    def __enter__(self):
        self._previous = CALLS["stream_ptr"]
        CALLS["stream_ptr"] = self.ptr
        return self

    def __exit__(self, *exc) -> None:
        CALLS["stream_ptr"] = self._previous


class _Device:
    def __init__(self, device_id: int = 0):
        self.id = device_id


def _runtime(devices: int) -> SimpleNamespace:
    return SimpleNamespace(
        getDeviceCount=lambda: devices,
        getDeviceProperties=lambda i: {"name": b"Fake GPU", "major": 9, "minor": 0},
        driverGetVersion=lambda: 13000)


def make_cupy(devices: int = 1) -> types.ModuleType:
    """The fake ``cupy`` module (``devices`` GPUs visible)."""
    module = types.ModuleType("cupy")
    module.__version__ = "0.0-fake"
    module.ndarray = ndarray
    module.asnumpy = lambda a: np.array(np.asarray(a).view(np.ndarray), copy=True)
    module.cuda = SimpleNamespace(
        Device=_Device, Stream=_Stream, runtime=_runtime(devices),
        get_current_stream=lambda: _Stream(CALLS["stream_ptr"]))

    def __getattr__(name: str):
        attr = getattr(np, name)
        if callable(attr) and not isinstance(attr, type):
            return _wrap(attr)
        return attr

    module.__getattr__ = __getattr__
    return module


# -- numba-cuda's side ------------------------------------------------------------------------


class KernelRecorder:
    """``rec[blocks, threads, stream(, shared)](*args)``: counts the launch, checks it runs on the
    current stream, and runs ``body(*args)`` in NumPy."""

    def __init__(self, name: str, body):
        self.name, self.body = name, body

    def __getitem__(self, config):
        def launch(*args):
            CALLS[f"launch.{self.name}"] += 1
            stream = config[2]
            assert getattr(stream, "ptr", 0) == CALLS["stream_ptr"], (stream, CALLS)
            for a in args:  # the kernels get device views, never the CuPy arrays themselves
                assert not isinstance(a, ndarray), f"{self.name} was passed a CuPy array"
            self.body(*args)
        return launch


def _head_body(Z, bh, Wo, bo, y, ends, n_grad, act, inv_n, dWo_part, dbh_part, dbo_part,
               stats_part, tile):
    H, K = Wo.shape
    stats = np.empty((ends.shape[0], 2))
    dWo, dbo, dbh = np.empty((H, K), Z.dtype), np.empty((1, K), Z.dtype), np.empty((1, H), Z.dtype)
    reference.head(Z, bh, Wo, bo, y, tuple(int(e) for e in ends), n_grad, ACTIVATIONS[act],
                   dWo, dbo, dbh, stats)
    stats_part[...] = 0
    stats_part[0] = stats
    if n_grad > 0:
        for part, value in ((dWo_part, dWo.T), (dbh_part, dbh[0]), (dbo_part, dbo[0])):
            part[...] = 0
            part[0] = value


def _reduce_body(dWo_part, dbh_part, dbo_part, stats_part, n_grad, dWo, dbh, dbo, stats):
    stats[...] = stats_part.sum(axis=0)
    if n_grad > 0:
        dWo[...] = dWo_part.sum(axis=0).T
        dbh[0] = dbh_part.sum(axis=0)
        dbo[0] = dbo_part.sum(axis=0)


def _momentum_body(p, g, v, lr, mu):
    v *= mu
    v += lr * g
    p -= v


def _from_cuda_array_interface(desc, owner=None, sync=True):
    CALLS["device_view"] += 1
    assert owner is None and sync is False, (owner, sync)  # no reference kept, no host sync
    return desc["_host"]


def _external_stream(ptr):
    CALLS["external_stream"] += 1
    return SimpleNamespace(ptr=ptr)


def _default_stream():
    CALLS["default_stream"] += 1
    return SimpleNamespace(ptr=0)


def install(monkeypatch, devices: int = 1) -> types.ModuleType:
    """Install the fake CuPy and the numba-cuda stand-ins (undone by ``monkeypatch``); return
    the fake module. Clears the kernels module's caches, which must not outlive the fakes."""
    cupy = make_cupy(devices)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    linalg = types.ModuleType("cupy._core._routines_linalg")
    compute = {np.float32: 0}
    linalg.COMPUTE_TYPE_TF32 = 5
    linalg.get_compute_type = lambda dtype: compute[dtype]
    linalg.set_compute_type = lambda dtype, value: (CALLS.update({f"tf32={value}": 1}),
                                                    compute.__setitem__(dtype, value))
    monkeypatch.setitem(sys.modules, "cupy._core", types.ModuleType("cupy._core"))
    monkeypatch.setitem(sys.modules, "cupy._core._routines_linalg", linalg)
    sys.modules["cupy._core"]._routines_linalg = linalg
    monkeypatch.setattr(kc.cuda, "from_cuda_array_interface", _from_cuda_array_interface,
                        raising=False)
    monkeypatch.setattr(kc.cuda, "external_stream", _external_stream, raising=False)
    monkeypatch.setattr(kc.cuda, "default_stream", _default_stream, raising=False)
    fake_device = SimpleNamespace(id=0, MULTIPROCESSOR_COUNT=4)
    monkeypatch.setattr(kc.cuda, "get_current_device", lambda: fake_device, raising=False)
    monkeypatch.setattr(kc, "_head_kernel", lambda dtype, K: KernelRecorder("head", _head_body))
    monkeypatch.setattr(kc, "_reduce_kernel", lambda dtype: KernelRecorder("reduce",
                                                                           _reduce_body))
    monkeypatch.setattr(kc, "_momentum_kernel", lambda dtype: KernelRecorder("momentum",
                                                                             _momentum_body))
    clear_caches()
    CALLS.clear()
    CALLS["stream_ptr"] = 0
    return cupy


def clear_caches() -> None:
    """Forget what the kernels module cached (views, streams, partials, split ends, SM count):
    after a fake run, a real GPU run in the same process must not find the fakes' entries."""
    for cache in (kc._VIEWS, kc._STREAMS, kc._PARTIALS, kc._ENDS):
        cache.clear()
    kc._sm_count.cache_clear()
