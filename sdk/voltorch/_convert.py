"""Proto <-> Python helpers for the SDK (JSON values, timestamps, durations)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2


def to_value(obj: Any) -> struct_pb2.Value:
    v = struct_pb2.Value()
    if obj is None:
        v.null_value = struct_pb2.NULL_VALUE
    else:
        json_format.ParseDict(obj, v)
    return v


def from_value(v: struct_pb2.Value) -> Any:
    return _ints(json_format.MessageToDict(v))


def _ints(obj: Any) -> Any:
    """JSON numbers travel as doubles; give integral ones back as int (3, not 3.0)."""
    if isinstance(obj, float) and obj.is_integer() and abs(obj) < 2**53:
        return int(obj)
    if isinstance(obj, dict):
        return {k: _ints(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_ints(v) for v in obj]
    return obj


def to_struct(obj: dict[str, Any] | None) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    if obj:
        s.update(obj)
    return s


def from_struct(s: struct_pb2.Struct) -> dict[str, Any]:
    return _ints(json_format.MessageToDict(s))


def to_datetime(t: timestamp_pb2.Timestamp, present: bool = True) -> datetime | None:
    """Exact to the microsecond (integer arithmetic: a float of nanoseconds since 1970 is not)."""
    if not present:
        return None
    return datetime.fromtimestamp(t.seconds, tz=UTC) + timedelta(microseconds=round(t.nanos / 1000))


def to_duration(seconds: float | timedelta | None) -> duration_pb2.Duration | None:
    if seconds is None:
        return None
    if isinstance(seconds, timedelta):
        seconds = seconds.total_seconds()
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def from_duration(d: duration_pb2.Duration) -> float:
    return d.ToNanoseconds() / 1e9


def to_timestamp(when: datetime | float | None) -> timestamp_pb2.Timestamp | None:
    if when is None:
        return None
    t = timestamp_pb2.Timestamp()
    if isinstance(when, datetime):  # exact microseconds: a time read from the server goes back unchanged
        t.FromDatetime(when if when.tzinfo else when.astimezone())  # naive = local time
    else:
        t.FromNanoseconds(round(float(when) * 1e9))
    return t
