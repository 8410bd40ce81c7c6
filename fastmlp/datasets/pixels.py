"""Pixels 0..255 to features: [0, 1] (``"unit"``: x / 255) or [-1, 1] (``"symmetric"``:
x / 127.5 - 1), computed in float64 and then cast."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..errors import FastMLPError

SCALES = ("unit", "symmetric")


@functools.lru_cache(maxsize=4)
def _pixel_table(scale: str, dtype: np.dtype) -> np.ndarray:
    """(256,) lookup table: uint8 pixel -> scaled value, computed in float64 then cast."""
    levels = np.arange(256, dtype=np.float64)
    table = levels / 255.0 if scale == "unit" else levels / 127.5 - 1.0
    return table.astype(dtype)


def scale_uint8(raw: np.ndarray, scale: str, dtype: np.dtype) -> np.ndarray:
    """uint8 images (N, R, C) -> scaled (N, R*C) C-contiguous float array."""
    # A table lookup matches float64 arithmetic exactly (a float32 x / 127.5 - 1 would not) and
    # is as fast as dividing; fancy indexing beats np.take, which widens the uint8 indices first.
    return _pixel_table(scale, dtype)[raw.reshape(len(raw), -1)]


def scale_pixels(pixels: np.ndarray, scale: str, dtype: Any) -> np.ndarray:
    """Pixel values 0..255 (N, ...) -> (N, D) C-contiguous array of ``dtype``: [0, 1] for
    ``"unit"`` (x / 255), [-1, 1] for ``"symmetric"`` (x / 127.5 - 1), computed in float64 and
    then cast, so the values are those :func:`load_dataset` gives for the same pixels."""
    if scale not in SCALES:
        raise FastMLPError(f"unknown scale {scale!r}; choose {' or '.join(SCALES)}")
    if pixels.dtype == np.uint8:
        return scale_uint8(pixels, scale, np.dtype(dtype))
    x = pixels.reshape(len(pixels), -1).astype(np.float64, copy=False)
    x = x / 255.0 if scale == "unit" else x / 127.5 - 1.0
    return np.ascontiguousarray(x, dtype=dtype)
