"""The GPU-only code without a GPU: a fake CuPy, recorded numba-cuda launches (tests/fakecupy.py).

What runs: ``get_backend`` picking CUDA through the preflight, ``CupyBackend`` (to_host, matmul
with and without TF32, synchronize, describe), the kernels module's CuPy branches (CuPy's current
stream, cached device views, per-stream partials, split ends on the device or copied once), and
the model and trainer on that backend. What is asserted: the same training as on the CPU, and
per minibatch step exactly three kernel launches (head, its reduction, momentum), no device view
built once the loop is warm, no host synchronisation, and no CuPy reduction in the head's second
pass. The preflight's failure at each step is checked in tests/test_gpu_doctor.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from fakecupy import CALLS, clear_caches, install
from fastmlp.kernels import cuda as kc

import fastmlp
from fastmlp import preflight
from fastmlp.backend import CupyBackend, get_backend


def _passing_preflight(monkeypatch) -> None:
    """numba-cuda's own checks answer as on a GPU machine; the tiny kernel runs in NumPy."""
    from numba import cuda

    monkeypatch.setattr(cuda, "is_available", lambda: True)
    monkeypatch.setattr(preflight, "_nvvm_paths", lambda: ("/fake/libnvvm.so", "/fake/libdevice"))

    class TinyKernel:
        def __getitem__(self, config):
            def launch(a):
                a += 1.0
            return launch

    monkeypatch.setattr(preflight, "_tiny_kernel_source", lambda: TinyKernel())
    monkeypatch.setattr(preflight, "_PASSED", {})


@pytest.fixture
def fake_gpu(monkeypatch):
    cupy = install(monkeypatch)
    _passing_preflight(monkeypatch)
    yield cupy
    clear_caches()


def _data(dtype: str):
    return fastmlp.load_dataset("synthetic", n_train=130, n_valid=30, n_test=20, n_features=24,
                                n_classes=10, dtype=dtype, seed=3)


def test_auto_takes_the_fake_gpu_when_the_preflight_passes(fake_gpu) -> None:
    backend = get_backend("auto")
    assert isinstance(backend, CupyBackend) and backend.xp is fake_gpu
    assert backend.reason == "auto: the CUDA preflight passed (fastmlp doctor)"
    assert backend.ops is kc
    assert "Fake GPU" in backend.describe()
    assert get_backend("cuda").reason == "requested"


def test_cupy_backend_operations(fake_gpu) -> None:
    backend = get_backend("cuda", tf32=True)
    a = backend.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert type(a).__module__ == "cupy"
    out = backend.empty((2, 2), np.float32)
    CALLS.clear()
    backend.matmul(a, a.T, out)  # TF32 switched on for the product, then back
    assert CALLS["tf32=5"] == 1
    np.testing.assert_allclose(backend.to_host(out), [[5, 14], [14, 50]])
    host = backend.to_host(out)
    assert type(host) is np.ndarray and not np.shares_memory(host, np.asarray(out))
    backend.synchronize()
    assert CALLS["synchronize"] == 1
    with pytest.raises(TypeError, match="numpy array"):
        backend.check(np.zeros(2), "x")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batch_size", [None, 32])
def test_training_on_the_fake_gpu_equals_the_cpu(fake_gpu, dtype, batch_size) -> None:
    data = _data(dtype)
    params, losses = {}, {}
    for device in ("cpu", "cuda"):
        # the CPU's references: the recorded GPU kernels compute with them too
        model = fastmlp.MLP(24, 17, 10, dtype=dtype, device=device, fused=device == "cuda")
        history = fastmlp.train(model, data, epochs=3, lr=0.1, momentum=0.9,
                                batch_size=batch_size, seed=2)
        params[device] = model.backend.to_host(model.params)
        losses[device] = history.train_loss
    tol = 1e-10 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(params["cuda"], params["cpu"], rtol=tol, atol=tol)
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], rtol=tol)


