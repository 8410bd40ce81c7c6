"""Epochs over the inputs' nonzeros (fastmlp/sparse.py, kernels/sparse.py), full batch and
minibatch, against the dense ones they replace; checkpoints and SIGKILL on them are in
test_checkpoint and test_steps, and the CLI and training tests run on both paths
(conftest.products)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp.cli import main
from fastmlp.datasets import Dataset, Split
from fastmlp.sparse import SPARSE_MAX_DENSITY, resolve_sparse
from fastmlp.train import Trainer


def mostly_zero(n_train: int, F: int, K: int, density: float, dtype=np.float64,
                seed: int = 0) -> Dataset:
    """Rows with about ``density`` nonzeros (an all-zero row and column among them)."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> Split:
        x = rng.uniform(0, 1, (n, F)) * (rng.uniform(size=(n, F)) < density)
        x[::7] = 0.0
        x[:, 0] = 0.0
        return Split(np.ascontiguousarray(x, dtype=dtype), rng.integers(0, K, n))

    return Dataset("mostly-zero", split(n_train), split(13), split(11), n_classes=K)


def params_after(data: Dataset, sparse: str, activation: str, dtype: str, epochs: int = 5,
                 batch_size: int | None = None, compiled: bool | None = None):
    model = fastmlp.MLP(data.n_features, 17, 10, activation=activation, dtype=dtype)
    trainer = Trainer(model, data, lr=0.1, momentum=0.9, sparse=sparse, batch_size=batch_size,
                      compiled=compiled)
    assert trainer.plan.sparse == (sparse == "on")
    records = [trainer.run_epoch() for _ in range(epochs)]
    return model.params.copy(), records


# full batch; minibatches of 100 on the per-step path (the last one short); minibatches of 7 on
# the compiled loop (sparse products in its evaluation only)
BATCHES = [(None, None), (100, False), (7, None)]


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize(("dtype", "rtol"), [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize(("batch_size", "compiled"), BATCHES,
                         ids=["full-batch", "B100", "B7-compiled"])
def test_sparse_epochs_equal_the_dense_ones(activation: str, dtype: str, rtol: float,
                                            batch_size: int | None,
                                            compiled: bool | None) -> None:
    data = mostly_zero(251, 37, 10, 0.2, dtype=np.dtype(dtype))
    sparse, rec_s = params_after(data, "on", activation, dtype, batch_size=batch_size,
                                 compiled=compiled)
    dense, rec_d = params_after(data, "off", activation, dtype, batch_size=batch_size,
                                compiled=compiled)
    assert np.max(np.abs(sparse - dense)) <= rtol * np.max(np.abs(dense))
    for a, b in zip(rec_s, rec_d, strict=True):
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=100 * rtol, abs=1e-12), key


def test_minibatch_buffers_hold_the_densest_batch() -> None:
    # one dense row among blank ones: every batch's gather must fit, whichever rows it draws
    data = mostly_zero(40, 23, 10, 0.05)
    data.train.x[5] = 1.0
    model = fastmlp.MLP(23, 6, 10, dtype="float64")
    trainer = Trainer(model, data, lr=0.1, momentum=0.5, batch_size=9, compiled=False,
                      sparse="on")
    assert trainer.strategy.sparse_batch.buffers.indices.shape[0] >= 23
    for _ in range(3):
        trainer.run_epoch()
    assert np.all(np.isfinite(model.params))


def test_auto_chooses_by_density() -> None:
    model = fastmlp.MLP(37, 5, 10, device="cpu")
    for density, expected in ((0.1, "sparse"), (0.9, "dense")):
        data = mostly_zero(50, 37, 10, density)
        splits = [data.train.x, data.valid.x, data.test.x]
        products, why, constants = resolve_sparse("auto", model, splits)
        assert products == expected and str(SPARSE_MAX_DENSITY) in why and constants is None
        products_c, why_c, _ = resolve_sparse("auto", model, splits, compiled=True)
        assert products_c == expected and why_c.endswith("the compiled loop reads each row's "
                                                         "nonzeros itself)")
    assert resolve_sparse("off", model, splits) == ("dense", "dense (asked for)", None)


def test_sparse_on_where_it_cannot_run_is_a_clear_error() -> None:
    data = mostly_zero(20, 9, 10, 0.2)
    with pytest.raises(fastmlp.FastMLPError, match="on the CPU with fused kernels only, not on"):
        Trainer(fastmlp.MLP(9, 4, 10, fused=False), data, batch_size=5, sparse="on")
    with pytest.raises(fastmlp.FastMLPError, match="sparse must be one of auto, on, off"):
        Trainer(fastmlp.MLP(9, 4, 10), data, sparse="yes")
    # auto there keeps the dense products, saying why
    trainer = Trainer(fastmlp.MLP(9, 4, 10, fused=False), data, sparse="auto")
    assert not trainer.plan.sparse and "CPU's fused kernels" in trainer.plan.products_reason


def test_cli_header_says_which_products_run(tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    base = ["train", "--dataset", "mnist", "--train-size", "200", "--hidden", "8", "--epochs",
            "1", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    assert f"products: sparse: density 0.19 < {SPARSE_MAX_DENSITY}" in capsys.readouterr().out
    assert main([*base, "--sparse", "off", "--out", str(tmp_path / "b")]) == 0
    assert "products: dense (asked for)" in capsys.readouterr().out
    assert main([*base, "--sparse", "on", "--batch-size", "100", "--no-compiled", "--out",
                 str(tmp_path / "c")]) == 0
    assert "products: sparse (asked for; density 0.19)\n" in capsys.readouterr().out

