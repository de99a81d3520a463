"""State on the wire: keys with their versions and revisions, their changes (Watch, GetHistory), snapshots,
and a transaction's conditions and operations.

The SDK reads answers into KeyValue, Change and SnapshotInfo and writes its requests from Put, Remove and
the conditions VersionIs, Exists and ValueIs; the server writes its own keys, changes and snapshots with
the same writers, as they are (the ...Like protocols: times as datetimes or epoch seconds, a change's
type in either case), and reads the requests with request=True (a WireError names the offending field).
GetKey renders a key once per change and SetKey answers with the Value it was sent: key_value_pb takes
that Value apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from google.protobuf.struct_pb2 import Value

from ..v1 import state_pb2
from ._conditions import seconds_from_pb
from ._enums import EnumTable
from ._errors import WireError
from ._executions import Time
from ._values import from_value, to_datetime, to_duration, to_timestamp, to_value

WATCH_EVENT_TYPES = EnumTable.of(state_pb2.WatchEventType)  # put, delete


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: Any
    version: int
    create_revision: int
    mod_revision: int
    expire_time: datetime | None
    update_time: datetime | None


@dataclass(frozen=True)
class Change:
    type: str  # "put" or "delete"
    key: str
    kv: KeyValue
    revision: int
    previous: KeyValue | None = None


@dataclass(frozen=True)
class SnapshotInfo:
    id: str
    revision: int
    key_count: int
    prefix: str
    description: str
    create_time: datetime | None


# -- a transaction's conditions and operations -------------------------------------------------------


@dataclass(frozen=True)
class VersionIs:
    """Condition: the key's version equals `version` (0 = the key does not exist)."""

    key: str
    version: int


@dataclass(frozen=True)
class Exists:
    key: str
    exists: bool = True


@dataclass(frozen=True)
class ValueIs:
    key: str
    value: Any


@dataclass(frozen=True)
class Put:
    """A SetKey request, or a transaction's set."""

    key: str
    value: Any
    expected_version: int | None = None
    ttl: float | timedelta | None = None  # None (or zero) = never expires


@dataclass(frozen=True)
class Remove:
    """A DeleteKey request, or a transaction's delete."""

    key: str
    expected_version: int | None = None


StateCondition = VersionIs | Exists | ValueIs
StateOperation = Put | Remove


class KeyValueLike(Protocol):
    """What key_value_pb reads (the SDK's KeyValue, or the server's)."""

    @property
    def key(self) -> str: ...
    @property
    def value(self) -> Any: ...
    @property
    def version(self) -> int: ...
    @property
    def create_revision(self) -> int: ...
    @property
    def mod_revision(self) -> int: ...
    @property
    def expire_time(self) -> Time: ...
    @property
    def update_time(self) -> Time: ...


class ChangeLike(Protocol):
    """What the change writers read: `type` "put" or "delete" in any case."""

    @property
    def type(self) -> str: ...
    @property
    def kv(self) -> KeyValueLike: ...
    @property
    def revision(self) -> int: ...
    @property
    def previous(self) -> KeyValueLike | None: ...


class SnapshotInfoLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def revision(self) -> int: ...
    @property
    def key_count(self) -> int: ...
    @property
    def prefix(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def create_time(self) -> Time: ...


def key_value_pb(
    kv: KeyValueLike, value: Value | None = None, *, with_value: bool = True
) -> state_pb2.KeyValue:
    """`value`: kv.value already as a message, when the caller has it. Without a value (a deleted key's
    change) the field is absent."""
    return state_pb2.KeyValue(
        key=kv.key,
        value=(value if value is not None else to_value(kv.value)) if with_value else None,
        version=kv.version,
        create_revision=kv.create_revision,
        mod_revision=kv.mod_revision,
        expire_time=to_timestamp(kv.expire_time),
        update_time=to_timestamp(kv.update_time),
    )


def key_value_from_pb(m: state_pb2.KeyValue) -> KeyValue:
    return KeyValue(
        key=m.key,
        value=from_value(m.value) if m.HasField("value") else None,
        version=m.version,
        create_revision=m.create_revision,
        mod_revision=m.mod_revision,
        expire_time=to_datetime(m.expire_time, m.HasField("expire_time")),
        update_time=to_datetime(m.update_time, m.HasField("update_time")),
    )


def _change_parts(c: ChangeLike) -> tuple[state_pb2.WatchEventType, state_pb2.KeyValue]:
    kind = c.type.lower()
    return WATCH_EVENT_TYPES.numbers[kind], key_value_pb(c.kv, with_value=kind == "put")


def watch_response_pb(c: ChangeLike, *, include_previous: bool = False) -> state_pb2.WatchResponse:
    """One change as Watch sends it: a delete's kv has no value; `previous` only when asked for (and
    there is one)."""
    kind, kv = _change_parts(c)
    m = state_pb2.WatchResponse(type=kind, kv=kv, revision=c.revision)
    if include_previous and c.previous is not None:
        m.previous.CopyFrom(key_value_pb(c.previous))
    return m


def history_entry_pb(c: ChangeLike) -> state_pb2.HistoryEntry:
    kind, kv = _change_parts(c)
    return state_pb2.HistoryEntry(type=kind, kv=kv, revision=c.revision)


def change_from_pb(m: state_pb2.WatchResponse | state_pb2.HistoryEntry) -> Change:
    """One change of a Watch (not a batch: read its `changes` one by one) or a history entry."""
    previous = (
        key_value_from_pb(m.previous)
        if isinstance(m, state_pb2.WatchResponse) and m.HasField("previous")
        else None
    )
    return Change(
        type=WATCH_EVENT_TYPES.names.get(m.type, "unknown"),
        key=m.kv.key,
        kv=key_value_from_pb(m.kv),
        revision=m.revision,
        previous=previous,
    )


def snapshot_pb(s: SnapshotInfoLike) -> state_pb2.SnapshotInfo:
    return state_pb2.SnapshotInfo(
        id=s.id,
        revision=s.revision,
        key_count=s.key_count,
        prefix=s.prefix,
        description=s.description,
        create_time=to_timestamp(s.create_time),
    )


def snapshot_from_pb(m: state_pb2.SnapshotInfo) -> SnapshotInfo:
    return SnapshotInfo(
        id=m.id,
        revision=m.revision,
        key_count=m.key_count,
        prefix=m.prefix,
        description=m.description,
        create_time=to_datetime(m.create_time, m.HasField("create_time")),
    )


def _at(field: str, name: str) -> str:
    return f"{field}.{name}" if field else name


def put_pb(p: Put) -> state_pb2.SetKeyRequest:
    m = state_pb2.SetKeyRequest(key=p.key, value=to_value(p.value))
    if p.expected_version is not None:
        m.expected_version = p.expected_version
    if p.ttl:
        m.ttl.CopyFrom(to_duration(p.ttl))
    return m


def put_from_pb(m: state_pb2.SetKeyRequest, field: str = "", *, request: bool = False) -> Put:
    """`field` names where the request sits ("" at the top level of SetKey). Read as a request, a missing
    value or a negative ttl is a WireError, and a zero ttl counts as unset."""
    if m.HasField("value"):
        value = from_value(m.value)
    elif request:
        raise WireError(
            _at(field, "value"), "a value is required (use a JSON null to store null)", "VALUE_INVALID"
        )
    else:
        value = None
    return Put(
        key=m.key,
        value=value,
        expected_version=m.expected_version if m.HasField("expected_version") else None,
        ttl=seconds_from_pb(m, "ttl", _at(field, "ttl"), request=request),
    )


def remove_pb(r: Remove) -> state_pb2.DeleteKeyRequest:
    m = state_pb2.DeleteKeyRequest(key=r.key)
    if r.expected_version is not None:
        m.expected_version = r.expected_version
    return m


def remove_from_pb(m: state_pb2.DeleteKeyRequest) -> Remove:
    return Remove(m.key, m.expected_version if m.HasField("expected_version") else None)


def state_condition_pb(c: StateCondition) -> state_pb2.StateCondition:
    if isinstance(c, VersionIs):
        return state_pb2.StateCondition(key=c.key, version_equals=c.version)
    if isinstance(c, Exists):
        return state_pb2.StateCondition(key=c.key, exists=c.exists)
    if isinstance(c, ValueIs):
        return state_pb2.StateCondition(key=c.key, value_equals=to_value(c.value))
    raise TypeError(f"not a condition: {c!r} (use VersionIs, Exists or ValueIs)")


def state_condition_from_pb(m: state_pb2.StateCondition, field: str = "condition") -> StateCondition:
    """A condition without a check is a WireError (there is nothing to read it as)."""
    check = m.WhichOneof("check")
    if check == "version_equals":
        return VersionIs(m.key, m.version_equals)
    if check == "exists":
        return Exists(m.key, m.exists)
    if check == "value_equals":
        return ValueIs(m.key, from_value(m.value_equals))
    raise WireError(field, "a condition needs version_equals, exists or value_equals", "FIELD_REQUIRED")


def state_operation_pb(op: StateOperation) -> state_pb2.StateOperation:
    if isinstance(op, Put):
        return state_pb2.StateOperation(set=put_pb(op))
    if isinstance(op, Remove):
        return state_pb2.StateOperation(delete=remove_pb(op))
    raise TypeError(f"not an operation: {op!r} (use Put or Remove)")


def state_operation_from_pb(
    m: state_pb2.StateOperation, field: str = "operation", *, request: bool = False
) -> StateOperation:
    """An operation with neither set nor delete is a WireError (there is nothing to read it as)."""
    kind = m.WhichOneof("op")
    if kind == "set":
        return put_from_pb(m.set, f"{field}.set", request=request)
    if kind == "delete":
        return remove_from_pb(m.delete)
    raise WireError(field, "an operation needs set or delete", "FIELD_REQUIRED")
