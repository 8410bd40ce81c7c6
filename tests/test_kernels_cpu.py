"""Numba CPU kernels against the NumPy references: per-tensor max error, awkward sizes."""

import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import pytest
from fastmlp.kernels import cpu, reference
from fastmlp.kernels.runtime import Workspaces
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TOL = {np.float64: 1e-12, np.float32: 2e-5}


def make_head_inputs(rng, N, H, K, dtype, scale=1.0):
    return dict(
        Z=(rng.standard_normal((N, H)) * scale).astype(dtype),
        bh=rng.standard_normal((1, H)).astype(dtype),
        Wo=(rng.standard_normal((H, K)) / np.sqrt(H)).astype(dtype),
        bo=rng.standard_normal((1, K)).astype(dtype),
        y=rng.integers(0, K, N).astype(np.int32),
    )


def run_head(head, inputs, ends, n_grad, activation):
    """Run one head implementation on copies; return every output tensor by name."""
    Z = inputs["Z"].copy()
    H, K = inputs["Wo"].shape
    dtype = Z.dtype
    out = dict(Z=Z, dWo=np.full((H, K), np.nan, dtype), dbo=np.full((1, K), np.nan, dtype),
               dbh=np.full((1, H), np.nan, dtype), stats=np.full((len(ends), 2), np.nan))
    head(Z, inputs["bh"], inputs["Wo"], inputs["bo"], inputs["y"], ends, n_grad, activation,
         out["dWo"], out["dbo"], out["dbh"], out["stats"])
    out["dz"] = out.pop("Z")[:n_grad]  # rows past n_grad are unspecified scratch
    if n_grad == 0:  # gradients are left alone when no row is a training row
        for name in ("dWo", "dbo", "dbh"):
            assert np.isnan(out[name]).all(), f"{name} written although n_grad == 0"
        del out["dWo"], out["dbo"], out["dbh"]
    return out


def max_errors(got, want, terms=None):
    """Per-tensor max abs error, relative to the tensor's own magnitude (max |want|) or, when
    larger, to its summed terms (the ``head_gradient_terms`` fixture)."""
    terms = terms or {}
    errors = {}
    for name in want:
        scale = max(float(np.max(np.abs(want[name]), initial=0.0)), terms.get(name, 0.0), 1e-30)
        errors[name] = float(np.max(np.abs(got[name] - want[name]), initial=0.0)) / scale
    return errors


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("N,H,K,ends,n_grad", [
    (1, 1, 2, (1, 1, 1), 1),
    (7, 7, 10, (3, 7, 7), 3),
    (13, 33, 10, (0, 6, 13), 0),
    (40, 1001, 10, (25, 33, 40), 25),
    (5, 3, 2, (5,), 5),
])
def test_head_matches_reference(dtype, activation, N, H, K, ends, n_grad,
                                head_gradient_terms):
    rng = np.random.default_rng(N * H)
    inputs = make_head_inputs(rng, N, H, K, dtype)
    got = run_head(cpu.hidden_to_loss, inputs, ends, n_grad, activation)
    want = run_head(reference.hidden_to_loss, inputs, ends, n_grad, activation)
    errors = max_errors(got, want, head_gradient_terms(inputs, n_grad, activation))
    print(f"max errors {dtype.__name__} {activation} N={N} H={H}: {errors}")
    assert all(e <= TOL[dtype] for e in errors.values()), errors


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("ends,n_grad", [
    ((1537,), 1537),
    ((701, 1100, 1537), 701),  # a train split ending inside the second thread's rows
    ((0, 900, 1537), 0),  # no training row: gradients left alone
    ((1024, 1024, 1537), 1024),  # an empty split, ends on a 512-row boundary
])
def test_threaded_head_matches_reference(dtype, activation, ends, n_grad, head_gradient_terms,
                                         monkeypatch):
    # cpu.hidden_to_loss splits its rows between min(numba.get_num_threads(), N // 512) threads
    # (runtime.threads_for with HEAD_ROWS); the cases above are random, not the all-ones inputs
    # of the subnormal test. Two threads are used whenever numba has them
    # (NUMBA_NUM_THREADS >= 2); with fewer, one share runs and the results are still checked.
    N, H, K = 1537, 65, 7  # N // 512 == 3; odd K: the kernel's leftover-output loop
    inputs = make_head_inputs(np.random.default_rng(1537), N, H, K, dtype)
    # empty: only this call's workspace will be there
    monkeypatch.setattr(cpu, "_workspaces", Workspaces())
    threads = numba.get_num_threads()
    numba.set_num_threads(min(max(threads, 2), numba.config.NUMBA_NUM_THREADS))
    try:
        T = min(numba.get_num_threads(), N // 512)
        got = run_head(cpu.hidden_to_loss, inputs, ends, n_grad, activation)
    finally:
        numba.set_num_threads(threads)
    if numba.config.NUMBA_NUM_THREADS >= 2:
        assert T >= 2
        # the threaded path ran: the call's workspace holds partial sums for T threads
        assert [key for key, _thread in cpu._workspaces.entries] == [
            (T, H, K, len(ends), np.dtype(dtype))]
    want = run_head(reference.hidden_to_loss, inputs, ends, n_grad, activation)
    errors = max_errors(got, want, head_gradient_terms(inputs, n_grad, activation))
    print(f"max errors {dtype.__name__} {activation} T={T} ends={ends}: {errors}")
    assert all(e <= TOL[dtype] for e in errors.values()), errors


@pytest.mark.parametrize("form", ["reference", "cpu"])
def test_head_rejects_bad_arguments(form, assert_head_rejects_bad_arguments):
    # the same checks, with the same messages, in every form (the CUDA one: tests/cudasim)
    forms = {"reference": reference.hidden_to_loss, "cpu": cpu.hidden_to_loss}
    assert_head_rejects_bad_arguments(forms[form])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [1, 7, 1001, 100_003])
