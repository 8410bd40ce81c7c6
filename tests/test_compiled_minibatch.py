"""The compiled minibatch strategy (fastmlp/strategies/compiled_minibatch.py, kernels/minibatch.py)
against the per-step path it replaces.

The per-step path (``fastmlp.train(..., compiled=False, sparse="off")``: gather, two BLAS
products, the fused head, the momentum kernel, per step) is the reference: in float64 the
parameters and velocity of ``fastmlp.train`` on the compiled minibatch strategy agree with it to
1e-10 relative after 3 epochs over the same seeded orders, for every batch size, activation,
momentum and form of the rows (dense, sparse, sparse around a constant), with a short last
batch. Checkpoints, --resume, stops and the divergence guard: tests/test_minibatch_state.py.
"""

from __future__ import annotations

import dataclasses

import numba
import numpy as np
import pytest
from fastmlp.kernels import fpenv
from fastmlp.kernels.offset import feature_constants
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastmlp
from fastmlp.datasets import Dataset, Split
from fastmlp.errors import FastMLPError
from fastmlp.plan import Plan, make_plan
from fastmlp.strategies.compiled_minibatch import CompiledMinibatch, choose_rows, rows_form
from fastmlp.train import Trainer

PARAMS = ("Wh", "bh", "Wo", "bo")
N_TRAIN = 523  # short last batches: B = 2 (1 row), 7 (5), 100 (23), 512 (11)


