"""The compiled minibatch epoch (kernels/minibatch.py, fastmlp.compiled_minibatch) against the
per-step path it replaces.

The per-step path (``fastmlp.train(..., compiled=False, sparse="off")``: gather, two BLAS
products, the fused head, the momentum kernel, per step) is the reference: in float64 the
parameters and velocity agree to 1e-10 relative after 3 epochs over the same shuffled order, for
every batch size, activation, momentum and form of the rows (dense, sparse, sparse around a
constant), with a short last batch.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastmlp
from fastmlp.compiled_minibatch import CompiledMinibatch, choose_rows
from fastmlp.datasets import Dataset, Split
from fastmlp.errors import FastMLPError

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


def per_step(data: Dataset, H: int, B: int, activation: str, mu: float, epochs: int,
             dtype: str = "float64", lr: float = 0.05):
    """The reference: parameters, velocity and per-epoch train losses of the per-step path."""
    model = fastmlp.MLP(data.train.x.shape[1], H, data.n_classes, activation=activation,
                        dtype=dtype, seed=3)
    held = {}
    history = fastmlp.train(model, data, epochs=epochs, lr=lr, momentum=mu, batch_size=B,
                            seed=11, compiled=False, sparse="off",
                            callback=lambda trainer, record: held.update(v=trainer.velocity))
    return model, held["v"], history


def compiled(data: Dataset, H: int, B: int, activation: str, mu: float, epochs: int,
             dtype: str = "float64", lr: float = 0.05, rows: str = "auto", threads: int = 1):
    """The same training as :func:`per_step` on the compiled epoch: the same seeded orders."""
    model = fastmlp.MLP(data.train.x.shape[1], H, data.n_classes, activation=activation,
                        dtype=dtype, seed=3)
    runner = CompiledMinibatch(model, data.train.x, data.train.y, B, lr, mu, rows=rows,
                               threads=threads)
    rng = np.random.default_rng(11)  # as the Trainer draws each epoch's order
    sums = [runner.run_epoch(rng.permutation(len(data.train))) for _ in range(epochs)]
    return model, runner, sums


def assert_close(a, b, rtol: float, what: str) -> None:
    """max |a − b| ≤ rtol · max |b| (per tensor)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert np.isfinite(a).all() and np.isfinite(b).all(), what
    err = float(np.abs(a - b).max(initial=0.0))
    scale = float(np.abs(b).max(initial=0.0))
    assert err <= rtol * max(scale, 1e-300), f"{what}: max error {err:.3g}, scale {scale:.3g}"


def assert_agree(fast, ref, rtol: float, n: int) -> None:
    (m1, runner, sums), (m2, v2, history) = fast, ref
    for name in PARAMS:
        assert_close(m1.views[name], m2.views[name], rtol, name)
    assert_close(runner.velocity, v2, rtol, "velocity")
    for e, (loss_sum, correct) in enumerate(sums):
        assert loss_sum / n == pytest.approx(history.train_loss[e], rel=rtol), e
        assert correct / n == history.train_acc[e], e


EXPECTED_FORM = {"dense": "dense", "sparse": "sparse", "offset": "offset"}


@pytest.mark.parametrize("kind", ["dense", "sparse", "offset"])
@pytest.mark.parametrize("B", [2, 7, 100, 512])
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("mu", [0.0, 0.99])
@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_equals_per_step_float64(kind: str, B: int, activation: str, mu: float,
                                          threads: int) -> None:
    # threads 2: the hidden units in two blocks (where Numba has one thread, it runs them in turn)
    data = dataset(kind, N_TRAIN, 23, 10)
    fast = compiled(data, 37, B, activation, mu, epochs=3, threads=threads)
    assert fast[1].mode == EXPECTED_FORM[kind]
    assert fast[1].threads == min(threads, numba.get_num_threads())
    ref = per_step(data, 37, B, activation, mu, epochs=3)
    assert_agree(fast, ref, 1e-10, N_TRAIN)


@pytest.mark.parametrize("kind", ["dense", "offset"])
@pytest.mark.parametrize("mu", [0.0, 0.9])
def test_compiled_equals_per_step_float32(kind: str, mu: float) -> None:
    data = dataset(kind, 150, 23, 10, dtype=np.float32)
    (m1, runner, _), (m2, _, _) = (compiled(data, 70, 5, "sigmoid", mu, 2, dtype="float32"),
                                   per_step(data, 70, 5, "sigmoid", mu, 2, dtype="float32"))
    for name in PARAMS:  # one float32 rounding per operation, summed in other orders
        assert_close(m1.views[name], m2.views[name], 1e-4, name)
        assert m1.views[name].dtype == np.float32
    assert runner.velocity.dtype == np.float32


