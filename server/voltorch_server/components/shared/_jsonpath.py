"""Dotted JSON paths with list indexes (`a.b[0].c`): one grammar for workflow placeholders, fan-out item
paths and coordination conditions (`json_field_equals.path`)."""

from __future__ import annotations

import re
from typing import Any

_SEGMENT = re.compile(r"([^.\[\]]+)?((?:\[\d+\])*)")
_INDEX = re.compile(r"\[(\d+)\]")


class PathError(ValueError):
    """A malformed dotted path."""


def parse_path(path: str) -> list[str | int]:
    """'a.b[0].c' -> ['a', 'b', 0, 'c']; '' -> []. PathError for a malformed path."""
    if not path:
        return []
    out: list[str | int] = []
    for part in path.split("."):
        m = _SEGMENT.fullmatch(part)
        if not m or not part:
            raise PathError(f"malformed path {path!r}")
        name, indexes = m.groups()
        if name:
            out.append(name)
        out.extend(int(i) for i in _INDEX.findall(indexes or ""))
    return out


def resolve(value: Any, path: str | list[str | int]) -> tuple[bool, Any]:
    """(found, value) at a dotted path with list indexes; a missing key or index is (False, None)."""
    parts = parse_path(path) if isinstance(path, str) else path
    cur = value
    for p in parts:
        if isinstance(p, int):
            if not isinstance(cur, list) or p >= len(cur):
                return False, None
            cur = cur[p]
        elif isinstance(cur, dict) and p in cur:
            cur = cur[p]
        else:
            return False, None
    return True, cur
