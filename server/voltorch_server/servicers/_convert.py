"""Proto <-> Python conversions shared by the servicers (JSON values, times, durations)."""

from __future__ import annotations

import math
from typing import Any

from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2

from ..errors import InvalidArgument


def value_to_py(v: struct_pb2.Value) -> Any:
    """The Python value of v; integral numbers come back as int (JSON numbers travel as doubles).

    Same result as json_format.MessageToDict (several times faster: every published event goes through
    here), except that NaN and infinities come back as floats instead of failing, so that the caller's
    JSON encoding rejects them as INVALID_ARGUMENT naming its field.
    """
    kind = v.WhichOneof("kind")
    if kind == "string_value":
        return v.string_value
    if kind == "struct_value":
        return {k: value_to_py(item) for k, item in v.struct_value.fields.items()}
    if kind == "number_value":
        n = v.number_value
        return int(n) if n.is_integer() and abs(n) < 2**53 else n
    if kind == "bool_value":
        return v.bool_value
    if kind == "list_value":
        return [value_to_py(item) for item in v.list_value.values]
    return None  # null_value, or a Value with no kind set


def _ints(obj: Any) -> Any:
    """JSON numbers travel as doubles; give integral ones back as int (3, not 3.0)."""
    if isinstance(obj, float) and obj.is_integer() and abs(obj) < 2**53:
        return int(obj)
    if isinstance(obj, dict):
        return {k: _ints(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_ints(v) for v in obj]
    return obj


def py_to_value(obj: Any) -> struct_pb2.Value:
    """The JSON value obj (dicts, lists, str, numbers, bools, None) as a Value.

    Same result as json_format.ParseDict, several times faster: every delivered event and key goes
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
    else:  # subclasses of the JSON types and anything else: the general (slower, validating) path
        json_format.ParseDict(obj, v)


def struct_to_py(s: struct_pb2.Struct) -> dict[str, Any]:
    return _ints(json_format.MessageToDict(s))


def py_to_struct(obj: dict[str, Any] | None) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    if obj:
        s.update(obj)
    return s


def ts(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if seconds is None:
        return None
    """Seconds since 1970 as a Timestamp, to the nearest nanosecond (whole seconds and fraction apart:
    seconds * 1e9 as one float would be off by up to 128 ns and turn .123456 into .123455999)."""
    t = timestamp_pb2.Timestamp()
    whole = math.floor(seconds)
    nanos = round((seconds - whole) * 1e9)
    t.seconds, t.nanos = whole + nanos // 1_000_000_000, nanos % 1_000_000_000
    return t


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


def duration(seconds: float | None) -> duration_pb2.Duration | None:
    if seconds is None:
        return None
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d
