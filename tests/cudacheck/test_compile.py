"""Every CUDA kernel of kernels/cuda.py, in every signature the backend launches, through the real
compiler: numba-cuda's NVVM to PTX (``numba.cuda.compile_ptx``, no GPU needed), then the nvcc
wheel's ``ptxas -v`` for sm_80 and sm_90.

The simulator suite checks what the kernels compute; this one checks what the simulator cannot:
that they compile at all, that float32 kernels stay float32, that nothing spills, and that the
registers fit the occupancy the default launch is meant to reach.

The signatures are not written out by hand: the backend's own code (model, trainer, evaluation)
runs on NumPy arrays with the CUDA kernels' launches replaced by recorders, so the argument types
(array dtypes, dimensions and layouts; label and split-end dtypes; scalar types) are the ones a
GPU run passes, and a change in the backend shows up here.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import fastmlp
from fastmlp.backend import CudaSimBackend
from fastmlp.datasets import Dataset, Split
from fastmlp.train import Trainer, evaluate

pytestmark = pytest.mark.cudacheck

ARCHS = ((8, 0), (9, 0))  # A100 and H100/H200, the GPUs the product targets
DTYPES = ("float32", "float64")
KERNELS = ("head", "reduce", "momentum")

# -- the hardware limits behind the register bound (sm_80 and sm_90 alike) ----------------------
REGISTERS_PER_SM = 65536
MAX_THREADS_PER_SM = 2048
MAX_REGISTERS_PER_THREAD = 255
REGISTER_UNIT = 8  # registers go to warps in blocks of 256, i.e. 8 per thread
# every kernel keeps at least this many registers below its bound, so that another CUDA release's
# compiler (the machines run 13.0's, this suite also 13.5's) or a small change does not tip it
# over into fewer blocks per SM or spills: one allocation unit
REGISTER_MARGIN = REGISTER_UNIT
SHARED_PER_SM = {(8, 0): 164 * 1024, (9, 0): 228 * 1024}  # bytes a kernel's blocks may share

# float64 arithmetic instructions expected in each *float32* kernel's PTX, and why: anything else
# would be a float64 literal or a Python float creeping into float32 code (about 1/64 of the
# float32 rate on most GPUs).
EXPECTED_F64_IN_FLOAT32 = {
    # stats_part is float64 on purpose (summed loss and correct count over up to all rows of a
    # split): one add.f64 for the loss, one for the count; the row's loss itself is float32
    "head": 2,
    "momentum": 0,  # v and p are updated in the data dtype only
    "reduce": 7,  # the stats partials' sum (float64 on purpose), unrolled 4 + 3 by NVVM
}
# bar.sync sites in each kernel's PTX. The head's one is its once-per-tile barrier between the
# warps' rows and the block's gradients; it had three (the per-row shared-memory tree reduction,
# about ten barriers per row) before the tiled design, whose logits are reduced by warp shuffles.
EXPECTED_BARRIER_SITES = {"head": 1, "momentum": 0, "reduce": 0}
F64_ARITHMETIC = re.compile(
    r"^(?:add|sub|mul|fma|mad|div|rcp|sqrt|rsqrt|neg|abs|min|max|setp|set|selp|slct|ex2|lg2|"
    r"sin|cos|tanh|testp|copysign)(?:\.[a-z0-9]+)*\.f64$")


# -- the toolchain --------------------------------------------------------------------------------


def _find_ptxas() -> Path | None:
    """The ptxas of the nvidia-cuda-nvcc wheel (``nvidia/<cu13|cuda_nvcc>/bin/ptxas``), not the
    machine's: an older ptxas refuses the newer PTX that numba-cuda's NVVM writes."""
    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        for candidate in sorted(Path(root).glob("*/bin/ptxas")):
            if candidate.is_file():
                return candidate
    return None


def _missing_toolchain() -> str | None:
    """Why the real compiler cannot be used here, or None when it can."""
    hint = "pip install -e '.[cudacheck]'"
    if importlib.util.find_spec("numba_cuda") is None:
        return f"numba-cuda is not installed ({hint})"
    if _find_ptxas() is None:
        return f"no ptxas from the nvidia-cuda-nvcc wheel in site-packages ({hint})"
    return None


@pytest.fixture(scope="session")
def ptxas() -> Path:
    reason = _missing_toolchain()
    if reason:
        pytest.skip(reason)
    return _find_ptxas()


def _release(text: str) -> tuple[int, int]:
    """The CUDA release named in a PTX header or a ``--version`` text ("release 13.5")."""
    m = re.search(r"release (\d+)\.(\d+)", text)
    assert m, f"no CUDA release in:\n{text[:400]}"
    return int(m.group(1)), int(m.group(2))


# -- the launches the backend makes ---------------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    """One kernel launch as the backend makes it: argument types and launch configuration."""

    kernel: str
    dtype: str
    argtypes: tuple
    threads: int
    dynamic_shared: int
    classes: int  # K, which the head compiles in (0 for momentum)


class _Recorder:
    """Stands in for a CUDA kernel: ``rec[config](*args)`` records the launch and zeroes the float
    arrays it was given (finite numbers keep the training loop going; their values don't matter)."""

    def __init__(self, kernel: str, dtype: str, launches: set[Launch], classes: int = 0):
        self.kernel, self.dtype, self.launches = kernel, dtype, launches
        self.classes = classes

    def __getitem__(self, config: tuple):
        import numba

        def launch(*args) -> None:
            argtypes = tuple(numba.typeof(a) for a in args)
            shared = config[3] if len(config) > 3 else 0
            dtype = self.dtype or str(args[0].dtype)
            self.launches.add(Launch(self.kernel, dtype, argtypes, int(config[1]), int(shared),
                                     self.classes))
            for a in args:
                if isinstance(a, np.ndarray) and a.dtype.kind == "f":
                    a[...] = 0
        return launch


def _tiny_dataset(dtype: str) -> Dataset:
    rng = np.random.default_rng(0)

    def split(n: int) -> Split:
        # int64 labels, as load_dataset gives them: the backend converts them itself
        return Split(rng.random((n, 20)).astype(dtype), rng.integers(0, 10, n, dtype=np.int64))
    return Dataset("tiny", split(60), split(20), split(20))


@pytest.fixture(scope="session")
def launches(ptxas) -> set[Launch]:
    """Every distinct launch of the training, evaluation and gradient paths, both dtypes and
    activations, full batch and minibatch, with the default launch configuration."""
    from fastmlp.kernels import cuda as kc

    found: set[Launch] = set()
    fake_gpu = SimpleNamespace(id=0, MULTIPROCESSOR_COUNT=4)  # no GPU here: say there is one
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kc, "_head_kernel",
                   lambda dtype, K: _Recorder("head", str(dtype), found, K))
        mp.setattr(kc, "_momentum_kernel",
                   lambda dtype: _Recorder("momentum", str(dtype), found))
        mp.setattr(kc, "_reduce_kernel", lambda dtype: _Recorder("reduce", str(dtype), found))
        mp.setattr(kc, "_sm_count", lambda device_id: fake_gpu.MULTIPROCESSOR_COUNT)
        mp.setattr(kc.cuda, "get_current_device", lambda: fake_gpu)
        # the GPU backend's code path (not the CPU's compiled loop) with NumPy arrays
        backend = CudaSimBackend(np, kc, fused=True, reason="tests/cudacheck")
        for dtype in DTYPES:
            data = _tiny_dataset(dtype)
            for activation in ("relu", "sigmoid"):
                model = fastmlp.MLP(20, 40, 10, activation=activation, dtype=dtype,
                                    device=backend)
                for batch_size in (None, 16):
                    Trainer(model, data, batch_size=batch_size).run_epoch()
                evaluate(model, data)
                model.loss_and_grads(data.test.x, data.test.y)
    assert {(x.kernel, x.dtype) for x in found} == {(k, d) for k in KERNELS for d in DTYPES}
    return found


