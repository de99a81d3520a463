"""client.state end to end: every StateService RPC through the SDK against an in-process server."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta

import grpc
import pytest
import voltorch
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Value
from voltorch import Change, Exists, Put, Remove, ValueIs, VersionIs
from voltorch.errors import ConflictError, InvalidArgumentError, NotFoundError, from_rpc_error
from voltorch.v1 import state_pb2
from voltorch_server.app import VoltorchServer
from voltorch_server.components.events import EventFilter
from voltorch_server.config import Config

# -- helpers ----------------------------------------------------------------------------------------


BOTH_BACKENDS = True  # every test with a `server` runs on SQLite and on PostgreSQL (tests/conftest.py)


class Collector:
    """Drains an iterator on a daemon thread so the test can wait for items with a timeout."""

    def __init__(self, iterator: Iterator[Change]):
        self._q: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, args=(iterator,), daemon=True)
        self._thread.start()

    def _run(self, iterator: Iterator[Change]) -> None:
        try:
            for item in iterator:
                self._q.put(item)
        except Exception as exc:  # surfaced by take()
            self._q.put(exc)

    def take(self, n: int, timeout: float = 10.0) -> list[Change]:
        out: list[Change] = []
        for _ in range(n):
            try:
                item = self._q.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"only {len(out)} of {n} changes arrived: {out}") from None
            if isinstance(item, Exception):
                raise item
            out.append(item)
        return out


def _revision(client: voltorch.Client) -> int:
    return client.stubs.state.ListKeys(state_pb2.ListKeysRequest(page_size=1)).revision


def _state_events(server: VoltorchServer) -> list[dict]:
    return [e.data for e in server.runtime.events.read_after(0, 10_000) if e.type == "state.changed"]


# -- Get / Set / Delete ----------------------------------------------------------------------------


def test_set_get_delete_round_trip(client: voltorch.Client) -> None:
    value = {"max_retries": 3, "ratio": 0.5, "tags": ["a", "b"], "nested": {"ok": True}, "none": None}
    r1 = client.state.set("project.config", value)
    assert r1.kv.value == value and r1.kv.version == 1 and r1.revision == r1.kv.mod_revision
    assert r1.kv.expire_time is None and r1.kv.update_time is not None
    got = client.state.get("project.config")
    assert got == r1.kv
    assert client.state.get_value("missing", default="d") == "d"
    with pytest.raises(NotFoundError):
        client.state.get("missing")
    r2 = client.state.set("project.config", None)
    assert client.state.get("project.config").value is None and r2.kv.version == 2
    deleted_at = client.state.delete("project.config")
    assert deleted_at == r2.revision + 1
    with pytest.raises(NotFoundError):
        client.state.get("project.config")
    with pytest.raises(NotFoundError):
        client.state.delete("project.config")


def test_compare_and_set(client: voltorch.Client) -> None:
    created = client.state.set("cas", 1, expected_version=0)  # 0 = must not exist
    assert created.kv.version == 1
    with pytest.raises(ConflictError) as info:
        client.state.set("cas", 2, expected_version=0)
    assert info.value.metadata["current_version"] == "1"
    assert info.value.precondition_violations[0].subject == "cas"
    assert client.state.set("cas", 2, expected_version=1).kv.version == 2
    with pytest.raises(ConflictError):
        client.state.set("cas", 3, expected_version=1)
    with pytest.raises(ConflictError):
        client.state.delete("cas", expected_version=1)
    assert client.state.get("cas").value == 2
    client.state.delete("cas", expected_version=2)
    with pytest.raises(ConflictError):
        client.state.set("cas", 1, expected_version=2)  # gone: version 0


def test_ttl_expiry_deletes_with_a_change_and_an_event(
    client: voltorch.Client, server: VoltorchServer
) -> None:
    set_at = client.state.set("session", "abc", ttl=3600).revision
    kv = client.state.get("session")
    assert kv.expire_time is not None
    assert 3590 < kv.expire_time.timestamp() - time.time() <= 3600
    assert server.runtime.state.expire_due(now=time.time() + 7200) == 1
    with pytest.raises(NotFoundError):
        client.state.get("session")
    [change] = Collector(client.state.watch("session", start_revision=set_at + 1)).take(1)
    assert (change.type, change.revision, change.kv.version) == ("delete", set_at + 1, 1)
    assert _state_events(server)[-1]["type"] == "delete"
    assert [c.type for c in client.state.history("session")] == ["delete", "put"]


# -- List ------------------------------------------------------------------------------------------


def test_list_by_prefix_across_pages(client: voltorch.Client) -> None:
    for i in range(23):
        client.state.set(f"jobs/{i:02d}", i)
    client.state.set("jobsx", "not under jobs/")
    client.state.set("other", 0)
    assert [kv.value for kv in client.state.list("jobs/", page_size=5)] == list(range(23))
    pages, token = [], ""
    while True:
        page, token = client.state.list_page("jobs/", page_size=7, page_token=token)
        pages.append([kv.key for kv in page])
        if not token:
            break
    assert [len(p) for p in pages] == [7, 7, 7, 2]
    assert sum(pages, []) == [f"jobs/{i:02d}" for i in range(23)]
    assert [kv.key for kv in client.state.list()][-3:] == ["jobs/22", "jobsx", "other"]
    _, token = client.state.list_page("jobs/", page_size=5)
    with pytest.raises(InvalidArgumentError) as info:
        client.state.list_page("other", page_size=5, page_token=token)
    assert info.value.fields == ["page_token"]


# -- Transaction -----------------------------------------------------------------------------------


def test_transaction_applies_everything_at_one_revision(client: voltorch.Client) -> None:
    client.state.set("acct/a", 100)
    client.state.set("acct/b", 0)
    client.state.set("acct/tmp", "x")
    before = _revision(client)
    result = client.state.transaction(
        [VersionIs("acct/a", 1), ValueIs("acct/b", 0), Exists("acct/c", False)],
        [Put("acct/a", 70), Put("acct/b", 30), Put("acct/c", "new"), Remove("acct/tmp")],
    )
    assert result.succeeded and result.failed_conditions == []
    assert result.revision == before + 1
    assert [(kv.key, kv.value, kv.mod_revision) for kv in result.kvs] == [
        ("acct/a", 70, before + 1),
        ("acct/b", 30, before + 1),
        ("acct/c", "new", before + 1),
    ]
    assert {kv.key: kv.value for kv in client.state.list("acct/")} == {
        "acct/a": 70,
        "acct/b": 30,
        "acct/c": "new",
    }


def test_failed_condition_applies_nothing_and_runs_on_failure(
    client: voltorch.Client, server: VoltorchServer
) -> None:
    client.state.set("t/a", 1)
    before = _revision(client)
    events_before = len(_state_events(server))
    result = client.state.transaction(
        [VersionIs("t/a", 1), Exists("t/missing"), ValueIs("t/a", 2)],
        [Put("t/a", 99), Put("t/b", 99)],
        [Put("t/failed", True)],
    )
    assert not result.succeeded
    assert result.failed_conditions == [1, 2]
    assert result.revision == before + 1  # the on_failure write
    assert client.state.get("t/a").value == 1
    assert client.state.get_value("t/b") is None
    assert client.state.get("t/failed").value is True
    assert [e["key"] for e in _state_events(server)[events_before:]] == ["t/failed"]
    # Failing with an empty on_failure writes nothing at all.
    quiet = client.state.transaction([Exists("t/missing")], [Put("t/b", 1)])
    assert not quiet.succeeded and quiet.revision == before + 1 == _revision(client)


def test_operation_preconditions_are_conditions_too(client: voltorch.Client) -> None:
    client.state.set("op/a", 1)
    client.state.set("op/b", 1)
    before = _revision(client)
    # on_success op 1 expects a version op/b does not have; op 2 deletes a missing key.
    result = client.state.transaction(
        [Exists("op/a")],
        [Put("op/a", 2), Put("op/b", 2, expected_version=5), Remove("op/none")],
        [Put("op/log", "cas lost")],
    )
    assert not result.succeeded
    assert result.failed_conditions == [1 + 1, 1 + 2]
    assert client.state.get("op/a").value == 1 and client.state.get("op/b").value == 1
    assert client.state.get("op/log").value == "cas lost"
    assert result.revision == before + 1
    # When on_failure's own precondition fails as well, nothing is applied; it is numbered after
    # on_success's operations.
    blocked = client.state.transaction(
        [], [Remove("op/none")], [Put("op/a", 3), Put("op/log", "x", expected_version=0)]
    )
    assert not blocked.succeeded and blocked.failed_conditions == [0, 1 + 1]
    assert blocked.revision == before + 1 == _revision(client)
    assert client.state.get("op/a").value == 1
    # A matching expected_version inside a transaction works like a compare-and-set.
    ok = client.state.transaction(
        [], [Put("op/b", 2, expected_version=1), Remove("op/a", expected_version=1)]
    )
    assert ok.succeeded and client.state.get("op/b").version == 2


def test_transaction_rejects_duplicate_keys_in_a_branch(client: voltorch.Client) -> None:
    before = _revision(client)
    with pytest.raises(InvalidArgumentError) as info:
        client.state.transaction([], [Put("dup", 1), Remove("dup")])
    assert info.value.fields == ["on_success[1].delete.key"]
    with pytest.raises(InvalidArgumentError) as info:
        client.state.transaction([Exists("x")], [], [Put("d", 1), Put("e", 1), Put("d", 2)])
    assert info.value.fields == ["on_failure[2].set.key"]
    assert _revision(client) == before


# -- Watch -----------------------------------------------------------------------------------------


def test_watch_replays_from_a_revision_then_follows_live(client: voltorch.Client) -> None:
    first = client.state.set("w/k", 0).revision
    for i in range(1, 5):
        client.state.set("w/k", i)
        client.state.set("w/other", i)  # a different key: not in a key watch
    watch = Collector(client.state.watch("w/k", start_revision=first))
    replayed = watch.take(5)
    assert [c.kv.value for c in replayed] == [0, 1, 2, 3, 4]
    for i in range(5, 40):
        client.state.set("w/k", i)
    live = watch.take(35)
    client.state.delete("w/k")
    [end] = watch.take(1)
    assert [c.kv.value for c in live] == list(range(5, 40))
    revisions = [c.revision for c in replayed + live + [end]]
    assert revisions == sorted(set(revisions))  # strictly increasing: no duplicate, no reordering
    assert end.type == "delete" and end.kv.value is None and end.kv.version == 40


def test_watch_prefix_sees_only_its_keys_and_include_previous(client: voltorch.Client) -> None:
    start = client.state.set("p/a", 1).revision
    client.state.set("q/a", 1)
    client.state.set("p/b", 1)
    client.state.set("p/a", 2)
    client.state.delete("p/b")
    changes = Collector(client.state.watch(prefix="p/", start_revision=start, include_previous=True)).take(4)
    assert [(c.type, c.key) for c in changes] == [
        ("put", "p/a"),
        ("put", "p/b"),
        ("put", "p/a"),
        ("delete", "p/b"),
    ]
    assert changes[0].previous is None
    assert changes[2].previous is not None and changes[2].previous.value == 1
    assert changes[2].previous.version == 1 and changes[2].kv.version == 2
    assert changes[3].previous is not None and changes[3].previous.value == 1
    without = Collector(client.state.watch(prefix="p/", start_revision=start)).take(3)
    assert all(c.previous is None for c in without)


def test_reconnecting_from_the_last_seen_revision_misses_nothing(client: voltorch.Client) -> None:
    start = client.state.set("r/k", 0).revision
    for i in range(1, 10):
        client.state.set("r/k", i)
    seen = []
    for change in client.state.watch("r/k", start_revision=start):
        seen.append(change)
        if len(seen) == 4:
            break  # the client goes away
    for i in range(10, 15):
        client.state.set("r/k", i)  # written while disconnected
    resumed = Collector(client.state.watch("r/k", start_revision=seen[-1].revision + 1)).take(11)
    assert [c.kv.value for c in seen + resumed] == list(range(15))


def test_watch_resumes_by_itself_when_the_server_restarts_the_component(
    client: voltorch.Client, server: VoltorchServer
) -> None:
    start = client.state.transaction([], [Put("c/a", 0), Put("c/b", 0)]).revision
    watch = Collector(client.state.watch(prefix="c/", start_revision=start))
    assert [c.key for c in watch.take(2)] == ["c/a", "c/b"]
    component = server.runtime.state
    component.stop()  # ends the stream with UNAVAILABLE + start_revision; the SDK reopens it
    component.start()
    client.state.transaction([], [Put("c/a", 1), Put("c/b", 1)])
    client.state.set("c/a", 2)
    changes = watch.take(3)
    assert [(c.key, c.kv.value) for c in changes] == [("c/a", 1), ("c/b", 1), ("c/a", 2)]


def test_watch_resume_keeps_changes_sharing_a_revision(
    client: voltorch.Client, server: VoltorchServer
) -> None:
    # An expired key written again yields DELETE and PUT of one key at one revision; the SDK's
    # duplicate filter must not drop the PUT, neither live nor across a resume.
    start = client.state.set("e/k", "old", ttl=3600).revision
    state = server.runtime.state
    me = threading.current_thread()
    # Two hours later, but only for this thread: the server's TTL sweeper keeps real time.
    state.clock = lambda: time.time() + (7200 if threading.current_thread() is me else 0)
    try:
        state.set("e/k", "new")
    finally:
        state.clock = time.time
    watch = Collector(client.state.watch("e/k", start_revision=start))
    changes = watch.take(3)
    assert [(c.type, c.revision) for c in changes] == [
        ("put", start),
        ("delete", start + 1),
        ("put", start + 1),
    ]
    state.stop()
    state.start()
    client.state.set("e/k", "after")
    [after] = watch.take(1)
    assert after.kv.value == "after" and after.revision == start + 2


def test_server_stop_waits_for_a_stream_still_computing_its_resume_point(
    client: voltorch.Client, server: VoltorchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = client.state.set("stop/k", 1).revision
    state = server.runtime.state
    entered, release = threading.Event(), threading.Event()
    original = state.revision_at

    def slow_revision_at(position: int) -> int:
        entered.set()
        release.wait(timeout=10)
        return original(position)  # reads the database: it must still be open

    monkeypatch.setattr(state, "revision_at", slow_revision_at)
    watch = Collector(client.state.watch("stop/k", start_revision=start, resume=False))
    watch.take(1)
    state.stop()  # what server.stop() does first: the stream ends and computes its resume point
    assert entered.wait(timeout=10)
    stopper = threading.Thread(target=server.stop, kwargs={"grace": 0})
    stopper.start()
    stopper.join(timeout=0.5)
    still_waiting = stopper.is_alive()
    release.set()
    stopper.join(timeout=10)
    assert still_waiting, "stop() closed the database under a running handler"
    assert not stopper.is_alive()


# -- History ---------------------------------------------------------------------------------------


def test_history_is_newest_first_and_paged(client: voltorch.Client) -> None:
    revisions = [client.state.set("h", i).revision for i in range(12)]
    client.state.set("h-other", 1)
    revisions.append(client.state.delete("h"))
    entries = list(client.state.history("h", page_size=5))
    assert [e.revision for e in entries] == revisions[::-1]
    assert entries[0].type == "delete" and entries[0].kv.version == 12
    assert [e.kv.value for e in entries[1:]] == list(range(11, -1, -1))
    assert [e.kv.version for e in entries[1:]] == list(range(12, 0, -1))
    page = client.stubs.state.GetHistory(state_pb2.GetHistoryRequest(key="h", page_size=5))
    assert len(page.entries) == 5 and page.next_page_token
    with pytest.raises(NotFoundError):
        list(client.state.history("never-written"))


# -- Snapshots -------------------------------------------------------------------------------------


def test_snapshot_and_restore_a_prefix(client: voltorch.Client, server: VoltorchServer) -> None:
    client.state.set("app/a", 1)
    client.state.set("app/b", {"x": 1})
    client.state.set("outside", "keep")
    snap = client.state.snapshot("app/", description="before migration")
    assert (snap.key_count, snap.prefix, snap.description) == (2, "app/", "before migration")
    assert snap.revision == _revision(client) and snap.create_time is not None
    client.state.set("app/a", 2)
    client.state.delete("app/b")
    client.state.set("app/c", "created after the snapshot")
    client.state.set("outside", "changed")
    events_before = len(_state_events(server))
    result = client.state.restore(snap.id)
    assert (result.keys_restored, result.keys_deleted) == (2, 1)
    assert result.revision == _revision(client)
    assert {kv.key: kv.value for kv in client.state.list("app/")} == {"app/a": 1, "app/b": {"x": 1}}
    assert client.state.get("outside").value == "changed"  # outside the prefix: untouched
    a = client.state.get("app/a")
    assert a.version == 3 and a.mod_revision == result.revision  # a restore is a write like any other
    assert {e["key"] for e in _state_events(server)[events_before:]} == {"app/a", "app/b", "app/c"}
    with pytest.raises(NotFoundError):
        client.state.restore("snap_doesnotexist")


def test_snapshots_are_listed_newest_first_and_paged(client: voltorch.Client) -> None:
    client.state.set("s", 1)
    ids = [client.state.snapshot(description=f"n{i}").id for i in range(5)]
    listed = list(client.state.snapshots(page_size=2))
    assert [s.id for s in listed] == ids[::-1]
    assert all(s.key_count == 1 and s.prefix == "" for s in listed)


# -- revisions, events, concurrency, persistence ---------------------------------------------------


def test_every_write_advances_one_revision_and_publishes_state_changed(
    client: voltorch.Client, server: VoltorchServer
) -> None:
    revisions = [
        client.state.set("ev/a", 1).revision,
        client.state.set("ev/a", 2, expected_version=1).revision,
        client.state.delete("ev/a"),
        client.state.transaction([], [Put("ev/b", 1), Put("ev/c", 1)]).revision,
    ]
    snap = client.state.snapshot("ev/")
    assert snap.revision == revisions[-1]  # snapshots read, they do not write
    revisions.append(client.state.set("ev/b", 2).revision)
    revisions.append(client.state.restore(snap.id).revision)
    assert revisions == list(range(revisions[0], revisions[0] + 6))
    events = _state_events(server)
    assert [(e["key"], e["type"], e["revision"]) for e in events] == [
        ("ev/a", "put", revisions[0]),
        ("ev/a", "put", revisions[1]),
        ("ev/a", "delete", revisions[2]),
        ("ev/b", "put", revisions[3]),
        ("ev/c", "put", revisions[3]),
        ("ev/b", "put", revisions[4]),
        ("ev/b", "put", revisions[5]),
        ("ev/c", "put", revisions[5]),
    ]
    assert events[1]["version"] == 2 and events[1]["value"] == 2
    follower = server.runtime.events.subscribe(EventFilter(types=("state.*",)), after=0)
    try:
        replayed = [follower.get(timeout=5) for _ in events]
    finally:
        follower.close()
    assert [e.data for e in replayed if e is not None] == events
    assert {e.source for e in replayed if e is not None} == {"state"}


def test_concurrent_compare_and_set_has_one_winner_per_version(client: voltorch.Client) -> None:
    client.state.set("counter", 0)
    threads, attempts = 16, 20
    wins: list[int] = []
    conflicts = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def worker() -> None:
        barrier.wait(timeout=10)
        for _ in range(attempts):
            kv = client.state.get("counter")
            try:
                result = client.state.set("counter", kv.value + 1, expected_version=kv.version)
            except ConflictError:
                with lock:
                    conflicts.append(1)
                continue
            with lock:
                wins.append(result.kv.version)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=60)
    assert len(wins) + len(conflicts) == threads * attempts
    assert sorted(wins) == list(range(2, len(wins) + 2))  # exactly one winner per version
    final = client.state.get("counter")
    assert final.value == len(wins) and final.version == len(wins) + 1


def test_everything_survives_a_restart_on_the_same_database(config: Config) -> None:
    first = VoltorchServer(config).start()
    try:
        with voltorch.Client(first.target, timeout=10) as c:
            c.state.set("keep/a", {"n": 1})
            c.state.set("keep/a", {"n": 2})
            c.state.set("keep/b", [1, 2])
            c.state.set("keep/ttl", "t", ttl=3600)
            snap = c.state.snapshot("keep/")
            c.state.delete("keep/b")
            revision = _revision(c)
            history = list(c.state.history("keep/a"))
    finally:
        first.stop(grace=1.0)
    second = VoltorchServer(replace(config, port=0)).start()
    try:
        with voltorch.Client(second.target, timeout=10) as c:
            assert _revision(c) == revision
            a = c.state.get("keep/a")
            assert (a.value, a.version, a.create_revision) == ({"n": 2}, 2, 1)
            assert c.state.get("keep/ttl").expire_time is not None
            with pytest.raises(NotFoundError):
                c.state.get("keep/b")
            assert list(c.state.history("keep/a")) == history
            assert [s.id for s in c.state.snapshots()] == [snap.id]
            assert c.state.set("keep/a", 3).revision == revision + 1
            c.state.restore(snap.id)
            assert c.state.get("keep/b").value == [1, 2]
    finally:
        second.stop(grace=1.0)


# -- bad input -------------------------------------------------------------------------------------


def _raw(method: str, request) -> Callable[[voltorch.Client], None]:
    """Call a raw stub (for requests the SDK cannot even build) and raise the SDK's typed error."""

    def run(c: voltorch.Client) -> None:
        try:
            getattr(c.stubs.state, method)(request, timeout=10)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None

    return run


