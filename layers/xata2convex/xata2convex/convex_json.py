"""Convex's JSON wire format (`"format": "convex_encoded_json"` in the HTTP API).

Plain JSON numbers are float64 in Convex. An int64 (`v.int64()`, a JavaScript bigint) travels as
`{"$integer": "<base64 of its 8 little-endian bytes>"}` and a float64 JSON cannot spell (NaN, ±Infinity,
-0) as `{"$float": "<base64 of 8 little-endian bytes>"}` (convex/values `convexToJson`). `Int64` marks a
Python int that must reach Convex as an int64; `dumps` encodes it, `loads` decodes both forms.
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass
from typing import Any, Final

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Int64:
    """An integer Convex stores as int64 (bigint); compares by value with other `Int64`s only."""

    value: int

    def __post_init__(self) -> None:
        if not INT64_MIN <= self.value <= INT64_MAX:
            raise ValueError(f"{self.value} is outside the int64 range")


def _encode(value: object) -> dict[str, str]:
    if isinstance(value, Int64):
        return {"$integer": base64.b64encode(struct.pack("<q", value.value)).decode("ascii")}
    raise TypeError(f"{type(value).__name__} is not a Convex value")


def _decode(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        [(key, text)] = obj.items()
        if key == "$integer" and isinstance(text, str):
            return Int64(struct.unpack("<q", base64.b64decode(text))[0])
        if key == "$float" and isinstance(text, str):
            return struct.unpack("<d", base64.b64decode(text))[0]
    return obj


def dumps(value: Any, *, ascii_only: bool = True) -> str:
    """JSON text in Convex's encoding; `Int64` becomes `{"$integer": …}`. NaN and infinities are refused."""
    return json.dumps(value, default=_encode, allow_nan=False, ensure_ascii=ascii_only, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    """Values from Convex's encoding: `{"$integer": …}` -> `Int64`, `{"$float": …}` -> float."""
    return json.loads(text, object_hook=_decode)
