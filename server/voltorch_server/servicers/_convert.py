"""Proto <-> Python conversions for the servicers. JSON values, structs, timestamps and durations are the
SDK's pure helpers (voltorch._convert: one implementation on both sides of the wire); what only the
server needs — reading times and durations from requests — is here. Their ranges (and every Value's
kind) were checked when the request was decoded (`_requests`), for every field of every request."""

from __future__ import annotations

from google.protobuf import duration_pb2, timestamp_pb2
from voltorch._convert import from_struct as struct_to_py
from voltorch._convert import from_value as value_to_py
from voltorch._convert import to_duration as duration
from voltorch._convert import to_struct as py_to_struct
from voltorch._convert import to_timestamp as ts
from voltorch._convert import to_value as py_to_value

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


def ts_to_float(t: timestamp_pb2.Timestamp) -> float:
    """The float nearest to t (integer division is exactly rounded): a time the server sent comes back
    equal, so filters such as created_after=<an execution's create_time> include it."""
    return t.ToNanoseconds() / 1_000_000_000


def duration_to_seconds(d: duration_pb2.Duration, field: str) -> float | None:
    """None when unset/zero; INVALID_ARGUMENT when negative."""
    seconds = d.ToNanoseconds() / 1e9
    if seconds < 0:
        raise InvalidArgument(field, "a duration must not be negative")
    return seconds or None
