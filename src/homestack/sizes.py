"""Memory sizes as people write them: 600MiB, 1.5GiB, 2GB, or a number of bytes."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, WithJsonSchema

_UNITS = {
    "": 1, "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: object) -> object:
    """Bytes from an int or a string like ``600MiB``; anything else is left for pydantic to reject."""
    if not isinstance(value, str):
        return value
    match = _SIZE.match(value)
    unit = match and _UNITS.get(match.group(2).lower())
    if not match or unit is None:
        raise ValueError(f"not a memory size: {value!r}; write e.g. 600MiB, 1.5GiB, 2GB or a number of bytes")
    return int(float(match.group(1)) * unit)


def format_size(n: int | float) -> str:
    """Short human form in binary units: 512.0 MiB, 1.50 GiB."""
    if n >= 1024**3:
        return f"{n / 1024**3:.2f} GiB"
    return f"{n / 1024**2:.1f} MiB"


# A config field holding bytes, written as a number or as a size string.
ByteSize = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema({"type": ["integer", "string"], "examples": [629145600, "600MiB", "1.5GiB"]}),
]
