"""pytest-benchmark suites: each hot kernel and one epoch, at the canonical workload's shapes.

Run: ``pytest bench --benchmark-only`` (not part of the test suite; nothing here asserts speed).
Targets are checked with ``fastmlp bench`` and recorded in bench/RESULTS.md. The head benchmark
checks once, outside the timing, that what it timed matches the reference, so a kernel that
skips work cannot look fast.
"""

import numpy as np
import pytest
from fastmlp.kernels import cpu, reference

import fastmlp
from fastmlp.bench import WORKLOAD

N_TRAIN, N_VALID, N_TEST = WORKLOAD["n_train"], WORKLOAD["n_valid"], WORKLOAD["n_test"]
F, H, K = WORKLOAD["n_features"], WORKLOAD["n_hidden"], WORKLOAD["n_classes"]
# per-tensor max error relative to the tensor's own largest entry; not floored at 1 as in
# tests/test_kernels_cpu.py, since dz's entries here are ~1e-5 and all-zero dz would pass that
TOL = {"float64": 1e-12, "float32": 2e-5}


@pytest.fixture(scope="module", params=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture(scope="module")
def head_inputs(dtype):
    rng = np.random.default_rng(0)
    N = N_TRAIN + N_VALID + N_TEST
    return dict(
        Z0=rng.standard_normal((N, H)).astype(dtype), bh=np.zeros((1, H), dtype),
        Wo=(rng.standard_normal((H, K)) * 0.03).astype(dtype), bo=np.zeros((1, K), dtype),
        y=rng.integers(0, K, N).astype(np.int32), ends=(N_TRAIN, N_TRAIN + N_VALID, N),
    )


def head_outputs(dtype):
    """The head's output buffers, NaN-filled: an entry never written cannot match."""
    return dict(dWo=np.full((H, K), np.nan, dtype), dbo=np.full((1, K), np.nan, dtype),
                dbh=np.full((1, H), np.nan, dtype), stats=np.full((3, 2), np.nan))


@pytest.fixture(scope="module")
def head_expected(head_inputs):
    """The reference head's outputs, dz included (rows past N_TRAIN are unspecified), computed in
    float64 from float64 copies of the inputs: a float64 oracle for the float32 runs, so the
    reference implementation itself is checked there too, not compared with its own result."""
    d = {name: np.asarray(a, np.float64) for name, a in head_inputs.items()
         if name not in ("y", "ends")}
    Z = d["Z0"].copy()
    out = head_outputs(Z.dtype)
    reference.hidden_to_loss(Z, d["bh"], d["Wo"], d["bo"], head_inputs["y"], head_inputs["ends"],
                             N_TRAIN, "relu", out["dWo"], out["dbo"], out["dbh"], out["stats"])
    out["dz"] = Z[:N_TRAIN]
    return out


@pytest.mark.parametrize("impl", [cpu.hidden_to_loss, reference.hidden_to_loss],
                         ids=["numba", "reference"])
def test_head(benchmark, head_inputs, head_expected, impl):
    d = head_inputs
    Z = d["Z0"].copy()
    got = head_outputs(Z.dtype)  # reused by every round

    def setup():
        np.copyto(Z, d["Z0"])  # the head works in place

    benchmark.pedantic(impl, args=(Z, d["bh"], d["Wo"], d["bo"], d["y"], d["ends"], N_TRAIN,
                                   "relu", got["dWo"], got["dbo"], got["dbh"], got["stats"]),
                       setup=setup, rounds=10, warmup_rounds=1)
    # once, untimed: the last timed round started from Z0, so its outputs must match the
    # reference (NaN where a tensor was never written fails too)
    got["dz"] = Z[:N_TRAIN]
    errors = {name: float(np.max(np.abs(got[name] - want)) / np.max(np.abs(want)))
              for name, want in head_expected.items()}
    assert all(e <= TOL[Z.dtype.name] for e in errors.values()), errors


@pytest.mark.parametrize("impl", [cpu.momentum, reference.momentum], ids=["numba", "reference"])
def test_momentum(benchmark, dtype, impl):
    P = F * H + H + H * K + K
    rng = np.random.default_rng(0)
    p, g, v = (rng.standard_normal(P).astype(dtype) for _ in range(3))
    benchmark(impl, p, g, v, 1e-6, 0.9)


@pytest.mark.parametrize("batch_size", [None, 100], ids=["full", "B100"])
def test_epoch(benchmark, dtype, batch_size):
    rng = np.random.default_rng(0)

    def split(n):
        return fastmlp.Split(rng.random((n, F)).astype(dtype), rng.integers(0, K, n))

    data = fastmlp.Dataset("random", split(N_TRAIN), split(N_VALID), split(N_TEST))
    model = fastmlp.MLP(F, H, K, dtype=dtype)
    trainer = fastmlp.Trainer(model, data, lr=0.01, momentum=0.9, batch_size=batch_size)
    benchmark.pedantic(trainer.run_epoch, rounds=5, warmup_rounds=1)