def test_momentum_matches_reference(dtype, size):
    rng = np.random.default_rng(size)
    p, g, v = (rng.standard_normal(size).astype(dtype) for _ in range(3))
    p_ref, v_ref = p.copy(), v.copy()
    cpu.momentum(p, g, v, 0.1, 0.99)
    reference.momentum(p_ref, g, v_ref, 0.1, 0.99)
    assert p.dtype == dtype and v.dtype == dtype
    np.testing.assert_allclose(v, v_ref, rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_allclose(p, p_ref, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("form", ["reference", "cpu"])
def test_momentum_rejects_bad_arguments(form, assert_momentum_rejects_bad_arguments):
    assert_momentum_rejects_bad_arguments({"reference": reference.momentum,
                                           "cpu": cpu.momentum}[form])


@pytest.mark.parametrize("size", [3, 100_003])  # one share, and one per thread
def test_momentum_keeps_nan_as_the_reference_does(size):
    # the subnormal flush must not turn a diverging run's NaN into a zero update
    p, g, v = np.ones(size), np.ones(size), np.zeros(size)
    g[1] = np.nan
    p_ref, v_ref = p.copy(), v.copy()
    cpu.momentum(p, g, v, 0.1, 0.9)
    reference.momentum(p_ref, g, v_ref, 0.1, 0.9)
    np.testing.assert_array_equal(v, v_ref)  # NaN where the reference has NaN
    np.testing.assert_array_equal(p, p_ref)
    assert np.isnan(p[1]) and np.isnan(v[1])


@pytest.mark.parametrize("N", [5, 2048])  # one share, and one per thread
def test_head_keeps_nan_gradients(N):
    # a NaN output weight gives NaN do in the reference; the flush must keep it. (dz differs
    # by design at inactive ReLU units: the kernel passes them no gradient, the reference
    # multiplies NaN by 0.)
    inputs = make_head_inputs(np.random.default_rng(0), N, 6, 3, np.float64)
    inputs["Wo"][2, 1] = np.nan
    got = run_head(cpu.hidden_to_loss, inputs, (N,), N, "relu")
    want = run_head(reference.hidden_to_loss, inputs, (N,), N, "relu")
    for name in ("dbo", "dWo"):
        np.testing.assert_array_equal(np.isnan(got[name]), np.isnan(want[name]), err_msg=name)
    assert np.isnan(got["dbo"]).all()
    active = inputs["Z"] + inputs["bh"] > 0
    assert np.isnan(got["dz"][active]).all() and not np.isnan(got["dz"][~active]).any()


@pytest.mark.parametrize("N", [5, 2048])  # one share, and one per thread
def test_head_relu_passes_nan_to_the_loss(N):
    # a NaN pre-activation (a NaN weight of Wh) must reach the loss, as max(z, 0) passes it in
    # the reference, so the divergence guard sees it; ReLU used to turn it into 0
    inputs = make_head_inputs(np.random.default_rng(0), N, 6, 3, np.float64)
    inputs["Z"][N - 1, 2] = np.nan  # the last row: a test row
    ends = (N - 2, N - 1, N)
    got = run_head(cpu.hidden_to_loss, inputs, ends, N - 2, "relu")
    want = run_head(reference.hidden_to_loss, inputs, ends, N - 2, "relu")
    np.testing.assert_array_equal(np.isnan(got["stats"]), np.isnan(want["stats"]))
    assert np.isnan(got["stats"][2, 0]) and np.isfinite(got["stats"][:2]).all()


def test_head_reuses_its_workspace():
    rng = np.random.default_rng(0)
    inputs = make_head_inputs(rng, 9, 5, 3, np.float64)
    run_head(cpu.hidden_to_loss, inputs, (9,), 9, "relu")
    before = {key: tuple(id(a) for a in ws) for key, ws in cpu._workspaces.entries.items()}
    run_head(cpu.hidden_to_loss, inputs, (9,), 9, "relu")
    after = {key: tuple(id(a) for a in ws) for key, ws in cpu._workspaces.entries.items()}
    assert before == after


def test_head_is_safe_from_two_threads_at_once(head_gradient_terms):
    # the kernels release the GIL: two threads running same-shape heads concurrently (Dask worker
    # threads, say) must not share the cached workspace, or each would write the other's partials
    N, H, K, ends, n_grad = 64, 200, 10, (40, 64), 40
    cases = []
    for seed in (1, 2):
        inputs = make_head_inputs(np.random.default_rng(seed), N, H, K, np.float64)
        cases.append((inputs, run_head(reference.hidden_to_loss, inputs, ends, n_grad, "relu"),
                      head_gradient_terms(inputs, n_grad, "relu")))
    start = threading.Barrier(len(cases))

    def worker(case):
        inputs, want, terms = case
        start.wait()
        worst = {}
        for _ in range(300):
            got = run_head(cpu.hidden_to_loss, inputs, ends, n_grad, "relu")
            for name, err in max_errors(got, want, terms).items():
                worst[name] = max(worst.get(name, 0.0), err)
        return worst

    with ThreadPoolExecutor(len(cases)) as pool:
        for errors in pool.map(worker, cases):
            assert all(e <= TOL[np.float64] for e in errors.values()), errors


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(N=st.integers(1, 20), H=st.integers(1, 40), K=st.integers(2, 12),
       n_grad_frac=st.floats(0, 1), scale=st.sampled_from([1e-3, 1.0, 30.0, 1e3]),
       activation=st.sampled_from(["relu", "sigmoid"]), seed=st.integers(0, 2**16))
def test_head_property_random_shapes_and_extreme_values(N, H, K, n_grad_frac, scale, activation,
                                                        seed, head_gradient_terms):
    rng = np.random.default_rng(seed)
    inputs = make_head_inputs(rng, N, H, K, np.float64, scale=scale)
    n_grad = int(round(n_grad_frac * N))
    ends = (n_grad, (n_grad + N) // 2, N)
    got = run_head(cpu.hidden_to_loss, inputs, ends, n_grad, activation)
    want = run_head(reference.hidden_to_loss, inputs, ends, n_grad, activation)
    assert all(np.all(np.isfinite(a)) for a in got.values())
    errors = max_errors(got, want, head_gradient_terms(inputs, n_grad, activation))
    assert all(e <= 1e-9 for e in errors.values()), errors
    # stats count every row once
    assert got["stats"][:, 1].sum() <= N


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [3, 100_003])  # one share, and one per thread
def test_momentum_flushes_subnormal_velocities(dtype, size):
    tiny = np.finfo(dtype).tiny
    v = np.full(size, 2 * tiny, dtype)  # decays below the smallest normal number this step
    v[0] = 1.0
    p, g = np.zeros(size, dtype), np.zeros(size, dtype)
    cpu.momentum(p, g, v, 0.1, 0.25)
    assert v[0] == dtype(0.25) and p[0] == dtype(-0.25)  # normal values follow the rule
    assert not v[1:].any() and not p[1:].any()  # subnormal results are exactly zero


def _subnormal(a):
    a = np.asarray(a)
    return (a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny)


@pytest.mark.parametrize("N", [5, 2048])  # one share, and one per thread
@pytest.mark.parametrize("case,tensor", [("do", "dbo"), ("dz", "dz")])
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])  # sigmoid: dz = dh·h(1−h), h ≈ 0.73
def test_head_flushes_subnormal_gradients(N, case, tensor, activation):
    # a confident softmax, as late in training: the wrong classes get p = e^-margin
    H, K = 3, 10
    inputs = dict(Z=np.ones((N, H), np.float32), bh=np.zeros((1, H), np.float32),
                  Wo=np.zeros((H, K), np.float32), bo=np.zeros((1, K), np.float32),
                  y=np.zeros(N, np.int32))
    if case == "do":  # p − y itself is subnormal: e^-88 ≈ 6.1e-39
        inputs["bo"][0, 0] = 88.0
    else:  # do is normal (e^-60 ≈ 8.7e-27) but dh = do·Woᵀ is not
        inputs["bo"][0, 0] = 60.0
        inputs["Wo"][:, 1:] = 1e-14
    got = run_head(cpu.hidden_to_loss, inputs, (N,), N, activation)
    want = run_head(reference.hidden_to_loss, inputs, (N,), N, activation)
    assert _subnormal(want[tensor]).any()  # the reference keeps them: the case is real
    for name, a in got.items():
        assert not _subnormal(a).any(), name  # flushed to exactly zero
        np.testing.assert_allclose(a, want[name], rtol=TOL[np.float32], atol=1e-37)


