"""Three real `voltorch serve` processes on one PostgreSQL database agree on one state and one event log:
one order seen everywhere, compare-and-set with one winner per version, no acknowledged write lost to a
SIGKILL, and a subscriber resuming on another replica without missing anything."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import replicas
import voltorch
from polling import until
from voltorch.errors import ConflictError, VoltorchError

pytestmark = pytest.mark.timeout(180)
DEADLINE = 60.0


def _collect(it, out: list, stop: threading.Event, ready: threading.Event | None = None) -> None:
    try:
        for item in it:
            if ready is not None and not hasattr(item, "sequence"):
                ready.set()  # the subscription's first heartbeat: it is established
                continue
            out.append(item)
            if stop.is_set():
                return
    except Exception as exc:  # the stream ended: the test sees what was collected
        out.append(exc)


def test_writes_through_every_replica_are_seen_by_every_replica_in_one_order(
    pg_dsn: str, tmp_path: Path
) -> None:
    writers, per_writer = 3, 20
    with replicas.replicas(pg_dsn, tmp_path, 3) as reps:
        clients = [voltorch.Client(r.target, timeout=20) for r in reps]
        stop = threading.Event()
        changes: list[list] = [[] for _ in reps]
        events: list[list] = [[] for _ in reps]
        threads = []
        for i, c in enumerate(clients):
            ready = threading.Event()
            sub = c.events.subscribe(from_sequence=1, heartbeats=True, heartbeat_interval=1)
            threads.append(threading.Thread(target=_collect, args=(sub, events[i], stop, ready), daemon=True))
            threads.append(
                threading.Thread(
                    target=_collect,
                    args=(c.state.watch(prefix="k/", start_revision=1), changes[i], stop),
                    daemon=True,
                )
            )
        for t in threads:
            t.start()

        def write(w: int) -> None:
            c = clients[w % len(clients)]
            for j in range(per_writer):
                c.state.set(f"k/{w}/{j}", j)
                c.events.publish("test.written", {"w": w, "j": j})

        ws = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        for t in ws:
            t.start()
        for t in ws:
            t.join(DEADLINE)
        total = writers * per_writer
        until(lambda: all(len(c) >= total for c in changes), DEADLINE)  # every Watch sees every change

        def ours(e: list) -> int:  # the log also holds the replicas' own system events
            return sum(1 for x in list(e) if getattr(x, "type", "") in ("test.written", "state.changed"))

        until(  # every Subscribe sees every event
            lambda: all(ours(e) >= 2 * total for e in events),
            DEADLINE,
            lambda: [(len(e), ours(e), [x for x in e if isinstance(x, Exception)]) for e in events],
        )
        stop.set()
        seen = min(len(e) for e in events)
        for i in range(len(reps)):
            assert not [x for x in changes[i] + events[i] if isinstance(x, Exception)]
            revisions = [c.revision for c in changes[i][:total]]
            assert revisions == list(range(1, total + 1))  # gap-free, no duplicate, in order
            assert [e.sequence for e in events[i][:seen]] == list(range(1, seen + 1))
        # The same order on every replica, down to each change and event.
        for i in range(1, len(reps)):
            assert [(c.key, c.revision) for c in changes[i][:total]] == [
                (c.key, c.revision) for c in changes[0][:total]
            ]
            assert [e.id for e in events[i][:seen]] == [e.id for e in events[0][:seen]]
        for c in clients:
            c.close()


def test_compare_and_set_through_different_replicas_has_one_winner_per_version(
    pg_dsn: str, tmp_path: Path
) -> None:
    target_version = 40
    with replicas.replicas(pg_dsn, tmp_path, 3) as reps:
        clients = [voltorch.Client(r.target, timeout=20) for r in reps]
        clients[0].state.set("counter", 0)
        wins: list[int] = []
        lock = threading.Lock()

        def bump(c: voltorch.Client) -> None:
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline:
                kv = c.state.get("counter")
                if kv.version >= target_version:
                    return
                try:
                    r = c.state.set("counter", kv.value + 1, expected_version=kv.version)
                except ConflictError:
                    continue
                with lock:
                    wins.append(r.kv.version)

        threads = [threading.Thread(target=bump, args=(clients[i % 3],)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLINE + 5)
        assert sorted(wins) == list(range(2, target_version + 1))  # exactly one winner per version
        final = clients[1].state.get("counter")
        assert (final.version, final.value) == (target_version, target_version - 1)
        for c in clients:
            c.close()


def test_sigkill_of_a_replica_during_a_write_burst_loses_no_acknowledged_write(
    pg_dsn: str, tmp_path: Path
) -> None:
    with replicas.replicas(pg_dsn, tmp_path, 3) as reps:
        clients = [voltorch.Client(r.target, timeout=10) for r in reps]
        acked: dict[str, int] = {}
        lock = threading.Lock()
        enough = threading.Event()

        def write(w: int) -> None:
            c = clients[w % 3]
            for j in range(150):
                key = f"burst/{w}/{j}"
                try:
                    c.state.set(key, j)
                except VoltorchError:
                    if w % 3 == 0:
                        return  # its replica is gone
                    raise
                with lock:
                    acked[key] = j
                    if len(acked) >= 60:
                        enough.set()

        threads = [threading.Thread(target=write, args=(w,)) for w in range(6)]
        for t in threads:
            t.start()
        assert enough.wait(DEADLINE)
        reps[0].kill()
        for t in threads:
            t.join(DEADLINE)
        survivor = clients[1]
        stored = {kv.key: kv.value for kv in survivor.state.list("burst/")}
        missing = {k: v for k, v in acked.items() if stored.get(k) != v}
        assert not missing
        for c in clients:
            c.close()


def test_a_subscriber_whose_replica_died_resumes_on_another_with_nothing_missed(
    pg_dsn: str, tmp_path: Path
) -> None:
    with replicas.replicas(pg_dsn, tmp_path, 3) as reps:
        clients = [voltorch.Client(r.target, timeout=10) for r in reps]
        publishing = threading.Event()
        published: list[int] = []

        def publish() -> None:
            publishing.set()
            for j in range(200):
                published.append(clients[2].events.publish("test.tick", {"j": j}).sequence)

        got: list = []
        sub = clients[0].events.subscribe("test.*", from_sequence=1, resume=False)
        t = threading.Thread(target=publish)
        t.start()
        for e in sub:
            assert isinstance(e, voltorch.Event)
            got.append(e.sequence)
            if len(got) == 40:
                break
        reps[0].kill()  # the subscriber's replica dies; it resumes on another from its last position
        sub.close()
        t.join(DEADLINE)
        rest = clients[1].events.subscribe("test.*", from_sequence=got[-1] + 1)
        for e in rest:
            assert isinstance(e, voltorch.Event)
            got.append(e.sequence)
            if len(got) == len(published):
                break
        rest.close()
        assert len(published) == 200
        assert got == published  # every one, in order, none twice
        for c in clients[1:]:
            c.close()
