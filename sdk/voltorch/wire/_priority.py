"""Priority of events, coordination requests and workflows (the numbers of voltorch.v1.Priority)."""

from __future__ import annotations

from enum import IntEnum


class Priority(IntEnum):
    LOW = 1
    NORMAL = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def of(cls, value: Priority | int | str | None) -> Priority:
        """Accept a Priority, its proto number (0 = unspecified = NORMAL) or a name such as 'high'."""
        if value is None or value == 0 or value == "":
            return cls.NORMAL
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                raise ValueError(f"unknown priority {value!r} (low, normal, high or critical)") from None
        return cls(value)
