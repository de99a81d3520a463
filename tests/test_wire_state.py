"""voltorch.wire's state mapping: the server writes its keys, changes and snapshots as before (objects and
bytes, through its StateService on a real store with a fixed clock), reads SetKey and Transaction requests
strictly (a bad one names the field), the SDK writes its requests as before, and every type survives a
round trip."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format, struct_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Value
from google.protobuf.timestamp_pb2 import Timestamp
from voltorch import wire
from voltorch.v1 import state_pb2, state_pb2_grpc
from voltorch_server.app import VoltorchServer
from voltorch_server.components.events import EventLog
from voltorch_server.components.state import StateStore
from voltorch_server.errors import InvalidArgument
from voltorch_server.servicers.state import StateServicer
from voltorch_server.storage import Database, migrate
from voltorch_server.storage.stores import SqlEvents, SqlState

T = 1764589908  # whole seconds; the fractions below are exact in binary
NOW = T + 0.25


def _value(obj) -> Value:
    return json_format.ParseDict(obj, Value())


def _same_bytes(got: Message, expected: Message) -> bool:
    return got.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)


@pytest.fixture
def servicer(tmp_path: Path) -> Iterator[StateServicer]:
    """The StateService on a real store whose clock stands still at NOW."""
    db = Database(tmp_path / "state.db")
    migrate(db)
    store = StateStore(SqlState(db), EventLog(SqlEvents(db)), clock=lambda: NOW)
    yield StateServicer(store)
    store.stop()
    db.close()


def _kv(version: int, revision: int, created: int, value: Value | None, expire: Timestamp | None = None):
    return state_pb2.KeyValue(
        key="cfg/a",
        value=value,
        version=version,
        create_revision=created,
        mod_revision=revision,
        expire_time=expire,
        update_time=Timestamp(seconds=T, nanos=250_000_000),
    )


def test_the_server_writes_keys_as_before(servicer: StateServicer) -> None:
    ttl = Duration(seconds=90, nanos=500_000_000)
    put = servicer.SetKey(state_pb2.SetKeyRequest(key="cfg/a", value=_value({"n": 1}), ttl=ttl), None)
    expire = Timestamp(seconds=T + 90, nanos=750_000_000)
    first = _kv(1, 1, 1, _value({"n": 1}), expire)
    assert put == state_pb2.SetKeyResponse(kv=first, revision=1)
    assert _same_bytes(put, state_pb2.SetKeyResponse(kv=first, revision=1))

    got = servicer.GetKey(state_pb2.GetKeyRequest(key="cfg/a"), None)
    assert got == state_pb2.GetKeyResponse(kv=first) and _same_bytes(got.kv, first)

    second = servicer.SetKey(
        state_pb2.SetKeyRequest(key="cfg/a", value=_value("two"), expected_version=1), None
    )
    assert _same_bytes(second.kv, _kv(2, 2, 1, _value("two")))  # no ttl: no expire_time

    gone = servicer.DeleteKey(state_pb2.DeleteKeyRequest(key="cfg/a", expected_version=2), None)
    expected = state_pb2.DeleteKeyResponse(revision=3, previous=_kv(2, 2, 1, _value("two")))
    assert gone == expected and _same_bytes(gone, expected)

    listed = servicer.SetKey(state_pb2.SetKeyRequest(key="cfg/a", value=_value(3)), None)
    page = servicer.ListKeys(state_pb2.ListKeysRequest(prefix="cfg/"), None)
    expected_page = state_pb2.ListKeysResponse(kvs=[listed.kv], revision=4)
    assert page == expected_page and _same_bytes(page, expected_page)


def test_the_server_writes_history_as_before(servicer: StateServicer) -> None:
    servicer.SetKey(state_pb2.SetKeyRequest(key="cfg/a", value=_value("one")), None)
    servicer.DeleteKey(state_pb2.DeleteKeyRequest(key="cfg/a"), None)
    history = servicer.GetHistory(state_pb2.GetHistoryRequest(key="cfg/a"), None)
    expected = state_pb2.GetHistoryResponse(
        entries=[
            state_pb2.HistoryEntry(
                type=state_pb2.WATCH_EVENT_TYPE_DELETE, kv=_kv(1, 2, 1, None), revision=2
            ),  # a delete's kv: no value
            state_pb2.HistoryEntry(
                type=state_pb2.WATCH_EVENT_TYPE_PUT, kv=_kv(1, 1, 1, _value("one")), revision=1
            ),
        ]
    )
    assert history == expected and _same_bytes(history, expected)
    assert not history.entries[0].kv.HasField("value")


def test_the_server_writes_snapshots_as_before(servicer: StateServicer) -> None:
    servicer.SetKey(state_pb2.SetKeyRequest(key="cfg/a", value=_value(1)), None)
    made = servicer.CreateSnapshot(state_pb2.CreateSnapshotRequest(prefix="cfg/", description="d"), None)
    expected = state_pb2.SnapshotInfo(
        id=made.snapshot.id,  # a fresh id
        revision=1,
        key_count=1,
        prefix="cfg/",
        description="d",
        create_time=Timestamp(seconds=T, nanos=250_000_000),
    )
    assert made.snapshot.id.startswith("snap_")
    assert made == state_pb2.CreateSnapshotResponse(snapshot=expected) and _same_bytes(
        made.snapshot, expected
    )
    listed = servicer.ListSnapshots(state_pb2.ListSnapshotsRequest(), None)
    assert list(listed.snapshots) == [expected] and _same_bytes(listed.snapshots[0], expected)


def test_the_server_reads_a_transaction(servicer: StateServicer) -> None:
    servicer.SetKey(state_pb2.SetKeyRequest(key="a", value=_value(1)), None)
    request = state_pb2.TransactionRequest(
        conditions=[
            state_pb2.StateCondition(key="a", version_equals=1),
            state_pb2.StateCondition(key="b", exists=False),
            state_pb2.StateCondition(key="a", value_equals=_value(1)),
        ],
        on_success=[
            state_pb2.StateOperation(
                set=state_pb2.SetKeyRequest(key="b", value=_value("x"), ttl=Duration(seconds=10))
            ),
            state_pb2.StateOperation(delete=state_pb2.DeleteKeyRequest(key="a", expected_version=1)),
        ],
    )
    done = servicer.Transaction(request, None)
    b = state_pb2.KeyValue(
        key="b",
        value=_value("x"),
        version=1,
        create_revision=2,
        mod_revision=2,
        expire_time=Timestamp(seconds=T + 10, nanos=250_000_000),
        update_time=Timestamp(seconds=T, nanos=250_000_000),
    )
    expected = state_pb2.TransactionResponse(succeeded=True, revision=2, kvs=[b])
    assert done == expected and _same_bytes(done, expected)
    failed = servicer.Transaction(
        state_pb2.TransactionRequest(
            conditions=[state_pb2.StateCondition(key="b", exists=False)],
            on_failure=[state_pb2.StateOperation(set=state_pb2.SetKeyRequest(key="c", value=_value(2)))],
        ),
        None,
    )
    assert (failed.succeeded, list(failed.failed_conditions), [k.key for k in failed.kvs]) == (
        False,
        [0],
        ["c"],
    )


@pytest.mark.parametrize(
    ("call", "request_", "field", "reason"),
    [
        ("SetKey", state_pb2.SetKeyRequest(key="k"), "value", "VALUE_INVALID"),
        (
            "SetKey",
            state_pb2.SetKeyRequest(key="k", value=_value(1), ttl=Duration(seconds=-1)),
            "ttl",
            "DURATION_INVALID",
        ),
        (
            "Transaction",
            state_pb2.TransactionRequest(conditions=[state_pb2.StateCondition(key="k")]),
            "conditions[0]",
            "FIELD_REQUIRED",
        ),
        (
            "Transaction",
            state_pb2.TransactionRequest(on_success=[state_pb2.StateOperation()]),
            "on_success[0]",
            "FIELD_REQUIRED",
        ),
        (
            "Transaction",
            state_pb2.TransactionRequest(
                on_failure=[
                    state_pb2.StateOperation(delete=state_pb2.DeleteKeyRequest(key="x")),
                    state_pb2.StateOperation(set=state_pb2.SetKeyRequest(key="k")),
                ]
            ),
            "on_failure[1].set.value",
            "VALUE_INVALID",
        ),
        (
            "Transaction",
            state_pb2.TransactionRequest(
                on_success=[
                    state_pb2.StateOperation(
                        set=state_pb2.SetKeyRequest(key="k", value=_value(1), ttl=Duration(nanos=-1))
                    )
                ]
            ),
            "on_success[0].set.ttl",
            "DURATION_INVALID",
        ),
    ],
)
def test_a_bad_request_names_the_field(
    servicer: StateServicer, call: str, request_: Message, field: str, reason: str
) -> None:
    with pytest.raises(InvalidArgument) as err:
        getattr(servicer, call)(request_, None)
    assert err.value.violations[0].field == field and err.value.reason == reason


def test_a_zero_ttl_never_expires(servicer: StateServicer) -> None:
    put = servicer.SetKey(state_pb2.SetKeyRequest(key="k", value=_value(1), ttl=Duration()), None)
    assert not put.kv.HasField("expire_time")


def test_the_server_writes_watched_changes_as_before(server: VoltorchServer) -> None:
    """Through a real server (its clock is the wall's): a put with its previous value, a delete without a
    value, each as the key's own KeyValue from SetKey."""
    with grpc.insecure_channel(server.target) as channel:
        stub = state_pb2_grpc.StateServiceStub(channel)
        one = stub.SetKey(state_pb2.SetKeyRequest(key="w", value=_value(1)), timeout=10)
        two = stub.SetKey(state_pb2.SetKeyRequest(key="w", value=_value(2)), timeout=10)
        stub.DeleteKey(state_pb2.DeleteKeyRequest(key="w"), timeout=10)
        watch = stub.Watch(
            state_pb2.WatchRequest(key="w", start_revision=one.revision + 1, include_previous=True),
            timeout=10,
        )
        got: list[state_pb2.WatchResponse] = []
        for batch in watch:
            got.extend(batch.changes or [batch])
            if len(got) >= 2:
                watch.cancel()
                break
    # What the store reports beyond SetKey's answers: a change's `previous` and a delete's kv carry the
    # change's own update time, and a delete's kv its revision and no value.
    put_time, delete_time = got[0].kv.update_time, got[1].kv.update_time
    previous_put = _with(one.kv, update_time=put_time)
    deleted = _with(two.kv, value=None, mod_revision=two.revision + 1, update_time=delete_time)
    expected = [
        state_pb2.WatchResponse(
            type=state_pb2.WATCH_EVENT_TYPE_PUT, kv=two.kv, revision=two.revision, previous=previous_put
        ),
        state_pb2.WatchResponse(
            type=state_pb2.WATCH_EVENT_TYPE_DELETE,
            kv=deleted,
            revision=two.revision + 1,
            previous=_with(two.kv, update_time=delete_time),
        ),
    ]
    assert got == expected and all(_same_bytes(g, e) for g, e in zip(got, expected, strict=True))
    assert not got[1].kv.HasField("value")


def _with(kv: state_pb2.KeyValue, **changes) -> state_pb2.KeyValue:
    out = state_pb2.KeyValue()
    out.CopyFrom(kv)
    for name, value in changes.items():
        out.ClearField(name)
        if value is not None:
            getattr(out, name).CopyFrom(value) if isinstance(value, Message) else setattr(out, name, value)
    return out


# -- the SDK's side -------------------------------------------------------------------------------------


def test_the_sdk_writes_its_requests_as_before() -> None:
    put = wire.put_pb(wire.Put("k", {"n": 1}, expected_version=0, ttl=timedelta(seconds=1, microseconds=5)))
    expected = state_pb2.SetKeyRequest(
        key="k", value=_value({"n": 1}), expected_version=0, ttl=Duration(seconds=1, nanos=5000)
    )
    assert put == expected and _same_bytes(put, expected) and put.HasField("expected_version")
    bare = wire.put_pb(wire.Put("k", None, ttl=0))  # a zero ttl is not sent
    assert bare == state_pb2.SetKeyRequest(key="k", value=Value(null_value=struct_pb2.NULL_VALUE))
    assert not bare.HasField("expected_version") and not bare.HasField("ttl")
    remove = wire.remove_pb(wire.Remove("k", 3))
    assert remove == state_pb2.DeleteKeyRequest(key="k", expected_version=3)
    assert not wire.remove_pb(wire.Remove("k")).HasField("expected_version")
    conditions = [
        wire.state_condition_pb(c)
        for c in (wire.VersionIs("a", 0), wire.Exists("b", False), wire.ValueIs("c", [1, "x"]))
    ]
    listed = Value()
    listed.list_value.extend([1, "x"])
    expected_conditions = [
        state_pb2.StateCondition(key="a", version_equals=0),
        state_pb2.StateCondition(key="b", exists=False),
        state_pb2.StateCondition(key="c", value_equals=listed),
    ]
    assert conditions == expected_conditions
    assert [c.WhichOneof("check") for c in conditions] == ["version_equals", "exists", "value_equals"]
    ops = [wire.state_operation_pb(o) for o in (wire.Put("a", 1), wire.Remove("b", 2))]
    assert ops == [
        state_pb2.StateOperation(set=state_pb2.SetKeyRequest(key="a", value=_value(1))),
        state_pb2.StateOperation(delete=state_pb2.DeleteKeyRequest(key="b", expected_version=2)),
    ]
    with pytest.raises(TypeError, match="not a condition"):
        wire.state_condition_pb(wire.Put("a", 1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not an operation"):
        wire.state_operation_pb(wire.VersionIs("a", 1))  # type: ignore[arg-type]


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def test_keys_changes_and_snapshots_survive_a_round_trip() -> None:
    kv = _kv(2, 5, 1, _value({"n": 1}), Timestamp(seconds=T + 90, nanos=750_000_000))
    read = wire.key_value_from_pb(kv)
    assert read == wire.KeyValue("cfg/a", {"n": 1}, 2, 1, 5, _at(T + 90.75), _at(T + 0.25))
    assert _same_bytes(wire.key_value_pb(read), kv)

    previous = _kv(1, 4, 1, _value("old"))
    watched = state_pb2.WatchResponse(
        type=state_pb2.WATCH_EVENT_TYPE_PUT, kv=kv, revision=5, previous=previous
    )
    change = wire.change_from_pb(watched)
    assert change == wire.Change("put", "cfg/a", read, 5, wire.key_value_from_pb(previous))
    assert _same_bytes(wire.watch_response_pb(change, include_previous=True), watched)
    without = wire.watch_response_pb(change)
    assert not without.HasField("previous")

    entry = state_pb2.HistoryEntry(type=state_pb2.WATCH_EVENT_TYPE_DELETE, kv=_kv(2, 6, 1, None), revision=6)
    deleted = wire.change_from_pb(entry)
    assert (deleted.type, deleted.kv.value, deleted.previous) == ("delete", None, None)
    assert _same_bytes(wire.history_entry_pb(deleted), entry)

    snap = state_pb2.SnapshotInfo(
        id="snap_1", revision=3, key_count=2, prefix="p/", description="d", create_time=Timestamp(seconds=T)
    )
    info = wire.snapshot_from_pb(snap)
    assert info == wire.SnapshotInfo("snap_1", 3, 2, "p/", "d", _at(T))
    assert _same_bytes(wire.snapshot_pb(info), snap)


def test_requests_survive_a_round_trip() -> None:
    put = wire.Put("k", {"n": [1, None]}, 4, 1.5)
    assert wire.put_from_pb(wire.put_pb(put), request=True) == put
    assert wire.put_from_pb(state_pb2.SetKeyRequest(key="k")) == wire.Put("k", None)  # leniently
    assert wire.remove_from_pb(wire.remove_pb(wire.Remove("k", 0))) == wire.Remove("k", 0)
    for c in (wire.VersionIs("a", 3), wire.Exists("b"), wire.ValueIs("c", {"x": "y"})):
        assert wire.state_condition_from_pb(wire.state_condition_pb(c)) == c
    for o in (put, wire.Remove("k")):
        assert wire.state_operation_from_pb(wire.state_operation_pb(o), request=True) == o
