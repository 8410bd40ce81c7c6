"""Epochs on rows sparse around a constant (X = S + 1·cᵀ; kernels/offset.py, fastmlp/sparse.py)
against the dense ones they replace, on every path: full batch, the per-step path, the compiled
small-batch loop, the compiled minibatch epochs; and what ``--sparse`` picks and the header
says."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from fastmlp.kernels import offset as koffset
from fastmlp.kernels import steps

import fastmlp
import fastmlp.sparse
from fastmlp.cli import main
from fastmlp.datasets import Dataset, Split
from fastmlp.plan import PRODUCTS, make_plan
from fastmlp.sparse import SPARSE_MAX_DENSITY, density_of, resolve_sparse
from fastmlp.train import Trainer

BACKGROUND = np.array([-1.0, 0.25, 0.0, -1.0, 3.0])  # c per feature, cycled; some zero


def around_constant(n_train: int, F: int, K: int, dtype=np.float64, seed: int = 0,
                    background: np.ndarray = BACKGROUND) -> Dataset:
    """Rows at their feature's background value but in ~20% of the entries; every 7th row all
    background, feature 0 background in every row (constant), feature 1 everywhere but once."""
    rng = np.random.default_rng(seed)
    c = np.resize(background, F)

    def split(n: int) -> Split:
        x = np.where(rng.uniform(size=(n, F)) < 0.2, rng.uniform(-1, 1, (n, F)), c)
        x[::7] = c
        x[:, 0] = c[0]
        x[:, 1] = c[1]
        x[n // 2, 1] = 0.5
        return Split(np.ascontiguousarray(x, dtype=dtype), rng.integers(0, K, n))

    return Dataset("around-constant", split(n_train), split(13), split(11), n_classes=K)


def train(data: Dataset, sparse: str, dtype: str, batch_size: int | None,
          compiled: bool | None, activation: str = "relu", mu: float = 0.9, epochs: int = 4,
          strategy: str | None = None):
    """``strategy``: the plan's strategy forced (with its own thread count)."""
    model = fastmlp.MLP(data.n_features, 17, data.n_classes, activation=activation,
                        dtype=dtype, seed=3)
    plan = None
    if strategy is not None:
        plan = make_plan(model, [data.train.x, data.valid.x, data.test.x],
                         batch_size=batch_size, compiled=compiled, sparse=sparse)
        plan = dataclasses.replace(plan, strategy=strategy,
                                   threads=steps.threads_for(17, batch_size)
                                   if strategy == "compiled-steps" else 1)
    trainer = Trainer(model, data, lr=0.1, momentum=mu, batch_size=batch_size, seed=5,
                      sparse=sparse, compiled=compiled, plan=plan)
    records = [trainer.run_epoch() for _ in range(epochs)]
    return model.params.copy(), records, trainer


