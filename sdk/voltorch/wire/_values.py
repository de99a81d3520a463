"""Proto <-> Python for JSON values, timestamps and durations: pure helpers used by the SDK and by the
server's servicers alike (so a value or a time means the same on both sides of the wire)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, overload

from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2


def to_value(obj: Any) -> struct_pb2.Value:
    """The JSON value obj (dicts, lists, str, numbers, bools, None) as a Value.

    Same result as json_format.ParseDict, several times faster: every published event and stored key goes
    through here. Build the Value standalone and CopyFrom it into a parent (faster than in place).
    """
    v = struct_pb2.Value()
    _set_value(v, obj)
    return v


def _set_value(v: struct_pb2.Value, obj: Any) -> None:
    t = type(obj)
    if t is str:
        v.string_value = obj
    elif t is dict:
        s = v.struct_value
        s.SetInParent()
        fields = s.fields
        for key, item in obj.items():
            _set_value(fields[key], item)
    elif t is bool:
        v.bool_value = obj
    elif t is int or t is float:
        v.number_value = obj
    elif obj is None:
        v.null_value = struct_pb2.NULL_VALUE
    elif t is list or t is tuple:
        lv = v.list_value
        lv.SetInParent()
        add = lv.values.add
        for item in obj:
            _set_value(add(), item)
    elif isinstance(obj, str):  # a StrEnum member (statuses, modes): its value
        v.string_value = obj
    else:  # other subclasses of the JSON types and anything else: the general (slower, validating) path
        json_format.ParseDict(obj, v)


def from_value(v: struct_pb2.Value) -> Any:
    """The Python value of v; integral numbers come back as int (JSON numbers travel as doubles).

    Same result as json_format.MessageToDict (several times faster), except that NaN and infinities come
    back as floats instead of failing, so that the server's JSON encoding rejects them as
    INVALID_ARGUMENT naming the field.
    """
    kind = v.WhichOneof("kind")
    if kind == "string_value":
        return v.string_value
    if kind == "struct_value":
        return {k: from_value(item) for k, item in v.struct_value.fields.items()}
    if kind == "number_value":
        n = v.number_value
        return int(n) if n.is_integer() and abs(n) < 2**53 else n
    if kind == "bool_value":
        return v.bool_value
    if kind == "list_value":
        return [from_value(item) for item in v.list_value.values]
    return None  # null_value, or a Value with no kind set


def to_struct(obj: dict[str, Any] | None) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    if obj:
        s.update(obj)
    return s


def from_struct(s: struct_pb2.Struct) -> dict[str, Any]:
    return {k: from_value(item) for k, item in s.fields.items()}


@overload
def to_datetime(t: timestamp_pb2.Timestamp, present: Literal[True] = True) -> datetime: ...
@overload
def to_datetime(t: timestamp_pb2.Timestamp, present: bool) -> datetime | None: ...
def to_datetime(t: timestamp_pb2.Timestamp, present: bool = True) -> datetime | None:
    """Exact to the microsecond (integer arithmetic: a float of nanoseconds since 1970 is not)."""
    if not present:
        return None
    return datetime.fromtimestamp(t.seconds, tz=UTC) + timedelta(microseconds=round(t.nanos / 1000))


@overload
def to_timestamp(when: datetime | float) -> timestamp_pb2.Timestamp: ...
@overload
def to_timestamp(when: None) -> None: ...
def to_timestamp(when: datetime | float | None) -> timestamp_pb2.Timestamp | None:
    """A datetime (naive = local time) or seconds since 1970 as a Timestamp, to the nanosecond: whole
    seconds and fraction apart, since seconds * 1e9 as one float is off by up to 128 ns (.123456 would
    become .123455999, and a time read from the server would not compare equal when sent back)."""
    if when is None:
        return None
    t = timestamp_pb2.Timestamp()
    if isinstance(when, datetime):
        t.FromDatetime(when if when.tzinfo else when.astimezone())
        return t
    whole = math.floor(when)
    nanos = round((when - whole) * 1e9)
    t.seconds, t.nanos = whole + nanos // 1_000_000_000, nanos % 1_000_000_000
    return t


def from_timestamp(t: timestamp_pb2.Timestamp) -> float:
    """The float nearest to t (integer division is exactly rounded): a time the server sent comes back
    equal, so filters such as created_after=<an execution's create_time> include it."""
    return t.ToNanoseconds() / 1_000_000_000


@overload
def to_duration(seconds: float | timedelta) -> duration_pb2.Duration: ...
@overload
def to_duration(seconds: None) -> None: ...
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
