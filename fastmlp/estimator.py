"""A scikit-learn-style classifier around :class:`MLP` and :func:`train`.

:class:`MLPClassifier` follows the scikit-learn estimator conventions (``__init__`` only stores
its arguments; ``get_params`` / ``set_params``; ``fit`` returns ``self``; fitted attributes end in
``_``; ``predict``, ``predict_proba``, ``score``) without importing scikit-learn, so it works in
``Pipeline``, ``GridSearchCV`` and ``clone`` where scikit-learn is installed, and on its own where
it is not.

>>> from fastmlp import MLPClassifier
>>> clf = MLPClassifier(hidden=64, epochs=50).fit(X_train, y_train)   # doctest: +SKIP
>>> clf.score(X_test, y_test)                                         # doctest: +SKIP
0.97
"""

from __future__ import annotations

import functools
import inspect
import warnings
from typing import Any

import numpy as np

from .backend import Backend
from .datasets import Dataset, Split
from .errors import FastMLPError, InvalidInputError, InvalidTypeError
from .model import DTYPES, MLP
from .settings import TrainSettings, check_settings
from .train import History, train

__all__ = ["InvalidInputError", "MLPClassifier", "NotFittedError"]


class NotFittedError(FastMLPError, ValueError, AttributeError):
    """An estimator was used before ``fit`` (like ``sklearn.exceptions.NotFittedError``, it is
    both a ValueError and an AttributeError, so ``hasattr``-style checks keep working).

    Where scikit-learn is installed, the error raised is also a
    ``sklearn.exceptions.NotFittedError`` (a subclass of both, made when first raised)."""


@functools.cache
def _not_fitted_error_class() -> type[NotFittedError]:
    """:class:`NotFittedError`, joined with scikit-learn's where scikit-learn imports; built on
    first use, so importing fastmlp never imports scikit-learn."""
    try:
        from sklearn.exceptions import NotFittedError as SklearnNotFittedError
    except Exception:  # not installed, or an install broken in any way: ours alone
        return NotFittedError

    def __reduce__(self: NotFittedError) -> tuple[Any, tuple[Any, ...]]:
        # a class made here cannot be found by name: unpickle through the factory instead
        return _not_fitted_error, self.args

    return type("NotFittedError", (NotFittedError, SklearnNotFittedError),
                {"__module__": __name__, "__doc__": NotFittedError.__doc__,
                 "__reduce__": __reduce__})


def _data_conversion_warning() -> type[Warning]:
    """scikit-learn's DataConversionWarning where scikit-learn imports (what its checks and
    filters look for), else UserWarning, of which it is a subclass."""
    try:
        from sklearn.exceptions import DataConversionWarning
    except Exception:  # not installed, or broken: the base class
        return UserWarning
    return DataConversionWarning


def _not_fitted_error(*args: Any) -> NotFittedError:
    """A :class:`NotFittedError` that ``except sklearn.exceptions.NotFittedError`` catches too,
    where scikit-learn is installed."""
    return _not_fitted_error_class()(*args)


