"""Proto <-> Python conversions for the servicers. JSON values, structs, timestamps and durations are
voltorch.wire's (one implementation on both sides of the wire), under the names the servicers use;
what only the server needs — reading durations from requests — is here. Their ranges (and every Value's
kind) were checked when the request was decoded (`_requests`), for every field of every request."""

from __future__ import annotations

from google.protobuf import duration_pb2
from voltorch.wire import from_struct as struct_to_py
from voltorch.wire import from_timestamp as ts_to_float
from voltorch.wire import from_value as value_to_py
from voltorch.wire import to_duration as duration
from voltorch.wire import to_struct as py_to_struct
from voltorch.wire import to_timestamp as ts
from voltorch.wire import to_value as py_to_value

from ..errors import InvalidArgument

__all__ = [
    "duration",
    "duration_to_seconds",
    "py_to_struct",
    "py_to_value",
    "struct_to_py",
    "ts",
    "ts_to_float",
    "value_to_py",
]


def duration_to_seconds(d: duration_pb2.Duration, field: str) -> float | None:
    """None when unset/zero; INVALID_ARGUMENT when negative."""
    seconds = d.ToNanoseconds() / 1e9
    if seconds < 0:
        raise InvalidArgument(field, "a duration must not be negative", reason="DURATION_INVALID")
    return seconds or None
