"""Priorities shared by events, coordinations and workflows (same numbers as voltorch.v1.Priority)."""

from __future__ import annotations

from enum import IntEnum

from .errors import InvalidArgument


class Priority(IntEnum):
    LOW = 1
    NORMAL = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def of(cls, value: int | str | None) -> Priority:
        """Accept the proto number (0 = unspecified = NORMAL) or a name such as 'high'."""
        if value in (None, 0, ""):
            return cls.NORMAL
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                raise ValueError(f"unknown priority {value!r}") from None
        return cls(value)


def parse_priority(value: int | str | None, field: str = "priority") -> Priority:
    """Priority.of for a request field: an unknown value is INVALID_ARGUMENT naming the field."""
    try:
        return Priority.of(value)
    except ValueError:
        raise InvalidArgument(field, f"unknown priority {value!r} (low, normal, high or critical)") from None