class MLPClassifier:
    """The course two-layer perceptron as a classifier: X (N, F) → ``hidden`` units → softmax
    over the classes found in ``y``, trained by full-batch (or minibatch) momentum descent.

    Parameters mirror ``fastmlp train``: ``hidden`` units, ``activation`` ("relu" | "sigmoid"),
    ``init`` ("xavier" | "he"), ``epochs``, ``lr``, ``momentum``, ``batch_size`` (None = full
    batch; larger than the data is clipped to it, with a warning, as scikit-learn does),
    ``dtype`` ("float32" | "float64"), ``device`` ("cpu" | "cuda" | "auto" | "cudasim"), ``seed``
    (initial weights and minibatch order), ``velocity_init`` (initial velocity entries, a
    finite number >= 0), ``sparse`` ("auto" | "on" | "off": full-batch products over the inputs'
    nonzeros, or around each feature's most frequent value, see
    :func:`fastmlp.sparse.resolve_sparse`). X may be a ``scipy.sparse`` matrix,
    as for scikit-learn's MLPClassifier (it is expanded to a dense host array first).

    Fitted attributes: ``model_`` (the :class:`MLP`), ``history_`` (:class:`History`),
    ``classes_`` (sorted labels), ``n_features_in_``.
    """

    _estimator_type = "classifier"  # what scikit-learn < 1.6's is_classifier() looks at

    def __init__(self, hidden: int = 1000, activation: str = "relu", init: str = "xavier",
                 epochs: int = 200, lr: float = 0.1, momentum: float = 0.99,
                 batch_size: int | None = None, dtype: str = "float32",
                 device: str | Backend = "cpu", seed: int = 0, velocity_init: float = 1e-5,
                 sparse: str = "auto"):
        # scikit-learn convention: store the arguments untouched, validate in fit()
        self.hidden = hidden
        self.activation = activation
        self.init = init
        self.epochs = epochs
        self.lr = lr
        self.momentum = momentum
        self.batch_size = batch_size
        self.dtype = dtype
        self.device = device
        self.seed = seed
        self.velocity_init = velocity_init
        self.sparse = sparse

    def __sklearn_tags__(self) -> Any:
        """scikit-learn >= 1.6's estimator tags (what ``ClassifierMixin`` on ``BaseEstimator``
        gives): a classifier that needs ``y`` and takes 2-D, NaN-free X, dense or
        ``scipy.sparse`` (which ``fit`` expands). Only scikit-learn calls this, so scikit-learn
        is imported here, never when fastmlp is."""
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags(), input_tags=InputTags(sparse=True))

    # -- parameters -----------------------------------------------------------------------------
    @classmethod
    def _get_param_names(cls) -> list[str]:
        """The ``__init__`` argument names, in signature order."""
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters as a dict (``deep`` is accepted for compatibility; there
        are no nested estimators)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any) -> MLPClassifier:
        """Set constructor parameters; an unknown name raises ValueError. Returns ``self``."""
        valid = self._get_param_names()
        for key in params:
            if key not in valid:
                raise ValueError(f"Invalid parameter {key!r} for estimator {self}. "
                                 f"Valid parameters are: {sorted(valid)!r}.")
        for key, value in params.items():
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__)
                    .parameters.values() if p.name != "self"}
        # compared by repr, as scikit-learn does in effect: robust to NaN and NumPy scalars
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if repr(v) != repr(
            defaults[k])]
        return f"{type(self).__name__}({', '.join(changed)})"

    def _validate_params(self, n_rows: int) -> int | None:
        """Check every hyper-parameter by the rules every entry point shares
        (:mod:`fastmlp.settings`); return the batch size to use."""
        params = self.get_params()
        if isinstance(self.device, Backend):  # a backend of the caller's own: nothing to check
            del params["device"]
        check_settings(params, lambda name: f"MLPClassifier: {name}")
        batch = self.batch_size
        if batch is not None and batch > n_rows:
            warnings.warn(f"batch_size {batch} is larger than the {n_rows} training rows; "
                          f"it is clipped to {n_rows}", UserWarning, stacklevel=3)
            return n_rows
        return None if batch is None else int(batch)

    # -- fitting --------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any) -> MLPClassifier:
        """Train a fresh network on X (N, F) and labels y (N,) of any kind (ints, strings, ...;
        floats only when they are whole numbers: a continuous y is refused).

        The classes are ``np.unique(y)``; at least two are needed. All rows are training rows
        (no validation split is held out). Returns ``self``.
        """
        x = _check_X(X, self.dtype if self.dtype in DTYPES else "float64")
        labels = _check_y(y, len(x), warn_column=True)
        _check_discrete(labels)
        try:
            classes, encoded = np.unique(labels, return_inverse=True)
        except TypeError as exc:  # e.g. a mix of strings and numbers
            raise InvalidInputError(f"y: labels cannot be sorted ({exc})") from None
        if len(classes) < 2:  # "1 class": the wording scikit-learn's checks look for
            raise InvalidInputError(f"y: need samples of at least 2 classes, got 1 class: "
                                    f"{classes.tolist()!r}")
        batch = self._validate_params(len(x))
        n, f = x.shape
        model = MLP(f, self.hidden, len(classes), activation=self.activation, init=self.init,
                    dtype=self.dtype, device=self.device, seed=self.seed)
        empty = Split(np.empty((0, f), dtype=x.dtype), np.empty(0, dtype=np.int64))
        data = Dataset("MLPClassifier.fit", Split(x, encoded.reshape(-1).astype(np.int64)),
                       empty, empty, n_classes=len(classes))
        settings = TrainSettings(epochs=int(self.epochs), lr=float(self.lr),
                                 momentum=float(self.momentum), batch_size=batch,
                                 velocity_init=float(self.velocity_init), seed=int(self.seed),
                                 sparse=self.sparse)
        history = train(model, data, settings)
        self.model_: MLP = model
        self.history_: History = history
        self.classes_: np.ndarray = classes
        self.n_features_in_: int = f
        return self

    # -- prediction -----------------------------------------------------------------------------
    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise _not_fitted_error(f"This {type(self).__name__} instance is not fitted yet; "
                                    f"call 'fit' with appropriate arguments before using this "
                                    f"estimator.")

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (N, n_classes) as a host NumPy array; columns follow
        ``classes_``, rows sum to 1."""
        self._check_fitted()
        x = _check_X(X, self.model_.dtype)
        if x.shape[1] != self.n_features_in_:
            raise InvalidInputError(f"X has {x.shape[1]} features, but {type(self).__name__} "
                                    f"is expecting {self.n_features_in_} features as input")
        be = self.model_.backend
        return be.to_host(self.model_.forward(be.asarray(x)))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels (N,), drawn from ``classes_`` (so of the same kind as ``y``)."""
        proba = self.predict_proba(X)  # first: it raises NotFittedError before classes_ is read
        return self.classes_[proba.argmax(axis=1)]

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean accuracy of ``predict(X)`` against ``y``; with ``sample_weight`` (N,) (finite,
        >= 0, not all 0) the weighted mean, as scikit-learn's ``accuracy_score``."""
        pred = self.predict(X)
        labels = _check_y(y, len(pred))
        correct = pred == labels
        if sample_weight is None:
            return float(np.mean(correct))
        return float(np.average(correct, weights=_check_sample_weight(sample_weight, len(pred))))

    # -- pickling: the backend holds modules, so keep the weights, rebuild the model ------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        model = state.pop("model_", None)
        if model is not None:
            state["_model_state"] = {"config": model.config(), "weights": model.state(),
                                     "device": model.backend.name,
                                     "fused": model.backend.fused}
        if isinstance(state.get("device"), Backend):
            state["device"] = state["device"].name
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        saved = state.pop("_model_state", None)
        self.__dict__.update(state)
        if saved is None:
            return
        c = saved["config"]
        kwargs = dict(activation=c["activation"], init=c["init"], seed=c["seed"],
                      fused=saved["fused"])
        try:
            self.model_ = MLP.from_weights(saved["weights"], device=saved["device"], **kwargs)
        except FastMLPError as exc:  # pickled on a GPU machine, unpickled without one
            warnings.warn(f"cannot rebuild the model on {saved['device']!r} ({exc}); using the "
                          f"CPU", UserWarning, stacklevel=2)
            self.model_ = MLP.from_weights(saved["weights"], device="cpu", **kwargs)