def assert_same_training(data: Dataset, dtype: str, rtol: float, batch_size: int | None,
                         compiled: bool | None, strategy: str | None = None,
                         sparse: str = "auto", **kwargs) -> Trainer:
    """The offset run (``sparse`` "auto" or "on"; on ``strategy`` where given) equals the dense
    one ("off") to ``rtol`` of the largest parameter, and its records to 100·rtol; returns the
    offset run's trainer."""
    offset, rec_o, trainer = train(data, sparse, dtype, batch_size, compiled,
                                   strategy=strategy, **kwargs)
    dense, rec_d, _ = train(data, "off", dtype, batch_size, compiled=False, **kwargs)
    assert trainer.plan.products == "offset", trainer.plan.products_reason
    assert trainer.plan.compiled == bool(compiled)
    err = np.max(np.abs(offset.astype(np.float64) - dense))
    assert err <= rtol * np.max(np.abs(dense)), err / np.max(np.abs(dense))
    for a, b in zip(rec_o, rec_d, strict=True):
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=100 * rtol, abs=1e-12), key
    return trainer


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize(("dtype", "rtol"), [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize("batch_size", [None, 10, 100], ids=["full-batch", "B10", "B100"])
def test_offset_epochs_equal_the_dense_ones(activation: str, dtype: str, rtol: float,
                                            batch_size: int | None) -> None:
    # per-step B = 10 and B = 100 (a short last batch of 51 rows); full batch
    data = around_constant(251, 37, 10, dtype=np.dtype(dtype))
    trainer = assert_same_training(data, dtype, rtol, batch_size, compiled=False,
                                   activation=activation)
    rows = trainer.rows.sparse
    assert rows.constants is not None and rows.density < SPARSE_MAX_DENSITY
    np.testing.assert_array_equal(rows.constants, np.resize(BACKGROUND, 37).astype(dtype))
    if batch_size is not None:
        assert trainer.strategy.sparse_batch.constants is rows.constants


@pytest.mark.parametrize("mu", [0.0, 0.9])
@pytest.mark.parametrize("B", [1, 7])
def test_the_compiled_loop_on_offset_rows_equals_the_per_step_path(mu: float, B: int) -> None:
    # the compiled loop's own tolerance against the per-step path (tests/test_steps.py), the
    # strategy forced (from B = 8 the plan runs the compiled minibatch epochs on offset rows)
    data = around_constant(120, 23, 10)
    trainer = assert_same_training(data, "float64", 1e-10, B, compiled=True, mu=mu, epochs=3,
                                   strategy="compiled-steps")
    assert trainer.strategy.constants is trainer.rows.sparse.constants
    assert trainer.strategy.nonzeros[0] is trainer.rows.sparse.train.indptr  # S's, not X's


@pytest.mark.parametrize("mu", [0.0, 0.9])
def test_the_compiled_minibatch_epochs_on_offset_rows_equal_the_per_step_path(mu: float) -> None:
    # "on": with "auto" the plan reads these rows dense at this small H (test_plan.py)
    data = around_constant(120, 23, 10)
    trainer = assert_same_training(data, "float64", 1e-10, 10, compiled=True, mu=mu, epochs=3,
                                   sparse="on")
    assert trainer.plan.strategy == "compiled-minibatch" and trainer.strategy.mode == "offset"
    assert trainer.strategy.c is trainer.rows.sparse.constants
    assert trainer.strategy.csr.indptr is trainer.rows.sparse.train.indptr  # S's, not X's


@pytest.mark.parametrize("strategy", ["compiled-steps", "compiled-minibatch"])
def test_the_compiled_loops_on_offset_rows_in_float32(strategy: str) -> None:
    data = around_constant(150, 23, 10, dtype=np.float32)
    trainer = assert_same_training(data, "float32", 1e-5, 7, compiled=True,
                                   activation="sigmoid", strategy=strategy, sparse="on")
    assert trainer.plan.strategy == strategy


def test_zero_background_keeps_the_plain_sparse_products() -> None:
    # c = 0: the sparse products, as before offset existed (no constants anywhere)
    data = around_constant(60, 12, 3, background=np.zeros(1))
    for batch_size in (None, 10):
        trainer = Trainer(fastmlp.MLP(12, 5, 3, dtype="float64"), data,
                          batch_size=batch_size, compiled=False)
        assert trainer.plan.products == "sparse" and trainer.plan.constants is None
        assert trainer.rows.sparse.constants is None
        assert trainer.plan.products_reason.startswith("sparse: density ")


def test_resolve_sparse_by_the_density_around_c() -> None:
    model = fastmlp.MLP(37, 5, 10)
    data = around_constant(80, 37, 10)
    splits = [data.train.x, data.valid.x, data.test.x]
    for mode in ("auto", "on"):
        products, why, c = resolve_sparse(mode, model, splits)
        assert products == "offset" and c is not None
        asked = " (asked for)" if mode == "on" else ""
        assert why.startswith(f"offset{asked}: density 0.")
        assert why.endswith("around c (most often -1, 15 of 37 features)")
    assert "offset" in PRODUCTS
    # a feature whose most frequent value holds no majority (40%): found by sorting, and S's
    # density counted from the sort for the training rows
    rng = np.random.default_rng(1)
    for x in splits:
        x[:, 4] = rng.choice([3.0, 0.5, 0.7, 0.9], size=len(x), p=[0.4, 0.2, 0.2, 0.2])
    c, d_c = fastmlp.sparse._constants(splits, 1.0)
    assert c[4] == 3.0 and not koffset.majority_constants(splits[0])[1][4]
    assert d_c == density_of(splits, c)
    # compiled: the loop reads S's nonzeros itself; these products serve the evaluation
    assert resolve_sparse("auto", model, splits, compiled=True).reason.endswith(
        "(evaluation; the compiled loop reads each row's nonzeros itself)")
    assert resolve_sparse("off", model, splits) == ("dense", "dense (asked for)", None)


def test_dense_rows_stay_dense_without_sorting(monkeypatch: pytest.MonkeyPatch) -> None:
    # random rows: no value holds a majority of any feature, so at least half of each feature
    # would stay in S: dense ("auto") or the plain sparse products ("on"), as before, and no
    # feature is sorted to find its most frequent value
    monkeypatch.setattr(koffset, "_modes_of_columns", lambda *a: pytest.fail("sorted"))
    rng = np.random.default_rng(0)
    splits = [rng.standard_normal((n, 20)) for n in (300, 40, 40)]
    model = fastmlp.MLP(20, 5, 3)
    assert resolve_sparse("auto", model, splits) == (
        "dense", f"dense: density 1.00 >= {SPARSE_MAX_DENSITY}", None)
    assert resolve_sparse("on", model, splits) == (
        "sparse", "sparse (asked for; density 1.00)", None)


def test_a_nonzero_majority_among_zeros_picks_offset() -> None:
    # mostly zeros, but one feature mostly 1: S around c is sparser than X
    data = around_constant(70, 10, 3, background=np.array([0.0, 0.0, 1.0, 0.0, 0.0]))
    choice = resolve_sparse("auto", fastmlp.MLP(10, 4, 3), [data.train.x, data.valid.x])
    assert choice.products == "offset" and choice.constants[2] == choice.constants[7] == 1


def test_symmetric_mnist_runs_offset_products(tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    base = ["train", "--dataset", "mnist", "--scale", "symmetric", "--train-size", "200",
            "--hidden", "8", "--epochs", "1", "--no-progress", "--batch-size", "100",
            "--no-compiled"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    c = koffset.feature_constants(fastmlp.load_dataset(
        "mnist", scale="symmetric", train_size=200).train.x)
    values, counts = np.unique(c, return_counts=True)
    assert values[np.argmax(counts)] == -1
    header = (f"products: offset: density 0.19 around c (most often -1, {counts.max()} of 784 "
              f"features)\n")
    assert header in capsys.readouterr().out
    history = json.loads((tmp_path / "a" / "history.json").read_text())
    assert history["config"]["plan"]["products"] == "offset"
    assert "constants" not in history["config"]["plan"]
    assert main([*base, "--sparse", "off", "--out", str(tmp_path / "b")]) == 0
    assert "products: dense (asked for)\n" in capsys.readouterr().out