# What a default-shaped run (MNIST, full batch, sparse products, relu, float32; two threads)
# compiles: each kernel it calls once, in one specialisation, and nothing else. A first run pays
# Numba's compilation of each (bench/first_run.sh); a new entry here is a new cost for every
# fresh install. All are serial functions, each called from Python, which runtime.run_shares
# splits between threads: no parallel (prange) kernel, and no serial twin.
DEFAULT_RUN_COMPILES = {
    "cpu._hidden_to_loss_tiles": 1, "cpu._reduce_partials": 1, "cpu._momentum_kernel": 1,
    "sparse._nonzeros_kernel": 1, "sparse._matmul_rows": 1, "sparse._matmul_t_rows": 1,
    "sparse._transpose_blocks_kernel": 1,
}


@pytest.mark.slow
def test_default_run_compiles_one_specialisation_per_kernel(tmp_path):
    import json
    import os
    import subprocess
    import sys

    # fresh processes on an empty Numba cache: the first compiles, the second loads from the cache
    script = ("import json, sys, fastmlp\n"
              "from fastmlp.cli import main\n"
              "from fastmlp.kernels import runtime\n"
              "code = main(['train', '--epochs', '1', '--train-size', '1100', '--hidden', '100',\n"
              "             '--out', sys.argv[1], '--quiet', '--no-progress'])\n"
              "assert not code, code\n"
              "print(json.dumps(runtime.compiled_signatures()))\n")
    env = dict(os.environ, NUMBA_NUM_THREADS="2", PYTHONWARNINGS="ignore",
               NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))

    def run(out: str) -> dict[str, list[int]]:
        done = subprocess.run([sys.executable, "-c", script, str(tmp_path / out)], env=env,
                              capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    first = run("first")
    assert {name: n for name, (n, _hits) in first.items()} == DEFAULT_RUN_COMPILES
    # the fused head was compiled by the run's second process (kernels/warmup.py) meanwhile,
    # and loaded from the cache it wrote; every other kernel compiled in the run itself
    loaded = {name for name, (_n, hits) in first.items() if hits}
    assert loaded == {"cpu._hidden_to_loss_tiles", "cpu._reduce_partials"}
    # a later run: every kernel loads from the cache
    later = run("later")
    assert later == {name: [1, 1] for name in DEFAULT_RUN_COMPILES}


def test_one_thread_policy():
    # one thread per grain, at least one, at most Numba's; below two grains one share
    from fastmlp.kernels import runtime

    T = numba.get_num_threads()
    assert runtime.threads_for(0, 512) == 1
    assert runtime.threads_for(2 * 512 - 1, 512) == 1
    assert runtime.threads_for(2 * 512, 512) == min(2, T)
    assert runtime.threads_for(10**9, 512) == T
    # the rules the kernels had before the policy was one function, unchanged
    assert runtime.threads_for(65_535, runtime.MOMENTUM_PARAMS) == 1  # serial momentum below 65 536
    assert runtime.threads_for(65_536, runtime.SPARSE_PRODUCTS) == min(2, T)
    assert runtime.threads_for(16_000, runtime.STEP_PRODUCTS) == min(2, T)
    assert runtime.threads_for(15_999, runtime.STEP_PRODUCTS) == 1
