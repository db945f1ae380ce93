"""Stored pixel values of any numeric type as uint8, by one rule for every format.

The runner trains on uint8 images (0..255). Data stored otherwise is converted
like this, and anything the rule does not cover is refused with a
:class:`~runner.errors.DataError` naming the source — never wrapped or clipped:

- ``uint8``: as stored.
- declared 16-bit data (``bits=16``: 16-bit PNG/TIFF, PIL mode ``I;16``):
  ``round(v / 257)``, so 0 → 0 and 65 535 → 255, and an 8-bit image widened to 16
  bits (``v × 257``) comes back exactly.
- other integers (IDX ``int8/int16/int32``, CIFAR arrays of ``int64`` …): must
  already lie in 0..255, and are kept as they are.
- floats: all values in [0, 1] → ``round(v × 255)``; otherwise all in [0, 255] →
  rounded; negative, above 255, NaN or infinite values are refused.
"""

from __future__ import annotations

import numpy as np

from runner.errors import DataError

RULE = (
    "the runner reads uint8 pixels as stored, 16-bit images scaled by 1/257, other "
    "integers only in 0..255, and floats in [0, 1] (× 255) or [0, 255]"
)


def to_uint8(values: np.ndarray, source: str, *, bits: int | None = None) -> np.ndarray:
    """``values`` as a uint8 array of the same shape, by the rule of the module docstring.

    Args:
        source: what the values are (a file, a key) — named in the error.
        bits: 16 when the format declares 16-bit samples; None otherwise.
    """
    values = np.asarray(values)
    if values.dtype == np.uint8:
        return values
    kind = values.dtype.kind
    if kind not in "iuf":
        raise DataError(
            f"{source}: pixel values of type {values.dtype} are not numbers; {RULE}. Store the "
            "images as uint8 0..255."
        )
    if values.size == 0:
        return values.astype(np.uint8)
    if kind == "f" and not np.isfinite(values).all():
        raise DataError(f"{source}: pixel values include NaN or infinity; {RULE}.")
    low, high = values.min(), values.max()
    if bits == 16 and kind in "iu" and low >= 0 and high <= 65535:
        return np.rint(values / 257.0).astype(np.uint8)
    if kind == "f" and low >= 0 and high <= 1:
        return np.rint(values * 255.0).astype(np.uint8)
    if low >= 0 and high <= 255:
        return np.rint(values).astype(np.uint8) if kind == "f" else values.astype(np.uint8)
    raise DataError(
        f"{source}: pixel values range {_show(low)}..{_show(high)} ({values.dtype.name}); {RULE}. "
        "Convert the data to uint8 0..255 (e.g. scale it yourself) and try again."
    )


def _show(value: np.generic) -> str:
    number = value.item()
    return f"{number:g}" if isinstance(number, float) else str(number)
