"""The cheap delivery path: pre-serialized SubscribeResponses, the deque-backed follower buffers and
the broadcaster's routing by exact event type (same results as the plain path, in order)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from voltorch.v1 import common_pb2, events_pb2_grpc
from voltorch.v1 import events_pb2 as pb
from voltorch_server.app import VoltorchServer
from voltorch_server.components import Broadcaster, Closed, Follower, Overflow
from voltorch_server.components.events import EventFilter, EventLog, NewEvent
from voltorch_server.servicers.events import _Rendered, _serialize_response, event_pb, render_event
from voltorch_server.storage import Database
from voltorch_server.storage.stores import SqlEvents

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def log(db: Database) -> Iterator[EventLog]:
    ev = EventLog(SqlEvents(db), subscriber_buffer=50)
    yield ev
    ev.stop()


def _follower(b: Broadcaster[int], *, keys=None, capacity: int = 10, match=lambda _: True) -> Follower[int]:
    return Follower(
        b, match=match, replay=None, position=lambda x: x, after=None, capacity=capacity, keys=keys
    )


def _drain(f: Follower, n: int) -> list:
    out: list[Any] = []
    while len(out) < n:
        item = f.get(timeout=10)
        assert item is not None, f"timed out after {len(out)} of {n}"
        out.append(item)
    return out


# -- pre-serialized delivery ------------------------------------------------------------------------


def test_pre_serialized_event_equals_the_normal_encoding(log: EventLog) -> None:
    events = log.publish(
        NewEvent(type="a.b", source="s", target="t", data={"x": [1, "two", None, True], "y": {"z": 1.5}}),
        NewEvent(type="a.c", traceparent=TRACEPARENT, priority=3, correlation_id="c1"),
        NewEvent(type="a.d", data="just text"),
    )
    for e in events:
        normal = pb.SubscribeResponse(event=event_pb(e))
        # Compare parsed messages: a Struct's map entries have no fixed byte order.
        assert pb.SubscribeResponse.FromString(render_event(e)) == normal
    hb = pb.SubscribeResponse(heartbeat=pb.SubscribeHeartbeat(resume_sequence=7))
    assert _serialize_response(hb) == hb.SerializeToString()
    assert _serialize_response(b"\x0a\x00") == b"\x0a\x00"


def test_render_cache_shares_bytes_and_stays_bounded(log: EventLog) -> None:
    events = log.publish(*(NewEvent(type="a.b", data={"i": i}) for i in range(10)))
    cache = _Rendered(capacity=4)
    head = events[-1].sequence
    first = [cache(e, head) for e in events]
    assert first == [render_event(e) for e in events]
    assert list(cache._items) == [e.sequence for e in events[-4:]]  # old events (replay) not cached
    assert cache(events[-1], head) is first[-1]  # the same object for every subscriber
    later = log.publish(*(NewEvent(type="a.b", data={"i": i}) for i in range(2)))
    for e in later:
        cache(e, later[-1].sequence)
    assert list(cache._items) == [e.sequence for e in [*events[-2:], *later]]  # oldest evicted


def test_subscribed_events_equal_listed_events(server: VoltorchServer) -> None:
    with grpc.insecure_channel(server.target) as ch:
        stub = events_pb2_grpc.EventServiceStub(ch)
        sent = [pb.Event(type="deliv.x", source="s", correlation_id="k")]
        sent[0].data.struct_value.update({"a": 1, "b": ["c", None]})
        sent.append(pb.Event(type="deliv.y", trace_context=common_pb2.TraceContext(traceparent=TRACEPARENT)))
        first = stub.PublishBatch(pb.PublishBatchRequest(events=sent)).receipts[0].sequence
        call = stub.Subscribe(pb.SubscribeRequest(from_sequence=first), timeout=30)
        got = []
        for resp in call:
            if resp.HasField("event"):
                got.append(resp.event)
                if len(got) == 2:
                    break
        call.cancel()
        listed = stub.ListEvents(pb.ListEventsRequest(start_sequence=first)).events
        assert got == list(listed[:2])


# -- follower buffers and routing -------------------------------------------------------------------


def test_batches_are_delivered_in_order_across_waits() -> None:
    b: Broadcaster[int] = Broadcaster()
    with _follower(b, capacity=1000) as f:
        got: list[int] = []
        done = threading.Event()

        def consume() -> None:
            got.extend(_drain(f, 600))
            done.set()

        t = threading.Thread(target=consume)
        t.start()
        for start in range(0, 600, 100):
            b.publish(range(start, start + 100))
        assert done.wait(10)
        t.join(10)
        assert got == list(range(600))
        assert f.caught_up()
        assert f.get(timeout=0.01) is None


def test_take_returns_replayed_batches_then_live_items_in_order(log: EventLog) -> None:
    log.publish(*(NewEvent(type="t.a", data=i) for i in range(7)))
    f = log.subscribe(EventFilter(types=("t.a",)), after=0)
    f._batch = 3  # small replay batches
    got: list[Any] = []
    while len(got) < 7:
        batch = f.take(timeout=10)
        assert batch and len(batch) <= 3
        assert f.last == batch[-1].sequence
        got += batch
    log.publish(NewEvent(type="t.a", data=7), NewEvent(type="t.b"), NewEvent(type="t.a", data=8))
    while len(got) < 9:
        got += f.take(timeout=10)
    assert [e.data for e in got] == list(range(9))
    assert f.take(timeout=0.01) == []
    assert f.caught_up()
    f.close()


def test_full_buffer_overflows_after_what_it_holds_and_close_after_the_rest() -> None:
    b: Broadcaster[int] = Broadcaster()
    f = _follower(b, capacity=3)
    b.publish([1, 2, 3, 4, 5])
    assert _drain(f, 3) == [1, 2, 3]
    with pytest.raises(Overflow) as exc:
        f.get(timeout=1)
    assert exc.value.resume_from == 4
    f.close()

    f = _follower(b, capacity=3)
    b.publish([6, 7])
    b.close_all()
    assert _drain(f, 2) == [6, 7]
    with pytest.raises(Closed) as closed:
        f.get(timeout=1)
    assert closed.value.resume_from == 8


def test_keyed_subscribers_only_see_their_keys() -> None:
    b: Broadcaster[tuple[str, int]] = Broadcaster(key=lambda item: item[0])
    asked: list[tuple[str, int]] = []

    def match(item: tuple[str, int]) -> bool:
        asked.append(item)
        return True

    keyed = Follower(
        b, match=match, replay=None, position=lambda x: x[1], after=None, capacity=10, keys=("a",)
    )
    everyone = Follower(
        b, match=lambda _: True, replay=None, position=lambda x: x[1], after=None, capacity=10
    )
    b.publish([("a", 1), ("b", 2), ("a", 3)])
    assert _drain(keyed, 2) == [("a", 1), ("a", 3)]
    assert asked == [("a", 1), ("a", 3)]  # never asked about "b"
    assert _drain(everyone, 3) == [("a", 1), ("b", 2), ("a", 3)]
    keyed.close()
    everyone.close()
    assert b.subscriber_count == 0


def test_subscribers_come_and_go_in_any_order_and_a_second_close_changes_nothing() -> None:
    """Routes change by the one subscriber that comes or goes: the others keep getting what they asked for,
    whatever the order, and closing a follower again leaves the rest subscribed."""
    b: Broadcaster[tuple[str, int]] = Broadcaster(key=lambda item: item[0])

    def follow(keys: tuple[str, ...] | None) -> Follower[tuple[str, int]]:
        return Follower(
            b, match=lambda _: True, replay=None, position=lambda x: x[1], after=None, capacity=50, keys=keys
        )

    a1, a2, ab, everyone = follow(("a",)), follow(("a",)), follow(("a", "b")), follow(None)
    a1.close()
    a1.close()  # again: nothing else is unsubscribed
    assert b.subscriber_count == 3
    b.publish([("a", 1), ("b", 2), ("c", 3)])
    assert _drain(a2, 1) == [("a", 1)]
    assert _drain(ab, 2) == [("a", 1), ("b", 2)]
    assert _drain(everyone, 3) == [("a", 1), ("b", 2), ("c", 3)]
    ab.close()
    b.publish([("a", 4), ("b", 5)])
    assert _drain(a2, 1) == [("a", 4)]
    assert _drain(everyone, 2) == [("a", 4), ("b", 5)]
    everyone.close()
    a2.close()
    late = follow(("b",))
    b.publish([("a", 6), ("b", 7)])
    assert _drain(late, 1) == [("b", 7)]
    late.close()
    assert b.subscriber_count == 0


@pytest.mark.parametrize("closed_during_replay", [False, True])
def test_a_follower_closed_while_it_replays_past_an_overflow_ends_with_closed(
    closed_during_replay: bool,
) -> None:
    """close_all (the server stopping) reaches a follower whose live buffer overflowed while it replayed: it
    returns what the log has, then ends with Closed; it does not subscribe again and follow forever."""
    b: Broadcaster[tuple[str, int]] = Broadcaster(key=lambda item: item[0])
    table: list[tuple[str, int]] = []
    stops = [True] if closed_during_replay else []

    def replay(after: int, limit: int) -> list[tuple[str, int]]:
        batch = [x for x in table if x[1] > after][:limit]
        if not batch and stops:
            b.close_all()  # the stop lands (once) while the follower looks at the log
            stops.pop()
        return batch

    f = Follower(b, match=None, replay=replay, position=lambda x: x[1], after=0, capacity=1, batch=1)
    for i in (1, 2, 3):
        table.append(("a", i))
        b.publish([("a", i)])  # a buffer of 1: overflowed at the second
    if not closed_during_replay:
        b.close_all()
    assert _drain(f, 3) == table
    with pytest.raises(Closed) as raised:
        f.get(timeout=0)
    assert raised.value.resume_from == 4
    assert b.subscriber_count == 0
    f.close()
    assert b.subscriber_count == 0


def test_exact_and_glob_type_filters_agree_live(log: EventLog) -> None:
    exact = log.subscribe(EventFilter(types=("k.one", "k.two")))
    glob = log.subscribe(EventFilter(types=("k.*",)))
    prio = log.subscribe(EventFilter(types=("k.one",), min_priority=3))
    log.publish(
        NewEvent(type="k.one"),
        NewEvent(type="k.three"),
        NewEvent(type="k.two"),
        NewEvent(type="k.one", priority=3),
    )
    assert [e.type for e in _drain(exact, 3)] == ["k.one", "k.two", "k.one"]
    assert [e.type for e in _drain(glob, 4)] == ["k.one", "k.three", "k.two", "k.one"]
    assert [(e.type, int(e.priority)) for e in _drain(prio, 1)] == [("k.one", 3)]
    for f in (exact, glob, prio):
        assert f.get(timeout=0.01) is None
        f.close()


def test_a_zero_capacity_still_bounds_the_buffer() -> None:
    b: Broadcaster[int] = Broadcaster()
    with _follower(b, capacity=0) as f:
        b.publish([1, 2])
        assert f.get(timeout=1) == 1
        with pytest.raises(Overflow):
            f.get(timeout=1)


@pytest.mark.parametrize("pending", [False, True])
def test_wake_ends_a_wait_at_once_and_loses_nothing(pending: bool) -> None:
    """A stream whose client leaves is woken (grpc's add_callback) instead of polling: a take() waiting an
    hour returns empty-handed, and what comes after is still taken in order."""
    b: Broadcaster[int] = Broadcaster()
    f = _follower(b)
    if pending:
        f.wake()  # before the wait: the next wait ends at once too
    got: list[list[int]] = []
    waiting = threading.Thread(target=lambda: got.append(f.take(3600)), daemon=True)
    waiting.start()
    if not pending:
        f.wake()
    waiting.join(20)
    assert not waiting.is_alive() and got == [[]]  # nothing was ready: empty-handed
    b.publish([1, 2])
    assert _drain(f, 2) == [1, 2]
