"""fastmlp.gradcheck and ``fastmlp gradcheck``: relative errors per tensor, float64 copies,
sampled entries, a planted gradient bug is caught, and the command's table and exit codes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp.cli import main
from fastmlp.errors import FastMLPError
from fastmlp.gradcheck import (
    GradcheckResult,
    check_memory,
    gradcheck,
    gradcheck_bytes,
    numerical_grads,
    rel_error,
    sample_entries,
)
from fastmlp.model import PARAM_NAMES


def net(dtype="float64", activation="relu", F=7, H=5, K=3, N=8, seed=0):
    rng = np.random.default_rng(seed)
    model = fastmlp.MLP(F, H, K, activation=activation, dtype=dtype, seed=seed)
    model.bh = rng.normal(0, 0.5, (1, H)).astype(dtype)
    model.bo = rng.normal(0, 0.5, (1, K)).astype(dtype)
    return model, rng.normal(size=(N, F)), rng.integers(0, K, N)


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_correct_gradients_pass_and_model_is_untouched(activation):
    model, x, y = net(activation=activation)
    before = model.params.copy()
    result = gradcheck(model, x, y)
    assert set(result) == set(PARAM_NAMES)
    assert all(err < 1e-7 for err in result.values()), dict(result)
    # the bound is strict: the largest error itself is not below it
    assert result.passed(1e-7) and not result.passed(max(result.values()))
    assert result.checked == {n: int(np.prod(model.shapes[n])) for n in PARAM_NAMES}
    assert result.notes == [] and result.dtype == "float64"
    np.testing.assert_array_equal(model.params, before)  # the check ran on a copy


def test_float32_model_is_checked_on_a_float64_copy():
    model, x, y = net(dtype="float32")
    result = gradcheck(model, x, y)
    assert result.dtype == "float32" and model.dtype == "float32"
    assert any("float64 copy" in note for note in result.notes)
    assert result.passed(1e-6), dict(result)


def test_max_entries_samples_a_seeded_subset():
    model, x, y = net(F=30, H=20)
    result = gradcheck(model, x, y, max_entries=5, seed=3)
    assert result.checked == {"Wh": 5, "bh": 5, "Wo": 5, "bo": 3}
    assert any("sampled" in note and "Wh" in note for note in result.notes)
    assert result.passed(1e-6)
    shapes = model.shapes
    a, b, c = (sample_entries(shapes, 5, seed=s) for s in (3, 3, 4))
    assert all(np.array_equal(a[n], b[n]) for n in shapes)
    assert not np.array_equal(a["Wh"], c["Wh"])
    assert len(set(a["Wh"].tolist())) == 5 and a["Wh"].max() < 600


def test_a_wrong_gradient_is_caught(monkeypatch):
    original = fastmlp.MLP.loss_and_grads

    def buggy(self, x, y):
        loss, grads = original(self, x, y)
        grads["Wo"] = grads["Wo"] * 1.01  # a 1% error in one tensor
        return loss, grads

    monkeypatch.setattr(fastmlp.MLP, "loss_and_grads", buggy)
    model, x, y = net()
    result = gradcheck(model, x, y)
    assert result["Wo"] > 1e-3
    assert max(result[n] for n in ("Wh", "bh", "bo")) < 1e-7


def test_a_nan_error_never_passes():
    errors = {"Wh": 1e-12, "bh": math.nan, "Wo": 1e-12, "bo": 1e-12}
    shapes = {"Wh": (2, 2), "bh": (1, 2), "Wo": (2, 2), "bo": (1, 2)}
    result = GradcheckResult(errors, shapes=shapes, checked={n: 4 for n in shapes}, eps=1e-6,
                             loss=1.0, dtype="float64", notes=[])
    assert not result.passed(1.0) and not result.passed(math.inf)
    errors["bh"] = 1e-12  # the same result without the NaN passes
    assert GradcheckResult(errors, shapes=shapes, checked={n: 4 for n in shapes}, eps=1e-6,
                           loss=1.0, dtype="float64", notes=[]).passed(1.0)


def test_numerical_grads_restores_parameters_exactly():
    model, x, y = net()
    before = model.params.copy()
    grads = numerical_grads(model, x, y)
    np.testing.assert_array_equal(model.params, before)
    assert {n: g.shape for n, g in grads.items()} == model.shapes
    picked = numerical_grads(model, x, y, entries={n: np.array([0, 1]) for n in PARAM_NAMES})
    for name in PARAM_NAMES:
        np.testing.assert_allclose(picked[name], grads[name].reshape(-1)[:2], rtol=1e-12)


def test_rel_error_edge_cases():
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert rel_error([1.0], [-1.0]) == pytest.approx(1.0)


def test_rel_error_of_non_finite_values_is_nan_and_fails():
    # a NaN denominator once read as "both zero": 0.0, a pass at any tolerance
    for a, b in (([np.nan], [1.0]), ([1.0], [np.inf]), ([np.nan, 1.0], [np.nan, 1.0])):
        assert math.isnan(rel_error(a, b))
    result = GradcheckResult({"Wh": math.nan}, shapes={"Wh": (1, 1)}, checked={"Wh": 1},
                             eps=1e-6, loss=math.nan, dtype="float64", notes=[])
    assert not result.passed(1.0)


def test_bad_arguments():
    model, x, y = net()
    with pytest.raises(FastMLPError, match="eps") as info:
        gradcheck(model, x, y, eps=0)
    assert isinstance(info.value, ValueError)
    with pytest.raises(FastMLPError, match="max_entries") as info:
        gradcheck(model, x, y, max_entries=0)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name,value", [("Wh", np.nan), ("bh", np.inf), ("Wo", -np.inf),
                                        ("bo", np.nan)])
def test_non_finite_weights_are_refused_not_passed(name, value):
    model, x, y = net()
    model.views[name][0, 0] = value
    with pytest.raises(FastMLPError, match=f"not finite \\({name} holds NaN or inf\\): "
                                           f"gradients at non-finite weights cannot be checked"):
        gradcheck(model, x, y)


def test_non_finite_rows_are_refused():
    model, x, y = net()
    x[2, 3] = np.nan
    with pytest.raises(FastMLPError, match="x holds NaN or inf") as info:
        gradcheck(model, x, y)
    assert isinstance(info.value, ValueError)


def test_memory_is_estimated_before_anything_is_allocated(monkeypatch):
    from fastmlp import gradcheck as module
    from fastmlp.backend import get_backend

    cpu = get_backend("cpu")
    small, big = gradcheck_bytes(20, 8, 10, 16), gradcheck_bytes(10**8, 8, 10, 16)
    assert 0 < small < 10**6 < 50 * 2**30 < big  # the issue's --n-in 1e8: ~60 GiB
    free = module.available_memory(cpu)
    assert free is None or free > 0
    monkeypatch.setattr(module, "available_memory", lambda backend: 2**30)
    check_memory(20, 8, 10, 16, cpu)  # fits
    with pytest.raises(FastMLPError, match="too large to check here: .* more than the 1 GiB "
                                           "free on cpu"):
        check_memory(10**8, 8, 10, 16, cpu)
    monkeypatch.setattr(module, "available_memory", lambda backend: None)
    check_memory(10**8, 8, 10, 16, cpu)  # unknown: no refusal on a guess


def test_cli_non_finite_model_exits_non_zero(tmp_path: Path, capsys):
    path = tmp_path / "nan.npz"
    model = fastmlp.MLP(6, 4, 3)
    model.views["Wo"][1, 2] = np.nan
    model.save(path)
    assert main(["gradcheck", "--model", str(path), "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    assert "pass" not in captured.out and "rel error" not in captured.out
    assert "Wo holds NaN or inf" in captured.err


# -- the command --------------------------------------------------------------------------------


def test_cli_default_random_network_passes(capsys):
    assert main(["gradcheck", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "MLP 20-8-10" in out and "passed: all 4 tensors" in out
    table = [line.split() for line in out.splitlines() if line.split()[:1] in
             [[n] for n in PARAM_NAMES]]
    assert [row[0] for row in table] == list(PARAM_NAMES)
    assert [row[1] for row in table] == ["20x8", "1x8", "8x10", "1x10"]
    assert all(row[-1] == "pass" and float(row[3]) < 1e-6 for row in table)


def test_cli_fails_with_exit_1_below_an_impossible_tolerance(capsys):
    argv = ["gradcheck", "--device", "cpu", "--activation", "sigmoid", "--hidden", "3",
            "--n-in", "4", "--n-classes", "2", "--samples", "5", "--tol", "1e-30"]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "FAILED:" in out and "MLP 4-3-2, sigmoid" in out


def test_cli_saved_float32_model_uses_sampled_entries(tmp_path: Path, capsys):
    path = tmp_path / "m.npz"
    fastmlp.MLP(784, 40, 10, dtype="float32", seed=1).save(path)
    argv = ["gradcheck", "--model", str(path), "--samples", "4", "--max-entries", "6",
            "--device", "cpu"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "float64 copy of the float32 model" in out and "sampled at most 6" in out
    assert "784x40" in out and "passed" in out


def test_many_rows_do_not_drown_the_differences_in_rounding():
    # a difference of two means of 100000 losses cancels down to the rounding of their sums
    # (bo's relative error was 1e-5, a false FAIL at the default tol 1e-6); the mean of per-row
    # differences keeps it near 1e-9
    data = fastmlp.load_dataset("synthetic", n_train=100_000, n_features=20, seed=0)
    model = fastmlp.MLP(20, 2, 10, dtype="float64", seed=0)
    result = gradcheck(model, data.train.x, data.train.y)
    assert max(result.values()) < 1e-7, dict(result)
