"""Strict JSON for results: what fastmlp writes must load anywhere (no NaN, no NumPy types)."""

from __future__ import annotations

import math
from typing import Any


def json_clean(value: Any) -> Any:
    """Strict-JSON copy of ``value``: non-finite floats become null, NumPy scalars plain."""
    if isinstance(value, dict):
        return {str(k): json_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_clean(v) for v in value]
    if hasattr(value, "tolist"):  # NumPy scalar or array -> Python scalar or (nested) list
        return json_clean(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)  # e.g. a Path in the config: readable rather than a crash at the very end