def _launches_of(launches: set[Launch], kernel: str, dtype: str) -> list[Launch]:
    chosen = [x for x in launches if x.kernel == kernel and x.dtype == dtype]
    assert chosen, f"the backend never launched {kernel} in {dtype}"
    return sorted(chosen, key=repr)


def test_label_and_index_dtypes(launches: set[Launch]) -> None:
    """The signatures found are the ones the kernels were written for: int32 labels (the model
    converts them), int64 split ends, int64 scalars n_grad and activation, the data dtype's inv_n,
    and C-contiguous arrays (the kernels index them without strides beyond their shapes)."""
    import numba

    for x in launches:
        assert all(getattr(t, "layout", "C") == "C" for t in x.argtypes), x
        if x.kernel == "head":
            assert x.argtypes[4].dtype == numba.int32, x  # y
            assert x.argtypes[5].dtype == numba.int64, x  # ends
            assert x.argtypes[6:8] == (numba.int64, numba.int64), x  # n_grad, act
            assert x.argtypes[8] == numba.from_dtype(np.dtype(x.dtype)), x  # inv_n
            assert x.argtypes[12].dtype == numba.float64, x  # stats partials


# -- compiling and assembling ---------------------------------------------------------------------


def _py_func(kernel: str, dtype: str, classes: int = 0):
    """The Python function behind the kernel the backend launches (the very dispatcher's);
    ``classes``: the K the head was compiled for."""
    from fastmlp.kernels import cuda as kc

    dispatcher = (kc._head_kernel(np.dtype(dtype), classes) if kernel == "head"
                  else getattr(kc, f"_{kernel}_kernel")(np.dtype(dtype)))
    return dispatcher.py_func


