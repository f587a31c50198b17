"""Turning the strings NVIDIA tools print into numbers, or None.

nvidia-smi prints unavailable values as bracketed text (``[N/A]``, ``[Not Supported]``,
``[Requested functionality has been deprecated]``, ``[Function Not Found]``, …) and the XML
form prints a bare ``N/A``. New spellings appear with new drivers, so anything bracketed,
and anything that is not a number, becomes None rather than an error.
"""

from __future__ import annotations

import math
import re

_NUMBER = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*([A-Za-z%]*)\s*$")
_NA_WORDS = {"", "n/a", "na", "none", "unknown", "not supported", "nan"}

# Memory sizes normalised to MiB, the unit of the API.
_MIB_PER_UNIT = {"": 1.0, "mib": 1.0, "gib": 1024.0, "kib": 1 / 1024, "b": 1 / 1048576}


def text_or_none(raw: str | None) -> str | None:
    if raw is None:
        return None
    value = raw.strip()
    if (value.startswith("[") and value.endswith("]")) or value.lower() in _NA_WORDS:
        return None
    return value


def number(raw: str | None) -> int | float | None:
    """``"81559 MiB"`` → 81559, ``"72.43 W"`` → 72.43, ``"[N/A]"`` → None.

    Integers stay int so that reported values compare exactly with what the tool printed.
    """
    value = text_or_none(raw)
    if value is None:
        return None
    match = _NUMBER.match(value)
    if not match:
        return None
    digits = match.group(1)
    if re.fullmatch(r"[-+]?\d+", digits):
        return int(digits)
    parsed = float(digits)
    return None if math.isnan(parsed) or math.isinf(parsed) else parsed


def mib(raw: str | None) -> int | None:
    """A memory size in MiB; the unit (if any) decides the scale."""
    value = text_or_none(raw)
    if value is None:
        return None
    match = _NUMBER.match(value)
    if not match:
        return None
    scale = _MIB_PER_UNIT.get(match.group(2).lower())
    if scale is None:
        return None
    return round(float(match.group(1)) * scale)
