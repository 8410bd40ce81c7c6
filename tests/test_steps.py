"""The compiled small-batch loop (kernels/steps.py) against the per-step path it replaces.

The per-step path (``Trainer(compiled=False)``: gather, two products, the fused head, the
momentum kernel per step) is the reference: in float64 the two agree to 1e-10 relative after
several epochs, for every batch size, activation and momentum, with one thread and with two.
Checkpoints, --resume (after SIGKILL), Ctrl-C and the divergence guard work on the compiled path.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fastmlp.kernels import sparse as ksparse
from fastmlp.kernels import steps
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from killresume import kill_resume_and_compare

import fastmlp
import fastmlp.model
from fastmlp.checkpoint import load_checkpoint
from fastmlp.cli import main
from fastmlp.datasets import Dataset, Split
from fastmlp.plan import COMPILED_MAX_WORK, Plan, choose_strategy, make_plan
from fastmlp.strategies import CompiledSteps, PerStep
from fastmlp.train import DivergenceError, Trainer

PARAMS = ("Wh", "bh", "Wo", "bo")
ENV = dict(os.environ, PYTHONWARNINGS="ignore")


def sparse_data(n_train: int, F: int, K: int, seed: int = 0, dtype=np.float64) -> Dataset:
    """Rows about 70% zeros, as MNIST's pixels are (the loop skips zero inputs), a few
    all-zero rows, a column zero in every row and one nonzero in one row only (their rows of Wh
    sit out many steps and catch up on their decay later); every class present."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> Split:
        x = rng.uniform(0, 1, size=(n, F)) * (rng.uniform(size=(n, F)) < 0.3)
        x[::9] = 0.0  # rows with no nonzero input at all
        if F > 2:
            x[:, :2] = 0.0
            x[n // 2, 1] = 0.5
        return Split(np.ascontiguousarray(x, dtype=dtype), rng.integers(0, K, size=n))

    return Dataset("sparse", split(n_train), split(7), split(5), n_classes=K)


def steps_plan(model: fastmlp.MLP, data: Dataset, B: int) -> Plan:
    """The plan of ``compiled=True`` with the compiled steps forced (``compiled=True`` picks the
    faster compiled strategy, the compiled minibatch epoch at most B > 1)."""
    plan = make_plan(model, [data.train.x, data.valid.x, data.test.x], batch_size=B,
                     compiled=True)
    return dataclasses.replace(plan, strategy="compiled-steps",
                               threads=steps.threads_for(model.n_hidden, B))


def train_both(data: Dataset, H: int, B: int, activation: str, mu: float, epochs: int,
               dtype: str = "float64", lr: float = 0.05):
    """Parameters, velocity and records of the compiled steps and the per-step path."""
    out = []
    for compiled in (True, False):
        model = fastmlp.MLP(data.train.x.shape[1], H, data.n_classes, activation=activation,
                            dtype=dtype, seed=3)
        plan = steps_plan(model, data, B) if compiled else None
        trainer = Trainer(model, data, lr=lr, momentum=mu, batch_size=B, seed=11,
                          compiled=compiled, plan=plan)
        assert trainer.plan.compiled == compiled
        assert type(trainer.strategy) is (CompiledSteps if compiled else PerStep)
        records = [trainer.run_epoch() for _ in range(epochs)]
        out.append((model, trainer, records))
    return out


def assert_close(a: np.ndarray, b: np.ndarray, rtol: float, what: str) -> None:
    """max |a − b| ≤ rtol · max |b| (per tensor), the per-tensor max error of llm.c's checks."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert np.isfinite(a).all() and np.isfinite(b).all(), what
    err = float(np.abs(a - b).max(initial=0.0))
    scale = float(np.abs(b).max(initial=0.0))
    assert err <= rtol * max(scale, 1e-300), f"{what}: max error {err:.3g}, scale {scale:.3g}"


def assert_paths_agree(fast, ref, rtol: float) -> None:
    (m1, t1, r1), (m2, t2, r2) = fast, ref
    for name in PARAMS:
        assert_close(m1.views[name], m2.views[name], rtol, name)
    assert_close(t1.velocity, t2.velocity, rtol, "velocity")
    for e, (a, b) in enumerate(zip(r1, r2, strict=True)):
        for key in ("train_loss", "valid_loss", "test_loss"):
            assert a[key] == pytest.approx(b[key], rel=rtol), (e, key)
        assert a["train_acc"] == b["train_acc"], e


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request, monkeypatch: pytest.MonkeyPatch) -> int:
    """The serial and the parallel kernel (threads split the hidden units into blocks)."""
    monkeypatch.setattr(steps, "threads_for", lambda H, B: request.param)
    return request.param


# 211 training rows: a last short batch for B = 7 (1 row) and B = 100 (11 rows); H = 130 gives
# several hidden-unit blocks (and two per thread with two threads)
@pytest.mark.parametrize("B", [1, 7, 100])
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("mu", [0.0, 0.99])
def test_compiled_equals_per_step_float64(B: int, activation: str, mu: float,
                                          threads: int) -> None:
    data = sparse_data(211, 23, 10)
    fast, ref = train_both(data, 130, B, activation, mu, epochs=3)
    assert fast[1].plan.threads == threads
    assert_paths_agree(fast, ref, 1e-10)


@pytest.mark.parametrize("mu", [0.0, 0.9])
def test_compiled_equals_per_step_float32(mu: float) -> None:
    data = sparse_data(150, 23, 10, dtype=np.float32)
    fast, ref = train_both(data, 70, 5, "sigmoid", mu, epochs=2, dtype="float32")
    (m1, _, _), (m2, _, _) = fast, ref
    for name in PARAMS:  # one float32 rounding per operation, summed in other orders
        assert_close(m1.views[name], m2.views[name], 1e-4, name)
        assert m1.views[name].dtype == np.float32


@pytest.mark.parametrize("mu", [0.0, 0.9])
def test_calls_of_any_length_give_the_same_epoch(mu: float) -> None:
    # with momentum 0 a call passes over all of Wh at its last step; with momentum, rows owe
    # their decay across calls until the epoch's end: either way how an epoch is cut into calls
    # must not change a bit of the result
    data = sparse_data(211, 23, 10)
    results = []
    for per_call in (1, 3, 1000):
        model = fastmlp.MLP(23, 40, 10, activation="relu", dtype="float64", seed=3)
        trainer = Trainer(model, data, lr=0.05, momentum=mu, batch_size=2, seed=11)
        trainer.strategy.steps_per_call = per_call  # (it doubles while calls are quick: other cuts)
        trainer.run_epoch()
        trainer.run_epoch()
        results.append((model.params.copy(), trainer.velocity.copy()))
    for params, velocity in results[1:]:
        np.testing.assert_array_equal(params, results[0][0])
        np.testing.assert_array_equal(velocity, results[0][1])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mu", [0.5, 0.9, 0.999])
def test_decay_in_closed_form_equals_the_steps_replayed(dtype, mu: float) -> None:
    # m decay steps of one row (v ← γ·v; W ← W − v, flushed), applied at once by the kernel's
    # closed form, against replaying them one by one in the row's dtype
    rng = np.random.default_rng(1)
    H, n = 37, 300
    powers, sums = steps.decay_tables(mu, n, dtype)
    gamma = dtype(mu)
    for m in (2, 3, 17, 100, 300):
        v0 = (rng.standard_normal(H) * 10.0 ** rng.integers(-30, 2, H)).astype(dtype)
        W0 = rng.standard_normal(H).astype(dtype)
        v, W = v0.copy(), W0.copy()
        tiny = np.finfo(dtype).tiny
        for _ in range(m):
            v = gamma * v
            v[np.abs(v) < tiny] = 0
            W = W - v
        # the catch-up of _catch_up, in NumPy: v·γᵐ (flushed) and W − (γ + … + γᵐ)·v
        v1 = powers[m] * v0
        v1[np.abs(v1) < tiny] = 0
        W1 = W0 - sums[m] * v0
        # the replay rounds m times (W moves monotonically from W0 to W), the closed form twice
        eps = np.finfo(dtype).eps
        bound = (m + 2) * eps * np.maximum(np.abs(W0), np.abs(W))
        assert (np.abs(W1 - W) <= bound).all(), m
        assert (np.abs(v1 - v) <= (m + 2) * eps * np.abs(v) + tiny / (1 - mu)).all(), m


def test_decay_tables() -> None:
    powers, sums = steps.decay_tables(0.9, 4, np.float64)
    np.testing.assert_allclose(powers, [1, 0.9, 0.81, 0.729, 0.6561], rtol=1e-15)
    np.testing.assert_allclose(sums, [0, 0.9, 1.71, 2.439, 3.0951], rtol=1e-15)
    powers, _ = steps.decay_tables(0.5, 200, np.float32)
    assert powers.dtype == np.float32 and powers[126] > 0 and powers[127] == 0  # 2^-127 flushed


def stopping_trainer(data: Dataset) -> Trainer:
    model = fastmlp.MLP(23, 40, 10, activation="relu", dtype="float64", seed=3)
    trainer = Trainer(model, data, lr=0.05, momentum=0.9, batch_size=2, seed=11)
    trainer.strategy.steps_per_call = 30
    return trainer


def assert_as_one_finishing_call(stopped: Trainer, data: Dataset, done: int) -> None:
    """The stopped trainer's weights are those one call over steps [0, done) leaves, finishing."""
    ref = stopping_trainer(data)
    loop = ref.strategy
    order = loop.rng.permutation(211).astype(np.int64)  # the epoch's order, as run_epoch draws it
    steps.train_steps(ref.X, ref.y, order, 0, done, 2, ref.model.views, loop.velocity_views,
                      "relu", 0.05, 0.9, loop.steps_ws, np.zeros(2), loop.nonzeros, finish=True)
    np.testing.assert_array_equal(stopped.model.params, ref.model.params)
    np.testing.assert_array_equal(stopped.velocity, ref.velocity)


def test_an_epoch_stopped_between_calls_owes_no_decay() -> None:
    # an exception between two calls of a momentum epoch (from the progress callback here): the
    # rows that sat out the last steps get their decay before it leaves run_epoch
    data = sparse_data(211, 23, 10)
    stopped = stopping_trainer(data)

    def interrupt(fraction: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stopped.run_epoch(progress=interrupt)
    assert_as_one_finishing_call(stopped, data, 30)


def test_an_epoch_stopped_as_a_call_returns_owes_no_decay(monkeypatch) -> None:
    # a second Ctrl-C during a call is raised as the call returns, before the Trainer's loop
    # learns how far the call got: the kernel's own record of it decides what is finished
    data = sparse_data(211, 23, 10)
    real, calls = steps.train_steps, []

    def interrupted(*args, **kwargs) -> None:
        real(*args, **kwargs)
        calls.append(args[3:5])
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(steps, "train_steps", interrupted)
    stopped = stopping_trainer(data)
    with pytest.raises(KeyboardInterrupt):
        stopped.run_epoch()
    monkeypatch.undo()
    done = calls[1][1]
    assert calls[2] == (done, done)  # the finishing call, over no step
    assert_as_one_finishing_call(stopped, data, done)


def test_calls_out_of_order_are_refused() -> None:
    # with momentum, rows carry owed decay from call to call: a call must start where the last
    # one stopped (or at 0)
    data = sparse_data(40, 9, 3)
    trainer = Trainer(fastmlp.MLP(9, 8, 3, dtype="float64"), data, lr=0.05, momentum=0.9,
                      batch_size=1)
    order = np.arange(40, dtype=np.int64)
    loop = trainer.strategy
    args = (trainer.model.views, loop.velocity_views, "relu", 0.05, 0.9, loop.steps_ws,
            np.zeros(2), loop.nonzeros)
    steps.train_steps(trainer.X, trainer.y, order, 0, 10, 1, *args, finish=False)
    with pytest.raises(ValueError, match="in order"):
        steps.train_steps(trainer.X, trainer.y, order, 12, 20, 1, *args)
    steps.train_steps(trainer.X, trainer.y, order, 10, 20, 1, *args)  # where it stopped


def test_momentum_above_one_replays_where_the_closed_form_overflows() -> None:
    # γ = 1.5: γᵐ overflows float32 past m = 218; a row of Wh no input uses, whose velocity is 0,
    # must stay as it is (0·inf would make it NaN)
    data = sparse_data(300, 23, 10, dtype=np.float32)  # column 0 is zero in every row
    model = fastmlp.MLP(23, 8, 10, dtype="float32", seed=3)
    start = model.views["Wh"][0].copy()
    trainer = Trainer(model, data, lr=1e-9, momentum=1.5, batch_size=1, velocity_init=0.0)
    assert trainer.plan.compiled
    assert not np.isfinite(steps.decay_tables(1.5, 300, np.float32)[0][-1])
    trainer.run_epoch()
    np.testing.assert_array_equal(model.views["Wh"][0], start)


def test_progress_moves_within_a_long_epoch() -> None:
    data = sparse_data(3000, 23, 10)
    model = fastmlp.MLP(23, 16, 10, dtype="float64")
    trainer = Trainer(model, data, lr=0.01, momentum=0.9, batch_size=1)
    trainer.strategy.steps_per_call = 500  # and it only grows while calls are quick
    seen: list[float] = []
    trainer.run_epoch(progress=seen.append)
    assert seen and seen == sorted(seen) and 0 < seen[0] and seen[-1] < 1


def kernel_with_batch_past_n(data: Dataset, H: int, B: int, activation: str, mu: float,
                             epochs: int) -> fastmlp.MLP:
    """train_steps called directly with B > n rows: one short step per epoch (the Trainer
    takes B = n as full batch and refuses B > n)."""
    n, F = data.train.x.shape
    model = fastmlp.MLP(F, H, data.n_classes, activation=activation, dtype="float64", seed=3)
    velocity = np.full(model.n_params, 1e-5)  # the Trainer's velocity_init
    ws = steps.workspace(B, F, H, data.n_classes, np.dtype(np.float64), 1)
    nz = ksparse.csr(data.train.x, n)
    order = np.random.default_rng(0).permutation(n)
    stats = np.zeros(2)
    for _ in range(epochs):
        steps.train_steps(data.train.x, data.train.y, order, 0, 1, B, model.views,
                          fastmlp.model.flat_views(velocity, model.shapes), activation, 0.05,
                          mu, ws, stats, nz)
    return model


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(H=st.integers(1, 75), K=st.integers(2, 9), n=st.integers(1, 40), B=st.integers(1, 48),
       activation=st.sampled_from(["relu", "sigmoid"]), mu=st.sampled_from([0.0, 0.5, 0.99]),
       seed=st.integers(0, 2**16))
def test_shapes_against_the_per_step_path(H: int, K: int, n: int, B: int, activation: str,
                                          mu: float, seed: int) -> None:
    data = sparse_data(n, 9, K, seed=seed)
    if B < n:
        fast, ref = train_both(data, H, B, activation, mu, epochs=2)
        assert_paths_agree(fast, ref, 1e-10)
        return
    # N <= B: one step of all rows per epoch, which is the full-batch epoch
    model = kernel_with_batch_past_n(data, H, B, activation, mu, epochs=2)
    ref = fastmlp.MLP(9, H, K, activation=activation, dtype="float64", seed=3)
    trainer = Trainer(ref, data, lr=0.05, momentum=mu)
    for _ in range(2):
        trainer.run_epoch()
    for name in PARAMS:
        assert_close(model.views[name], ref.views[name], 1e-10, name)


def test_one_feature_one_hidden_unit() -> None:
    data = sparse_data(3, 1, 2)
    fast, ref = train_both(data, 1, 1, "sigmoid", 0.9, epochs=3)
    assert_paths_agree(fast, ref, 1e-10)


def test_nan_input_is_kept_and_the_guard_stops() -> None:
    data = sparse_data(50, 23, 10)
    model = fastmlp.MLP(23, 16, 10, dtype="float64")
    bad = Dataset(data.name, Split(data.train.x.copy(), data.train.y), data.valid, data.test,
                  n_classes=data.n_classes)
    bad.train.x[10, 3] = np.nan
    # the trainer refuses NaN input where the data enter training ...
    with pytest.raises(fastmlp.FastMLPError, match="train features .* nan at row 10, column 3"):
        Trainer(model, bad, lr=0.01, momentum=0.9, batch_size=1)
    # ... and the compiled loop, handed one anyway, keeps it: NaN != 0, not skipped as a zero
    trainer = Trainer(model, data, lr=0.01, momentum=0.9, batch_size=1)
    assert trainer.plan.compiled
    trainer.X[10, 3] = np.nan
    trainer.strategy.nonzeros = ksparse.csr(trainer.X, trainer.counts[0])[:3]
    assert not np.isfinite(trainer.run_epoch()["train_loss"])
    assert not np.isfinite(model.params).all()


def test_divergence_guard_keeps_the_last_finite_weights() -> None:
    data = sparse_data(60, 23, 10, dtype=np.float32)
    model = fastmlp.MLP(23, 16, 10)
    start = model.params.copy()
    with pytest.raises(DivergenceError) as info:  # float32 overflows within the first epoch
        fastmlp.train(model, data, epochs=5, lr=1e33, momentum=0.9, batch_size=3)
    assert info.value.epoch == 1
    np.testing.assert_array_equal(model.params, start)  # the last finite weights: the first


def test_cli_reports_the_compiled_loop(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    base = ["train", "--dataset", "synthetic", "--hidden", "16", "--batch-size", "1", "--lr",
            "0.001", "--epochs", "1", "--no-progress", "--out", str(tmp_path)]
    assert main(base) == 0
    assert "loop:     compiled small-batch loop: per-sample steps" in capsys.readouterr().out
    assert main([*base, "--no-compiled", "--overwrite"]) == 0  # the same --out again
    assert "loop:     per-step path (asked for)" in capsys.readouterr().out


@pytest.mark.parametrize(("hidden", "batch_size", "products", "compiled"), [
    (300, 1, "dense", True), (4 * COMPILED_MAX_WORK, 1, "sparse", True),
    (300, 20, "sparse", False),  # the compiled minibatch epochs there
    (300, 10, "sparse", True), (1000, 10, "sparse", True), (1000, 6, "offset", True),
    (1000, 8, "offset", False), (1000, 2, "dense", True), (300, 2, "dense", False),
    (300, 4, "dense", False), (10, 600, "dense", True), (11, 600, "dense", False),
    (300, None, "dense", False)])
def test_the_compiled_loop_runs_where_it_wins(hidden: int, batch_size: int | None,
                                              products: str, compiled: bool) -> None:
    # the measured crossovers (bench/RESULTS.md, bench/results/minibatch_plan/): B = 1 always;
    # small batches where the compiled minibatch epochs do not win (the rows' nonzeros B < 12,
    # offset rows B < 8, dense rows B < 4 with H > 300); past B = 512 up to COMPILED_MAX_WORK
    model = fastmlp.MLP(784, hidden, 10)
    chosen = choose_strategy(None, model.backend, model.n_hidden, batch_size, products)[0]
    assert (chosen == "compiled-steps") is compiled


# -- checkpoints, SIGKILL and Ctrl-C on the compiled (and the sparse) path ------------------------

SYN = ["train", "--dataset", "synthetic", "--hidden", "32", "--lr", "0.001", "--momentum", "0.9",
       "--device", "cpu", "--no-progress"]


# (B = 100 on the compiled minibatch epoch: tests/test_minibatch_state.py)
@pytest.mark.parametrize("path", [["--batch-size", "1", "--compiled"],
                                  ["--batch-size", "10", "--compiled", "--sparse", "on"],
                                  ["--sparse", "on"],
                                  ["--batch-size", "100", "--no-compiled", "--sparse", "on"]],
                         ids=["B=1", "B=10-sparse", "full-batch-sparse", "B=100-sparse"])
@pytest.mark.slow  # a subprocess, Dask or the simulator
def test_sigkill_and_resume_are_bit_identical(path: list[str], tmp_path: Path) -> None:
    _, ha, _ = kill_resume_and_compare([*SYN, *path], tmp_path)
    if "--compiled" in path:
        assert ha["config"]["plan"]["strategy"] == "compiled-steps"


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # as a terminal would (see test_checkpoint)


@pytest.mark.slow  # a subprocess, Dask or the simulator
def test_ctrl_c_writes_a_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = [a for a in SYN if a != "--no-progress"]  # the bar on stderr says training is on
    proc = subprocess.Popen([sys.executable, "-m", "fastmlp", *argv, "--batch-size", "1",
                             "--epochs", "100000", "--checkpoint-every", "0", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV,
                            preexec_fn=_default_sigint)
    try:
        seen = b""
        deadline = time.monotonic() + 120
        while b"/100000" not in seen:  # the bar is drawn: the Ctrl-C handler is next
            assert proc.poll() is None and time.monotonic() < deadline, seen
            seen += os.read(proc.stderr.fileno(), 4096)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        stderr = (seen + proc.communicate(timeout=60)[1]).decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    done = json.loads((out / "history.json").read_text())["epochs"]
    # --checkpoint-every 0: the checkpoint is the one Ctrl-C wrote, at the epoch's end
    assert 1 <= load_checkpoint(out)["epoch"] == done
    assert f"checkpoint at epoch {done}" in stderr
