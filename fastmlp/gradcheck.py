"""Gradient checking: :meth:`MLP.loss_and_grads` against central finite differences.

The check runs on a float64 copy of the model on the model's own device (float32 finite
differences are too noisy to tell a bug from rounding), so the model passed in is never touched.
For big networks ``max_entries`` checks a seeded random sample of entries per tensor: every
checked entry costs two forward passes.

>>> from fastmlp import MLP
>>> from fastmlp.gradcheck import gradcheck
>>> errors = gradcheck(MLP(6, 5, 3), x, y)          # doctest: +SKIP
>>> errors                                          # doctest: +SKIP
{'Wh': 3.1e-10, 'bh': 2.2e-10, 'Wo': 1.4e-10, 'bo': 9.8e-11}
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from .backend import Backend
from .errors import FastMLPError, InvalidInputError, is_int
from .kernels import reference as ref
from .model import MLP, PARAM_NAMES

__all__ = ["GradcheckResult", "available_memory", "check_memory", "float64_copy", "gradcheck",
           "gradcheck_bytes", "numerical_grads", "rel_error", "sample_entries"]


class GradcheckResult(dict):
    """``{tensor name: relative error}`` plus what was checked and how.

    Attributes: ``shapes`` (tensor shapes), ``checked`` (entries compared per tensor), ``eps``,
    ``loss`` (mean loss at the checked point), ``dtype`` (the model's own dtype) and ``notes``
    (human-readable remarks, e.g. that a float32 model was checked on a float64 copy).
    """

    def __init__(self, errors: dict[str, float], *, shapes: dict[str, tuple[int, ...]],
                 checked: dict[str, int], eps: float, loss: float, dtype: str,
                 notes: list[str]):
        super().__init__(errors)
        self.shapes, self.checked, self.eps, self.loss = shapes, checked, eps, loss
        self.dtype, self.notes = dtype, notes

    def passed(self, tol: float) -> bool:
        """True when every tensor's relative error is below ``tol`` (NaN fails)."""
        return all(err < tol for err in self.values())


def rel_error(a: Any, b: Any) -> float:
    """``||a - b|| / (||a|| + ||b||)`` on host arrays; 0 when both are zero; NaN (which fails
    every tolerance) when either holds a NaN or an infinity."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return math.nan  # a NaN denominator would otherwise read as "both zero"
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / denom) if denom > 0 else 0.0


def gradcheck_bytes(n_in: int, n_hidden: int, n_out: int, n_rows: int,
                    itemsize: int = 8) -> int:
    """About the most memory a check of an ``n_in``-``n_hidden``-``n_out`` network (parameters
    of ``itemsize`` bytes) on ``n_rows`` rows holds at once: the model's parameters and
    gradients, the float64 copy's (built from float64 copies of the weights), its analytic
    gradients, the rows (x and a float64 copy) and the N×H and N×K scratch of the passes."""
    n_params = n_in * n_hidden + n_hidden + n_hidden * n_out + n_out
    return (2 * n_params * itemsize + 4 * n_params * 8 + 2 * n_rows * n_in * 8
            + 3 * n_rows * (n_hidden + n_out) * 8)


def available_memory(backend: Backend) -> int | None:
    """Bytes free for new arrays where ``backend`` keeps them: the GPU's free memory on CUDA,
    else the host's available memory (Linux's MemAvailable); None where it cannot be told."""
    if backend.name == "cuda":
        try:
            return int(backend.xp.cuda.runtime.memGetInfo()[0])
        except Exception:  # noqa: BLE001 - any CUDA trouble: unknown, not fatal
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on this platform
        return None


def check_memory(n_in: int, n_hidden: int, n_out: int, n_rows: int, backend: Backend,
                 itemsize: int = 8) -> None:
    """A one-line FastMLPError, before anything is allocated, when the check of such a network
    (:func:`gradcheck_bytes`) needs more memory than ``backend`` has free; growing into all
    the machine's memory would end in swapping or the OOM killer, with no message."""
    need = gradcheck_bytes(n_in, n_hidden, n_out, n_rows, itemsize)
    free = available_memory(backend)
    if free is not None and need > free:
        raise FastMLPError(f"a {n_in}-{n_hidden}-{n_out} network is too large to check here: "
                           f"the gradient check on {n_rows} rows needs about "
                           f"{need / 2**30:.3g} GiB (float64 copies of the weights, gradients "
                           f"and rows), more than the {free / 2**30:.3g} GiB free on "
                           f"{backend.name}")


def float64_copy(model: MLP) -> MLP:
    """A float64 model with the same configuration and weights, on the same backend object."""
    weights = {name: model.views[name].astype("float64") for name in model.views}
    return MLP.from_weights(weights, activation=model.activation, init=model.init,
                            device=model.backend, seed=model.seed)