BAD_REQUESTS: dict[str, tuple[Callable[[voltorch.Client], object], str]] = {
    "empty key": (lambda c: c.state.set("", 1), "key"),
    "key over 512 bytes": (lambda c: c.state.set("k" * 513, 1), "key"),
    "key with a space": (lambda c: c.state.set("a b", 1), "key"),
    "key with a control char": (lambda c: c.state.set("a\x01b", 1), "key"),
    "non-ascii key": (lambda c: c.state.set("clé", 1), "key"),
    "get empty key": (lambda c: c.state.get(""), "key"),
    "delete long key": (lambda c: c.state.delete("k" * 600), "key"),
    "oversized value": (lambda c: c.state.set("big", "x" * (1 << 20)), "value"),
    "missing value": (_raw("SetKey", state_pb2.SetKeyRequest(key="k")), "value"),
    "negative ttl": (lambda c: c.state.set("k", 1, ttl=-1), "ttl"),
    "ttl past year 9999": (  # its expire_time would be no Timestamp: every later get/list of it fails
        _raw(
            "SetKey",
            state_pb2.SetKeyRequest(key="k", value=Value(number_value=1), ttl=Duration(seconds=315576000000)),
        ),
        "ttl",
    ),
    "negative expected_version": (lambda c: c.state.set("k", 1, expected_version=-1), "expected_version"),
    "delete negative expected_version": (
        lambda c: c.state.delete("k", expected_version=-2),
        "expected_version",
    ),
    "malformed page token": (lambda c: c.state.list_page(page_token="not-a-token"), "page_token"),
    "history malformed page token": (
        _raw("GetHistory", state_pb2.GetHistoryRequest(key="k", page_token="%%%")),
        "page_token",
    ),
    "negative page_size": (lambda c: c.state.list_page("", page_size=-1), "page_size"),
    "history negative page_size": (lambda c: list(c.state.history("k", page_size=-3)), "page_size"),
    "snapshots negative page_size": (lambda c: list(c.state.snapshots(page_size=-1)), "page_size"),
    "list bad prefix": (lambda c: c.state.list_page("a b"), "prefix"),
    "watch bad prefix": (lambda c: next(c.state.watch(prefix="bad prefix")), "prefix"),
    "watch bad key": (lambda c: next(c.state.watch("")), "key"),
    "watch negative start_revision": (
        lambda c: next(c.state.watch("k", start_revision=-1)),
        "start_revision",
    ),
    "snapshot bad prefix": (lambda c: c.state.snapshot("a\tb"), "prefix"),
    "snapshot long description": (lambda c: c.state.snapshot(description="d" * 2000), "description"),
    "restore empty id": (lambda c: c.state.restore(""), "snapshot_id"),
    "txn condition key": (lambda c: c.state.transaction([Exists("")], [Put("k", 1)]), "conditions[0].key"),
    "txn empty condition": (
        _raw("Transaction", state_pb2.TransactionRequest(conditions=[state_pb2.StateCondition(key="k")])),
        "conditions[0]",
    ),
    "txn empty operation": (
        _raw("Transaction", state_pb2.TransactionRequest(on_failure=[state_pb2.StateOperation()])),
        "on_failure[0]",
    ),
    "txn negative version_equals": (
        lambda c: c.state.transaction([VersionIs("k", -1)]),
        "conditions[0].version_equals",
    ),
    "txn condition value not JSON": (  # NaN equals nothing: the condition failed, silently
        lambda c: c.state.transaction([ValueIs("k", float("nan"))], [Put("k", 1)]),
        "conditions[0].value_equals",
    ),
    "txn op value": (
        lambda c: c.state.transaction([], [Put("k", 1), Put("j", "x" * (1 << 20))]),
        "on_success[1].set.value",
    ),
    "txn op ttl": (lambda c: c.state.transaction([], [], [Put("k", 1, ttl=-5)]), "on_failure[0].set.ttl"),
    "txn op ttl past year 9999": (
        lambda c: c.state.transaction([], [Put("k", 1, ttl=timedelta(days=3_000_000))]),
        "on_success[0].set.ttl",
    ),
    # 150 000 sets were committed, then the answer outgrew 4 MiB: the caller saw RESOURCE_EXHAUSTED
    "txn too many operations": (
        lambda c: c.state.transaction([], [Put(f"t{i}", 1) for i in range(1001)]),
        "on_success",
    ),
    "txn too many conditions": (
        lambda c: c.state.transaction([Exists(f"t{i}") for i in range(1001)]),
        "conditions",
    ),
    "txn missing op value": (
        _raw(
            "Transaction",
            state_pb2.TransactionRequest(
                on_success=[state_pb2.StateOperation(set=state_pb2.SetKeyRequest(key="k"))]
            ),
        ),
        "on_success[0].set.value",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS), ids=list(BAD_REQUESTS))
