"""Component read models -> JSON for the browser (the console's one wire mapping)."""

from __future__ import annotations

import dataclasses
import json
import math
from enum import Enum, IntEnum
from typing import Any


def jsonable(obj: Any) -> Any:
    """Dataclasses as objects (every field), enums by lower-case name, tuples as lists; times stay epoch
    seconds (the browser shows them in the viewer's locale)."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, IntEnum):
        return obj.name.lower()
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, int):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.repr}
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    return str(obj)


def dumps(obj: Any) -> bytes:
    return json.dumps(jsonable(obj), separators=(",", ":"), default=str).encode()
