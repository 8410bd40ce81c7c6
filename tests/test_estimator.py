"""MLPClassifier: scikit-learn estimator conventions (without scikit-learn), accuracy on easy
data, arbitrary labels, parameters, fitted state, pickling and input validation; and, where
scikit-learn is installed, its clone, is_classifier, Pipeline, GridSearchCV and cross_val_score."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys

import numpy as np
import pytest

import fastmlp
from fastmlp import MLPClassifier
from fastmlp.estimator import InvalidInputError, NotFittedError

FAST = dict(hidden=16, epochs=30, momentum=0.9, lr=0.1)


@pytest.fixture(scope="module")
def blobs():
    """Three well-separated classes in 12 dimensions: (X_train, y_train, X_test, y_test)."""
    d = fastmlp.load_dataset("synthetic", n_train=240, n_valid=0, n_test=120, n_features=12,
                             n_classes=3, seed=2, dtype="float64")
    return d.train.x, d.train.y, d.test.x, d.test.y


@pytest.mark.usefixtures("products")  # trains: once on each path of the products
def test_fit_predict_score_reach_high_accuracy(blobs):
    X, y, Xt, yt = blobs
    clf = MLPClassifier(**FAST)
    assert clf.fit(X, y) is clf
    assert clf.score(Xt, yt) >= 0.95
    assert clf.score(X, y) >= 0.95
    pred = clf.predict(Xt)
    assert pred.shape == (len(Xt),) and set(np.unique(pred)) <= {0, 1, 2}
    proba = clf.predict_proba(Xt)
    assert proba.shape == (len(Xt), 3) and isinstance(proba, np.ndarray)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], pred)
    # fitted attributes
    assert clf.n_features_in_ == 12 and list(clf.classes_) == [0, 1, 2]
    assert isinstance(clf.model_, fastmlp.MLP) and clf.model_.n_hidden == 16
    assert clf.history_.epochs == 30 and clf.history_.train_loss[-1] < clf.history_.train_loss[0]


def test_string_and_sparse_integer_labels_map_back(blobs):
    X, y, Xt, yt = blobs
    names = np.array(["setosa", "versicolor", "virginica"])
    clf = MLPClassifier(**FAST).fit(X, names[y].tolist())  # a plain list works too
    assert list(clf.classes_) == list(names)
    pred = clf.predict(Xt)
    assert pred.dtype.kind == "U" and set(pred) <= set(names)
    assert clf.score(Xt, names[yt]) >= 0.95
    odd = np.array([-7, 3, 42])
    clf2 = MLPClassifier(**FAST).fit(X, odd[y])
    assert list(clf2.classes_) == [-7, 3, 42]
    assert set(clf2.predict(Xt)) <= {-7, 3, 42} and clf2.score(Xt, odd[yt]) >= 0.95
    # same seed, same data: the encoding must not change what is learned
    np.testing.assert_array_equal(clf.model_.params, clf2.model_.params)


def test_whole_number_float_labels_are_classes(blobs):
    # floats are refused only when they are not whole numbers (a regression target)
    X, y, Xt, yt = blobs
    clf = MLPClassifier(**FAST).fit(X, y.astype(np.float32) * 2 - 1)
    assert clf.classes_.tolist() == [-1.0, 1.0, 3.0] and clf.classes_.dtype == np.float32
    assert clf.score(Xt, yt.astype(float) * 2 - 1) >= 0.95


@pytest.mark.usefixtures("products")  # trains: once on each path of the products
def test_two_classes_minibatch_float64(blobs):
    X, y, Xt, yt = blobs
    keep, keep_t = y < 2, yt < 2
    clf = MLPClassifier(hidden=8, epochs=10, batch_size=32, dtype="float64", momentum=0.9)
    clf.fit(X[keep], y[keep] == 1)  # boolean labels
    assert list(clf.classes_) == [False, True]
    assert clf.model_.dtype == "float64" and clf.predict_proba(Xt[keep_t]).dtype == np.float64
    assert clf.score(Xt[keep_t], yt[keep_t] == 1) >= 0.95


def test_get_params_set_params_round_trip():
    clf = MLPClassifier(hidden=7, lr=0.5)
    params = clf.get_params()
    assert list(params) == ["hidden", "activation", "init", "epochs", "lr", "momentum",
                            "batch_size", "dtype", "device", "seed", "velocity_init", "sparse"]
    assert params["hidden"] == 7 and params["lr"] == 0.5 and params["epochs"] == 200
    assert clf.get_params(deep=False) == params
    assert clf.set_params(epochs=3, activation="sigmoid") is clf
    assert clf.epochs == 3 and clf.get_params()["activation"] == "sigmoid"
    assert clf.set_params() is clf
    # every key is checked before any is set: a failed call changes nothing, not even the
    # valid keys that come before the bad one
    with pytest.raises(ValueError, match="Invalid parameter 'hiden'"):
        clf.set_params(epochs=5, hiden=3)
    assert clf.epochs == 3 and not hasattr(clf, "hiden")


@pytest.mark.usefixtures("products")  # trains: once on each path of the products
def test_clone_like_reconstruction_is_identical(blobs):
    X, y, Xt, _ = blobs
    clf = MLPClassifier(**FAST, seed=5)
    clone = type(clf)(**clf.get_params())
    assert clone.get_params() == clf.get_params() and repr(clone) == repr(clf)
    assert not hasattr(clone, "model_")
    np.testing.assert_array_equal(clf.fit(X, y).predict_proba(Xt),
                                  clone.fit(X, y).predict_proba(Xt))


def test_init_only_stores_and_repr_shows_non_defaults():
    assert repr(MLPClassifier()) == "MLPClassifier()"
    assert repr(MLPClassifier(hidden=64, device="cpu", lr=0.01)) == \
        "MLPClassifier(hidden=64, lr=0.01)"
    weird = MLPClassifier(hidden=-1, activation="tanh")  # stored as given, checked in fit
    assert weird.hidden == -1 and weird.activation == "tanh"
    assert "hidden=-1" in repr(weird)


def test_unfitted_use_is_a_clear_error(blobs):
    X, y, _, _ = blobs
    clf = MLPClassifier()
    for call in (clf.predict, clf.predict_proba, lambda a: clf.score(a, y)):
        with pytest.raises(NotFittedError, match="not fitted yet") as info:
            call(X)
        # like sklearn's NotFittedError it is a ValueError and an AttributeError (so hasattr-
        # style checks keep working), and a FastMLPError like every fastmlp error
        for kind in (fastmlp.FastMLPError, AttributeError, ValueError):
            assert isinstance(info.value, kind), kind


@pytest.mark.usefixtures("products")  # trains: once on each path of the products
def test_pickle_round_trip(blobs):
    X, y, Xt, _ = blobs
    clf = MLPClassifier(**FAST).fit(X, y)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(Xt), clf.predict_proba(Xt))
    assert again.get_params() == clf.get_params() and again.history_.epochs == 30
    unfitted = pickle.loads(pickle.dumps(MLPClassifier(hidden=3)))
    assert unfitted.hidden == 3 and not hasattr(unfitted, "model_")


def test_a_backend_device_survives_copies_and_pickling(blobs):
    # a Backend holds modules: copies share it, pickling rebuilds it through get_backend
    X, y, Xt, _ = blobs
    backend = fastmlp.get_backend("cpu", fused=False)
    assert copy.deepcopy(backend) is backend and copy.copy(backend) is backend
    again = pickle.loads(pickle.dumps(backend))
    assert (type(again), again.name, again.fused, again.reason) == (
        type(backend), "cpu", False, backend.reason)
    clf = MLPClassifier(**FAST, device=backend)
    assert copy.deepcopy(clf.get_params())["device"] is backend  # what clone() does
    clf.fit(X, y)
    assert clf.model_.backend is backend
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(Xt), clf.predict_proba(Xt))


BAD_FIT = {
    "1-D X": (lambda X, y: (X[:, 0], y), "2-D"),
    "3-D X": (lambda X, y: (X[:, :, None], y), "2-D"),
    "NaN in X": (lambda X, y: (np.where(X > 2.5, np.nan, X), y), "NaN"),
    "inf in X": (lambda X, y: (np.where(X > 2.5, np.inf, X), y), "infinite"),
    "float32 overflow": (lambda X, y: (X * 1e300, y), "NaN or infinite"),
    "length mismatch": (lambda X, y: (X, y[:-1]), "samples"),
    "2-D y": (lambda X, y: (X, np.stack([y, y], axis=1)), "1-D"),
    "one class": (lambda X, y: (X, np.zeros_like(y)), "at least 2 classes"),
    "NaN label": (lambda X, y: (X, np.where(y == 0, np.nan, y)), "NaN"),
    "string X": (lambda X, y: (X.astype(str), y), "real numbers"),
    "complex X": (lambda X, y: (X.astype(complex), y), "real numbers"),
    "ragged X": (lambda X, y: ([[1.0, 2.0], [3.0]], [0, 1]), "X cannot be read as an array"),
    "no features": (lambda X, y: (X[:, :0], y), "at least one"),
    "mixed labels": (lambda X, y: (X, np.array(["a", 1] * (len(y) // 2), dtype=object)),
                     "labels"),
    "continuous y": (lambda X, y: (X, X[:, 0] * 2.5 + 1), "Unknown label type: continuous"),
    "one fractional label": (lambda X, y: (X, np.where(np.arange(len(y)) == 7, 0.5, y)),
                             "continuous.*0.5"),
}


@pytest.mark.parametrize("case", list(BAD_FIT))
def test_bad_fit_input(case, blobs):
    make, fragment = BAD_FIT[case]
    X, y = make(*blobs[:2])
    with pytest.raises(ValueError, match=fragment) as info:
        MLPClassifier(**FAST).fit(X, y)
    assert isinstance(info.value, InvalidInputError)


@pytest.mark.parametrize("params, fragment", [
    (dict(hidden=0), "hidden"), (dict(epochs=2.5), "epochs"), (dict(lr=-1.0), "lr"),
    (dict(momentum=float("nan")), "momentum"), (dict(activation="tanh"), "activation"),
    (dict(dtype="float16"), "dtype"), (dict(device="tpu"), "device"),
    (dict(batch_size=0), "batch_size"), (dict(seed=-1), "seed"), (dict(init="zeros"), "init"),
])
def test_bad_hyper_parameters_fail_in_fit(params, fragment, blobs):
    clf = MLPClassifier(**{**FAST, **params})  # construction never fails
    with pytest.raises(ValueError, match=fragment):
        clf.fit(*blobs[:2])


def test_batch_larger_than_data_is_clipped_with_a_warning(blobs):
    X, y, _, _ = blobs
    clf = MLPClassifier(hidden=4, epochs=2, batch_size=10_000)
    with pytest.warns(UserWarning, match="clipped to 240"):
        clf.fit(X, y)
    assert clf.history_.config["run"]["batch_size"] == 240


def test_score_with_sample_weight(blobs):
    X, y, Xt, yt = blobs
    clf = MLPClassifier(**FAST).fit(X, y)
    wrong = np.arange(len(yt)) < 10
    labels = np.where(wrong, (clf.predict(Xt) + 1) % 3, clf.predict(Xt))  # 10 errors exactly
    assert clf.score(Xt, labels) == pytest.approx(1 - 10 / len(yt))
    assert clf.score(Xt, labels, sample_weight=None) == clf.score(Xt, labels)
    assert clf.score(Xt, labels, sample_weight=np.ones(len(yt))) == clf.score(Xt, labels)
    weights = np.where(wrong, 3.0, 1.0)  # the wrong ones count three times
    expected = (len(yt) - 10) / (len(yt) - 10 + 30)
    assert clf.score(Xt, labels, sample_weight=weights) == pytest.approx(expected)
    assert clf.score(Xt, labels, sample_weight=(~wrong).tolist()) == 1.0  # a list of bools
    for bad, fragment in [(np.ones(len(yt) - 1), "shape"), (np.ones((len(yt), 2)), "shape"),
                          (np.zeros(len(yt)), "positive, finite sum"),
                          (np.full(len(yt), 1e308), "positive, finite sum"),
                          (-np.ones(len(yt)), ">= 0"), (np.full(len(yt), np.nan), "finite"),
                          (np.array(["1"] * len(yt)), "real numbers")]:
        with pytest.raises(InvalidInputError, match=fragment):
            clf.score(Xt, labels, sample_weight=bad)


def test_predict_checks_its_input(blobs):
    X, y, Xt, _ = blobs
    clf = MLPClassifier(**FAST).fit(X, y)
    with pytest.raises(ValueError, match="X has 11 features, but MLPClassifier is expecting 12"):
        clf.predict(Xt[:, :11])
    with pytest.raises(ValueError, match="NaN"):
        clf.predict_proba(np.full_like(Xt, np.nan))
    with pytest.raises(ValueError, match="samples"):
        clf.score(Xt, np.zeros(3))


# -- with scikit-learn (these skip where it is not installed) -------------------------------------


@pytest.fixture
def sklearn():
    return pytest.importorskip("sklearn", reason="scikit-learn is not installed (it is in the "
                                                 "test extra: pip install -e '.[test]')")


def test_works_in_scikit_learn_meta_estimators(sklearn, blobs):
    # scikit-learn >= 1.6 reads __sklearn_tags__, not _estimator_type: without it all of
    # these raised AttributeError
    from sklearn.base import clone, is_classifier
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y, Xt, yt = blobs
    clf = MLPClassifier(**FAST)
    assert is_classifier(clf)
    copy = clone(clf)
    assert copy is not clf and copy.get_params() == clf.get_params()
    search = GridSearchCV(clf, {"hidden": [4, 8]}, cv=2, error_score="raise").fit(X, y)
    assert search.best_params_["hidden"] in (4, 8) and search.score(Xt, yt) >= 0.9
    pipe = make_pipeline(StandardScaler(), MLPClassifier(**FAST)).fit(X, y)
    assert pipe.predict(Xt).shape == (len(Xt),) and pipe.score(Xt, yt) >= 0.9
    scores = cross_val_score(MLPClassifier(**FAST), X, y, cv=3, error_score="raise")
    assert scores.shape == (3,) and np.isfinite(scores).all()


def test_clone_keeps_a_backend_device(sklearn, blobs):
    from sklearn.base import clone

    backend = fastmlp.get_backend("cpu")
    twin = clone(MLPClassifier(**FAST, device=backend))
    assert twin.device is backend
    X, y, Xt, yt = blobs
    assert twin.fit(X, y).score(Xt, yt) >= 0.95


def test_not_fitted_error_is_also_scikit_learns(sklearn, blobs):
    from sklearn.exceptions import NotFittedError as SklearnNotFittedError

    X = blobs[0]
    with pytest.raises(SklearnNotFittedError, match="not fitted yet") as info:
        MLPClassifier().predict(X)
    assert isinstance(info.value, NotFittedError)  # still fastmlp's, as before
    # the class is made at run time; its instances must still pickle (e.g. from a worker)
    again = pickle.loads(pickle.dumps(info.value))
    assert isinstance(again, SklearnNotFittedError) and isinstance(again, NotFittedError)
    assert again.args == info.value.args


def test_not_fitted_error_without_scikit_learn(monkeypatch, blobs):
    from fastmlp import estimator

    monkeypatch.setitem(sys.modules, "sklearn", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "sklearn.exceptions", None)
    estimator._not_fitted_error_class.cache_clear()
    try:
        with pytest.raises(NotFittedError) as info:
            MLPClassifier().predict(blobs[0])
        assert type(info.value) is NotFittedError
    finally:
        estimator._not_fitted_error_class.cache_clear()


@pytest.mark.slow  # a subprocess, Dask or the simulator
def test_importing_fastmlp_does_not_import_scikit_learn():
    code = "import sys, fastmlp; assert 'sklearn' not in sys.modules, 'sklearn imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_scipy_sparse_input_trains_and_predicts_as_dense(products: str) -> None:
    sp = pytest.importorskip("scipy.sparse", reason="scipy comes with scikit-learn")
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(60, 30)) * (rng.uniform(size=(60, 30)) < 0.15)
    y = rng.integers(0, 3, 60)
    dense = MLPClassifier(hidden=8, epochs=5, lr=0.1, momentum=0.9).fit(X, y)
    csr = MLPClassifier(hidden=8, epochs=5, lr=0.1, momentum=0.9).fit(sp.csr_matrix(X), y)
    # auto's choice
    assert csr.history_.config["plan"]["products_reason"].startswith(f"{products}: density")
    np.testing.assert_array_equal(csr.model_.params, dense.model_.params)
    np.testing.assert_array_equal(csr.predict_proba(sp.csr_matrix(X)), dense.predict_proba(X))
    with pytest.raises(InvalidInputError, match="sparse must be one of auto, on, off"):
        MLPClassifier(sparse="yes").fit(X, y)
    off = MLPClassifier(hidden=8, epochs=5, lr=0.1, momentum=0.9, sparse="off").fit(X, y)
    assert off.history_.config["plan"]["products_reason"] == "dense (asked for)"
    np.testing.assert_allclose(off.model_.params, dense.model_.params, rtol=1e-5, atol=1e-7)


def test_scikit_learn_estimator_checks_all_pass(sklearn):
    # every check of the installed scikit-learn, at small settings (a few seconds); the tags
    # say sparse X is taken (fit expands it), and the messages use the words the checks expect
    import inspect

    from sklearn.utils import get_tags
    from sklearn.utils.estimator_checks import check_estimator

    clf = MLPClassifier(hidden=8, epochs=20, momentum=0.9)
    assert get_tags(clf).input_tags.sparse
    if "on_fail" not in inspect.signature(check_estimator).parameters:  # before 1.6
        check_estimator(clf)  # raises at the first failing check
        return
    results = check_estimator(clf, on_fail=None)
    failed = {r["check_name"]: repr(r["exception"]) for r in results
              if r["status"] == "failed"}
    assert not failed
    assert sum(r["status"] == "passed" for r in results) >= 40