def _blocks_per_sm(kernel: str) -> int:
    """The blocks per SM a kernel's default launch is sized for (kernels/cuda.py)."""
    from fastmlp.kernels import cuda as kc

    return {"head": kc.BLOCKS_PER_SM, "momentum": kc.MOMENTUM_BLOCKS_PER_SM,
            "reduce": kc.REDUCE_BLOCKS_PER_SM}[kernel]


def _register_bound(kernel: str, threads: int) -> int:
    """Registers per thread that let the default launch reach its intended occupancy: the head
    wants BLOCKS_PER_SM blocks per SM (more only buy partial rows to sum), momentum, being
    bandwidth-bound, MOMENTUM_BLOCKS_PER_SM, the head's reduction REDUCE_BLOCKS_PER_SM."""

    blocks = _blocks_per_sm(kernel)
    resident = blocks * threads
    assert resident <= MAX_THREADS_PER_SM, f"{blocks} blocks of {threads} threads never fit an SM"
    per_thread = REGISTERS_PER_SM // resident // REGISTER_UNIT * REGISTER_UNIT
    return min(MAX_REGISTERS_PER_THREAD, per_thread)


def _ptxas_info(ptxas: Path, ptx: str, arch: tuple[int, int], tmp_path: Path) -> dict[str, int]:
    """``ptxas -v`` figures of the one entry function in ``ptx``."""
    src = tmp_path / "kernel.ptx"
    src.write_text(ptx)
    sm = f"sm_{arch[0]}{arch[1]}"
    done = subprocess.run([str(ptxas), f"-arch={sm}", "-v", str(src), "-o",
                           str(tmp_path / "kernel.cubin")], capture_output=True, text=True)
    out = done.stdout + done.stderr
    assert done.returncode == 0, f"ptxas failed for {sm}:\n{out}"
    assert out.count("Compiling entry function") == 1, out

    def number(pattern: str, default: int | None = None) -> int:
        m = re.search(pattern, out)
        assert m or default is not None, f"no match for {pattern!r} in:\n{out}"
        return int(m.group(1)) if m else default

    return {"registers": number(r"Used (\d+) registers"),
            "barriers": number(r"used (\d+) barriers", 0),  # not printed when there are none
            "smem": number(r"(\d+) bytes smem", 0),
            "stack": number(r"(\d+) bytes stack frame"),
            "spill_stores": number(r"(\d+) bytes spill stores"),
            "spill_loads": number(r"(\d+) bytes spill loads")}


def _f64_arithmetic(ptx: str) -> int:
    """float64 arithmetic instructions in ``ptx`` (loads, stores and moves are not counted)."""
    count = 0
    for line in ptx.splitlines():
        words = line.split()
        if words and words[0].startswith("@"):  # a predicate guard: the opcode follows
            words = words[1:]
        if words and F64_ARITHMETIC.match(words[0]):
            count += 1
    return count


@functools.cache
def _ptxas_release(ptxas: Path) -> tuple[int, int]:
    out = subprocess.run([str(ptxas), "--version"], capture_output=True, text=True).stdout
    return _release(out)


