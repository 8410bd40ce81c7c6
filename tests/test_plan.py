"""The Plan (fastmlp/plan.py): decided once per run, printed by the header and history.json,
and run by the strategy it names, which owns its buffers."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import fastmlp
import fastmlp.plan as plan_module
import fastmlp.sparse
from fastmlp import strategies
from fastmlp.config import RunConfig
from fastmlp.plan import COMPILED_MAX_WORK, STRATEGIES, choose_strategy, make_plan
from fastmlp.train import Trainer


def synthetic(n: int = 200, dtype: str = "float64") -> fastmlp.Dataset:
    return fastmlp.load_dataset("synthetic", n_train=n, n_valid=30, n_test=20, n_features=12,
                                n_classes=3, dtype=dtype)


def test_a_run_decides_its_plan_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"strategy": 0, "products": 0}
    choose, resolve = plan_module.choose_strategy, fastmlp.sparse.resolve_sparse

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(plan_module, "choose_strategy", counted("strategy", choose))
    monkeypatch.setattr(fastmlp.sparse, "resolve_sparse", counted("products", resolve))
    lines: list[str] = []
    config = RunConfig(dataset="synthetic", hidden=8, epochs=2, batch_size=10, lr=0.05,
                       momentum=0.9, out=str(tmp_path / "run"))
    result = fastmlp.run(config, log=lines.append)
    assert calls == {"strategy": 1, "products": 1}  # the header and the trainer share it
    recorded = json.loads((result.out_dir / "history.json").read_text())["config"]
    plan = recorded["plan"]
    assert plan["strategy"] == "compiled-minibatch" and plan["batch_size"] == 10
    assert f"loop:     {plan['strategy_reason']}" in lines
    assert f"products: {plan['products_reason']}" in lines
    # recorded once: not also under the keys history.json had before the plan
    assert "small_batch_loop" not in recorded and "products" not in recorded


@pytest.mark.parametrize(("batch_size", "compiled", "strategy", "cls"), [
    (None, None, "full-batch", strategies.FullBatch),
    (200, None, "full-batch", strategies.FullBatch),  # every training row is full batch
    (1, None, "compiled-steps", strategies.CompiledSteps),
    (10, False, "per-step", strategies.PerStep),
    (2, None, "compiled-minibatch", strategies.CompiledMinibatch),  # dense rows, H <= 64
    (COMPILED_MAX_WORK // 40 + 1, None, "compiled-minibatch", strategies.CompiledMinibatch),
    (3, True, "compiled-minibatch", strategies.CompiledMinibatch),
])
def test_the_trainer_runs_the_strategy_its_plan_names(batch_size, compiled, strategy,
                                                       cls) -> None:
    model = fastmlp.MLP(12, 40, 3, dtype="float64")
    trainer = Trainer(model, synthetic(), lr=0.05, momentum=0.9, batch_size=batch_size,
                      compiled=compiled)
    assert trainer.plan.strategy == strategy and type(trainer.strategy) is cls
    assert trainer.plan.strategy in STRATEGIES
    assert (trainer.plan.threads is not None) == trainer.plan.compiled
    record = trainer.run_epoch()
    assert np.isfinite(record["train_loss"])


def test_a_given_plan_is_not_decided_again(monkeypatch: pytest.MonkeyPatch) -> None:
    data, model = synthetic(), fastmlp.MLP(12, 8, 3, dtype="float64")
    plan = make_plan(model, [data.train.x, data.valid.x, data.test.x], batch_size=None,
                     sparse="off")
    monkeypatch.setattr(plan_module, "choose_strategy", lambda *a, **k: pytest.fail("again"))
    history = fastmlp.train(model, data, epochs=1, plan=plan)
    assert history.config["plan"] == plan.record()


def test_per_sample_sgd_builds_the_training_rows_nonzeros_once() -> None:
    # sparse products and the compiled loop: the loop reads the sparse rows' own CSR
    model = fastmlp.MLP(12, 8, 3, dtype="float64")
    data = synthetic()
    trainer = Trainer(model, data, batch_size=1, sparse="on")
    assert trainer.plan.compiled and trainer.plan.sparse
    indptr, indices, values = trainer.strategy.nonzeros
    train = trainer.rows.sparse.train
    for mine, theirs in ((indptr, train.indptr), (indices, train.indices),
                         (values, train.values)):
        assert np.shares_memory(mine, theirs)
    dense = Trainer(fastmlp.MLP(12, 8, 3, dtype="float64"), data, batch_size=1, sparse="off")
    assert dense.rows.sparse is None
    np.testing.assert_array_equal(dense.strategy.nonzeros[0], indptr)  # the same rows' CSR


def test_only_the_strategy_that_needs_a_buffer_has_it() -> None:
    data = synthetic()
    full = Trainer(fastmlp.MLP(12, 8, 3), data, sparse="off")
    step = Trainer(fastmlp.MLP(12, 8, 3), data, batch_size=50, compiled=False, sparse="off")
    compiled = Trainer(fastmlp.MLP(12, 8, 3), data, batch_size=1, sparse="off")
    blocked = Trainer(fastmlp.MLP(12, 8, 3), data, batch_size=2, sparse="off")
    assert not hasattr(full.strategy, "Xb") and not hasattr(full.strategy, "steps_ws")
    assert step.strategy.Xb.shape == (50, 12) and not hasattr(step.strategy, "steps_ws")
    assert "Hb" in compiled.strategy.steps_ws and not hasattr(compiled.strategy, "Xb")
    assert blocked.strategy.ws["Z"].shape == (2, 8)
    for attr in ("Xb", "steps_ws", "nonzeros"):
        assert not hasattr(blocked.strategy, attr)
    assert not hasattr(compiled.strategy, "ws")
    for trainer in (full, step, compiled, blocked):
        for attr in ("Xb", "sparse_batch", "steps_ws", "nonzeros", "velocity_views", "ws"):
            assert not hasattr(trainer, attr)  # the trainer knows no mode


def test_the_bench_row_label_is_the_plan() -> None:
    model = fastmlp.MLP(12, 8, 3)
    data = synthetic(dtype="float32")
    features = [data.train.x, data.valid.x, data.test.x]
    plan = make_plan(model, features, batch_size=4, sparse="off")
    assert plan.label() == (f"dense (asked for), {plan.strategy_reason}, {plan.threads} "
                            f"thread{'s' if plan.threads > 1 else ''}")
    assert make_plan(model, features, batch_size=None, sparse="off").label() == \
        "dense (asked for)"


CPU = fastmlp.MLP(4, 3, 2).backend


@pytest.mark.parametrize(("hidden", "batch_size", "products", "strategy"), [
    (64, 1, "sparse", "compiled-steps"),
    (64, 10, "sparse", "compiled-steps"),  # a step touches only the rows its nonzeros use
    (1000, 11, "sparse", "compiled-steps"),  # (whatever B·H: the per-step path loses there)
    (64, 12, "sparse", "compiled-minibatch"),
    (1000, 100, "sparse", "compiled-minibatch"),
    (300, 512, "sparse", "compiled-minibatch"),
    (1000, 7, "offset", "compiled-steps"),
    (64, 8, "offset", "compiled-minibatch"),
    (1000, 512, "offset", "compiled-minibatch"),  # offset rows: never the per-step path
    (64, 2, "dense", "compiled-minibatch"),
    (300, 2, "dense", "compiled-minibatch"),
    (1000, 3, "dense", "compiled-steps"),
    (1000, 4, "dense", "compiled-minibatch"),
    (64, 512, "dense", "compiled-minibatch"),  # B·H = 32768
    (300, 110, "dense", "per-step"),  # the per-step path's BLAS products
    (1000, 100, "dense", "per-step"),
    (64, 513, "dense", "per-step"),  # past the blocked kernel, B·H over COMPILED_MAX_WORK
    (10, 600, "sparse", "compiled-steps"),  # ... and within it
])
def test_the_plan_picks_the_strategy_measured_fastest(hidden: int, batch_size: int,
                                                      products: str, strategy: str) -> None:
    # bench/results/minibatch_plan/: the rule's crossovers, each with its reason
    chosen, why = choose_strategy(None, CPU, hidden, batch_size, products)
    assert chosen == strategy, why
    assert why.startswith({"compiled-steps": "compiled small-batch loop",
                           "compiled-minibatch": "compiled minibatch epochs",
                           "per-step": "per-step path"}[strategy])


def test_the_reasons_name_the_crossover_that_decided() -> None:
    assert choose_strategy(None, CPU, 1000, 100, "sparse")[1] == (
        "compiled minibatch epochs: batch size 100, sparse rows")
    assert choose_strategy(None, CPU, 300, 300, "dense")[1] == (
        "per-step path: dense rows, batch size x hidden units 90000 > 32768")
    assert choose_strategy(None, CPU, 300, 10, "sparse")[1] == (
        "compiled small-batch loop: sparse rows, batch size 10 < 12")
    assert choose_strategy(None, CPU, 1000, 2, "dense")[1] == (
        "compiled small-batch loop: batch size 2 < 4, hidden units 1000 > 300")
    assert choose_strategy(None, CPU, 64, 600, "dense")[1] == (
        "per-step path: batch size x hidden units 38400 > 6000")
    assert choose_strategy(True, CPU, 300, 10, "sparse")[1] == (
        "compiled small-batch loop (asked for)")
    assert choose_strategy(True, CPU, 1000, 100, "dense")[1] == (
        "compiled minibatch epochs (asked for): batch size 100, dense rows")


@pytest.mark.parametrize(("hidden", "batch_size", "products", "strategy"), [
    (1000, 100, "dense", "compiled-minibatch"),  # the faster compiled one, not the fastest
    (64, 10, "sparse", "compiled-steps"),
    (300, 512, "dense", "compiled-minibatch"),
    (300, 513, "dense", "compiled-steps"),  # past the blocked kernel's range
    (300, 1, "dense", "compiled-steps"),
])
def test_compiled_asks_for_the_faster_compiled_strategy(hidden: int, batch_size: int,
                                                        products: str, strategy: str) -> None:
    assert choose_strategy(True, CPU, hidden, batch_size, products)[0] == strategy
    assert choose_strategy(False, CPU, hidden, batch_size, products) == (
        "per-step", "per-step path (asked for)")


def test_off_the_cpu_the_minibatches_run_per_step() -> None:
    gpu = SimpleNamespace(name="cuda", fused=True, describe=lambda: "cuda:0 (fake)")
    assert choose_strategy(None, gpu, 64, 100, "dense")[0] == "per-step"
    with pytest.raises(fastmlp.FastMLPError, match="on the CPU with fused kernels only"):
        choose_strategy(True, gpu, 64, 100, "dense")


def test_the_header_says_which_minibatch_strategy_runs_and_why(tmp_path: Path) -> None:
    lines: list[str] = []
    config = RunConfig(dataset="synthetic", hidden=8, epochs=1, batch_size=20, lr=0.05,
                       momentum=0.9, sparse="off", out=str(tmp_path / "run"))
    fastmlp.run(config, log=lines.append)
    assert "loop:     compiled minibatch epochs: batch size 20, dense rows" in lines
    assert "products: dense (asked for)" in lines


@pytest.mark.parametrize(("hidden", "sparse", "products"), [
    (64, "auto", "dense"),  # below SPARSE_MIN_HIDDEN the compiled minibatch epoch's gemm wins
    (64, "on", "sparse"),  # asked for: kept
    (strategies.compiled_minibatch.SPARSE_MIN_HIDDEN, "auto", "sparse"),
])
def test_the_compiled_minibatch_epoch_reads_small_networks_rows_dense(
        hidden: int, sparse: str, products: str) -> None:
    rng = np.random.default_rng(0)
    rows = np.where(rng.uniform(size=(300, 40)) < 0.1, rng.uniform(size=(300, 40)), 0.0)
    model = fastmlp.MLP(40, hidden, 10)
    plan = make_plan(model, [rows, rows[:20]], batch_size=32, sparse=sparse)
    assert plan.strategy == "compiled-minibatch"
    assert plan.products == products, plan.products_reason
    if products == "dense":  # the rows' own density still said, and why it is not used
        assert "faster on dense rows below" in plan.products_reason
        assert "sparse: density 0.10" in plan.products_reason
    train, held_out = (fastmlp.datasets.Split(x, np.zeros(len(x), np.int64))
                       for x in (rows, rows[:20]))
    trainer = Trainer(model, fastmlp.Dataset("rows", train, held_out, held_out, n_classes=10),
                      batch_size=32, plan=plan)
    assert trainer.strategy.mode == products


@pytest.mark.parametrize("batch_size", [1, 10], ids=["compiled-steps", "compiled-minibatch"])
def test_compiling_a_strategy_s_kernels_first_changes_nothing(batch_size: int) -> None:
    # the first epoch compiles its own kernel with a call of no steps before it evaluates (the
    # head meanwhile compiles in a second process on a first run): parameters, velocity and
    # the epoch's results are those of a trainer that did not
    data = synthetic(100)
    runs = []
    for first in (True, False):
        model = fastmlp.MLP(12, 8, 3, seed=1, dtype="float64")
        trainer = Trainer(model, data, lr=0.1, momentum=0.9, batch_size=batch_size, seed=2)
        assert trainer.plan.strategy == ("compiled-steps" if batch_size == 1
                                         else "compiled-minibatch")
        before = (model.params.copy(), trainer.velocity.copy())
        if first:
            trainer.strategy.compile_kernels()
            np.testing.assert_array_equal(model.params, before[0])
            np.testing.assert_array_equal(trainer.velocity, before[1])
        assert trainer.strategy.kernels_ready == first
        runs.append((trainer.run_epoch(), model.params.copy(), trainer.velocity.copy()))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1:], runs[1][1:], strict=True):
        np.testing.assert_array_equal(a, b)
