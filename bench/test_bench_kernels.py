"""pytest-benchmark suites: each hot kernel and one epoch, at the canonical workload's shapes.

Run: ``pytest bench --benchmark-only`` (not part of the test suite; nothing here asserts speed).
Targets are checked with ``fastmlp bench`` and recorded in bench/RESULTS.md.
"""

import numpy as np
import pytest
from fastmlp.kernels import cpu, reference

import fastmlp
from fastmlp.bench import WORKLOAD

N_TRAIN, N_EVAL = WORKLOAD["n_train"], WORKLOAD["n_valid"] + WORKLOAD["n_test"]
F, H, K = WORKLOAD["n_features"], WORKLOAD["n_hidden"], WORKLOAD["n_classes"]


@pytest.fixture(scope="module", params=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture(scope="module")
def head_inputs(dtype):
    rng = np.random.default_rng(0)
    N = N_TRAIN + N_EVAL
    return dict(
        Z0=rng.standard_normal((N, H)).astype(dtype), bh=np.zeros((1, H), dtype),
        Wo=(rng.standard_normal((H, K)) * 0.03).astype(dtype), bo=np.zeros((1, K), dtype),
        y=rng.integers(0, K, N).astype(np.int32), ends=(N_TRAIN, N_TRAIN + 6000, N),
    )


@pytest.mark.parametrize("impl", [cpu.head, reference.head], ids=["numba", "reference"])
def test_head(benchmark, head_inputs, impl):
    d = head_inputs
    Z = d["Z0"].copy()
    outs = (np.empty((H, K), Z.dtype), np.empty((1, K), Z.dtype), np.empty((1, H), Z.dtype),
            np.empty((3, 2)))

    def setup():
        np.copyto(Z, d["Z0"])  # the head works in place

    benchmark.pedantic(impl, args=(Z, d["bh"], d["Wo"], d["bo"], d["y"], d["ends"], N_TRAIN,
                                   "relu", *outs), setup=setup, rounds=10, warmup_rounds=1)


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

    data = fastmlp.Dataset("random", split(N_TRAIN), split(6000), split(2724))
    model = fastmlp.MLP(F, H, K, dtype=dtype)
    trainer = fastmlp.Trainer(model, data, lr=0.01, momentum=0.9, batch_size=batch_size)
    benchmark.pedantic(trainer.run_epoch, rounds=5, warmup_rounds=1)