def _barrier_instructions(ptx: str) -> int:
    """``bar.sync``/``barrier.sync`` instructions in ``ptx`` (each ``cuda.syncthreads()`` left
    after optimisation; ptxas's "barriers" counts barrier names, not these)."""
    return len(re.findall(r"^\s*(?:@!?%p\d+\s+)?bar(?:rier)?\.sync", ptx, re.MULTILINE))


def test_ptxas_is_as_new_as_nvvm(ptxas: Path) -> None:
    """The wheel's ptxas is of the CUDA release of numba-cuda's NVVM or newer (else it refuses
    the PTX version); the cudacheck extra pins them to one release."""
    from numba import cuda

    ptx, _ = cuda.compile_ptx(_py_func("momentum", "float32"), "void(float32[::1], "
                              "float32[::1], float32[::1], float32, float32)", cc=(9, 0))
    assert _ptxas_release(ptxas) >= _release(ptx), (_ptxas_release(ptxas), ptx[:300])


def test_kernels_compile_on_a_numpy_without_row_stack() -> None:
    """NumPy 2.5 removed ``np.row_stack``, which numba-cuda 0.30.4 looks up at its first
    compile (seen on an H200 machine, numpy 2.5.2): importing fastmlp's kernels restores it, so
    both kernels still compile. Own process: the alias is taken away before numba-cuda loads."""
    code = (
        "import numpy\n"
        "if hasattr(numpy, 'row_stack'):\n"
        "    del numpy.row_stack  # as NumPy 2.5 has it\n"
        "from numba import cuda\n"
        "from fastmlp.kernels import cuda as kc\n"
        "assert numpy.row_stack is numpy.vstack\n"
        "sig = 'void(float32[::1], float32[::1], float32[::1], float32, float32)'\n"
        "ptx, _ = cuda.compile_ptx(kc._momentum_kernel(numpy.dtype('float32')).py_func, sig,"
        " cc=(9, 0))\n"
        "print('momentum', len(ptx))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("momentum "), out.stdout


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: f"sm_{a[0]}{a[1]}")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_compiles_clean(kernel: str, dtype: str, arch: tuple[int, int], ptxas: Path,
                               launches: set[Launch], table_rows: list[dict],
                               tmp_path: Path) -> None:
    """It compiles; a float32 kernel has only its intended float64 arithmetic; nothing spills or
    uses local memory; barriers as designed; registers and shared memory fit the intended
    occupancy."""
    from numba import cuda

    for launch in _launches_of(launches, kernel, dtype):
        ptx, _ = cuda.compile_ptx(_py_func(kernel, dtype, launch.classes), launch.argtypes,
                                  cc=arch)
        info = _ptxas_info(ptxas, ptx, arch, tmp_path)
        f64 = _f64_arithmetic(ptx)
        bound = _register_bound(kernel, launch.threads)
        shared = info["smem"] + launch.dynamic_shared
        table_rows.append({
            "kernel": kernel, "arch": f"sm_{arch[0]}{arch[1]}", "dtype": dtype,
            "registers": info["registers"], "reg bound": bound,
            "spill st/ld B": f"{info['spill_stores']}/{info['spill_loads']}",
            "stack B": info["stack"], "smem static B": info["smem"],
            "smem dynamic B": launch.dynamic_shared, "barriers": info["barriers"],
            "bar.sync": _barrier_instructions(ptx), "f64 ops": f64,
            "toolchain": (f"numba-cuda {importlib.metadata.version('numba-cuda')} with NVVM of "
                          f"CUDA {'.'.join(map(str, _release(ptx)))}, ptxas of nvidia-cuda-nvcc "
                          f"{importlib.metadata.version('nvidia-cuda-nvcc')}")})
        where = f"{kernel} {dtype} sm_{arch[0]}{arch[1]} {launch.argtypes}"
        assert info["spill_stores"] == 0 and info["spill_loads"] == 0, f"{where} spills: {info}"
        # no local memory at all: the head's per-lane K-arrays (logits, dWo sums) must stay in
        # registers, which takes constant indices only (a run-time index would move them)
        assert info["stack"] == 0, f"{where}: {info['stack']} B stack frame (local memory)"
        assert _barrier_instructions(ptx) == EXPECTED_BARRIER_SITES[kernel], (
            f"{where}: {_barrier_instructions(ptx)} bar.sync sites, expected "
            f"{EXPECTED_BARRIER_SITES[kernel]}")
        assert info["registers"] + REGISTER_MARGIN <= bound, (
            f"{where}: {info['registers']} registers + a margin of {REGISTER_MARGIN} > {bound}, "
            f"the most that keeps the default launch ({launch.threads} threads per block) at its "
            f"intended blocks per SM")
        if dtype == "float32":
            assert f64 == EXPECTED_F64_IN_FLOAT32[kernel], (
                f"{where}: {f64} float64 arithmetic instructions, expected "
                f"{EXPECTED_F64_IN_FLOAT32[kernel]}:\n"
                + "\n".join(ln for ln in ptx.splitlines() if ".f64" in ln))
        from fastmlp.kernels import cuda as kc

        blocks = _blocks_per_sm(kernel)
        assert shared <= kc.MAX_STATIC_SHARED, f"{where}: {shared} B of shared memory per block"
        assert blocks * shared <= SHARED_PER_SM[arch], f"{where}: {blocks} blocks need more " \
                                                       f"than the SM's shared memory"


