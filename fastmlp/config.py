"""``RunConfig``: every setting of one training run, validated in one place.

What ``fastmlp train`` parses its options into, what each run of ``fastmlp sweep`` is, and what
:func:`fastmlp.run` takes. It is recorded from the start of the run: in the checkpoint (flat, as
:meth:`RunConfig.checkpoint_record`, which ``--resume`` reads back) and in history.json and
model.npz (:meth:`RunConfig.history_record`), so that even a history written on Ctrl-C has it.
Errors name the settings as the command line spells them (``--batch-size``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .backend import DEVICES
from .datasets import DATASET_NAMES, SCALES
from .errors import FastMLPError, is_int
from .kernels import ACTIVATIONS
from .model import DTYPES, INITS
from .sparse import SPARSE_MODES

MNIST_TRAIN_SIZE = 10_000  # the course trains on the first 10000 MNIST images
PIXEL_DATASETS = ("mnist", "notmnist")  # the datasets --scale applies to

# Settings that rebuild data, model and trainer: what a checkpoint must record to be resumed
# (compiled and sparse are read with defaults: checkpoints from before them still resume)
CHECKPOINT_KEYS = ("dataset", "data_path", "train_size", "scale", "hidden", "activation", "init",
                   "dtype", "device", "epochs", "lr", "momentum", "batch_size", "velocity_init",
                   "eval_every", "seed", "checkpoint_every")
# the settings a resumed run may change; --data-path too, for a data file that moved (the
# same-data check still refuses other data)
RESUME_MAY_CHANGE = ("epochs", "data_path", "device", "tf32", "checkpoint_every")


def option(key: str) -> str:
    """``batch_size`` as the command line spells it: ``--batch-size``."""
    return f"--{key.replace('_', '-')}"


def absolute_path(path: str) -> str:
    """``path`` as a run records it (``~`` expanded, absolute): found again from anywhere."""
    return str(Path(path).expanduser().resolve())


def train_rows(dataset: str, train_size: int | str | None) -> int | None:
    """The rows of ``dataset`` that ``train_size`` asks for, None for every row: its default
    (None) is the course's first 10000 rows of mnist and every row otherwise; ``"all"`` every
    row."""
    if train_size is None:
        return MNIST_TRAIN_SIZE if dataset == "mnist" else None
    return None if train_size == "all" else train_size


def recorded_scale(dataset: str, scale: str) -> str | None:
    """The pixel scaling a run records: ``scale`` for pixel datasets, None where the features
    are used as given (npz, synthetic), so that predict does not scale uint8 input for them."""
    return scale if dataset in PIXEL_DATASETS else None


@dataclass
class RunConfig:
    """One training run: data (``dataset``, ``data_path``, ``train_size``: N rows, ``"all"``, or
    None for the dataset's default; ``scale``), model (``hidden``, ``activation``, ``init``,
    ``dtype``), where (``device``, ``tf32``), optimiser (``epochs``, ``lr``, ``momentum``,
    ``batch_size``: None is full batch, ``velocity_init``, ``seed``), loop (``compiled``,
    ``sparse``), cadence (``eval_every``, ``checkpoint_every``: None is every 10 epochs at most
    once a minute, 0 only at the end and on Ctrl-C), ``out`` (the output directory; None:
    ``runs/<timestamp>``) and ``command`` (the command line that asked for it, recorded)."""

    dataset: str = "mnist"
    data_path: str | None = None
    train_size: int | str | None = None
    scale: str = "unit"
    hidden: int = 1000
    activation: str = "relu"
    init: str = "xavier"
    dtype: str = "float32"
    device: str = "auto"
    tf32: bool = False
    epochs: int = 200
    lr: float = 0.1
    momentum: float = 0.99
    batch_size: int | None = None
    velocity_init: float = 1e-5
    eval_every: int = 1
    seed: int = 0
    compiled: bool | None = None
    sparse: str = "auto"
    checkpoint_every: int | None = None
    out: str | None = None
    command: str = ""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """A :class:`FastMLPError` naming the first setting that cannot run."""
        choices = (("dataset", DATASET_NAMES), ("scale", SCALES), ("activation", ACTIVATIONS),
                   ("init", INITS), ("dtype", DTYPES), ("device", DEVICES),
                   ("sparse", SPARSE_MODES))
        for key, allowed in choices:
            if getattr(self, key) not in allowed:
                raise FastMLPError(f"{option(key)} must be one of {', '.join(allowed)}, got "
                                   f"{getattr(self, key)!r}")
        for key, minimum in (("hidden", 1), ("epochs", 1), ("eval_every", 1), ("seed", 0)):
            value = getattr(self, key)
            if not is_int(value) or value < minimum:
                what = "a positive integer" if minimum else "an integer >= 0"
                raise FastMLPError(f"{option(key)} must be {what}, got {value!r}")
        for key in ("batch_size", "checkpoint_every"):
            value = getattr(self, key)
            if value is not None and (not is_int(value) or value < (key == "batch_size")):
                raise FastMLPError(f"{option(key)} must be an integer >= "
                                   f"{int(key == 'batch_size')}, got {value!r}")
        if self.train_size not in (None, "all") and (not is_int(self.train_size)
                                                     or self.train_size < 1):
            raise FastMLPError(f"--train-size must be a positive integer or 'all', got "
                               f"{self.train_size!r}")
        for key in ("lr", "momentum", "velocity_init"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and value >= 0):
                raise FastMLPError(f"{option(key)} must be a finite number >= 0, got {value!r}")
        if self.compiled not in (None, True, False):
            raise FastMLPError(f"--compiled must be True, False or None, got {self.compiled!r}")
        if self.dataset in ("notmnist", "npz") and not self.data_path:
            raise FastMLPError(f"--dataset {self.dataset} needs --data-path FILE.npz")
        if self.dataset == "synthetic" and self.data_path:  # recorded, and looked for later
            raise FastMLPError("--dataset synthetic generates its data and takes no --data-path")
        # options that would be ignored are refused, as --data-path is above
        if self.scale != "unit" and self.dataset not in PIXEL_DATASETS:
            raise FastMLPError(f"--scale {self.scale} applies to the pixel datasets "
                               f"({', '.join(PIXEL_DATASETS)}); --dataset {self.dataset} "
                               f"features are used as given")
        if self.compiled and self.batch_size is None:
            raise FastMLPError("--compiled is for minibatch epochs (--batch-size B); a full "
                               "batch takes one step per epoch, with no compiled loop")

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes``, validated again."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Every setting, the data path made absolute (JSON-ready)."""
        d = dataclasses.asdict(self)
        if self.data_path:
            d["data_path"] = absolute_path(self.data_path)
        return d

    def checkpoint_record(self) -> dict[str, Any]:
        """What a checkpoint stores for ``--resume``: :data:`CHECKPOINT_KEYS`, compiled, sparse
        and the first command line (as ``argv``), the data path absolute."""
        d = self.to_dict()
        return dict({key: d[key] for key in CHECKPOINT_KEYS}, compiled=self.compiled,
                    sparse=self.sparse, argv=self.command)

    def history_record(self) -> dict[str, Any]:
        """What history.json and model.npz record of the run besides the trainer's own keys:
        the run (all settings), and the flat keys evaluate and predict read (the recorded pixel
        scale, the absolute data path, the requested device, the command line)."""
        d = self.to_dict()
        record = dict(run=d, scale=recorded_scale(self.dataset, self.scale),
                      data_path=d["data_path"], device_requested=self.device)
        if self.command:
            record["argv"] = self.command
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any], **changes: Any) -> RunConfig:
        """The config a checkpoint recorded (:meth:`checkpoint_record`, or all of
        :meth:`to_dict`), with ``changes``."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in record.items() if k in names}
        values.setdefault("sparse", "off")  # a checkpoint from before --sparse ran dense
        # recorded before they were refused, and ignored then: read as what ran
        if values.get("batch_size") is None and values.get("compiled"):
            values["compiled"] = None
        if values.get("dataset") not in PIXEL_DATASETS and "scale" in values:
            values["scale"] = "unit"
        # a checkpoint's record names the command line argv, RunConfig.to_dict command
        values["command"] = record.get("argv", values.get("command")) or ""
        return cls(**dict(values, **changes))
