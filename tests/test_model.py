"""The network's maths: gradients, numerical stability, the momentum rule, dtypes, API."""

import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from fastmlp.kernels import reference as ref

import fastmlp
from fastmlp.gradcheck import numerical_grads, rel_error
from fastmlp.model import PARAM_NAMES


def small_net(activation, fused=True, seed=0, F=6, H=5, K=4, N=9):
    rng = np.random.default_rng(seed)
    model = fastmlp.MLP(F, H, K, activation=activation, dtype="float64", seed=seed, fused=fused)
    model.bh = rng.normal(0, 0.5, (1, H))
    model.bo = rng.normal(0, 0.5, (1, K))
    x = rng.normal(0, 1, (N, F))
    y = rng.integers(0, K, N)
    return model, x, y


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradients_match_central_differences(activation, fused, seed):
    model, x, y = small_net(activation, fused=fused, seed=seed)
    _, analytic = model.loss_and_grads(x, y)
    numeric = numerical_grads(model, x, y)
    for name in PARAM_NAMES:
        err = rel_error(analytic[name], numeric[name])
        assert analytic[name].shape == model.views[name].shape
        assert err < 1e-7, f"{activation} {name}: relative error {err:.2e}"


def test_loss_and_grads_loss_is_mean_cross_entropy():
    model, x, y = small_net("relu")
    loss, _ = model.loss_and_grads(x, y)
    p = model.forward(x)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(len(y)), y])), rel=1e-12)


def test_softmax_directional_derivative():
    # as the UCSD assignment checks: (f(x + εv) − f(x − εv)) / 2ε against the analytic J·v
    rng = np.random.default_rng(3)
    o, v = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    eps = 1e-6

    def softmax(a):
        out = np.empty_like(a)
        ref.softmax_forward(out, a)
        return out

    p = softmax(o)
    numeric = (softmax(o + eps * v) - softmax(o - eps * v)) / (2 * eps)
    analytic = p * (v - (p * v).sum(axis=1, keepdims=True))
    assert rel_error(numeric, analytic) < 1e-8


def test_softmax_crossentropy_backward_directional_derivative():
    rng = np.random.default_rng(4)
    o, v = rng.normal(size=(6, 10)), rng.normal(size=(6, 10))
    y = rng.integers(0, 10, 6)
    eps = 1e-6

    def mean_loss(a):
        losses = np.empty(a.shape[0])
        ref.crossentropy_forward(losses, a, y)
        return losses.mean()

    probs = np.empty_like(o)
    ref.softmax_forward(probs, o)
    dlogits = np.empty_like(o)
    ref.softmax_crossentropy_backward(dlogits, probs, y, 1 / 6)
    numeric = (mean_loss(o + eps * v) - mean_loss(o - eps * v)) / (2 * eps)
    assert numeric == pytest.approx((dlogits * v).sum(), rel=1e-7)


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_activation_backward_directional_derivative(activation):
    rng = np.random.default_rng(5)
    z = rng.normal(size=(4, 9))
    z[np.abs(z) < 1e-3] = 0.5  # keep clear of the ReLU kink
    v, u = rng.normal(size=z.shape), rng.normal(size=z.shape)
    eps = 1e-6
    fwd, bwd = ref.ACTIVATION_FORWARD[activation], ref.ACTIVATION_BACKWARD[activation]

    def f(a):
        out = np.empty_like(a)
        fwd(out, a)
        return out

    # uᵀ (J v) by finite differences equals (Jᵀ u)ᵀ v from the backward function
    jv = (f(z + eps * v) - f(z - eps * v)) / (2 * eps)
    jtu = np.empty_like(z)
    bwd(jtu, u, f(z))
    assert (u * jv).sum() == pytest.approx((jtu * v).sum(), rel=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_and_crossentropy_are_finite_for_huge_logits(dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], dtype=dtype)
    probs = np.empty_like(logits)
    ref.softmax_forward(probs, logits)
    assert np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs, [[1, 0, 0], [1 / 3] * 3, [0.5, 0.5, 0]], atol=1e-6)
    # label 1 in row 0 has probability exp(−2e4): underflows to 0, yet the loss stays finite
    losses = np.empty(3, dtype=dtype)
    ref.crossentropy_forward(losses, logits, np.array([1, 0, 2]))
    assert np.all(np.isfinite(losses))
    # within a few ulps of the logits' magnitude (1e4), which is all float32 can resolve
    atol = 4 * 1e4 * np.finfo(dtype).eps
    np.testing.assert_allclose(losses, [2e4, np.log(3), 2e4 + np.log(2)], rtol=1e-6, atol=atol)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
