"""client.state: global key/value state with revisions, compare-and-set, watch and snapshots."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from voltorch.v1 import state_pb2, state_pb2_grpc

from ._rpc import RECONNECT_TIMEOUT, STREAM_BATCH, Reconnect, call, pages, stream
from .errors import ResourceExhaustedError, UnavailableError
from .wire import (
    Change,
    Exists,
    KeyValue,
    Put,
    Remove,
    SnapshotInfo,
    StateCondition,
    StateOperation,
    ValueIs,
    VersionIs,
    change_from_pb,
    key_value_from_pb,
    put_pb,
    remove_pb,
    snapshot_from_pb,
    state_condition_pb,
    state_operation_pb,
)

__all__ = [
    "Change",
    "Exists",
    "KeyValue",
    "Put",
    "Remove",
    "RestoreResult",
    "SetResult",
    "SnapshotInfo",
    "StateClient",
    "TransactionResult",
    "ValueIs",
    "VersionIs",
]


@dataclass(frozen=True)
class SetResult:
    kv: KeyValue
    revision: int


@dataclass(frozen=True)
class TransactionResult:
    succeeded: bool
    revision: int
    failed_conditions: list[int]
    kvs: list[KeyValue]


@dataclass(frozen=True)
class RestoreResult:
    revision: int
    keys_restored: int
    keys_deleted: int


class StateClient:
    def __init__(self, stub: state_pb2_grpc.StateServiceStub, timeout: float | None):
        self.stub = stub
        self.timeout = timeout

    def get(self, key: str) -> KeyValue:
        return key_value_from_pb(
            call(self.stub.GetKey, state_pb2.GetKeyRequest(key=key), timeout=self.timeout).kv
        )

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
        req = put_pb(Put(key, value, expected_version, ttl))
        resp = call(self.stub.SetKey, req, timeout=self.timeout)
        return SetResult(key_value_from_pb(resp.kv), resp.revision)

    def delete(self, key: str, *, expected_version: int | None = None) -> int:
        """Delete a key; returns the revision of the delete."""
        req = remove_pb(Remove(key, expected_version))
        return call(self.stub.DeleteKey, req, timeout=self.timeout).revision

    def list_page(
        self, prefix: str = "", *, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[KeyValue], str]:
        resp = call(
            self.stub.ListKeys,
            state_pb2.ListKeysRequest(prefix=prefix, page_size=page_size, page_token=page_token),
            timeout=self.timeout,
        )
        return [key_value_from_pb(k) for k in resp.kvs], resp.next_page_token

    def list(self, prefix: str = "", *, page_size: int = 0) -> Iterator[KeyValue]:
        """Every key under prefix, in key order, fetched page by page."""
        return pages(lambda tok: self.list_page(prefix, page_size=page_size, page_token=tok))

    def transaction(
        self,
        conditions: Sequence[StateCondition] = (),
        on_success: Sequence[StateOperation] = (),
        on_failure: Sequence[StateOperation] = (),
    ) -> TransactionResult:
        req = state_pb2.TransactionRequest(
            conditions=[state_condition_pb(c) for c in conditions],
            on_success=[state_operation_pb(o) for o in on_success],
            on_failure=[state_operation_pb(o) for o in on_failure],
        )
        resp = call(self.stub.Transaction, req, timeout=self.timeout)
        return TransactionResult(
            resp.succeeded,
            resp.revision,
            list(resp.failed_conditions),
            [key_value_from_pb(k) for k in resp.kvs],
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
                        yield change_from_pb(resp)
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
            return [change_from_pb(e) for e in resp.entries], resp.next_page_token

        return pages(fetch)

    def snapshot(self, prefix: str = "", *, description: str = "") -> SnapshotInfo:
        req = state_pb2.CreateSnapshotRequest(prefix=prefix, description=description)
        return snapshot_from_pb(call(self.stub.CreateSnapshot, req, timeout=self.timeout).snapshot)

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
            return [snapshot_from_pb(s) for s in resp.snapshots], resp.next_page_token

        return pages(fetch)
