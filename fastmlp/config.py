"""``RunConfig``: every setting of one training run, checked by the rules every entry point
shares (:mod:`fastmlp.settings`).

What ``fastmlp train`` parses its options into, what each run of ``fastmlp sweep`` is, and what
:func:`fastmlp.run` and :func:`fastmlp.train` take. It is recorded once, from the start of the
run: as history.json's ``config["run"]`` (:meth:`RunConfig.to_dict`), which model.npz and
checkpoint.npz carry (``--resume`` reads it back through :meth:`RunConfig.from_record`), so that
even a history written on Ctrl-C has it. Files written before the run was recorded once also
hold some settings flat beside it; :func:`recorded_run` reads either layout. Errors name the
settings as the command line spells them (``--batch-size``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import FastMLPError, InvalidTypeError
from .settings import TRAIN_KEYS, TrainSettings, check_settings, given_settings

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
        """A :class:`FastMLPError` (an InvalidInputError) naming the first setting that cannot
        run: each by its rule (:data:`fastmlp.settings.RULES`), then the settings together."""
        check_settings({f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
                       option)
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
        """Every setting, the data path made absolute (JSON-ready): history.json's
        ``config["run"]``."""
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

    @property
    def training(self) -> TrainSettings:
        """The settings that training itself reads (epochs, optimiser, loop, checkpoints)."""
        return TrainSettings(**{key: getattr(self, key) for key in TRAIN_KEYS})

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


def train_settings(config: RunConfig | TrainSettings | None, keywords: dict[str, Any],
                   caller: str) -> TrainSettings:
    """The settings ``caller`` (``"train()"``, ``"Trainer"``) trains with: those of ``config``,
    or else the settings ``keywords`` that were given (:data:`fastmlp.settings.DEFAULT` for
    those left out), checked. Both at once is refused: one would silently lose."""
    given = given_settings(keywords)
    if config is None:
        return TrainSettings(**given)
    if given:
        raise InvalidTypeError(f"{caller}: give the settings in config or as keywords, not both "
                               f"(config and {', '.join(given)})")
    if isinstance(config, RunConfig):
        return config.training
    if not isinstance(config, TrainSettings):
        raise InvalidTypeError(f"{caller}: config must be a fastmlp.RunConfig or TrainSettings, "
                               f"got {type(config).__name__}")
    return config


# What history.json, model.npz and checkpoints recorded flat beside config["run"] before the run
# was recorded once (copies of its settings): readers still read them (recorded_run), and a run
# resumed from such a file drops them as it records the run anew.
LEGACY_FLAT_KEYS = ("epochs", "lr", "momentum", "batch_size", "eval_every", "velocity_init",
                    "shuffle_seed", "small_batch_loop", "products", "scale", "data_path",
                    "device_requested", "argv")


def recorded_run(saved: dict[str, Any]) -> dict[str, Any]:
    """What a history's or a model file's config says of its run's data, whichever layout wrote
    it: ``dataset``, ``data_path``, ``seed`` and ``scale`` (the pixel scaling the data got; None
    where the features were used as given), each where recorded. The run's own settings
    (``config["run"]``) come first; files written before the run was recorded once, and
    ``train()``'s own histories, also have them (or the model's and data's) flat."""
    run = saved.get("run") if isinstance(saved.get("run"), dict) else {}
    found = {key: run[key] if key in run else saved[key]
             for key in ("dataset", "data_path", "seed") if key in run or key in saved}
    if "scale" in run and "dataset" in run:
        found["scale"] = recorded_scale(run["dataset"], run["scale"])
    elif "scale" in saved:
        found["scale"] = saved["scale"]
    return found
