"""Every setting's rule, written once, and :class:`TrainSettings`, the settings of training.

:data:`RULES` says what each setting may be; :func:`check_settings` applies them, and every entry
point goes through it, naming the settings as its user spells them: a
:class:`~fastmlp.config.RunConfig` as the command line does (``--batch-size``), ``train()`` and
``Trainer`` by their keywords (``batch_size``, through :class:`TrainSettings`), the estimator as
``MLPClassifier: batch_size``; the command line's option types apply the same rules while
parsing (:func:`setting_problem`). A bad value raises an :class:`InvalidInputError` (a
FastMLPError that is also a ValueError): ``"<name> must be <what>, got <value>"``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backend import DEVICES
from .datasets import DATASET_NAMES, SCALES
from .errors import InvalidInputError, is_int
from .kernels import ACTIVATIONS
from .model import DTYPES, INITS
from .sparse import SPARSE_MODES


@dataclass(frozen=True)
class Rule:
    """What one setting must be: ``what`` (the words of its error message) and ``accepts``."""

    what: str
    accepts: Callable[[Any], bool]


def _among(value: Any, allowed: tuple[Any, ...]) -> bool:
    try:
        return bool(value in allowed)
    except (TypeError, ValueError):  # an array, say: not one of them
        return False


def _choice(allowed: tuple[str, ...]) -> Rule:
    return Rule(f"one of {', '.join(allowed)}", lambda value: _among(value, allowed))


def _int_from(minimum: int, optional: bool = False) -> Rule:
    what = "a positive integer" if minimum == 1 and not optional else f"an integer >= {minimum}"
    return Rule(what, lambda value: (optional and value is None)
                or (is_int(value) and value >= minimum))


def _is_rate(value: Any) -> bool:
    """A finite real number >= 0 (Python or NumPy; not a bool)."""
    real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_))
    return real and math.isfinite(value) and value >= 0


_RATE = Rule("a finite number >= 0", _is_rate)

# in the order a RunConfig reports the first bad one: choices, counts, rates, switches
RULES: dict[str, Rule] = {
    "dataset": _choice(DATASET_NAMES),
    "scale": _choice(SCALES),
    "activation": _choice(ACTIVATIONS),
    "init": _choice(INITS),
    "dtype": _choice(DTYPES),
    "device": _choice(DEVICES),
    "sparse": _choice(SPARSE_MODES),
    "hidden": _int_from(1),
    "epochs": _int_from(1),
    "eval_every": _int_from(1),
    "seed": _int_from(0),
    "batch_size": _int_from(1, optional=True),  # None: full batch
    "checkpoint_every": _int_from(0, optional=True),  # None: the automatic cadence
    "train_size": Rule("a positive integer or 'all'",  # None: the dataset's default
                       lambda value: value is None or (isinstance(value, str) and value == "all")
                       or (is_int(value) and value >= 1)),
    "lr": _RATE,
    # velocity_init too: a NaN start would otherwise surface later as a false "diverged"
    "momentum": _RATE,
    "velocity_init": _RATE,
    "compiled": Rule("True, False or None", lambda value: _among(value, (None, True, False))),
}


def setting_problem(key: str, value: Any) -> str:
    """Why ``value`` cannot be the setting ``key`` (``"must be ..., got ..."``), or "" when it
    can (and for a key without a rule)."""
    rule = RULES.get(key)
    if rule is None or rule.accepts(value):
        return ""
    return f"must be {rule.what}, got {value!r}"


def check_settings(values: dict[str, Any], name: Callable[[str], str] = str) -> None:
    """An InvalidInputError for the first of ``values`` (setting -> value) that its rule
    refuses, naming it ``name(setting)``; settings without a rule pass."""
    for key in RULES:
        if key in values:
            problem = setting_problem(key, values[key])
            if problem:
                raise InvalidInputError(f"{name(key)} {problem}")


@dataclass(frozen=True)
class TrainSettings:
    """The settings of training a given model on given data, checked when made: ``epochs``,
    ``lr``, ``momentum``, ``batch_size`` (None: full batch; B: minibatches reshuffled every
    epoch from ``seed``), ``eval_every``, ``velocity_init``, ``seed``, ``compiled`` (None
    chooses), ``sparse`` ("auto", "on", "off") and ``checkpoint_every`` (None: every 10 epochs
    at most once a minute; 0: only at the end and on Ctrl-C).

    What ``train()`` and ``Trainer`` take (as keywords, or as this), and the part of a
    :class:`~fastmlp.config.RunConfig` that training reads (``RunConfig.training``)."""

    epochs: int = 200
    lr: float = 0.1
    momentum: float = 0.99
    batch_size: int | None = None
    eval_every: int = 1
    velocity_init: float = 1e-5
    seed: int = 0
    compiled: bool | None = None
    sparse: str = "auto"
    checkpoint_every: int | None = None

    def __post_init__(self) -> None:
        check_settings(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """Every setting (what history.json records as ``config["run"]`` for ``train()``)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainSettings:
        """A copy with ``changes``, checked again."""
        return dataclasses.replace(self, **changes)


TRAIN_KEYS = tuple(f.name for f in dataclasses.fields(TrainSettings))


class _Default:
    """The default of a settings keyword left out: :class:`TrainSettings`' own, or with a
    config given, the config's."""

    def __repr__(self) -> str:
        return "<default>"


DEFAULT: Any = _Default()


def given_settings(keywords: dict[str, Any]) -> dict[str, Any]:
    """The settings keywords that were given (not :data:`DEFAULT`)."""
    return {key: value for key, value in keywords.items() if value is not DEFAULT}