# -- input validation ---------------------------------------------------------------------------


def _check_X(X: Any, dtype: str) -> np.ndarray:
    """X as a C-contiguous (N, F) host array of ``dtype``, finite, N >= 1, F >= 1."""
    if hasattr(X, "__cuda_array_interface__") and hasattr(X, "get"):
        X = X.get()  # a CuPy array: the estimator takes host data, like scikit-learn
    elif hasattr(X, "tocsr") and hasattr(X, "toarray"):  # scipy.sparse, never imported here
        X = X.toarray()
    try:
        arr = np.asarray(X)
    except (TypeError, ValueError) as exc:  # ragged lists and the like
        raise InvalidInputError(f"X cannot be read as an array: {exc}") from None
    if arr.dtype.kind == "O":  # lists holding numbers as objects: try to read them as floats
        try:
            arr = arr.astype(np.float64)
        except TypeError as exc:  # a dict, say: a TypeError, NumPy's words, as scikit-learn
            raise InvalidTypeError(f"X must hold real numbers: {exc}") from None
        except ValueError as exc:  # a string that is not a number
            raise InvalidInputError(f"X must hold real numbers: {exc}") from None
    if arr.dtype.kind == "c":  # scikit-learn's wording
        raise InvalidInputError(f"Complex data not supported: X must hold real numbers, got "
                                f"dtype {arr.dtype}")
    if arr.dtype.kind not in "biuf":
        raise InvalidInputError(f"X must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise InvalidInputError(f"X must be a 2-D array (n_samples, n_features), got shape "
                                f"{arr.shape}. Reshape your data either using X.reshape(-1, 1) "
                                f"if it has one feature or X.reshape(1, -1) if it is one sample")
    for axis, what in ((0, "sample"), (1, "feature")):  # scikit-learn's wording
        if arr.shape[axis] < 1:
            raise InvalidInputError(f"Found array with 0 {what}(s) (shape={arr.shape}) while a "
                                    f"minimum of 1 is required: X needs at least one sample "
                                    f"and one feature")
    with np.errstate(over="ignore"):  # an overflow to inf is reported just below
        out = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(out).all():
        raise InvalidInputError(f"X contains NaN or infinite values (as {dtype})")
    return out


