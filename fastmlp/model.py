"""The course network: x (N×F) → Wh, bh → relu/sigmoid → Wo, bo → softmax (N×K).

Parameters live in one flat buffer with per-tensor views (``Wh, bh, Wo, bo``), and so do their
gradients, so the optimiser is one pass over one buffer. Forward and backward are written once
against the backend: two big products and the fused head between them
(:meth:`MLP.forward_backward`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from .backend import Backend, get_backend
from .errors import FastMLPError, InvalidInputError, InvalidTypeError, is_int, os_errors
from .jsonsafe import json_clean
from .kernels import ACTIVATIONS
from .kernels import reference as ref
from .npyfile import NumpyFileError, read_npz

PARAM_NAMES = ("Wh", "bh", "Wo", "bo")
INITS = ("xavier", "he")
DTYPES = ("float32", "float64")
CHUNK_ROWS = 8192  # rows per forward pass outside the training step: bounds the rows×H buffer


def param_shapes(n_in: int, n_hidden: int, n_out: int) -> dict[str, tuple[int, int]]:
    """Shapes of Wh (F×H), bh (1×H), Wo (H×K), bo (1×K), in buffer order."""
    return {"Wh": (n_in, n_hidden), "bh": (1, n_hidden), "Wo": (n_hidden, n_out), "bo": (1, n_out)}


def flat_views(buffer: Any, shapes: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """Views of a flat buffer (P,), one per tensor, laid out back to back in ``shapes`` order."""
    views, offset = {}, 0
    for name, shape in shapes.items():
        size = math.prod(shape)
        views[name] = buffer[offset:offset + size].reshape(shape)
        offset += size
    return views


class _Param:
    """Attribute ``model.Wh`` etc.: reads a view of the flat buffer; assignment copies in after a
    shape check, so the flat buffer (and the optimiser's view of it) stays the one storage."""

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, model, owner=None):
        return self if model is None else model.views[self.name]

    def __set__(self, model, value):
        target = model.views[self.name]
        value = model.backend.check(value, self.name) if hasattr(value, "shape") else value
        shape = tuple(getattr(value, "shape", ()))
        if shape != target.shape:
            raise InvalidInputError(f"{self.name} must have shape {target.shape}, got {shape}")
        target[...] = value