def rows(kind: str, n: int, F: int, rng: np.random.Generator, dtype=np.float64) -> np.ndarray:
    """(n, F) rows: "dense" standard normal; "sparse" ~75% zeros with all-zero rows, a feature
    zero in every row and one nonzero once; "offset" mostly a per-feature constant (−1, 0.5 or 0,
    so some features have c = 0), with all-background rows and a feature constant in every
    row."""
    if kind == "dense":
        return rng.standard_normal((n, F)).astype(dtype)
    fg = rng.uniform(size=(n, F)) < 0.25
    x = np.where(fg, rng.uniform(-1, 1, size=(n, F)), 0.0)
    x[::9] = 0.0  # rows with no foreground at all
    if F > 2:
        x[:, :2] = 0.0
        x[n // 2, 1] = 0.5
    if kind == "offset":
        c = rng.choice([-1.0, 0.5, 0.0], size=F, p=[0.6, 0.2, 0.2])
        c[0] = -1.0  # feature 0: constant in every row, at −1
        x = np.where(x != 0, x, c)
    return np.ascontiguousarray(x, dtype=dtype)


def dataset(kind: str, n: int, F: int, K: int, seed: int = 0, dtype=np.float64) -> Dataset:
    rng = np.random.default_rng(seed)

    def split(m: int) -> Split:
        return Split(rows(kind, m, F, rng, dtype), rng.integers(0, K, size=m))

    return Dataset(kind, split(n), split(7), split(5), n_classes=K)


def minibatch_plan(model: fastmlp.MLP, data: Dataset, B: int, form: str,
                   threads: int | None = None) -> Plan:
    """The plan of ``compiled=True`` with the compiled minibatch strategy forced, its products
    (so the kernel's form of the rows) ``form`` (``sparse="on"`` picks the sparse or the offset
    ones by the rows; forced where it picks the other) and, when given, ``threads``."""
    plan = make_plan(model, [data.train.x, data.valid.x, data.test.x], batch_size=B,
                     compiled=True, sparse="off" if form == "dense" else "on")
    if plan.products != form:
        constants = (feature_constants(np.ascontiguousarray(data.train.x, model.dtype))
                     if form == "offset" else None)
        plan = dataclasses.replace(plan, products=form, constants=constants)
    plan = dataclasses.replace(plan, strategy="compiled-minibatch",
                               strategy_reason="compiled minibatch epochs (forced)")
    return plan if threads is None else dataclasses.replace(plan, threads=threads)


def train(data: Dataset, H: int, B: int, activation: str, mu: float, epochs: int,
          dtype: str = "float64", lr: float = 0.05, plan=None):
    """Model, trainer and history of ``fastmlp.train`` (seeded as the reference); ``plan``: a
    function of the model, None for the per-step path."""
    model = fastmlp.MLP(data.train.x.shape[1], H, data.n_classes, activation=activation,
                        dtype=dtype, seed=3)
    held = {}
    kw = (dict(compiled=False, sparse="off") if plan is None
          else dict(plan=plan(model)))
    history = fastmlp.train(model, data, epochs=epochs, lr=lr, momentum=mu, batch_size=B,
                            seed=11, callback=lambda trainer, record: held.update(t=trainer),
                            **kw)
    return model, held["t"], history


def per_step(data: Dataset, H: int, B: int, activation: str, mu: float, epochs: int, **kw):
    """The reference: the per-step path."""
    return train(data, H, B, activation, mu, epochs, **kw)


def compiled(data: Dataset, H: int, B: int, activation: str, mu: float, epochs: int,
             form: str = "dense", threads: int | None = None, **kw):
    """The same training on the compiled minibatch strategy, rows in ``form``."""
    fast = train(data, H, B, activation, mu, epochs,
                 plan=lambda model: minibatch_plan(model, data, B, form, threads), **kw)
    strategy = fast[1].strategy
    assert type(strategy) is CompiledMinibatch and strategy.mode == form
    return fast


def assert_close(a, b, rtol: float, what: str) -> None:
    """max |a − b| ≤ rtol · max |b| (per tensor)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert np.isfinite(a).all() and np.isfinite(b).all(), what
    err = float(np.abs(a - b).max(initial=0.0))
    scale = float(np.abs(b).max(initial=0.0))
    assert err <= rtol * max(scale, 1e-300), f"{what}: max error {err:.3g}, scale {scale:.3g}"


def assert_agree(fast, ref, rtol: float) -> None:
    (m1, t1, h1), (m2, t2, h2) = fast, ref
    for name in PARAMS:
        assert_close(m1.views[name], m2.views[name], rtol, name)
    assert_close(t1.velocity, t2.velocity, rtol, "velocity")
    assert h1.epochs == h2.epochs
    for key in ("train_loss", "valid_loss", "test_loss"):
        assert getattr(h1, key) == pytest.approx(getattr(h2, key), rel=rtol), key
    assert h1.train_acc == h2.train_acc


@pytest.mark.parametrize("kind", ["dense", "sparse", "offset"])
@pytest.mark.parametrize("B", [2, 7, 100, 512])
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("mu", [0.0, 0.99])
@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_equals_per_step_float64(kind: str, B: int, activation: str, mu: float,
                                          threads: int) -> None:
    # threads 2: the hidden units in two blocks (where Numba has one thread, it runs them in turn)
    data = dataset(kind, N_TRAIN, 23, 10)
    fast = compiled(data, 37, B, activation, mu, epochs=3, form=kind, threads=threads)
    assert fast[1].strategy.threads == min(threads, numba.get_num_threads())
    assert_agree(fast, per_step(data, 37, B, activation, mu, epochs=3), 1e-10)


@pytest.mark.parametrize("kind", ["dense", "offset"])
@pytest.mark.parametrize("mu", [0.0, 0.9])
def test_compiled_equals_per_step_float32(kind: str, mu: float) -> None:
    data = dataset(kind, 150, 23, 10, dtype=np.float32)
    (m1, t1, _), (m2, _, _) = (compiled(data, 70, 5, "sigmoid", mu, 2, dtype="float32",
                                        form=kind),
                               per_step(data, 70, 5, "sigmoid", mu, 2, dtype="float32"))
    for name in PARAMS:  # one float32 rounding per operation, summed in other orders
        assert_close(m1.views[name], m2.views[name], 1e-4, name)
        assert m1.views[name].dtype == np.float32
    assert t1.velocity.dtype == np.float32


@pytest.mark.parametrize("form", ["dense", "sparse", "offset"])
def test_every_form_of_the_rows_trains_alike(form: str) -> None:
    # the three forms of the same rows (offset ones) are the same arithmetic up to rounding
    data = dataset("offset", 211, 23, 10)
    fast = compiled(data, 37, 7, "relu", 0.9, 2, form=form)
    assert_agree(fast, per_step(data, 37, 7, "relu", 0.9, 2), 1e-10)


def test_the_kernel_reads_the_rows_as_the_plans_products() -> None:
    # one mapping from the products to the form of the rows; sparse rows: the products' CSR
    assert [rows_form(p) for p in ("dense", "sparse", "offset")] == ["dense", "sparse", "offset"]
    with pytest.raises(FastMLPError, match="no form of the rows"):
        rows_form("bogus")
    for kind in ("sparse", "offset"):
        data = dataset(kind, 211, 23, 10)
        model = fastmlp.MLP(23, 16, 10, dtype="float64")
        plan = minibatch_plan(model, data, 7, kind)
        trainer = Trainer(model, data, batch_size=7, plan=plan)
        strategy, products = trainer.strategy, trainer.rows.sparse
        assert strategy.mode == kind
        assert np.shares_memory(strategy.csr.values, products.rows.values)
        if kind == "offset":
            assert strategy.c is products.constants is not None


def test_calls_of_any_length_give_the_same_epoch() -> None:
    data = dataset("offset", 211, 23, 10)
    results = []
    for per_call in (1, 3, 1000):
        model = fastmlp.MLP(23, 40, 10, dtype="float64", seed=3)
        trainer = Trainer(model, data, lr=0.05, momentum=0.9, batch_size=2, seed=11,
                          plan=minibatch_plan(model, data, 2, "offset"))
        trainer.strategy.steps_per_call = per_call  # (it doubles while calls are quick: other cuts)
        records = [trainer.run_epoch() for _ in range(2)]
        results.append((model.params.copy(), trainer.velocity.copy(), records))
    for params, velocity, records in results[1:]:
        np.testing.assert_array_equal(params, results[0][0])
        np.testing.assert_array_equal(velocity, results[0][1])
        assert records == results[0][2]  # the losses too: summed step by step


@pytest.mark.parametrize("kind", ["sparse", "offset"])
def test_blocks_do_not_change_a_bit(kind: str) -> None:
    # sparse products: each element is summed by one block in one order, whatever the blocks
    data = dataset(kind, 211, 23, 10)
    (m1, t1, h1), (m2, t2, h2) = (compiled(data, 37, 7, "relu", 0.9, 2, form=kind, threads=t)
                                  for t in (1, 2))
    np.testing.assert_array_equal(m1.params, m2.params)
    np.testing.assert_array_equal(t1.velocity, t2.velocity)
    assert h1.train_loss == h2.train_loss


@pytest.mark.parametrize("kind", ["dense", "sparse", "offset"])
def test_the_team_size_does_not_change_a_bit(kind: str) -> None:
    # the same two blocks of hidden units run in turn on one thread or by a team of two that
    # meets at barriers (dense rows too: OpenBLAS's bits depend on the blocks, not the threads)
    data = dataset(kind, 211, 23, 10)
    most = numba.config.NUMBA_NUM_THREADS
    before = numba.get_num_threads()
    runs = []
    try:
        for team in sorted({1, min(2, most)}):
            numba.set_num_threads(team)
            runs.append(compiled(data, 37, 7, "relu", 0.9, 2, form=kind, threads=2))
            assert runs[-1][1].strategy.threads == team
            assert runs[-1][1].strategy.blocks == 2
    finally:
        numba.set_num_threads(before)
    for m, t, h in runs[1:]:
        np.testing.assert_array_equal(m.params, runs[0][0].params)
        np.testing.assert_array_equal(t.velocity, runs[0][1].velocity)
        assert h.train_loss == runs[0][2].train_loss


def test_progress_moves_within_a_long_epoch() -> None:
    data = dataset("dense", 211, 23, 10)
    model = fastmlp.MLP(23, 40, 10, dtype="float64", seed=3)
    trainer = Trainer(model, data, lr=0.05, momentum=0.9, batch_size=2,
                      plan=minibatch_plan(model, data, 2, "dense"))
    trainer.strategy.steps_per_call = 10  # and it only grows while calls are quick
    seen: list[float] = []
    trainer.run_epoch(progress=seen.append)
    assert seen and seen == sorted(seen) and 0 < seen[0] and seen[-1] < 1


def test_subnormals_are_flushed() -> None:
    # lr·g mostly below float32's smallest normal: flushed to zero, never left subnormal
    data = dataset("dense", 60, 23, 10, dtype=np.float32)
    model = fastmlp.MLP(23, 16, 10, seed=3)
    before = fpenv.control_register() & ~0x3F if fpenv.X86 else None
    trainer = Trainer(model, data, lr=1e-37, momentum=0.0, batch_size=7,
                      plan=minibatch_plan(model, data, 7, "dense"))
    trainer.run_epoch()
    v = trainer.velocity
    tiny = np.finfo(np.float32).tiny
    for values in (v, model.params):
        assert not np.any((values != 0) & (np.abs(values) < tiny))
    assert np.count_nonzero(v == 0) > v.size // 2
    if before is not None:  # the caller's control register as it was
        assert fpenv.control_register() & ~0x3F == before


def test_standalone_epochs_update_a_given_velocity_in_place() -> None:
    data = dataset("sparse", 50, 23, 10)
    model = fastmlp.MLP(23, 8, 10, dtype="float64", seed=3)
    velocity = np.full(model.n_params, 1e-5)
    runner = CompiledMinibatch.on_rows(model, data.train.x, data.train.y, 5, 0.05, 0.9,
                                       velocity=velocity)
    loss_sum, correct = runner.train_order(np.arange(50))
    assert runner.velocity is velocity and not np.all(velocity == 1e-5)
    assert loss_sum > 0 and 0 <= correct <= 50


def test_choose_rows_reports_its_choice() -> None:
    rng = np.random.default_rng(0)
    assert choose_rows(rows("dense", 60, 9, rng))[0] == "dense"
    form, S, c, why = choose_rows(rows("offset", 60, 9, rng))
    assert form == "offset" and c is not None and "density" in why and S.shape == (60, 9)
    form, _, c, _ = choose_rows(rows("sparse", 60, 9, rng))
    assert form == "sparse" and c is None


@pytest.mark.parametrize("bad", [1, 513, 0, 2.5])
def test_batch_size_out_of_range_is_refused(bad) -> None:
    model = fastmlp.MLP(4, 3, 2, dtype="float64")
    X = np.zeros((600, 4))
    with pytest.raises(FastMLPError, match="batch sizes from 2"):
        CompiledMinibatch.on_rows(model, X, np.zeros(600, int), bad, 0.1, 0.9)


def test_bad_order_is_refused() -> None:
    model = fastmlp.MLP(4, 3, 2, dtype="float64")
    runner = CompiledMinibatch.on_rows(model, np.zeros((10, 4)), np.zeros(10, int), 2, 0.1, 0.9)
    with pytest.raises(FastMLPError, match="order must have shape"):
        runner.train_order(np.arange(9))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(3, 40), F=st.integers(1, 12), H=st.integers(1, 20), K=st.integers(2, 5),
       kind=st.sampled_from(["dense", "sparse", "offset"]), data=st.data())
def test_shapes(n: int, F: int, H: int, K: int, kind: str, data) -> None:
    B = data.draw(st.integers(2, n - 1), label="B")  # B = n would be full batch
    mu = data.draw(st.sampled_from([0.0, 0.9]), label="mu")
    activation = data.draw(st.sampled_from(["relu", "sigmoid"]), label="activation")
    rows_ = dataset(kind, n, F, K, seed=n * 7 + F)
    fast = compiled(rows_, H, B, activation, mu, 2, form=kind)
    assert_agree(fast, per_step(rows_, H, B, activation, mu, 2), 1e-10)
