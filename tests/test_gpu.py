"""Real-GPU tests (marker `gpu`): the CuPy backend against the CPU backend, and a bench smoke run.

Skipped, with the reason, where CuPy or a GPU is missing (see conftest.py).
"""

import json
import subprocess
import sys

import numpy as np
import pytest

import fastmlp

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("batch_size", [None, 32])
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_cuda_training_equals_cpu_training_float64(batch_size, activation):
    data = fastmlp.load_dataset("synthetic", n_train=300, n_valid=50, n_test=40, n_features=64,
                                n_classes=10, dtype="float64", seed=1)
    params, histories = {}, {}
    for device in ("cpu", "cuda"):
        model = fastmlp.MLP(64, 33, 10, activation=activation, dtype="float64", device=device)
        histories[device] = fastmlp.train(model, data, epochs=5, lr=0.1, momentum=0.9,
                                          batch_size=batch_size, seed=2)
        params[device] = model.backend.to_host(model.params)
    err = np.max(np.abs(params["cpu"] - params["cuda"]))
    print(f"cuda vs cpu float64 ({activation}, batch {batch_size}): max error {err:.2e}")
    assert err < 1e-10
    np.testing.assert_allclose(histories["cuda"].train_loss, histories["cpu"].train_loss,
                               rtol=1e-10)


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_cuda_float32_kernels_match_reference_on_cupy_arrays(activation, head_gradient_terms):
    import cupy
    from fastmlp.kernels import cuda as cuda_kernels
    from fastmlp.kernels import reference

    rng = np.random.default_rng(0)
    N, H, K, n_grad = 1001, 257, 10, 600
    Z = cupy.asarray(rng.standard_normal((N, H)), dtype=cupy.float32)
    bh, bo = (cupy.asarray(rng.standard_normal((1, n)), dtype=cupy.float32) for n in (H, K))
    Wo = cupy.asarray(rng.standard_normal((H, K)) / 16, dtype=cupy.float32)
    y = cupy.asarray(rng.integers(0, K, N), dtype=cupy.int32)
    outs = []
    for head in (cuda_kernels.hidden_to_loss, reference.hidden_to_loss):
        out = [Z.copy(), cupy.empty((H, K), cupy.float32), cupy.empty((1, K), cupy.float32),
               cupy.empty((1, H), cupy.float32), cupy.empty((3, 2), cupy.float64)]
        head(out[0], bh, Wo, bo, y, (n_grad, 900, N), n_grad, activation, *out[1:])
        out[0] = out[0][:n_grad]  # dz rows; the rest is unspecified
        outs.append([cupy.asnumpy(a) for a in out])
    host = {name: cupy.asnumpy(a) for name, a in zip("Z bh Wo bo y".split(), (Z, bh, Wo, bo, y),
                                                       strict=True)}
    terms = dict(head_gradient_terms(host, n_grad, activation), stats=0.0)
    for name, got, want in zip(("dz", "dWo", "dbo", "dbh", "stats"), *outs, strict=True):
        # relative to the tensor's own magnitude, or its summed terms when larger
        scale = max(float(np.max(np.abs(want))), float(terms[name]), 1e-30)
        err = float(np.max(np.abs(got - want))) / scale
        print(f"{activation} {name}: max error {err:.2e} (of {scale:.2e})")
        assert err < 1e-4


def test_mixing_numpy_into_a_cuda_model_is_a_type_error():
    model = fastmlp.MLP(4, 3, 2, device="cuda")
    with pytest.raises(TypeError, match="numpy array"):
        model.forward(np.zeros((2, 4), np.float32))


def test_bench_smoke_on_gpu():
    out = subprocess.run([sys.executable, "-m", "fastmlp", "bench", "--device", "cuda",
                          "--epochs", "3", "--warmup", "1", "--json"],
                         capture_output=True, text=True, check=True)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["impl"] == "fastmlp" and row["device"] == "cuda"
    assert row["epoch_ms"] > 0 and row["ratio_to_floor"] > 0
