"""Priorities shared by events, coordinations and workflows: the SDK's Priority (the numbers of
voltorch.v1.Priority; one definition for both sides), and its parsing for request fields."""

from __future__ import annotations

from voltorch.wire import Priority

from .errors import InvalidArgument

__all__ = ["Priority", "parse_priority"]


def parse_priority(value: int | str | None, field: str = "priority") -> Priority:
    """Priority.of for a request field: an unknown value is INVALID_ARGUMENT naming the field."""
    try:
        return Priority.of(value)
    except ValueError:
        raise InvalidArgument(
            field, f"unknown priority {value!r} (low, normal, high or critical)", reason="ENUM_VALUE_INVALID"
        ) from None