def test_per_minibatch_step_three_launches_no_views_no_syncs(fake_gpu) -> None:
    data = _data("float32")
    B, n_train = 10, len(data.train)
    model = fastmlp.MLP(24, 17, 10, dtype="float32", device="cuda")
    trainer = fastmlp.Trainer(model, data, batch_size=B, eval_every=1000)
    trainer.run_epoch()  # warm: views, partials and streams built here (evaluation too)
    CALLS.clear()
    trainer.run_epoch()
    steps = -(-n_train // B)
    assert CALLS["launch.head"] == steps
    assert CALLS["launch.reduce"] == steps  # the second pass: one launch, not five CuPy ones
    assert CALLS["launch.momentum"] == steps
    assert CALLS["device_view"] == 0  # every buffer's view cached after the first epoch
    assert CALLS["ndarray.sum"] == 0
    assert CALLS["synchronize"] == 0
    assert CALLS["external_stream"] + CALLS["default_stream"] == 0  # the stream handle cached


def test_a_cold_epoch_builds_each_view_once(fake_gpu) -> None:
    data = _data("float64")
    model = fastmlp.MLP(24, 17, 10, dtype="float64", device="cuda")
    trainer = fastmlp.Trainer(model, data, batch_size=13, eval_every=1000)
    trainer.run_epoch()  # evaluates too: other shapes
    kc._VIEWS.clear()  # (the partials and split ends keep the views they were made with)
    CALLS.clear()
    trainer.run_epoch()  # 10 steps of 13 rows: one shape of every buffer
    # head: Z, bh, Wo, bo, y; reduce: dWo, dbh, dbo, stats; momentum: params, grads, velocity
    assert CALLS["device_view"] == 12, CALLS
    assert CALLS["launch.head"] == 10


def test_launches_follow_cupys_current_stream(fake_gpu) -> None:
    data = _data("float32")
    model = fastmlp.MLP(24, 17, 10, dtype="float32", device="cuda")
    trainer = fastmlp.Trainer(model, data, batch_size=None)
    with fake_gpu.cuda.Stream(ptr=0xABC):  # every launch asserts it is on this stream
        trainer.run_epoch()
    assert CALLS["external_stream"] == 1
    trainer.run_epoch()  # back on the default stream
    assert CALLS["default_stream"] == 1
    keys = {key[-2] for key in kc._PARTIALS}  # partials per stream: (device, stream pointer)
    assert keys == {(0, 0xABC), (0, 0)}, keys


def test_split_ends_on_the_device_and_from_the_host(fake_gpu) -> None:
    rng = np.random.default_rng(0)
    N, H, K = 12, 5, 3
    Z = fake_gpu.asarray(rng.normal(size=(N, H)))
    args = [fake_gpu.asarray(a) for a in (np.zeros((1, H)), rng.normal(size=(H, K)),
                                           np.zeros((1, K)))]
    y = fake_gpu.asarray(rng.integers(0, K, N).astype(np.int32))
    outs = [fake_gpu.empty(s) for s in ((H, K), (1, K), (1, H))]
    stats = fake_gpu.empty((2, 2))
    kc.head(Z.copy(), *args, y, (8, N), 8, "relu", *outs, stats)  # host tuple: copied once
    from_host = stats.get()
    assert len(kc._ENDS) == 1
    ends_on_gpu = fake_gpu.asarray(np.array([8, N], dtype=np.int32))  # converted to int64
    kc.head(Z.copy(), *args, y, ends_on_gpu, 8, "relu", *outs, stats)
    np.testing.assert_array_equal(stats.get(), from_host)
    assert len(kc._ENDS) == 1  # device ends are not cached


def test_momentum_wrapper_on_the_fake_gpu(fake_gpu) -> None:
    p, g, v = (fake_gpu.asarray(np.full(7, x)) for x in (1.0, 2.0, 0.5))
    kc.momentum(p, g, v, 0.1, 0.9)
    np.testing.assert_allclose(v.get(), 0.9 * 0.5 + 0.1 * 2.0)
    np.testing.assert_allclose(p.get(), 1.0 - (0.9 * 0.5 + 0.1 * 2.0))
    assert CALLS["launch.momentum"] == 1