@pytest.mark.parametrize("form", ["dense", "sparse", "offset"])
def test_every_form_of_the_rows_trains_alike(form: str) -> None:
    # the three forms of the same rows (offset ones) are the same arithmetic up to rounding
    data = dataset("offset", 211, 23, 10)
    fast = compiled(data, 37, 7, "relu", 0.9, 2, rows=form)
    assert fast[1].mode == form
    assert_agree(fast, per_step(data, 37, 7, "relu", 0.9, 2), 1e-10, 211)


def test_calls_of_any_length_give_the_same_epoch() -> None:
    data = dataset("offset", 211, 23, 10)
    results = []
    for per_call in (1, 3, 1000):
        model = fastmlp.MLP(23, 40, 10, dtype="float64", seed=3)
        runner = CompiledMinibatch(model, data.train.x, data.train.y, 2, 0.05, 0.9)
        runner.steps_per_call = per_call  # (it doubles while calls are quick: other cuts)
        rng = np.random.default_rng(11)
        for _ in range(2):
            runner.run_epoch(rng.permutation(211))
        results.append((model.params.copy(), runner.velocity.copy()))
    for params, velocity in results[1:]:
        np.testing.assert_array_equal(params, results[0][0])
        np.testing.assert_array_equal(velocity, results[0][1])


@pytest.mark.parametrize("kind", ["dense", "offset"])
def test_threads_do_not_change_a_bit(kind: str) -> None:
    # each element is summed by one block in one order, whatever the blocks
    data = dataset(kind, 211, 23, 10)
    (m1, r1, s1), (m2, r2, s2) = (compiled(data, 37, 7, "relu", 0.9, 2, threads=t)
                                  for t in (1, 2))
    np.testing.assert_array_equal(m1.params, m2.params)
    np.testing.assert_array_equal(r1.velocity, r2.velocity)
    assert s1 == s2


def test_progress_is_reported_within_the_epoch() -> None:
    data = dataset("dense", 211, 23, 10)
    model = fastmlp.MLP(23, 40, 10, dtype="float64", seed=3)
    runner = CompiledMinibatch(model, data.train.x, data.train.y, 2, 0.05, 0.9)
    runner.steps_per_call = 10
    seen: list[float] = []
    runner.run_epoch(np.arange(211), progress=seen.append)
    assert seen and seen == sorted(seen) and 0 < seen[0] and seen[-1] < 1


def test_given_velocity_is_updated_in_place() -> None:
    data = dataset("sparse", 50, 23, 10)
    model = fastmlp.MLP(23, 8, 10, dtype="float64", seed=3)
    velocity = np.full(model.n_params, 1e-5)
    runner = CompiledMinibatch(model, data.train.x, data.train.y, 5, 0.05, 0.9,
                               velocity=velocity)
    runner.run_epoch(np.arange(50))
    assert runner.velocity is velocity and not np.all(velocity == 1e-5)


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
        CompiledMinibatch(model, X, np.zeros(600, int), bad, 0.1, 0.9)


def test_bad_order_is_refused() -> None:
    model = fastmlp.MLP(4, 3, 2, dtype="float64")
    runner = CompiledMinibatch(model, np.zeros((10, 4)), np.zeros(10, int), 2, 0.1, 0.9)
    with pytest.raises(FastMLPError, match="order must have shape"):
        runner.run_epoch(np.arange(9))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(2, 40), F=st.integers(1, 12), H=st.integers(1, 20), K=st.integers(2, 5),
       kind=st.sampled_from(["dense", "sparse", "offset"]), data=st.data())
def test_shapes(n: int, F: int, H: int, K: int, kind: str, data) -> None:
    B = data.draw(st.integers(2, n), label="B")
    mu = data.draw(st.sampled_from([0.0, 0.9]), label="mu")
    dataset_ = dataset(kind, n, F, K, seed=n * 7 + F)
    fast = compiled(dataset_, H, B, "sigmoid", mu, 2)
    ref = per_step(dataset_, H, B, "sigmoid", mu, 2)
    assert_agree(fast, ref, 1e-10, n)