def test_fused_head_loss_is_finite_when_a_probability_underflows(fused):
    model = fastmlp.MLP(3, 2, 3, dtype="float32", fused=fused)
    model.Wh = np.eye(3, 2, dtype=np.float32) * 1000
    model.Wo = np.array([[10, -10, 0], [0, 0, 0]], dtype=np.float32)
    x = np.array([[10.0, 0, 0]], dtype=np.float32)  # logits ≈ [1e5, −1e5, 0]
    loss, grads = model.loss_and_grads(x, np.array([1]))
    assert np.isfinite(loss) and loss == pytest.approx(2e5, rel=1e-3)
    assert all(np.all(np.isfinite(g)) for g in grads.values())


@pytest.mark.parametrize("device", ["cpu"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
def test_one_momentum_step_matches_hand_computed_numbers(device, fused):
    backend = fastmlp.get_backend(device, fused=fused)
    params = np.array([1.0, -2.0, 0.5])
    grads = np.array([0.2, -0.4, 0.0])
    velocity = np.array([1e-5, 1e-5, 1e-5])
    backend.momentum(params, grads, velocity, 0.1, 0.99)
    # v = 0.99·1e-5 + 0.1·g ; p = p − v
    np.testing.assert_allclose(velocity, [0.0200099, -0.0399901, 0.0000099], rtol=1e-12)
    np.testing.assert_allclose(params, [0.9799901, -1.9600099, 0.4999901], rtol=1e-12)


def test_zero_momentum_is_plain_gradient_descent():
    backend = fastmlp.get_backend("cpu")
    params, grads, velocity = np.array([1.0, 2.0]), np.array([0.5, -1.0]), np.array([3.0, 3.0])
    backend.momentum(params, grads, velocity, 0.1, 0.0)
    np.testing.assert_allclose(params, [0.95, 2.1])


@pytest.mark.parametrize("compiled", [False, True])
def test_float32_training_stays_float32(compiled):
    data = fastmlp.load_dataset("synthetic", n_train=64, n_valid=16, n_test=16, n_features=12,
                                n_classes=3, dtype="float32")
    model = fastmlp.MLP(12, 8, 3, dtype="float32")
    trainer = fastmlp.Trainer(model, data, lr=0.1, momentum=0.9, batch_size=16,
                              compiled=compiled)
    for _ in range(2):
        trainer.run_epoch()
    arrays = [model.params, model.grads, trainer.velocity, trainer.X, trainer.strategy.Z]
    # the per-step path's batch rows; the compiled loop reads X's rows itself
    arrays += [] if compiled else [trainer.strategy.Xb]
    arrays += [model.views[n] for n in PARAM_NAMES] + [model.grad_views[n] for n in PARAM_NAMES]
    assert all(a.dtype == np.float32 for a in arrays)
    _, grads = model.loss_and_grads(data.train.x, data.train.y)
    assert all(g.dtype == np.float32 for g in grads.values())
    assert model.forward(data.test.x).dtype == np.float32


@pytest.mark.parametrize("batch_size", [None, 7])
def test_fused_cpu_path_equals_reference_path(batch_size):
    data = fastmlp.load_dataset("synthetic", n_train=60, n_valid=20, n_test=15, n_features=30,
                                n_classes=10, dtype="float64", seed=3)
    results = []
    for fused in (True, False):
        model = fastmlp.MLP(30, 17, 10, dtype="float64", seed=4, fused=fused)
        history = fastmlp.train(model, data, epochs=5, lr=0.1, momentum=0.9,
                                batch_size=batch_size, seed=5)
        results.append((model.params.copy(), history))
    (p_fused, h_fused), (p_ref, h_ref) = results
    assert np.max(np.abs(p_fused - p_ref)) < 1e-10
    for key in ("train_loss", "valid_acc", "test_loss"):
        np.testing.assert_allclose(getattr(h_fused, key), getattr(h_ref, key), rtol=1e-10)


def test_parameters_are_views_of_one_flat_buffer_and_assignment_copies():
    model = fastmlp.MLP(4, 3, 2, dtype="float64")
    new = np.arange(12.0).reshape(4, 3)
    model.Wh = new
    assert np.shares_memory(model.Wh, model.params)
    np.testing.assert_array_equal(model.params[:12], new.ravel())
    new[0, 0] = 99  # a copy, not an alias
    assert model.Wh[0, 0] == 0
    with pytest.raises(ValueError, match="shape"):
        model.Wo = np.zeros((2, 3))


def test_xavier_and_he_initialisation_statistics():
    xavier = fastmlp.MLP(784, 1000, 10, init="xavier", seed=1)
    he = fastmlp.MLP(784, 1000, 10, init="he", seed=1)
    assert np.std(xavier.Wh) == pytest.approx(np.sqrt(2 / 1784), rel=0.01)
    assert np.std(he.Wh) == pytest.approx(np.sqrt(2 / 784), rel=0.01)
    assert abs(np.mean(xavier.Wh)) < 1e-3 and not xavier.bh.any() and not xavier.bo.any()
    again = fastmlp.MLP(784, 1000, 10, init="xavier", seed=1)
    np.testing.assert_array_equal(again.params, xavier.params)


def test_save_and_load_round_trip(tmp_path):
    model, x, _ = small_net("sigmoid")
    model.save(tmp_path / "m.npz")
    loaded = fastmlp.MLP.load(tmp_path / "m.npz")
    assert loaded.activation == "sigmoid" and loaded.dtype == "float64"
    np.testing.assert_array_equal(loaded.params, model.params)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_from_weights_copies_the_weights_and_draws_nothing(monkeypatch):
    model, x, _ = small_net("sigmoid")
    weights = model.state()
    # nothing is drawn: a model built from weights never calls the initialiser
    monkeypatch.setattr(fastmlp.MLP, "reset_parameters", lambda *a: pytest.fail("drew weights"))
    rebuilt = fastmlp.MLP.from_weights(weights, activation="sigmoid", init="he", seed=7)
    assert (rebuilt.n_in, rebuilt.n_hidden, rebuilt.n_out) == (model.n_in, model.n_hidden,
                                                                 model.n_out)
    assert rebuilt.dtype == "float64" and rebuilt.config()["init"] == "he"
    assert rebuilt.config()["seed"] == 7
    np.testing.assert_array_equal(rebuilt.params, model.params)
    np.testing.assert_array_equal(rebuilt.predict(x), model.predict(x))
    weights["Wh"][...] = 0  # a copy: the caller's arrays stay the caller's
    assert rebuilt.Wh.any()
    with pytest.raises(fastmlp.FastMLPError, match="2-D"):
        fastmlp.MLP.from_weights(dict(weights, Wh=weights["Wh"][0]))
    with pytest.raises(ValueError, match="bo must have shape"):
        fastmlp.MLP.from_weights(dict(weights, bo=np.zeros((1, 2))))


def test_load_ignores_a_config_that_is_not_a_dict(tmp_path):
    model, x, _ = small_net("relu")
    np.savez(tmp_path / "m.npz", **model.state(), config=np.array("[1, 2]"))
    loaded = fastmlp.MLP.load(tmp_path / "m.npz")
    assert loaded.saved_config == {} and loaded.activation == "relu"
    np.testing.assert_array_equal(loaded.params, model.params)


def test_load_of_what_is_no_fastmlp_model_says_so(tmp_path):
    data = tmp_path / "data.npz"
    np.savez(data, x_train=np.zeros((3, 2)), y_train=np.zeros(3))
    with pytest.raises(fastmlp.FastMLPError, match=r"data.npz is not a fastmlp model \(no Wh, "
                                                   r"bh, Wo, bo\)$"):
        fastmlp.MLP.load(data)
    model, _, _ = small_net("relu")
    state = model.state()
    np.savez(tmp_path / "no_wh.npz", **{k: v for k, v in state.items() if k != "Wh"})
    with pytest.raises(fastmlp.FastMLPError, match=r"no_wh.npz is not a fastmlp model \(no Wh\)$"):
        fastmlp.MLP.load(tmp_path / "no_wh.npz")
    np.savez(tmp_path / "shapes.npz", **dict(state, bh=np.zeros((2, model.n_hidden))))
    with pytest.raises(fastmlp.FastMLPError, match="holds inconsistent arrays: bh and bo"):
        fastmlp.MLP.load(tmp_path / "shapes.npz")
    with zipfile.ZipFile(tmp_path / "raw.npz", "w") as z:
        z.writestr("Wh.npy", b"raw bytes")
    with pytest.raises(fastmlp.FastMLPError, match="member Wh.npy: not NumPy data"):
        fastmlp.MLP.load(tmp_path / "raw.npz")
    nested = "[" * 100_000 + "]" * 100_000  # deeper than json's recursion allows
    np.savez(tmp_path / "nested.npz", **state, config=np.array(nested))
    with pytest.raises(fastmlp.FastMLPError, match="config is not valid JSON"):
        fastmlp.MLP.load(tmp_path / "nested.npz")


@pytest.mark.parametrize("path", [3, None, b"m.npz"], ids=["int", "None", "bytes"])
def test_load_of_a_path_of_the_wrong_type_is_a_fastmlp_error(path):
    with pytest.raises(fastmlp.FastMLPError, match="a model path must be a str or os.PathLike"):
        fastmlp.MLP.load(path)


def test_load_of_devices_and_unreadable_paths_is_one_line(tmp_path):
    os.mkfifo(tmp_path / "fifo.npz")  # never opened blocking: nobody writes to it
    cases = [("/dev/zero", "model file /dev/zero is a character device, not a regular file"),
             (tmp_path / "fifo.npz", "is a FIFO (named pipe), not a regular file"),
             (tmp_path / ("m" * 300), "File name too long"),
             (tmp_path / "missing.npz", "model file not found")]
    for path, fragment in cases:
        with pytest.raises(fastmlp.FastMLPError, match=re.escape(fragment)):
            fastmlp.MLP.load(path)


def test_load_takes_big_endian_and_fortran_ordered_weights(tmp_path):
    model, x, _ = small_net("relu")
    state = model.state()
    np.savez(tmp_path / "m.npz", **{k: np.asfortranarray(v.astype(v.dtype.newbyteorder(">")))
                                    for k, v in state.items()})
    loaded = fastmlp.MLP.load(tmp_path / "m.npz")
    assert loaded.dtype == model.dtype
    np.testing.assert_array_equal(loaded.params, model.params)


def test_trainer_does_not_copy_a_lone_training_split():
    # MLPClassifier.fit trains on one split: the trainer reads it in place, no second copy
    x = np.random.default_rng(0).random((30, 4)).astype(np.float32)
    empty = fastmlp.Split(np.empty((0, 4), np.float32), np.empty(0, np.int64))
    data = fastmlp.Dataset("one split", fastmlp.Split(x, np.arange(30) % 3), empty, empty,
                           n_classes=3)
    trainer = fastmlp.Trainer(fastmlp.MLP(4, 5, 3), data)
    assert np.shares_memory(trainer.X, x) and trainer.counts == (30, 0, 0)
    full = fastmlp.load_dataset("synthetic", n_train=20, n_valid=5, n_test=5, n_features=4)
    trainer = fastmlp.Trainer(fastmlp.MLP(4, 5, 10), full)  # three splits: one joined copy
    assert trainer.X.shape == (30, 4) and not np.shares_memory(trainer.X, full.train.x)


def test_bad_model_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(fastmlp.FastMLPError, match="cannot read model"):
        fastmlp.MLP.load(bad)
    with pytest.raises(fastmlp.FastMLPError, match="not found"):
        fastmlp.MLP.load(tmp_path / "missing.npz")


def test_labels_out_of_range_are_rejected():
    model, x, y = small_net("relu")
    with pytest.raises(ValueError, match="labels"):
        model.loss_and_grads(x, np.full_like(y, 4))


def test_mixing_array_libraries_is_a_type_error():
    class FakeCupyArray:  # stands in for a cupy.ndarray: what matters is the defining module
        __module__ = "cupy._core.core"
        shape = (2, 6)
        ndim = 2

    model, _, _ = small_net("relu")
    with pytest.raises(TypeError, match="cupy array but the model lives on 'cpu'"):
        model.forward(FakeCupyArray())


@pytest.mark.slow  # a subprocess, Dask or the simulator
def test_import_does_not_import_cupy_and_auto_picks_cpu_without_cupy():
    # CuPy is made unimportable (None in sys.modules) after the import check, so the test means
    # the same whether or not CuPy is installed here
    code = ("import sys, fastmlp; assert 'cupy' not in sys.modules; "
            "sys.modules['cupy'] = None; "
            "b = fastmlp.get_backend('auto'); print(b.name, '|', b.reason)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=120)
    name, reason = out.stdout.strip().split(" | ")
    assert name == "cpu" and reason.startswith("auto: CuPy is not importable"), reason
    assert reason.endswith("using the CPU"), reason


def test_cuda_without_cupy_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # CuPy missing, whether or not installed
    with pytest.raises(fastmlp.FastMLPError, match=r"fastmlp\[cuda12\]") as info:
        fastmlp.get_backend("cuda")
    assert "device 'cuda' is unavailable: CuPy is not importable" in str(info.value)


def test_unknown_device_and_cudasim_without_simulator():
    with pytest.raises(fastmlp.FastMLPError, match="unknown device"):
        fastmlp.get_backend("tpu")
    with pytest.raises(fastmlp.FastMLPError, match="NUMBA_ENABLE_CUDASIM=1"):
        fastmlp.get_backend("cudasim")


def test_loss_and_grads_of_no_rows_is_a_clear_error():
    model = fastmlp.MLP(3, 2, 2)
    with pytest.raises(ValueError, match="x has no rows"):  # was a ZeroDivisionError
        model.loss_and_grads(np.zeros((0, 3)), np.zeros(0, np.int64))


def test_a_backend_given_keeps_its_settings_unless_contradicted():
    unfused = fastmlp.get_backend("cpu", fused=False)
    assert fastmlp.MLP(3, 2, 2, device=unfused).backend is unfused  # fused left out: its own
    assert fastmlp.MLP(3, 2, 2, device=unfused, fused=False).backend is unfused
    assert fastmlp.MLP(3, 2, 2).backend.fused  # by name, fused by default
    # asked for the opposite: an error, not a silently different model
    with pytest.raises(fastmlp.FastMLPError, match="the backend given has fused=False, but "
                                                   "fused=True was asked for"):
        fastmlp.MLP(3, 2, 2, device=unfused, fused=True)
    with pytest.raises(fastmlp.FastMLPError, match="does not allow TF32"):
        fastmlp.get_backend(fastmlp.get_backend("cpu"), tf32=True)


def test_chunked_evaluation_equals_one_pass_and_minibatch_scratch_is_small():
    from fastmlp.train import split_stats

    data = fastmlp.load_dataset("synthetic", n_train=50, n_valid=23, n_test=17, n_features=9,
                                n_classes=4, dtype="float64", seed=7)
    model = fastmlp.MLP(9, 6, 4, dtype="float64", seed=1)
    trainer = fastmlp.Trainer(model, data, batch_size=5)
    X, y, ends = trainer.X, trainer.y, trainer.ends
    one_pass = split_stats(model, X, y, ends, np.empty((90, 6)))
    chunked = split_stats(model, X, y, ends, np.empty((7, 6)))  # chunks straddle split ends
    np.testing.assert_allclose(chunked, one_pass, rtol=1e-12)
    assert one_pass[:, 1].sum() == (model.predict(X) == y).sum()
    big = fastmlp.Trainer(model, fastmlp.load_dataset("synthetic", n_train=20000, n_valid=0,
                                                      n_test=0, n_features=9, n_classes=4),
                          batch_size=100)
    assert big.strategy.Z.shape[0] < 20000  # minibatch mode never holds an N×H buffer


@pytest.mark.slow  # a subprocess, Dask or the simulator
def test_warns_once_when_numpy_was_imported_first():
    code = ("import numpy, fastmlp\n"
            "d = fastmlp.load_dataset('synthetic', n_train=8, n_valid=0, n_test=0, n_features=3,"
            " n_classes=2)\n"
            "for _ in range(2): fastmlp.Trainer(fastmlp.MLP(3, 2, 2), d)\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    late = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=True, timeout=120)
    assert late.stderr.count("NumPy was imported before fastmlp") == 1
    first = subprocess.run([sys.executable, "-c", code.replace("numpy, fastmlp", "fastmlp, numpy")],
                           capture_output=True, text=True, env=env, check=True, timeout=120)
    assert "NumPy was imported before fastmlp" not in first.stderr


def test_forward_in_chunks_equals_one_pass(monkeypatch):
    model, x, _ = small_net("sigmoid", N=23)
    whole = model.forward(x)
    monkeypatch.setattr(sys.modules["fastmlp.model"], "CHUNK_ROWS", 5)
    np.testing.assert_array_equal(model.forward(x), whole)
    np.testing.assert_allclose(whole.sum(axis=1), 1.0, rtol=1e-12)


def test_host_buffers_start_on_a_cache_line():
    """Parameters, gradients, Z and the velocity start on 64-byte boundaries: the sparse
    products' row loads were measured 7-13 % slower from NumPy's 16-byte alignment."""
    from fastmlp.backend import CACHE_LINE, aligned_empty

    for dtype in ("float32", "float64"):
        for n in (1, 7, 12345):
            a = aligned_empty((n, 3), dtype)
            assert a.shape == (n, 3) and a.dtype == dtype and a.flags.c_contiguous
            assert a.ctypes.data % CACHE_LINE == 0
        model = fastmlp.MLP(784, 30, 10, dtype=dtype)
        data = fastmlp.load_dataset("synthetic", n_train=50, n_valid=10, n_test=10, dtype=dtype)
        trainer = fastmlp.Trainer(model, data, lr=0.1, momentum=0.9)
        for a in (model.params, model.grads, trainer.strategy.Z, trainer.velocity):
            assert a.ctypes.data % CACHE_LINE == 0
        assert np.all(model.bh == 0) and np.all(model.grads == 0)
        assert np.all(trainer.velocity == trainer.velocity[0])
    be = model.backend
    assert np.array_equal(be.zeros(5, "float32"), np.zeros(5, np.float32))
    assert np.array_equal(be.full((2, 2), 1.5, "float64"), np.full((2, 2), 1.5))
