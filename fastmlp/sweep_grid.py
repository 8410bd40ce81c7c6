r"""A sweep's runs and their names: the grid × seeds as :class:`~fastmlp.config.RunConfig`\ s,
the directory name of each grid point and what identifies a run on resume."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .config import RunConfig
from .errors import FastMLPError

GRID_KEYS = ("hidden", "lr", "momentum", "batch_size", "activation")
Result = dict[str, Any]  # what fastmlp.sweep.run_one returns (see its docstring)


# -- runs and names -------------------------------------------------------------------------------


def _unique(values: Iterable[Any]) -> list[Any]:
    """``values`` without repeats, first occurrence kept (``--hidden 100 100`` is one value)."""
    seen: list[Any] = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def _num(x: float) -> str:
    """Shortest exact text of a float (repr), so names of distinct values never collide."""
    return repr(float(x))


def point_name(config: RunConfig) -> str:
    """Directory name of a grid point, e.g. ``h100-lr0.05-m0.9-bfull-relu``."""
    batch = "full" if config.batch_size is None else str(config.batch_size)
    return (f"h{config.hidden}-lr{_num(config.lr)}-m{_num(config.momentum)}-b{batch}-"
            f"{config.activation}")


def run_dir(out: Path, config: RunConfig) -> Path:
    """``out/<point>/seed-<s>``: where one run's files live."""
    return out / point_name(config) / f"seed-{config.seed}"


def grid_point(config: RunConfig) -> tuple:
    return tuple(getattr(config, k) for k in GRID_KEYS)


# what identifies a run (history.json's config["sweep"], compared on resume): the settings
# shared by every run, the grid values and the seed, in this order
SHARED_KEYS = ("dataset", "data_path", "train_size", "scale", "epochs", "dtype", "device",
               "eval_every", "init", "velocity_init", "sparse")
RECORD_KEYS = (*SHARED_KEYS, *GRID_KEYS, "seed")


def run_record(config: RunConfig) -> dict[str, Any]:
    """The settings that identify the run ``config`` in its sweep (:data:`RECORD_KEYS`, as the
    options gave them), JSON-ready: what history.json and error.json store as ``sweep``."""
    return {key: getattr(config, key) for key in RECORD_KEYS}


def canonical_record(config: RunConfig) -> dict[str, Any]:
    """``config``'s record as it reads back from JSON (what history.json stores), for resume
    comparison."""
    return json.loads(json.dumps(run_record(config)))


def build_runs(base: RunConfig, grid: dict[str, list[Any]],
               seeds: list[int]) -> tuple[dict[str, list[Any]], list[RunConfig]]:
    """(grid values per key without repeats, one RunConfig per run: ``base`` with each
    combination of the ``grid`` values (keys :data:`GRID_KEYS`) and each seed, in grid order
    then seed order). Each run is validated now, not when it runs."""
    if len(set(seeds)) != len(seeds):
        raise FastMLPError(f"--seed-list has repeated seeds: {seeds}")
    grid = {key: _unique(float(v) if key in ("lr", "momentum") else v for v in grid[key])
            for key in GRID_KEYS}
    configs = [base.replace(**dict(zip(GRID_KEYS, values, strict=True)), seed=seed)
               for values in itertools.product(*grid.values()) for seed in seeds]
    return grid, configs