def test_bad_input_is_invalid_argument_naming_the_field_and_writes_nothing(
    client: voltorch.Client, server: VoltorchServer, case: str
) -> None:
    client.state.set("k", "existing")
    client.state.snapshot("k")
    before = _revision(client)
    events_before = server.runtime.events.last_sequence()
    fn, field = BAD_REQUESTS[case]
    with pytest.raises(InvalidArgumentError) as info:
        fn(client)
    assert info.value.fields == [field], info.value
    assert field in str(info.value)
    assert _revision(client) == before
    assert server.runtime.events.last_sequence() == events_before
    assert client.state.get("k").value == "existing"


def test_unknown_snapshot_is_not_found(client: voltorch.Client) -> None:
    with pytest.raises(NotFoundError) as info:
        client.state.restore("snap_0000000000000000000000")
    assert info.value.metadata == {"resource_type": "snapshot", "name": "snap_0000000000000000000000"}


def test_watch_needs_exactly_one_target(client: voltorch.Client) -> None:
    with pytest.raises(ValueError):
        client.state.watch()
    with pytest.raises(ValueError):
        client.state.watch("k", prefix="p")


def test_pages_of_large_values_stay_within_a_message(client: voltorch.Client) -> None:
    """Six values of 900 kB (each within the 1 MiB limit) made one page of 5.4 MB: ListKeys, GetHistory
    and the SDK's list() answered RESOURCE_EXHAUSTED 'Sent message larger than max'. A page now ends
    early (with a next_page_token) when its values grow large."""
    big = "x" * 900_000
    for i in range(6):
        client.state.set(f"big/{i}", big)
        client.state.set("big/history", big)
    assert [kv.key for kv in client.state.list("big/")] == [f"big/{i}" for i in range(6)] + ["big/history"]
    page = client.stubs.state.ListKeys(state_pb2.ListKeysRequest(prefix="big/"), timeout=10)
    assert 0 < len(page.kvs) < 7 and page.next_page_token
    assert len(list(client.state.history("big/history"))) == 6
