"""The CUDA preflight and ``fastmlp doctor`` without a GPU: each step's failure is reported by
name and reason, ``device="auto"`` then takes the CPU and says why in the run header, and
``device="cuda"`` refuses in one line. Stand-ins from tests/fakecupy.py play the GPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fakecupy import clear_caches, install, make_cupy

import fastmlp
from fastmlp import preflight
from fastmlp.backend import CupyBackend, get_backend
from fastmlp.cli import main


@pytest.fixture
def fake_gpu(monkeypatch):
    cupy = install(monkeypatch)
    monkeypatch.setattr(preflight, "_PASSED", {})
    yield cupy
    clear_caches()


def _numba_ok(monkeypatch, nvvm=None, kernel=None) -> None:
    from numba import cuda

    monkeypatch.setattr(cuda, "is_available", lambda: True)
    monkeypatch.setattr(preflight, "_nvvm_paths",
                        nvvm or (lambda: ("/fake/libnvvm.so", "/fake/libdevice.10.bc")))

    class TinyKernel:
        def __getitem__(self, config):
            def launch(a):
                a += 1.0
            return launch

    monkeypatch.setattr(preflight, "_tiny_kernel_source", kernel or (lambda: TinyKernel()))


def _failed(result: preflight.Preflight) -> str:
    assert not result.ok
    return result.failure.name


def test_without_cupy_the_first_step_fails(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)
    result = preflight.run_preflight()
    assert _failed(result) == "CuPy imports" and len(result.steps) == 1
    assert result.why_not().startswith("CuPy is not importable (ModuleNotFoundError")
    assert "FAILED CuPy imports" in result.report()
    assert result.report().endswith("device 'auto' takes the CPU")


def test_no_gpu_visible(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", make_cupy(devices=0))
    assert _failed(preflight.run_preflight()) == "a GPU is visible"


def test_cublas_failing(fake_gpu, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise OSError("libcublas.so.13: cannot open shared object file")

    monkeypatch.setattr(fake_gpu, "full", broken, raising=False)
    result = preflight.run_preflight()
    assert _failed(result) == "cuBLAS loads"
    assert "libcublas.so.13" in result.why_not()
    assert preflight.run_preflight(kernels=False).failure.name == "cuBLAS loads"


def test_numba_cuda_seeing_no_gpu(fake_gpu, monkeypatch) -> None:
    from numba import cuda

    monkeypatch.setattr(cuda, "is_available", lambda: False)
    result = preflight.run_preflight()
    assert _failed(result) == "numba-cuda sees the GPU"
    # the reference ops need no numba-cuda: that check passes without it
    assert preflight.run_preflight(kernels=False).ok


def test_no_nvvm(fake_gpu, monkeypatch) -> None:
    def missing():
        raise RuntimeError("libNVVM cannot be found")

    _numba_ok(monkeypatch, nvvm=missing)
    result = preflight.run_preflight()
    assert _failed(result) == "numba-cuda finds NVVM and libdevice"
    backend = get_backend("auto")
    assert backend.name == "cpu"
    assert backend.reason == ("auto: numba-cuda finds no NVVM or libdevice (RuntimeError: "
                              "libNVVM cannot be found), using the CPU")
    with pytest.raises(fastmlp.FastMLPError, match="fastmlp doctor"):
        get_backend("cuda")


def test_kernel_failing_to_compile(fake_gpu, monkeypatch) -> None:
    def failing():
        raise RuntimeError("NVVM_ERROR_COMPILATION")

    _numba_ok(monkeypatch, kernel=failing)
    assert _failed(preflight.run_preflight()) == "a kernel compiles and runs"


def test_all_steps_pass_and_the_paths_are_reported(fake_gpu, monkeypatch) -> None:
    _numba_ok(monkeypatch)
    result = preflight.run_preflight()
    assert result.ok, result.report()
    assert [s.name for s in result.steps] == [
        "CuPy imports", "a GPU is visible", "cuBLAS loads", "numba-cuda sees the GPU",
        "numba-cuda finds NVVM and libdevice", "a kernel compiles and runs"]
    assert "/fake/libnvvm.so" in result.report() and "/fake/libdevice.10.bc" in result.report()
    assert "Fake GPU" in result.report()
    assert isinstance(get_backend("auto"), CupyBackend)


def test_a_pass_is_kept_a_failure_is_not(fake_gpu, monkeypatch) -> None:
    from numba import cuda

    monkeypatch.setattr(cuda, "is_available", lambda: False)
    assert not preflight.cached_preflight().ok
    _numba_ok(monkeypatch)  # the missing piece arrives: the next call finds it
    first = preflight.cached_preflight()
    assert first.ok and preflight.cached_preflight() is first


def test_auto_run_header_says_why_it_took_the_cpu(fake_gpu, monkeypatch, tmp_path, capsys) -> None:
    from numba import cuda

    monkeypatch.setattr(cuda, "is_available", lambda: False)
    argv = ["train", "--dataset", "synthetic", "--train-size", "200", "--hidden", "8",
            "--epochs", "1", "--device", "auto", "--out", str(tmp_path / "o"), "--no-progress"]
    assert main(argv) == 0
    device = next(line for line in capsys.readouterr().out.splitlines()
                  if line.startswith("device:"))
    assert device.split()[1] == "cpu", device
    assert "[auto: numba-cuda is missing or sees no GPU" in device, device


def test_point_numba_at_an_nvcc_toolkit(tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "cuda-13.0"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "nvcc").write_text("")
    (home / "nvvm" / "lib64").mkdir(parents=True)
    (home / "nvvm" / "lib64" / "libnvvm.so.4").write_text("")
    monkeypatch.setattr(preflight, "_nvvm_wheel", lambda: None)
    monkeypatch.setattr(preflight.shutil, "which", lambda name: str(home / "bin" / "nvcc"))
    env: dict[str, str] = {}
    assert "CUDA_HOME" in preflight.point_numba_at_toolkit(env)
    assert env == {"CUDA_HOME": str(home.resolve())}
    # a CUDA_HOME or CUDA_PATH of the user's own, or an NVVM wheel, is left alone
    assert preflight.point_numba_at_toolkit({"CUDA_PATH": "/x"}) == ""
    monkeypatch.setattr(preflight, "_nvvm_wheel", lambda: tmp_path / "libnvvm.so")
    env = {}
    assert preflight.point_numba_at_toolkit(env) == "" and env == {}


@pytest.mark.slow  # a subprocess, Dask or the simulator
def test_doctor_on_this_machine_reports_and_exits_1_without_cupy() -> None:
    code = ("import sys; sys.modules['cupy'] = None; from fastmlp.cli import main; "
            "sys.exit(main(['doctor']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1, out.stderr
    assert out.stdout.startswith("FAILED CuPy imports: ModuleNotFoundError"), out.stdout
    assert "NOT ready" in out.stdout and out.stderr == ""


@pytest.mark.slow  # a subprocess, Dask or the simulator
def test_importing_fastmlp_imports_neither_cupy_nor_numba_cuda() -> None:
    code = ("import sys, fastmlp, fastmlp.preflight, fastmlp.cli; "
            "print(sorted(m for m in ('cupy', 'numba.cuda') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout
