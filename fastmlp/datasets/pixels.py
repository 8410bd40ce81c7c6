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


def _unit(raw: np.ndarray, dt: Any, out: np.ndarray) -> None:
    np.divide(raw, dt(255), out=out, dtype=dt)


def _symmetric_shift_first(raw: np.ndarray, dt: Any, out: np.ndarray) -> None:
    np.subtract(raw, dt(127.5), out=out, dtype=dt)  # exact: halves are representable
    np.divide(out, dt(127.5), out=out)


def _symmetric_divide_first(raw: np.ndarray, dt: Any, out: np.ndarray) -> None:
    np.divide(raw, dt(127.5), out=out, dtype=dt)
    np.subtract(out, dt(1), out=out)


_ARITHMETIC = {"unit": (_unit,), "symmetric": (_symmetric_shift_first, _symmetric_divide_first)}


@functools.lru_cache(maxsize=4)
def _exact_arithmetic(scale: str, dtype: np.dtype) -> Any:
    """A way of computing the scale in ``dtype`` itself that gives the table's value for every
    one of the 256 pixel levels (so for any image), or None."""
    levels = np.arange(256, dtype=np.uint8).reshape(1, 256)
    table = _pixel_table(scale, dtype).reshape(1, 256)
    for compute in _ARITHMETIC[scale]:
        out = np.empty((1, 256), dtype)
        compute(levels, dtype.type, out)
        if np.array_equal(out, table):
            return compute
    return None


def scale_uint8(raw: np.ndarray, scale: str, dtype: np.dtype,
                out: np.ndarray | None = None) -> np.ndarray:
    """uint8 images (N, R, C) -> scaled (N, R*C) C-contiguous float array (``out``, where given:
    a C-contiguous (N, R*C) array of ``dtype``): the float64 values cast, as
    :func:`_pixel_table` holds them."""
    flat = raw.reshape(len(raw), -1)
    out = np.empty(flat.shape, dtype) if out is None else out
    compute = _exact_arithmetic(scale, np.dtype(dtype))
    if compute is not None:  # checked equal to the table at all 256 levels: no index array
        compute(flat, np.dtype(dtype).type, out)
        return out
    # the table, in row chunks: indexing widens the uint8 indices to intp (8 bytes each)
    table = _pixel_table(scale, np.dtype(dtype))
    for a in range(0, len(flat), 4096):
        out[a:a + 4096] = table[flat[a:a + 4096]]
    return out


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