# -- what the GPU machines' driver loads -----------------------------------------------------------

# The lent GPU machines run driver 580 (CUDA 13.0), which loads PTX up to ISA 9.0 (PTX ISA 9.0
# came with CUDA 13.0: the PTX release history, and cuda.bindings.utils'
# get_minimal_required_cuda_ver_from_ptx_ver). Newer PTX must be turned into machine code by an
# nvJitLink at least as new as the NVVM that wrote it, which numba-cuda then uses instead of the
# driver's JIT.
DRIVER_580_CUDA = (13, 0)
DRIVER_580_MAX_PTX = (9, 0)


def _ptx_version(ptx: str) -> tuple[int, int]:
    m = re.search(r"^\.version (\d+)\.(\d+)", ptx, re.MULTILINE)
    assert m, ptx[:300]
    return int(m.group(1)), int(m.group(2))


def test_ptx_loads_on_a_580_driver(launches: set[Launch]) -> None:
    """With CUDA 13.0's NVVM (the cudacheck130 extra, the machines' own release) the PTX is ISA
    9.0 at most, which the 580 driver loads itself; with a newer NVVM, an nvJitLink of that
    release is installed (the cuda13 extra brings one), so the driver never sees the PTX."""
    from numba import cuda

    launch = _launches_of(launches, "head", "float64")[0]
    ptx, _ = cuda.compile_ptx(_py_func("head", "float64", launch.classes), launch.argtypes,
                              cc=(9, 0))
    version, release = _ptx_version(ptx), _release(ptx)
    try:
        from cuda.bindings import utils

        needs = utils.get_minimal_required_cuda_ver_from_ptx_ver(f"{version[0]}.{version[1]}")
        assert needs == release[0] * 1000 + release[1] * 10, (needs, release)
    except (ImportError, AttributeError, ValueError):
        pass  # an older cuda-bindings without the table, or one that predates this PTX
    if release <= DRIVER_580_CUDA:
        assert version <= DRIVER_580_MAX_PTX, f"PTX {version} from CUDA {release}'s NVVM"
    else:
        from cuda.bindings import nvjitlink
        from numba.cuda.cudadrv import driver

        assert driver._have_nvjitlink(), "PTX newer than driver 580 loads, and no nvJitLink"
        assert tuple(nvjitlink.version()) >= release, (nvjitlink.version(), release)


def test_kernels_cache_to_disk_one_file_set_per_dtype() -> None:
    """Every kernel is compiled with ``cache=True``, and each dtype (and the head's K) has its
    own cache index, so compiling one never invalidates another's. (That a second process loads
    from the cache needs a GPU: numba-cuda caches the machine code of the device it compiled
    for, and the simulator caches nothing.)"""
    from fastmlp.kernels import cuda as kc
    from numba.cuda.dispatcher import CUDACache

    dispatchers = [kc._head_kernel(np.dtype(d), 10) for d in DTYPES]
    dispatchers += [getattr(kc, f"_{k}_kernel")(np.dtype(d)) for k in ("reduce", "momentum")
                    for d in DTYPES]
    indexes = set()
    for dispatcher in dispatchers:
        assert isinstance(dispatcher._cache, CUDACache), dispatcher
        indexes.add(dispatcher._cache._cache_file._index_name)
    assert len(indexes) == len(dispatchers), sorted(indexes)
