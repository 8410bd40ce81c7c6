"""State on the compiled minibatch strategy (fastmlp/strategies/compiled_minibatch.py): checkpoints
and --resume continue bit for bit (in process, and after SIGKILL through the command line), a
stop in mid-epoch keeps the epochs before it, and the divergence guard keeps the last finite
weights, as on the other strategies."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
from killresume import kill_resume_and_compare

import fastmlp
from fastmlp.checkpoint import load_checkpoint
from fastmlp.strategies.compiled_minibatch import CompiledMinibatch
from fastmlp.train import DivergenceError, StopSignal

PARAMS = ("Wh", "bh", "Wo", "bo")
ENV = dict(os.environ, PYTHONWARNINGS="ignore")


def data(products: str, dtype: str = "float64") -> fastmlp.Dataset:
    """650 rows of 40 features; for sparse (offset) products about 70% of the inputs set to 0
    (to −1)."""
    d = fastmlp.load_dataset("synthetic", n_train=650, n_valid=40, n_test=30, n_features=40,
                             dtype=dtype)
    if products != "dense":
        rng = np.random.default_rng(5)
        for split in (d.train, d.valid, d.test):
            split.x[rng.uniform(size=split.x.shape) < 0.7] = 0 if products == "sparse" else -1
    return d


def kw(products: str) -> dict:
    return dict(lr=0.01, momentum=0.9, batch_size=100, seed=2, compiled=True,
                sparse="off" if products == "dense" else "on")


def model() -> fastmlp.MLP:
    return fastmlp.MLP(40, 24, 10, seed=1, dtype="float64")


def assert_same(a: fastmlp.MLP, b: fastmlp.MLP, ha, hb) -> None:
    np.testing.assert_array_equal(a.params, b.params)
    assert ha.train_loss == hb.train_loss and ha.valid_loss == hb.valid_loss
    assert ha.final == hb.final


@pytest.mark.parametrize("products", ["dense", "sparse", "offset"])
def test_resume_is_bit_identical(products: str, tmp_path: Path) -> None:
    rows = data(products)
    whole = model()
    held = {}
    hw = fastmlp.train(whole, rows, epochs=4, callback=lambda t, r: held.update(t=t),
                       **kw(products))
    assert type(held["t"].strategy) is CompiledMinibatch
    assert held["t"].strategy.mode == products
    first = model()
    fastmlp.train(first, rows, epochs=2, checkpoint=tmp_path, checkpoint_every=0,
                  **kw(products))
    ck = load_checkpoint(tmp_path)
    again = model()
    resumed = fastmlp.train(again, rows, epochs=4, state=ck, history=ck["history"],
                            **kw(products))
    assert_same(again, whole, resumed, hw)


def test_a_stop_in_mid_epoch_keeps_the_epochs_before_it(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    rows = data("dense")
    whole, at_two = model(), model()
    hw = fastmlp.train(whole, rows, epochs=4, **kw("dense"))
    fastmlp.train(at_two, rows, epochs=2, **kw("dense"))
    real_run = CompiledMinibatch._run
    epochs_started = []

    def stopped_in_epoch_3(self, order, s0, s1, stats):
        if s0 == 0:
            epochs_started.append(1)
        if len(epochs_started) == 3:  # half the epoch's steps done, then the second signal
            real_run(self, order, s0, max(s0 + 1, s1 // 2), stats)
            raise StopSignal(signal.SIGINT)
        real_run(self, order, s0, s1, stats)

    monkeypatch.setattr(CompiledMinibatch, "_run", stopped_in_epoch_3)
    stopped = model()
    with pytest.raises(StopSignal):
        fastmlp.train(stopped, rows, epochs=4, checkpoint=tmp_path, checkpoint_every=0,
                      **kw("dense"))
    ck = load_checkpoint(tmp_path)
    assert ck["epoch"] == 2 and ck["history"].epochs == 2
    np.testing.assert_array_equal(ck["params"], at_two.params)
    monkeypatch.setattr(CompiledMinibatch, "_run", real_run)
    again = model()
    resumed = fastmlp.train(again, rows, epochs=4, state=ck, history=ck["history"],
                            **kw("dense"))
    assert_same(again, whole, resumed, hw)


def test_divergence_guard_keeps_the_last_finite_weights() -> None:
    rows = data("dense", dtype="float32")
    net = fastmlp.MLP(40, 24, 10, seed=1)
    start = net.params.copy()
    with pytest.raises(DivergenceError) as info, np.errstate(over="ignore", invalid="ignore"):
        fastmlp.train(net, rows, epochs=5, **dict(kw("dense"), lr=1e33))
    assert info.value.epoch == 1
    np.testing.assert_array_equal(net.params, start)  # the last finite weights: the first


# -- SIGKILL and --resume through the command line ------------------------------------------------

SYN = ["train", "--dataset", "synthetic", "--hidden", "32", "--lr", "0.001", "--momentum", "0.9",
       "--device", "cpu", "--no-progress", "--batch-size", "100", "--compiled"]


@pytest.mark.parametrize("products", ["off", "on"], ids=["dense", "sparse"])
@pytest.mark.slow  # subprocesses
def test_sigkill_and_resume_are_bit_identical(products: str, tmp_path: Path) -> None:
    _, ha, hb = kill_resume_and_compare([*SYN, "--sparse", products], tmp_path)
    for history in (ha, hb):
        plan = history["config"]["plan"]
        assert plan["strategy"] == "compiled-minibatch"
        assert plan["products"] == ("sparse" if products == "on" else "dense")
