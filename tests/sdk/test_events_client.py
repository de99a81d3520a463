"""client.events end to end: publish, batches, subscriptions that resume by themselves, listing, correlation."""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import voltorch
from voltorch import Event, EventHeartbeat, NewEvent, Priority, PublishResult
from voltorch.errors import InvalidArgumentError, NotFoundError, OutOfRangeError
from voltorch_server.app import VoltorchServer
from voltorch_server.config import Config

BOTH_BACKENDS = True  # every test with a `server` runs on SQLite and on PostgreSQL (tests/conftest.py)

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Collector:
    """Drains a subscription on a daemon thread so the test can wait for items with a timeout."""

    def __init__(self, iterator: Iterator):
        self.q: queue.Queue = queue.Queue()
        threading.Thread(target=self._run, args=(iterator,), daemon=True).start()

    def _run(self, iterator: Iterator) -> None:
        try:
            for item in iterator:
                self.q.put(item)
            self.q.put(StopIteration())
        except Exception as exc:
            self.q.put(exc)

    def take(self, n: int, timeout: float = 15.0) -> list:
        out = []
        for _ in range(n):
            item = self.q.get(timeout=timeout)
            if isinstance(item, BaseException):
                raise item
            out.append(item)
        return out


def test_publish_returns_dataclasses(client: voltorch.Client) -> None:
    r = client.events.publish(
        "agent.task.done", {"ok": True}, source="sdk", priority="high", id="task-1", traceparent=TRACEPARENT
    )
    assert isinstance(r, PublishResult) and r.id == "task-1" and not r.duplicate
    assert isinstance(r.time, datetime) and r.time.tzinfo is not None
    again = client.events.publish("agent.task.done", {"ok": True}, id="task-1")
    assert again.duplicate and again.sequence == r.sequence
    [e] = client.events.list("agent.task.*")
    assert isinstance(e, Event) and e.sequence == r.sequence
    assert (e.data, e.source, e.priority, e.trace_id) == (
        {"ok": True},
        "sdk",
        Priority.HIGH,
        "0af7651916cd43dd8448eb211c80319c",
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.type = "x"  # type: ignore[misc]  # writing a frozen field on purpose


def test_publish_batch_in_order_and_all_or_nothing(client: voltorch.Client) -> None:
    rs = client.events.publish_batch([NewEvent("batch.x", i, priority=Priority.LOW) for i in range(5)])
    assert [r.sequence for r in rs] == list(range(rs[0].sequence, rs[0].sequence + 5))
    with pytest.raises(InvalidArgumentError) as exc:
        client.events.publish_batch([NewEvent("batch.y"), NewEvent("Not Valid")])
    assert exc.value.fields == ["events[1].type"]
    assert [e.data for e in client.events.list("batch.*")] == [0, 1, 2, 3, 4]


def test_subscribe_filters_replays_then_follows(client: voltorch.Client) -> None:
    first = client.events.publish("workflow.step.started", {"n": 1}, source="workflows").sequence
    client.events.publish("coordination.started", source="coordination")
    client.events.publish("workflow.step.failed", {"n": 2}, source="other")
    with client.events.subscribe(["workflow.*"], source="workflows", from_sequence=first) as sub:
        got = Collector(sub)
        assert [e.data for e in got.take(1)] == [{"n": 1}]
        client.events.publish("workflow.step.completed", {"n": 3}, source="workflows")
        [e] = got.take(1)
        assert e.type == "workflow.step.completed" and sub.resume_sequence == e.sequence + 1


def test_live_subscription_announces_itself_with_a_heartbeat(client: voltorch.Client) -> None:
    client.events.publish("before.x")
    with client.events.subscribe("*.x", heartbeats=True) as sub:
        got = Collector(sub)
        [hb] = got.take(1)
        assert isinstance(hb, EventHeartbeat) and hb.resume_sequence == sub.resume_sequence
        client.events.publish("after.x")
        [e] = got.take(1)
        assert e.type == "after.x"


def test_subscribe_from_time_and_min_priority(client: voltorch.Client) -> None:
    client.events.publish("prio.low", priority="low")
    high = client.events.publish("prio.high", priority=Priority.HIGH)
    with client.events.subscribe(
        "prio.*", min_priority="normal", from_time=datetime(2000, 1, 1, tzinfo=UTC)
    ) as sub:
        [e] = Collector(sub).take(1)
    assert e.sequence == high.sequence and e.priority is Priority.HIGH


def test_list_pages_and_orders(client: voltorch.Client) -> None:
    client.events.publish_batch([NewEvent("page.x", i, correlation_id="pages") for i in range(10)])
    assert [e.data for e in client.events.list(correlation_id="pages", page_size=3)] == list(range(10))
    page = client.events.list_page("page.*", page_size=4, descending=True)
    assert [e.data for e in page.events] == [9, 8, 7, 6] and page.next_page_token
    assert page.head_sequence >= page.events[0].sequence
    nxt = client.events.list_page("page.*", page_size=4, descending=True, page_token=page.next_page_token)
    assert [e.data for e in nxt.events] == [5, 4, 3, 2]


def test_correlation_chain(client: voltorch.Client) -> None:
    root = client.events.publish("run.started", correlation_id="run-7")
    step = client.events.publish("run.step", causation_id=root.id)
    client.events.publish("run.done", causation_id=step.id)
    c = client.events.correlation("run-7")
    assert [e.type for e in c.events] == ["run.started", "run.step", "run.done"]
    assert [n.depth for n in c.nodes] == [0, 1, 2] and c.root_ids == (root.id,)
    assert c.nodes[1].parent_id == root.id and c.nodes[1].child_ids == (c.nodes[2].event.id,)
    with pytest.raises(NotFoundError):
        client.events.correlation("no-such-run")


def test_bad_filters_raise_typed_errors(client: voltorch.Client) -> None:
    with pytest.raises(InvalidArgumentError) as exc:
        next(iter(client.events.subscribe(["Workflow.*"])))
    assert exc.value.fields == ["filter.types[0]"]
    with pytest.raises(InvalidArgumentError) as exc:
        list(client.events.list(["ok", "bad glob"]))
    assert exc.value.fields == ["filter.types[1]"]
    with pytest.raises(ValueError):
        client.events.subscribe(from_sequence=1, from_time=1.0)


def test_slow_consumer_is_resumed_without_loss_or_duplicates(config: Config) -> None:
    """The server cuts the subscriber off (buffer 20); the iterator reconnects from the log by itself."""
    with (
        VoltorchServer(replace(config, subscriber_buffer=20)) as srv,
        voltorch.Client(srv.target, timeout=10) as client,
    ):
        sub = client.events.subscribe("load.*", heartbeats=True)
        got = Collector(sub)
        got.take(1)  # established
        published: list[int] = []
        # A burst is one transaction delivered at once; one reaching a live follower overflows its buffer.
        for burst in range(10):
            published += [
                r.sequence
                for r in srv.runtime.events.publish_batch([_new(burst * 100 + i) for i in range(100)])
            ]
            events = [x for x in got.take(100) if isinstance(x, Event)]
            while len(events) < 100:  # heartbeats may be interleaved
                events += [x for x in got.take(1) if isinstance(x, Event)]
            assert [e.data for e in events] == list(range(burst * 100, burst * 100 + 100))
            if sub.reconnects:
                break
        assert sub.reconnects >= 1, "the subscriber was never cut off"
        sub.close()


def _new(i: int):
    from voltorch_server.components.events import NewEvent as ServerEvent

    return ServerEvent("load.tick", data=i)


def test_subscription_survives_a_server_restart(config: Config, tmp_path: Path) -> None:
    srv = VoltorchServer(config).start()
    port = srv.port
    client = voltorch.Client(srv.target, timeout=10)
    try:
        first = client.events.publish_batch([NewEvent("restart.x", i) for i in range(3)])
        statuses: list[tuple[str, int | None]] = []
        sub = client.events.subscribe(
            "restart.*", from_sequence=first[0].sequence, on_status=lambda *s: statuses.append(s)
        )
        got = Collector(sub)
        assert [e.data for e in got.take(3)] == [0, 1, 2]
        srv.stop(grace=1)  # ends the stream with UNAVAILABLE + resume point; the iterator retries
        local = str(tmp_path / "local.db")  # a fixed port beside PostgreSQL names a local file
        srv = VoltorchServer(replace(config, port=port, local_db=local)).start()  # same address
        srv.runtime.events.publish_batch([_restart(i) for i in range(3, 6)])
        later = got.take(3)
        assert [e.data for e in later] == [3, 4, 5]  # nothing lost, nothing repeated
        assert sub.reconnects >= 1
        assert [s for s, _ in statuses] == ["reconnecting", "resumed"]
        assert statuses[0][1] == first[-1].sequence + 1
        assert statuses[1][1] is not None
        assert first[-1].sequence < statuses[1][1] <= later[0].sequence  # where the new stream continues
        sub.close()
    finally:
        client.close()
        srv.stop(grace=1)


def _restart(i: int):
    from voltorch_server.components.events import NewEvent as ServerEvent

    return ServerEvent("restart.x", data=i)


def test_compacted_start_is_not_retried(config: Config) -> None:
    with (
        VoltorchServer(replace(config, event_retention_count=2)) as srv,
        voltorch.Client(srv.target, timeout=10) as client,
    ):
        client.events.publish_batch([NewEvent("old.x")] * 5)
        srv.runtime.events.compact()
        with pytest.raises(OutOfRangeError) as exc:
            next(iter(client.events.subscribe(from_sequence=1)))
        assert int(exc.value.metadata["oldest_sequence"]) == srv.runtime.events.oldest_available()
