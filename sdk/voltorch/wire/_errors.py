"""What the readers raise when a message cannot be read as a request (the server turns it into
INVALID_ARGUMENT naming the field)."""

from __future__ import annotations


class WireError(ValueError):
    """`field` is the proto path of the offending field, e.g. "template.steps[0].timeout"; `reason` the
    `ErrorReason` the server sends for it."""

    def __init__(self, field: str, message: str, reason: str = "FIELD_INVALID"):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.reason = reason
