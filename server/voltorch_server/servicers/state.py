"""StateService: proto <-> StateStore."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from google.protobuf.struct_pb2 import Value
from voltorch.v1 import state_pb2, state_pb2_grpc

from ..components.state import PUT, Change, Condition, DeleteOp, KeyValue, SetOp, StateStore
from ..errors import InvalidArgument
from ._convert import duration_to_seconds, py_to_value, ts, value_to_py
from ._streams import Batching, batch_limit, pump

_TYPES = {"PUT": state_pb2.WATCH_EVENT_TYPE_PUT, "DELETE": state_pb2.WATCH_EVENT_TYPE_DELETE}


def kv_pb(kv: KeyValue, value: Value | None = None) -> state_pb2.KeyValue:
    """kv as a message; `value` is kv.value already as a message: SetKey answers with the Value it was
    sent (equal as JSON to what was stored; saves converting the value back)."""
    return state_pb2.KeyValue(
        key=kv.key,
        value=value if value is not None else py_to_value(kv.value),
        version=kv.version,
        create_revision=kv.create_revision,
        mod_revision=kv.mod_revision,
        expire_time=ts(kv.expire_time),
        update_time=ts(kv.update_time),
    )


def _change_kv_pb(c: Change) -> state_pb2.KeyValue:
    pb = kv_pb(c.kv)
    if c.type != PUT:
        pb.ClearField("value")
    return pb


def _set_op(req: state_pb2.SetKeyRequest, prefix: str) -> SetOp:
    """A SetOp from a SetKeyRequest; prefix names where the request sits ("" at top level)."""
    if not req.HasField("value"):
        raise InvalidArgument(
            f"{prefix}value", "a value is required (use a JSON null to store null)", reason="VALUE_INVALID"
        )
    return SetOp(
        key=req.key,
        value=value_to_py(req.value),
        expected_version=req.expected_version if req.HasField("expected_version") else None,
        ttl=duration_to_seconds(req.ttl, f"{prefix}ttl") if req.HasField("ttl") else None,
    )


def _ops(ops, name: str) -> list[SetOp | DeleteOp]:
    out: list[SetOp | DeleteOp] = []
    for i, op in enumerate(ops):
        kind = op.WhichOneof("op")
        if kind == "set":
            out.append(_set_op(op.set, f"{name}[{i}].set."))
        elif kind == "delete":
            d = op.delete
            out.append(DeleteOp(d.key, d.expected_version if d.HasField("expected_version") else None))
        else:
            raise InvalidArgument(f"{name}[{i}]", "an operation needs set or delete", reason="FIELD_REQUIRED")
    return out


class StateServicer(state_pb2_grpc.StateServiceServicer):
    def __init__(self, state: StateStore):
        self.state = state

    def GetKey(
        self, request: state_pb2.GetKeyRequest, context: grpc.ServicerContext
    ) -> state_pb2.GetKeyResponse:
        # The KeyValue message is made once per change of a key and shared (read-only) by its readers.
        return state_pb2.GetKeyResponse(kv=self.state.get_rendered(request.key, kv_pb))

    def SetKey(
        self, request: state_pb2.SetKeyRequest, context: grpc.ServicerContext
    ) -> state_pb2.SetKeyResponse:
        op = _set_op(request, "")
        kv, revision = self.state.set(op.key, op.value, expected_version=op.expected_version, ttl=op.ttl)
        return state_pb2.SetKeyResponse(kv=kv_pb(kv, request.value), revision=revision)

    def DeleteKey(
        self, request: state_pb2.DeleteKeyRequest, context: grpc.ServicerContext
    ) -> state_pb2.DeleteKeyResponse:
        expected = request.expected_version if request.HasField("expected_version") else None
        revision, prev = self.state.delete(request.key, expected_version=expected)
        return state_pb2.DeleteKeyResponse(revision=revision, previous=kv_pb(prev))

    def ListKeys(
        self, request: state_pb2.ListKeysRequest, context: grpc.ServicerContext
    ) -> state_pb2.ListKeysResponse:
        kvs, token, revision = self.state.list(request.prefix, request.page_size, request.page_token)
        return state_pb2.ListKeysResponse(
            kvs=[kv_pb(k) for k in kvs], next_page_token=token, revision=revision
        )

    def Transaction(
        self, request: state_pb2.TransactionRequest, context: grpc.ServicerContext
    ) -> state_pb2.TransactionResponse:
        conditions = []
        for i, c in enumerate(request.conditions):
            check = c.WhichOneof("check")
            if check is None:
                raise InvalidArgument(
                    f"conditions[{i}]",
                    "a condition needs version_equals, exists or value_equals",
                    reason="FIELD_REQUIRED",
                )
            conditions.append(
                Condition(
                    key=c.key,
                    version_equals=c.version_equals if check == "version_equals" else None,
                    exists=c.exists if check == "exists" else None,
                    value_equals=value_to_py(c.value_equals) if check == "value_equals" else None,
                    has_value_equals=check == "value_equals",
                )
            )
        result = self.state.transaction(
            conditions, _ops(request.on_success, "on_success"), _ops(request.on_failure, "on_failure")
        )
        return state_pb2.TransactionResponse(
            succeeded=result.succeeded,
            revision=result.revision,
            failed_conditions=result.failed_conditions,
            kvs=[kv_pb(k) for k in result.kvs],
        )

    def Watch(
        self, request: state_pb2.WatchRequest, context: grpc.ServicerContext
    ) -> Iterator[state_pb2.WatchResponse]:
        target = request.WhichOneof("target")
        max_batch = batch_limit(request.max_batch)
        follower = self.state.watch(
            key=request.key if target == "key" else None,
            prefix=request.prefix if target == "prefix" else "",
            start_revision=request.start_revision,
        )

        def render(c: Change) -> state_pb2.WatchResponse:
            resp = state_pb2.WatchResponse(type=_TYPES[c.type], kv=_change_kv_pb(c), revision=c.revision)
            if request.include_previous and c.previous is not None:
                resp.previous.CopyFrom(kv_pb(c.previous))
            return resp

        yield from pump(
            follower,
            context,
            render,
            resume_point=lambda pos: ("start_revision", self.state.revision_at(pos)),
            batching=Batching(max_batch, _watch_batch) if max_batch else None,
        )

    def GetHistory(
        self, request: state_pb2.GetHistoryRequest, context: grpc.ServicerContext
    ) -> state_pb2.GetHistoryResponse:
        changes, token = self.state.history(request.key, request.page_size, request.page_token)
        return state_pb2.GetHistoryResponse(
            entries=[
                state_pb2.HistoryEntry(type=_TYPES[c.type], kv=_change_kv_pb(c), revision=c.revision)
                for c in changes
            ],
            next_page_token=token,
        )

    def CreateSnapshot(
        self, request: state_pb2.CreateSnapshotRequest, context: grpc.ServicerContext
    ) -> state_pb2.CreateSnapshotResponse:
        return state_pb2.CreateSnapshotResponse(
            snapshot=_snap_pb(self.state.snapshot(request.prefix, request.description))
        )

    def RestoreSnapshot(
        self, request: state_pb2.RestoreSnapshotRequest, context: grpc.ServicerContext
    ) -> state_pb2.RestoreSnapshotResponse:
        r = self.state.restore(request.snapshot_id)
        return state_pb2.RestoreSnapshotResponse(
            revision=r.revision, keys_restored=r.keys_restored, keys_deleted=r.keys_deleted
        )

    def ListSnapshots(
        self, request: state_pb2.ListSnapshotsRequest, context: grpc.ServicerContext
    ) -> state_pb2.ListSnapshotsResponse:
        snaps, token = self.state.list_snapshots(request.page_size, request.page_token)
        return state_pb2.ListSnapshotsResponse(snapshots=[_snap_pb(s) for s in snaps], next_page_token=token)


def _watch_batch(changes: list[state_pb2.WatchResponse]) -> state_pb2.WatchResponse:
    return state_pb2.WatchResponse(changes=changes)


def _snap_pb(s) -> state_pb2.SnapshotInfo:
    return state_pb2.SnapshotInfo(
        id=s.id,
        revision=s.revision,
        key_count=s.key_count,
        prefix=s.prefix,
        description=s.description,
        create_time=ts(s.create_time),
    )


def register(server: grpc.Server, runtime) -> list[str]:
    state_pb2_grpc.add_StateServiceServicer_to_server(StateServicer(runtime.state), server)
    return ["voltorch.v1.StateService"]
