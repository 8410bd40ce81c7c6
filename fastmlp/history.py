"""The record of a training run: per-epoch metrics, the final ones, its configuration.

Its own module so that whatever reads or writes histories (reports, checkpoints, sweeps) needs
nothing of the trainer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .jsonsafe import json_clean

METRICS = ("train_loss", "train_acc", "valid_loss", "valid_acc", "test_loss", "test_acc")
SPLITS = ("train", "valid", "test")


@dataclass
class History:
    """Per-epoch metrics (NaN where not evaluated), the final metrics after the last update,
    the configuration, wall time and device."""

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    valid_acc: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    final: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0
    device: str = ""

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def append(self, record: dict[str, float]) -> None:
        for key in METRICS:
            getattr(self, key).append(record[key])

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON-ready dict; NaN (not evaluated) becomes None."""
        out: dict[str, Any] = {key: getattr(self, key) for key in METRICS}
        out.update(final=self.final, config=self.config, wall_time_s=self.wall_time_s,
                   device=self.device, epochs=self.epochs)
        return json_clean(out)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        nan = lambda v: math.nan if v is None else float(v)  # noqa: E731
        h = cls(**{key: [nan(v) for v in d.get(key, [])] for key in METRICS})
        h.final = {k: nan(v) for k, v in d.get("final", {}).items()}
        h.config, h.wall_time_s, h.device = d.get("config", {}), d.get("wall_time_s", 0.0), d.get(
            "device", "")
        return h
