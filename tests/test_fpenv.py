"""Flush-to-zero inside the compiled kernels (kernels/fpenv.py): subnormal arithmetic becomes
zero inside, and every thread's control register is as it was once a kernel returns."""

import numba
import numpy as np
import pytest
from fastmlp.kernels import fpenv, steps
from fastmlp.kernels.runtime import SERIAL_JIT, run_shares

import fastmlp
from fastmlp.train import Trainer

pytestmark = pytest.mark.skipif(not fpenv.X86, reason="FTZ/DAZ is x86's control register")


@numba.njit
def _product(a, b, ftz):
    saved = fpenv.ftz_on() if ftz else fpenv.control_register()
    r = a * b
    fpenv.ftz_restore(saved)
    return r


def test_subnormal_results_are_zero_inside_and_the_register_is_restored() -> None:
    before = fpenv.control_register()
    if before & fpenv.FTZ_DAZ:
        pytest.skip("this thread already runs with flush-to-zero (set by another library)")
    tiny = np.float32(1e-20)  # 1e-40 is subnormal in float32
    assert _product(tiny, tiny, False) != 0
    assert _product(tiny, tiny, True) == 0
    assert control_bits(fpenv.control_register()) == control_bits(before)


@numba.njit(parallel=True)
def _registers(out):
    for t in numba.prange(out.shape[0]):
        out[t] = fpenv.control_register()


def workers_registers() -> set[int]:
    out = np.zeros(64, np.uint32)  # many iterations: every worker thread runs some
    _registers(out)
    return {control_bits(r) for r in out.tolist()}


@numba.njit(**SERIAL_JIT)
def _register_of_share(t, T, out):
    out[t] = fpenv.control_register()


def pool_registers() -> set[int]:
    """The registers of the threads ``run_shares`` runs the CPU kernels' shares on."""
    out = np.zeros(2, np.uint32)
    run_shares(_register_of_share, 2, out)
    return {control_bits(r) for r in out.tolist()}


def control_bits(register: int) -> int:
    """The register's control bits, without the sticky status flags (bits 0-5) that any
    floating-point operation, NumPy's among them, may raise."""
    return register & ~0x3F


@pytest.mark.parametrize("threads", [1, 2])
def test_kernels_leave_every_threads_register_as_it_was(threads: int, monkeypatch) -> None:
    monkeypatch.setattr(steps, "threads_for", lambda H, B: threads)
    before, workers = control_bits(fpenv.control_register()), workers_registers()
    pool = pool_registers()
    rng = np.random.default_rng(0)
    x = (rng.uniform(size=(1300, 20)) * (rng.uniform(size=(1300, 20)) < 0.3)).astype(np.float32)
    splits = [fastmlp.Split(x[a:b], rng.integers(0, 3, b - a))
              for a, b in ((0, 1100), (1100, 1200), (1200, 1300))]
    data = fastmlp.Dataset("t", *splits, n_classes=3)  # 1300 rows: the head's threads run too
    for batch_size in (1, None):  # the compiled loop, then the full-batch head
        model = fastmlp.MLP(20, 600, 3, activation="sigmoid")
        trainer = Trainer(model, data, lr=0.01, momentum=0.99, batch_size=batch_size)
        assert trainer.plan.compiled == (batch_size == 1)
        trainer.run_epoch()
    assert control_bits(fpenv.control_register()) == before
    assert workers_registers() == workers
    assert pool_registers() == pool
