"""Priority of events, coordination requests and workflows (the numbers of voltorch.v1.Priority)."""

from __future__ import annotations

from enum import IntEnum

from ..v1 import common_pb2


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

    @property
    def pb(self) -> common_pb2.Priority:
        """The same number typed as the generated enum, for a proto field."""
        return _PB[self]


_PB = {
    Priority.LOW: common_pb2.PRIORITY_LOW,
    Priority.NORMAL: common_pb2.PRIORITY_NORMAL,
    Priority.HIGH: common_pb2.PRIORITY_HIGH,
    Priority.CRITICAL: common_pb2.PRIORITY_CRITICAL,
}
