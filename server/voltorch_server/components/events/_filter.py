"""The one definition of which events a filter selects, usable in Python (live delivery) and in SQL.

Live delivery tests each committed event with `EventFilter.matches`; replay and ListEvents push the
same conditions into SQL (the events store). Type globs only admit `[a-z0-9_.-*?]`, where fnmatch's
`*`/`?`, SQLite's case-sensitive GLOB and PostgreSQL's LIKE (`%`/`_`) mean exactly the same thing, so
both paths agree.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from ...errors import InvalidArgument
from ...priority import Priority, parse_priority

MAX_TYPE_LEN = 128
MAX_GLOBS = 32
# Dot-separated lowercase words, e.g. "workflow.step.completed".
TYPE_RE = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
_GLOB_RE = re.compile(r"[a-z0-9_.*?-]+")


def validate_type(type_: str, field_name: str) -> None:
    if not type_:
        raise InvalidArgument(
            field_name, "an event needs a type, e.g. 'workflow.step.completed'", reason="EVENT_TYPE_INVALID"
        )
    if len(type_) > MAX_TYPE_LEN or not TYPE_RE.fullmatch(type_):
        raise InvalidArgument(
            field_name,
            f"malformed event type {type_[:140]!r}: dot-separated lowercase words of [a-z0-9_-],"
            f" at most {MAX_TYPE_LEN} characters",
            reason="EVENT_TYPE_INVALID",
        )


def validate_glob(glob: str, field_name: str) -> None:
    if not glob or len(glob) > MAX_TYPE_LEN:
        raise InvalidArgument(
            field_name, f"a type glob must be 1..{MAX_TYPE_LEN} characters", reason="EVENT_TYPE_INVALID"
        )
    if not _GLOB_RE.fullmatch(glob):
        raise InvalidArgument(
            field_name,
            f"malformed type glob {glob[:140]!r}: use lowercase letters, digits, '.', '_', '-',"
            " '*' (any run of characters) and '?' (one character)",
            reason="EVENT_TYPE_INVALID",
        )


@functools.lru_cache(maxsize=1024)  # a filter is built per stream and per watch, from a few globs
def _glob_regex(glob: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob) + r"\Z")


def priority_floor(value: int | str | None, field_name: str) -> int:
    """A minimum priority: 0/None/'' = any, else a valid Priority."""
    if value in (0, None, ""):
        return 0
    return int(parse_priority(value, field_name))


@dataclass(frozen=True)
class EventFilter:
    """Which events a subscriber or a listing wants: every set field must match; empty matches all.

    `types` are globs (any may match); the other fields are exact. Construction validates, naming
    fields under `field_prefix` (e.g. "filter.types[2]"), so a bad filter never reaches the log.
    """

    types: tuple[str, ...] = ()
    source: str = ""
    target: str = ""
    correlation_id: str = ""
    min_priority: Priority | int | str = 0  # a name such as 'high' is accepted; stored as its number
    trace_id: str = ""
    field_prefix: str = field(default="filter", compare=False, repr=False)
    _type_res: tuple[re.Pattern[str], ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        types = tuple(self.types)
        object.__setattr__(self, "types", types)
        p = self.field_prefix
        if len(types) > MAX_GLOBS:
            raise InvalidArgument(f"{p}.types", f"at most {MAX_GLOBS} type globs (got {len(types)})")
        for i, glob in enumerate(types):
            validate_glob(glob, f"{p}.types[{i}]")
        for name in ("source", "target", "correlation_id", "trace_id"):
            if len(getattr(self, name)) > 256:
                raise InvalidArgument(f"{p}.{name}", "at most 256 characters")
        object.__setattr__(self, "min_priority", priority_floor(self.min_priority, f"{p}.min_priority"))
        object.__setattr__(self, "_type_res", tuple(_glob_regex(g) for g in types))

    def matches(self, e: Any) -> bool:
        """Whether event `e` (anything with the Event attributes) passes the filter."""
        if self._type_res and not any(p.match(e.type) for p in self._type_res):
            return False
        if self.source and e.source != self.source:
            return False
        if self.target and e.target != self.target:
            return False
        if self.correlation_id and e.correlation_id != self.correlation_id:
            return False
        if self.trace_id and e.trace_id != self.trace_id:
            return False
        return not (self.min_priority and e.priority < self.min_priority)

    def key(self) -> dict[str, Any]:
        """A JSON-able identity of the filter (page tokens remember the query they belong to)."""
        return {
            "types": list(self.types),
            "source": self.source,
            "target": self.target,
            "correlation_id": self.correlation_id,
            "min_priority": int(self.min_priority),
            "trace_id": self.trace_id,
        }
