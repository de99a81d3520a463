"""StateService: proto <-> StateStore, through voltorch.wire (keys, changes and snapshots written as the
store has them; requests read strictly)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import grpc
from voltorch import wire
from voltorch.v1 import state_pb2, state_pb2_grpc

from ..components.state import Change, Condition, DeleteOp, SetOp, StateStore
from ._streams import Batching, batch_limit, pump
from ._wire import reading


def _ops(ops, name: str) -> list[SetOp | DeleteOp]:
    out: list[SetOp | DeleteOp] = []
    for i, pb in enumerate(ops):
        op = wire.state_operation_from_pb(pb, f"{name}[{i}]", request=True)
        if isinstance(op, wire.Put):
            out.append(SetOp(op.key, op.value, op.expected_version, _seconds(op.ttl)))
        else:
            out.append(DeleteOp(op.key, op.expected_version))
    return out


def _seconds(ttl: float | timedelta | None) -> float | None:
    """A Put's ttl (read from a request it is in seconds already; a timedelta comes from the SDK's)."""
    return ttl.total_seconds() if isinstance(ttl, timedelta) else ttl


def _condition(pb: state_pb2.StateCondition, field: str) -> Condition:
    c = wire.state_condition_from_pb(pb, field)
    if isinstance(c, wire.VersionIs):
        return Condition(c.key, version_equals=c.version)
    if isinstance(c, wire.Exists):
        return Condition(c.key, exists=c.exists)
    return Condition(c.key, value_equals=c.value, has_value_equals=True)


class StateServicer(state_pb2_grpc.StateServiceServicer):
    def __init__(self, state: StateStore):
        self.state = state

    def GetKey(
        self, request: state_pb2.GetKeyRequest, context: grpc.ServicerContext
    ) -> state_pb2.GetKeyResponse:
        # The KeyValue message is made once per change of a key and shared (read-only) by its readers.
        return state_pb2.GetKeyResponse(kv=self.state.get_rendered(request.key, wire.key_value_pb))

    def SetKey(
        self, request: state_pb2.SetKeyRequest, context: grpc.ServicerContext
    ) -> state_pb2.SetKeyResponse:
        with reading():
            op = wire.put_from_pb(request, request=True)
        kv, revision = self.state.set(
            op.key, op.value, expected_version=op.expected_version, ttl=_seconds(op.ttl)
        )
        return state_pb2.SetKeyResponse(kv=wire.key_value_pb(kv, request.value), revision=revision)

    def DeleteKey(
        self, request: state_pb2.DeleteKeyRequest, context: grpc.ServicerContext
    ) -> state_pb2.DeleteKeyResponse:
        op = wire.remove_from_pb(request)
        revision, prev = self.state.delete(op.key, expected_version=op.expected_version)
        return state_pb2.DeleteKeyResponse(revision=revision, previous=wire.key_value_pb(prev))

    def ListKeys(
        self, request: state_pb2.ListKeysRequest, context: grpc.ServicerContext
    ) -> state_pb2.ListKeysResponse:
        kvs, token, revision = self.state.list(request.prefix, request.page_size, request.page_token)
        return state_pb2.ListKeysResponse(
            kvs=[wire.key_value_pb(k) for k in kvs], next_page_token=token, revision=revision
        )

    def Transaction(
        self, request: state_pb2.TransactionRequest, context: grpc.ServicerContext
    ) -> state_pb2.TransactionResponse:
        with reading():
            conditions = [_condition(c, f"conditions[{i}]") for i, c in enumerate(request.conditions)]
            on_success, on_failure = (
                _ops(request.on_success, "on_success"),
                _ops(request.on_failure, "on_failure"),
            )
        result = self.state.transaction(conditions, on_success, on_failure)
        return state_pb2.TransactionResponse(
            succeeded=result.succeeded,
            revision=result.revision,
            failed_conditions=result.failed_conditions,
            kvs=[wire.key_value_pb(k) for k in result.kvs],
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
            return wire.watch_response_pb(c, include_previous=request.include_previous)

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
            entries=[wire.history_entry_pb(c) for c in changes],
            next_page_token=token,
        )

    def CreateSnapshot(
        self, request: state_pb2.CreateSnapshotRequest, context: grpc.ServicerContext
    ) -> state_pb2.CreateSnapshotResponse:
        return state_pb2.CreateSnapshotResponse(
            snapshot=wire.snapshot_pb(self.state.snapshot(request.prefix, request.description))
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
        return state_pb2.ListSnapshotsResponse(
            snapshots=[wire.snapshot_pb(s) for s in snaps], next_page_token=token
        )


def _watch_batch(changes: list[state_pb2.WatchResponse]) -> state_pb2.WatchResponse:
    return state_pb2.WatchResponse(changes=changes)


def register(server: grpc.Server, runtime) -> list[str]:
    state_pb2_grpc.add_StateServiceServicer_to_server(StateServicer(runtime.state), server)
    return ["voltorch.v1.StateService"]