def numerical_grads(model: MLP, x: Any, y: Any, eps: float = 1e-6,
                    entries: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Central differences ``(L(w + eps) - L(w - eps)) / 2 eps`` of the mean loss, on the host.

    Perturbs ``model`` in place, one entry at a time, and restores every entry (exactly: the
    old value is put back, not recomputed). ``entries`` maps a tensor name to the flat indices
    to differentiate; the result then holds only those (in that order), else whole tensors.
    Use a float64 model: float32 differences are dominated by rounding.
    """
    x, y = model._inputs(x, y)
    be, xp, v = model.backend, model.backend.xp, model.views
    # Forward-only passes (the reference ops: this is the oracle) into buffers allocated once.
    n = x.shape[0]
    hidden = xp.empty((n, model.n_hidden), dtype=model.dtype)
    logits = xp.empty((n, model.n_out), dtype=model.dtype)

    def row_losses() -> Any:
        be.matmul(x, v["Wh"], out=hidden)
        xp.add(hidden, v["bh"], out=hidden)
        ref.ACTIVATION_FORWARD[model.activation](hidden, hidden)
        ref.linear_forward(logits, hidden, v["Wo"], v["bo"])
        losses = xp.empty(n, dtype=model.dtype)
        ref.crossentropy_forward(losses, logits, y)
        return losses

    out: dict[str, np.ndarray] = {}
    for name in PARAM_NAMES:
        flat = model.views[name].reshape(-1)  # a view: writes land in the parameter buffer
        idx = np.arange(flat.size) if entries is None else np.asarray(entries[name])
        g = np.empty(len(idx), dtype=np.float64)
        for k, i in enumerate(idx.tolist()):
            old = flat[i].copy()
            flat[i] = old + eps
            plus = row_losses()
            flat[i] = old - eps
            minus = row_losses()
            flat[i] = old
            # the mean of per-row differences: the difference of two means would cancel down
            # to the rounding of their N-term sums, which grows with N
            g[k] = float(be.to_host(xp.sum(plus - minus))) / n / (2 * eps)
        out[name] = g.reshape(model.views[name].shape) if entries is None else g
    return out


def sample_entries(shapes: dict[str, tuple[int, ...]], max_entries: int | None,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """Sorted flat indices per tensor: all of them, or ``max_entries`` drawn without
    replacement from ``seed`` (the same draw for the same shapes and seed)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in shapes.items():
        size = math.prod(shape)
        if max_entries is None or max_entries >= size:
            out[name] = np.arange(size)
        else:
            out[name] = np.sort(rng.choice(size, size=max_entries, replace=False))
    return out


def gradcheck(model: MLP, x: Any, y: Any, eps: float = 1e-6, max_entries: int | None = None,
              seed: int = 0) -> GradcheckResult:
    """Per-tensor relative errors ``||a - n|| / (||a|| + ||n||)`` between the analytic gradients
    of :meth:`MLP.loss_and_grads` and central finite differences, on rows ``x`` with labels ``y``.

    Works on a float64 copy of ``model`` on its device (``model`` is left untouched; a float32
    model gets a note in ``result.notes``). ``x``/``y`` may be host arrays or arrays of the model's
    device. ``max_entries`` checks at most that many seeded random entries per tensor. Errors
    around 1e-9 are typical for a correct float64 gradient; above ~1e-5 something is wrong.
    """
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
        raise InvalidInputError(f"eps must be a finite number > 0, got {eps!r}")
    if max_entries is not None and (not is_int(max_entries) or max_entries < 1):
        raise InvalidInputError(f"max_entries must be a positive integer or None, got "
                                f"{max_entries!r}")
    be = model.backend
    xp = be.xp
    # differences at a NaN or an infinity are NaN: nothing there can be compared
    bad = [name for name in PARAM_NAMES if not bool(xp.isfinite(model.views[name]).all())]
    if bad:
        verb = "holds" if len(bad) == 1 else "hold"
        raise FastMLPError(f"the model's weights are not finite ({', '.join(bad)} {verb} NaN or "
                           f"inf): gradients at non-finite weights cannot be checked")
    if not bool(xp.isfinite(be.asarray(x)).all()):
        raise InvalidInputError("x holds NaN or inf: gradients on non-finite rows cannot be "
                                "checked")
    notes = []
    if model.dtype != "float64":
        notes.append(f"checked on a float64 copy of the {model.dtype} model "
                     f"(finite differences need float64)")
    work = float64_copy(model)
    x64 = be.asarray(x, dtype="float64")
    y64 = be.asarray(y)
    loss, analytic = work.loss_and_grads(x64, y64)
    entries = sample_entries(work.shapes, max_entries, seed)
    numeric = numerical_grads(work, x64, y64, eps=eps, entries=entries)
    errors, checked = {}, {}
    for name in PARAM_NAMES:
        a = be.to_host(analytic[name]).reshape(-1)[entries[name]]
        errors[name] = rel_error(a, numeric[name])
        checked[name] = len(entries[name])
    sampled = [n for n in PARAM_NAMES if checked[n] < math.prod(work.shapes[n])]
    if sampled:
        notes.append(f"sampled at most {max_entries} entries per tensor (seed {seed}) "
                     f"for {', '.join(sampled)}")
    return GradcheckResult(errors, shapes=dict(work.shapes), checked=checked, eps=float(eps),
                           loss=loss, dtype=model.dtype, notes=notes)