def _check_y(y: Any, n: int, warn_column: bool = False) -> np.ndarray:
    """y as a 1-D host array of length ``n`` (an (n, 1) column is accepted and flattened, with
    scikit-learn's DataConversionWarning when ``warn_column``)."""
    if y is None:  # scikit-learn's wording
        raise InvalidInputError("MLPClassifier requires y to be passed, but the target y is None")
    if hasattr(y, "__cuda_array_interface__") and hasattr(y, "get"):
        y = y.get()
    try:
        arr = np.asarray(y)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"y cannot be read as an array: {exc}") from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        if warn_column:  # scikit-learn's words: its filters and checks look for them
            warnings.warn("A column-vector y was passed when a 1d array was expected. Please "
                          "change the shape of y to (n_samples,), for example using ravel().",
                          _data_conversion_warning(), stacklevel=3)
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise InvalidInputError(f"y must be 1-D (n_samples,), got shape {arr.shape}")
    if len(arr) != n:
        raise InvalidInputError(f"X has {n} samples but y has {len(arr)}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InvalidInputError("y contains NaN or infinite labels")
    return arr


def _check_sample_weight(sample_weight: Any, n: int) -> np.ndarray:
    """sample_weight as a float64 (n,) array of finite weights >= 0 with a positive, finite
    sum (np.average divides by it)."""
    try:
        weights = np.asarray(sample_weight)
    except (TypeError, ValueError) as exc:  # ragged lists and the like
        raise InvalidInputError(f"sample_weight cannot be read as an array: {exc}") from None
    if weights.dtype.kind not in "biuf":
        raise InvalidInputError(f"sample_weight must hold real numbers, got dtype "
                                f"{weights.dtype}")
    if weights.shape != (n,):
        raise InvalidInputError(f"sample_weight must have shape ({n},) like y, got shape "
                                f"{weights.shape}")
    weights = weights.astype(np.float64)
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise InvalidInputError("sample_weight must be finite and >= 0")
    with np.errstate(over="ignore"):  # an overflow to inf is reported just below
        total = weights.sum()
    if not 0 < total < np.inf:
        raise InvalidInputError(f"sample_weight must have a positive, finite sum, got {total}")
    return weights


def _check_discrete(labels: np.ndarray) -> None:
    """Float labels must be whole numbers (as :func:`fastmlp.datasets` requires of saved labels):
    otherwise y is a regression target, and each distinct value would become a class."""
    if labels.dtype.kind != "f":
        return
    fractional = labels[labels != np.round(labels)]  # finite already: _check_y refuses NaN, inf
    if fractional.size:
        raise InvalidInputError(
            f"Unknown label type: continuous (y holds non-integer values such as "
            f"{fractional[0].item()!r}); a classifier needs discrete class labels, not a "
            f"regression target"
        )