class MLP:
    """Two-layer perceptron with parameters ``Wh (F×H), bh (1×H), Wo (H×K), bo (1×K)``.

    ``activation`` "relu" | "sigmoid"; ``init`` "xavier" (N(0, 2/(fan_in+fan_out))) | "he"
    (N(0, 2/fan_in)), biases zero, drawn from ``seed``; ``dtype`` "float32" | "float64" for every
    array; ``device`` "cpu" | "cuda" | "cudasim" | "auto" or a :class:`Backend`; ``fused``
    (None: the Backend's own setting, else True) picks the fused kernels or the NumPy references.
    """

    Wh = _Param()
    bh = _Param()
    Wo = _Param()
    bo = _Param()

    def __init__(self, n_in: int, n_hidden: int, n_out: int, *, activation: str = "relu",
                 init: str = "xavier", dtype: str = "float32", device: str | Backend = "cpu",
                 seed: int = 0, fused: bool | None = None):
        self._allocate(n_in, n_hidden, n_out, activation, init, dtype, device, seed, fused)
        self.reset_parameters(seed)

    @classmethod
    def from_weights(cls, weights: Mapping[str, Any], *, activation: str = "relu",
                     init: str = "xavier", device: str | Backend = "cpu", seed: int = 0,
                     fused: bool | None = None) -> MLP:
        """A model holding copies of ``weights``: ``Wh`` (F×H), ``bh`` (1×H), ``Wo`` (H×K),
        ``bo`` (1×K), host arrays or arrays of ``device``. F, H, K and the dtype come from Wh and
        Wo; ``init`` and ``seed`` are only recorded in the config (nothing is drawn).
        A missing tensor, a wrong shape or a non-float array raises :class:`InvalidInputError`."""
        if not isinstance(weights, Mapping):
            raise InvalidTypeError(f"weights must be a mapping of {', '.join(PARAM_NAMES)} to "
                                   f"arrays, got {type(weights).__name__}")
        missing = [name for name in PARAM_NAMES if name not in weights]
        if missing:
            raise InvalidInputError(f"weights lack {', '.join(missing)} (a model needs "
                                    f"{', '.join(PARAM_NAMES)})")
        # lists and the like become host arrays; device arrays stay where they are
        arrays = {name: weights[name] if hasattr(weights[name], "shape")
                  else np.asarray(weights[name]) for name in PARAM_NAMES}
        for name, a in arrays.items():
            if np.dtype(a.dtype).name not in DTYPES:  # int or string weights: not a model's
                raise InvalidInputError(f"{name} has dtype {np.dtype(a.dtype).name}; weights "
                                        f"must be {' or '.join(DTYPES)} arrays")
        Wh, Wo = arrays["Wh"], arrays["Wo"]
        if Wh.ndim != 2 or Wo.ndim != 2:
            raise InvalidInputError(f"Wh and Wo must be 2-D arrays, got shapes {Wh.shape} and "
                                    f"{Wo.shape}")
        model = cls.__new__(cls)
        model._allocate(Wh.shape[0], Wh.shape[1], Wo.shape[1], activation, init, str(Wh.dtype),
                        device, seed, fused)
        for name in PARAM_NAMES:
            setattr(model, name, model.backend.asarray(arrays[name]))
        return model

    def _allocate(self, n_in, n_hidden, n_out, activation, init, dtype, device, seed,
                  fused) -> None:
        # checks the configuration; zeroed flat parameter and gradient buffers with their views
        for name, value in (("n_in", n_in), ("n_hidden", n_hidden), ("n_out", n_out)):
            if not is_int(value) or value < 1:
                raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
        if n_out < 2:
            raise InvalidInputError(f"n_out must be at least 2 classes, got {n_out}")
        if not is_int(seed) or seed < 0:  # what np.random.default_rng takes
            raise InvalidInputError(f"seed must be an integer >= 0, got {seed!r}")
        if fused not in (None, True, False):
            raise InvalidInputError(f"fused must be None, True or False, got {fused!r}")
        if activation not in ACTIVATIONS:
            choices = " or ".join(ACTIVATIONS)
            raise InvalidInputError(f"unknown activation {activation!r}; choose {choices}")
        if init not in INITS:
            raise InvalidInputError(f"unknown init {init!r}; choose {' or '.join(INITS)}")
        if str(dtype) not in DTYPES:
            raise InvalidInputError(f"unknown dtype {dtype!r}; choose {' or '.join(DTYPES)}")
        self.n_in, self.n_hidden, self.n_out = int(n_in), int(n_hidden), int(n_out)
        self.activation, self.init, self.dtype, self.seed = activation, init, str(dtype), int(seed)
        self.backend = get_backend(device, fused=fused)
        self.shapes = param_shapes(self.n_in, self.n_hidden, self.n_out)
        self.n_params = sum(math.prod(s) for s in self.shapes.values())
        try:
            self.params = self.backend.zeros(self.n_params, self.dtype)
            self.grads = self.backend.zeros(self.n_params, self.dtype)
        except (ValueError, OverflowError):  # beyond what any array can hold (not just RAM)
            raise FastMLPError(f"network {self.n_in}-{self.n_hidden}-{self.n_out} is too large: "
                               f"{self.n_params:,} parameters") from None
        self.views = flat_views(self.params, self.shapes)
        self.grad_views = flat_views(self.grads, self.shapes)
        self.saved_config: dict[str, Any] = {}  # what load() found in the file

    def reset_parameters(self, seed: int) -> None:
        """Draw Wh, Wo from the init scheme with a seeded generator (on the host); zero biases."""
        rng = np.random.default_rng(seed)
        for name in ("Wh", "Wo"):
            fan_in, fan_out = self.shapes[name]
            var = 2.0 / (fan_in + fan_out) if self.init == "xavier" else 2.0 / fan_in
            host = rng.normal(0.0, math.sqrt(var), size=self.shapes[name]).astype(self.dtype)
            self.views[name][...] = self.backend.asarray(host)
        self.views["bh"][...] = 0
        self.views["bo"][...] = 0

    # -- config and (de)serialisation -----------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """What is needed to rebuild this model (not its weights)."""
        return {"n_in": self.n_in, "n_hidden": self.n_hidden, "n_out": self.n_out,
                "activation": self.activation, "init": self.init, "dtype": self.dtype,
                "seed": self.seed}

    def state(self) -> dict[str, np.ndarray]:
        """Host copies of ``Wh, bh, Wo, bo`` (explicit device->host copies)."""
        return {name: self.backend.to_host(self.views[name], copy=True) for name in PARAM_NAMES}

    def save(self, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> None:
        """Write ``Wh, bh, Wo, bo`` and the config (JSON in key ``config``) to an .npz file;
        a path that cannot be written (a folder, a missing folder) raises FastMLPError."""
        config = dict(self.config(), **(extra or {}))
        with os_errors("write model", path), open(path, "wb") as f:
            np.savez(f, **self.state(), config=np.array(json.dumps(json_clean(config))))

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | Backend = "cpu") -> MLP:
        """Rebuild a model written by :meth:`save`; a clear FastMLPError for a bad file (any
        file, however damaged: its sizes are checked before anything is allocated)."""
        if not isinstance(path, (str, os.PathLike)):
            raise FastMLPError(f"a model path must be a str or os.PathLike, got {path!r}")
        try:
            arrays, _ = read_npz(path, (*PARAM_NAMES, "config"), what="model file")
        except NumpyFileError as exc:
            if exc.reason.startswith(("an .npy file", "it is not an .npz")):
                raise FastMLPError(f"cannot read model {path}: not an .npz archive (a model "
                                   f"file written by fastmlp)") from None
            raise FastMLPError(f"cannot read model {path}: {exc.reason}") from None
        missing = [name for name in PARAM_NAMES if name not in arrays]
        if missing:
            raise FastMLPError(f"{path} is not a fastmlp model (no {', '.join(missing)})")
        config = _saved_config(arrays.get("config"), path)
        # native byte order (a big-endian '>f4' is float32 all the same)
        weights = {name: arrays[name].astype(arrays[name].dtype.newbyteorder("="), copy=False)
                   for name in PARAM_NAMES}
        problem = _weights_problem(weights)
        if problem:
            raise FastMLPError(f"{path} holds inconsistent arrays: {problem}")
        seed = config.get("seed", 0)
        try:
            model = cls.from_weights(weights, activation=config.get("activation", "relu"),
                                     init=config.get("init", "xavier"), device=device,
                                     seed=seed if is_int(seed) and seed >= 0 else 0)
        except (ValueError, FastMLPError) as exc:
            raise FastMLPError(f"{path} holds inconsistent arrays: {exc}") from None
        model.saved_config = config
        return model

    # -- forward / backward ---------------------------------------------------------------------
    def forward_backward(self, x, y, ends, n_grad: int, Z, stats, sparse=None) -> None:
        """One pass over rows x (N×F) with labels y (N,) into preallocated buffers.

        Z (N×H) is scratch. stats (S×2, float64) gets per-split summed loss and correct count,
        splits ending at ``ends``. When ``n_grad`` > 0 the gradients of the mean loss over rows
        [0, n_grad) land in ``self.grads``. Two big products, the fused head between them.
        ``sparse``: the same rows as a :class:`fastmlp.sparse.SparseRows` (its training rows
        being the first ``n_grad``), whose products then replace the dense ones; x is then
        unused and may be None (Z's N rows count the rows).
        """
        be, g = self.backend, self.grad_views
        if sparse is None:
            be.matmul(x, self.views["Wh"], out=Z)
        else:
            sparse.matmul(Z.shape[0], self.views["Wh"], out=Z)
        be.head(Z, self.views["bh"], self.views["Wo"], self.views["bo"], y, ends, n_grad,
                self.activation, g["Wo"], g["bo"], g["bh"], stats)
        if n_grad and sparse is None:
            be.matmul(x[:n_grad].T, Z[:n_grad], out=g["Wh"])
        elif n_grad:
            if n_grad != sparse.n_train:
                raise ValueError(f"the sparse rows hold {sparse.n_train} training rows, not "
                                 f"{n_grad}")
            sparse.matmul_t(Z[:n_grad], out=g["Wh"])

    def loss_and_grads(self, x, y) -> tuple[float, dict[str, Any]]:
        """(average cross-entropy, {"Wh", "bh", "Wo", "bo"} gradients) for x (N×F), y (N,)."""
        x, y = self._inputs(x, y)
        if x.shape[0] == 0:
            raise InvalidInputError("x has no rows: the average loss of none is undefined")
        xp = self.backend.xp
        Z = xp.empty((x.shape[0], self.n_hidden), dtype=self.dtype)
        stats = xp.zeros((1, 2), dtype=xp.float64)
        self.forward_backward(x, y, (x.shape[0],), x.shape[0], Z, stats)
        loss = float(self.backend.to_host(stats)[0, 0]) / x.shape[0]
        return loss, {name: self.grad_views[name].copy() for name in PARAM_NAMES}

    def forward(self, x) -> Any:
        """Class probabilities (N×K) for x (N×F), on the model's device; computed in chunks of
        :data:`CHUNK_ROWS` rows (scratch h: C×H), so no N×H buffer is ever needed."""
        x = self._inputs(x)
        be, v, N = self.backend, self.views, x.shape[0]
        probs = be.xp.empty((N, self.n_out), dtype=self.dtype)
        h = be.xp.empty((min(N, CHUNK_ROWS), self.n_hidden), dtype=self.dtype)
        for a in range(0, N, CHUNK_ROWS):
            b = min(N, a + CHUNK_ROWS)
            hc, out = h[:b - a], probs[a:b]
            # x·Wh through the backend, as training computes it (TF32 there when asked for);
            # the rest as the reference does, like the head: full precision
            be.matmul(x[a:b], v["Wh"], out=hc)
            hc += v["bh"]
            ref.ACTIVATION_FORWARD[self.activation](hc, hc)
            ref.linear_forward(out, hc, v["Wo"], v["bo"])
            ref.softmax_forward(out, out)
        return probs

    def predict(self, x) -> Any:
        """Predicted labels (N,) for x (N×F), on the model's device."""
        return self.forward(x).argmax(axis=1)

    def _on_device(self, a: Any, what: str) -> Any:
        # lists and the like become host arrays; an array of another library (NumPy for a CUDA
        # model, say) is an InvalidTypeError, a FastMLPError that is the TypeError it was
        a = a if hasattr(a, "shape") else np.asarray(a)
        try:
            return self.backend.check(a, what)
        except TypeError as exc:
            raise InvalidTypeError(str(exc)) from None

    def _inputs(self, x, y=None):
        x = self._on_device(x, "x")
        if x.dtype.kind not in "biuf":  # strings, objects, complex: no cast to float is right
            raise InvalidInputError(f"x must hold real numbers, got dtype {x.dtype}")
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise InvalidInputError(f"x must have shape (N, {self.n_in}), got "
                                    f"{tuple(x.shape)}")
        x = self.backend.xp.ascontiguousarray(x, dtype=self.dtype)
        if y is None:
            return x
        y = self._on_device(y, "y")
        if y.dtype.kind not in "biuf":
            raise InvalidInputError(f"y must hold integer labels, got dtype {y.dtype}")
        if y.shape != (x.shape[0],):
            raise InvalidInputError(f"y must have shape ({x.shape[0]},), got "
                                    f"{tuple(y.shape)}")
        if y.size and (int(y.min()) < 0 or int(y.max()) >= self.n_out):
            raise InvalidInputError(f"labels must lie in 0..{self.n_out - 1}")
        return x, y.astype(self.backend.xp.int32, copy=False)

    def __repr__(self) -> str:
        return (f"MLP({self.n_in}, {self.n_hidden}, {self.n_out}, activation={self.activation!r}, "
                f"dtype={self.dtype!r}, device={self.backend.name!r})")


