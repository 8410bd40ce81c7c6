"""device="cudasim": the whole training loop with every CUDA kernel run by Numba's simulator."""

import numpy as np
import pytest

import fastmlp  # conftest.py has enabled the simulator before this import

pytestmark = pytest.mark.cudasim


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("batch_size", [None, 7])
def test_cudasim_training_equals_cpu_training(batch_size, activation):
    data = fastmlp.load_dataset("synthetic", n_train=20, n_valid=6, n_test=5, n_features=12,
                                n_classes=3, dtype="float64", seed=2)
    results = {}
    for device in ("cpu", "cudasim"):
        model = fastmlp.MLP(12, 6, 3, activation=activation, dtype="float64", device=device,
                            seed=1)
        history = fastmlp.train(model, data, epochs=3, lr=0.1, momentum=0.9,
                                batch_size=batch_size, seed=3)
        assert model.backend.name == device
        results[device] = (model.params.copy(), history)
    (p_cpu, h_cpu), (p_sim, h_sim) = results["cpu"], results["cudasim"]
    err = np.max(np.abs(p_cpu - p_sim))
    print(f"cudasim vs cpu, batch {batch_size}, {activation}: max parameter error {err:.2e}")
    assert err < 1e-12
    for key in ("train_loss", "train_acc", "valid_loss", "test_acc"):
        np.testing.assert_allclose(getattr(h_sim, key), getattr(h_cpu, key), rtol=1e-12)
    assert h_sim.final == pytest.approx(h_cpu.final, rel=1e-12)


def test_cudasim_backend_reports_itself():
    backend = fastmlp.get_backend("cudasim")
    assert backend.name == "cudasim" and backend.xp is np
    assert "cudasim" in backend.describe()
