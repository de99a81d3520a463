"""client.state: global key/value state with revisions, compare-and-set, watch and snapshots."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from voltorch.v1 import state_pb2, state_pb2_grpc

from ._rpc import RECONNECT_TIMEOUT, STREAM_BATCH, Reconnect, call, pages, stream
from .errors import ResourceExhaustedError, UnavailableError
from .wire import from_value, to_datetime, to_duration, to_value


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
class SetResult:
    kv: KeyValue
    revision: int


@dataclass(frozen=True)
class Change:
    type: str  # "put" or "delete"
    key: str
    kv: KeyValue
    revision: int
    previous: KeyValue | None = None


@dataclass(frozen=True)
class TransactionResult:
    succeeded: bool
    revision: int
    failed_conditions: list[int]
    kvs: list[KeyValue]


@dataclass(frozen=True)
class SnapshotInfo:
    id: str
    revision: int
    key_count: int
    prefix: str
    description: str
    create_time: datetime | None


@dataclass(frozen=True)
class RestoreResult:
    revision: int
    keys_restored: int
    keys_deleted: int


# -- transaction building blocks ------------------------------------------------------------------


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
    key: str
    value: Any
    expected_version: int | None = None
    ttl: float | timedelta | None = None


@dataclass(frozen=True)
class Remove:
    key: str
    expected_version: int | None = None


_TYPE_NAMES = {state_pb2.WATCH_EVENT_TYPE_PUT: "put", state_pb2.WATCH_EVENT_TYPE_DELETE: "delete"}


def _kv(pb: state_pb2.KeyValue) -> KeyValue:
    return KeyValue(
        key=pb.key,
        value=from_value(pb.value) if pb.HasField("value") else None,
        version=pb.version,
        create_revision=pb.create_revision,
        mod_revision=pb.mod_revision,
        expire_time=to_datetime(pb.expire_time, pb.HasField("expire_time")),
        update_time=to_datetime(pb.update_time, pb.HasField("update_time")),
    )


def _snap(pb: state_pb2.SnapshotInfo) -> SnapshotInfo:
    return SnapshotInfo(
        pb.id, pb.revision, pb.key_count, pb.prefix, pb.description, to_datetime(pb.create_time)
    )


def _set_req(
    key: str, value: Any, expected_version: int | None, ttl: float | timedelta | None
) -> state_pb2.SetKeyRequest:
    req = state_pb2.SetKeyRequest(key=key, value=to_value(value))
    if expected_version is not None:
        req.expected_version = expected_version
    if ttl:
        req.ttl.CopyFrom(to_duration(ttl))
    return req


def _condition(c: VersionIs | Exists | ValueIs) -> state_pb2.StateCondition:
    if isinstance(c, VersionIs):
        return state_pb2.StateCondition(key=c.key, version_equals=c.version)
    if isinstance(c, Exists):
        return state_pb2.StateCondition(key=c.key, exists=c.exists)
    if isinstance(c, ValueIs):
        return state_pb2.StateCondition(key=c.key, value_equals=to_value(c.value))
    raise TypeError(f"not a condition: {c!r} (use VersionIs, Exists or ValueIs)")


def _operation(op: Put | Remove) -> state_pb2.StateOperation:
    if isinstance(op, Put):
        return state_pb2.StateOperation(set=_set_req(op.key, op.value, op.expected_version, op.ttl))
    if isinstance(op, Remove):
        d = state_pb2.DeleteKeyRequest(key=op.key)
        if op.expected_version is not None:
            d.expected_version = op.expected_version
        return state_pb2.StateOperation(delete=d)
    raise TypeError(f"not an operation: {op!r} (use Put or Remove)")


class StateClient:
    def __init__(self, stub: state_pb2_grpc.StateServiceStub, timeout: float | None):
        self.stub = stub
        self.timeout = timeout

    def get(self, key: str) -> KeyValue:
        return _kv(call(self.stub.GetKey, state_pb2.GetKeyRequest(key=key), timeout=self.timeout).kv)

    def get_value(self, key: str, default: Any = None) -> Any:
        """The key's value, or `default` when it does not exist."""
        from .errors import NotFoundError

        try:
            return self.get(key).value
        except NotFoundError:
            return default

    def set(
        self,
        key: str,
        value: Any,
        *,
        expected_version: int | None = None,
        ttl: float | timedelta | None = None,
    ) -> SetResult:
        resp = call(self.stub.SetKey, _set_req(key, value, expected_version, ttl), timeout=self.timeout)
        return SetResult(_kv(resp.kv), resp.revision)

    def delete(self, key: str, *, expected_version: int | None = None) -> int:
        """Delete a key; returns the revision of the delete."""
        req = state_pb2.DeleteKeyRequest(key=key)
        if expected_version is not None:
            req.expected_version = expected_version
        return call(self.stub.DeleteKey, req, timeout=self.timeout).revision

    def list_page(
        self, prefix: str = "", *, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[KeyValue], str]:
        resp = call(
            self.stub.ListKeys,
            state_pb2.ListKeysRequest(prefix=prefix, page_size=page_size, page_token=page_token),
            timeout=self.timeout,
        )
        return [_kv(k) for k in resp.kvs], resp.next_page_token

    def list(self, prefix: str = "", *, page_size: int = 0) -> Iterator[KeyValue]:
        """Every key under prefix, in key order, fetched page by page."""
        return pages(lambda tok: self.list_page(prefix, page_size=page_size, page_token=tok))

    def transaction(
        self,
        conditions: Sequence[VersionIs | Exists | ValueIs] = (),
        on_success: Sequence[Put | Remove] = (),
        on_failure: Sequence[Put | Remove] = (),
    ) -> TransactionResult:
        req = state_pb2.TransactionRequest(
            conditions=[_condition(c) for c in conditions],
            on_success=[_operation(o) for o in on_success],
            on_failure=[_operation(o) for o in on_failure],
        )
        resp = call(self.stub.Transaction, req, timeout=self.timeout)
        return TransactionResult(
            resp.succeeded, resp.revision, list(resp.failed_conditions), [_kv(k) for k in resp.kvs]
        )

    def watch(
        self,
        key: str | None = None,
        *,
        prefix: str | None = None,
        start_revision: int = 0,
        include_previous: bool = False,
        resume: bool = True,
    ) -> Generator[Change, None, None]:
        """Changes of a key (or every key under prefix), from start_revision, then live.

        The stream opens on the first iteration; start_revision=0 means changes from then on, so to
        miss nothing after a write you made, pass its revision + 1. With resume=True a stream the
        server ends with a resume point (slow consumer, restart) is reopened from there, skipping
        what was already delivered, so nothing is missed or repeated.
        """
        if (key is None) == (prefix is None):
            raise ValueError("watch needs exactly one of key or prefix")
        return self._watch(key, prefix, start_revision, include_previous, resume)

    def _watch(
        self, key: str | None, prefix: str | None, start_revision: int, include_previous: bool, resume: bool
    ) -> Generator[Change, None, None]:
        revision = start_revision
        # A resumed stream restarts at a revision, and one revision can hold several changes (a
        # transaction, or a TTL expiry plus the write that noticed it). Skip what was already yielded:
        # every change of an older revision, and the first `count` changes of the last one.
        last_rev, count = 0, 0
        backoff = Reconnect(RECONNECT_TIMEOUT)
        while True:
            req = state_pb2.WatchRequest(
                start_revision=revision, include_previous=include_previous, max_batch=STREAM_BATCH
            )
            if key is not None:
                req.key = key
            else:
                req.prefix = prefix or ""
            skip = count
            try:
                for batch in stream(self.stub.Watch, req):
                    for resp in batch.changes or (batch,):  # a server without batching sends single changes
                        if resp.revision < last_rev:
                            continue
                        if resp.revision == last_rev:
                            if skip:
                                skip -= 1
                                continue
                            count += 1
                        else:
                            last_rev, count, skip = resp.revision, 1, 0
                        backoff.progress()
                        yield Change(
                            type=_TYPE_NAMES.get(resp.type, "unknown"),
                            key=resp.kv.key,
                            kv=_kv(resp.kv),
                            revision=resp.revision,
                            previous=_kv(resp.previous) if resp.HasField("previous") else None,
                        )
                return
            except (ResourceExhaustedError, UnavailableError) as exc:
                nxt = exc.metadata.get("start_revision")
                if not resume:
                    raise
                if nxt is not None:
                    revision = int(nxt)
                    continue
                # Gone without a resume point (killed): reopen at the last revision delivered (its changes
                # already yielded are skipped), on whichever server the channel reaches now.
                delay = backoff.next_delay()
                if not isinstance(exc, UnavailableError) or delay is None:
                    raise
                revision = last_rev or revision
                time.sleep(delay)

    def history(self, key: str, *, page_size: int = 0) -> Iterator[Change]:
        """The recorded changes of a key, newest first."""

        def fetch(tok: str) -> tuple[list[Change], str]:
            resp = call(
                self.stub.GetHistory,
                state_pb2.GetHistoryRequest(key=key, page_size=page_size, page_token=tok),
                timeout=self.timeout,
            )
            return [
                Change(_TYPE_NAMES.get(e.type, "unknown"), e.kv.key, _kv(e.kv), e.revision)
                for e in resp.entries
            ], resp.next_page_token

        return pages(fetch)

    def snapshot(self, prefix: str = "", *, description: str = "") -> SnapshotInfo:
        req = state_pb2.CreateSnapshotRequest(prefix=prefix, description=description)
        return _snap(call(self.stub.CreateSnapshot, req, timeout=self.timeout).snapshot)

    def restore(self, snapshot_id: str) -> RestoreResult:
        resp = call(
            self.stub.RestoreSnapshot,
            state_pb2.RestoreSnapshotRequest(snapshot_id=snapshot_id),
            timeout=self.timeout,
        )
        return RestoreResult(resp.revision, resp.keys_restored, resp.keys_deleted)

    def snapshots(self, *, page_size: int = 0) -> Iterator[SnapshotInfo]:
        def fetch(tok: str) -> tuple[list[SnapshotInfo], str]:
            resp = call(
                self.stub.ListSnapshots,
                state_pb2.ListSnapshotsRequest(page_size=page_size, page_token=tok),
                timeout=self.timeout,
            )
            return [_snap(s) for s in resp.snapshots], resp.next_page_token

        return pages(fetch)