def _saved_config(array: np.ndarray | None, path: str | os.PathLike) -> dict[str, Any]:
    """The config :meth:`MLP.save` stored (a JSON object in a 0-d string array); {} for a file
    that stored none or something else (not ours: the model is rebuilt from its arrays)."""
    if array is None or array.ndim != 0 or array.dtype.kind != "U":
        return {}
    try:
        config = json.loads(str(array))
    except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        raise FastMLPError(f"cannot read model {path}: its config is not valid JSON (damaged "
                           f"file?)") from None
    return config if isinstance(config, dict) else {}


def _weights_problem(weights: Mapping[str, np.ndarray]) -> str:
    """Why ``Wh, bh, Wo, bo`` do not form one F-H-K network (before any buffer is sized by
    them), or ""."""
    Wh, bh, Wo, bo = (weights[name] for name in PARAM_NAMES)
    shapes = ", ".join(f"{name} {weights[name].shape}" for name in PARAM_NAMES)
    if Wh.ndim != 2 or Wo.ndim != 2 or Wo.shape[0] != Wh.shape[1]:
        return f"Wh and Wo must be F×H and H×K; got {shapes}"
    if bh.shape != (1, Wh.shape[1]) or bo.shape != (1, Wo.shape[1]):
        return f"bh and bo must be 1×H and 1×K; got {shapes}"
    return ""
