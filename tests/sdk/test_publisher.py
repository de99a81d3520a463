"""client.events.publisher() / AsyncPublisher end to end over PublishStream: answers in order, durable
before answered, refused events that leave the stream going, cancellation, many events."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import grpc
import pytest
import voltorch
from voltorch import AsyncPublisher, Event, NewEvent, PublishResult
from voltorch.errors import CancelledError, InvalidArgumentError, UnavailableError
from voltorch.v1 import events_pb2, events_pb2_grpc
from voltorch_server.app import VoltorchServer
from voltorch_server.components.events import Event as LoggedEvent
from voltorch_server.config import Config

BOTH_BACKENDS = True  # every test with a `server` runs on SQLite and on PostgreSQL (tests/conftest.py)


def test_answers_come_in_order_with_increasing_sequences(client: voltorch.Client) -> None:
    with client.events.publisher() as p:
        futures = [p.publish("pub.order", {"i": i}, source="sdk") for i in range(300)]
    results = [f.result(timeout=10) for f in futures]
    assert all(isinstance(r, PublishResult) and not r.duplicate for r in results)
    seqs = [r.sequence for r in results]
    assert seqs == sorted(seqs) and len(set(seqs)) == 300
    logged = list(client.events.list("pub.order"))
    assert [e.data["i"] for e in logged] == list(range(300))
    assert [e.sequence for e in logged] == seqs and [e.id for e in logged] == [r.id for r in results]


def test_a_refused_event_names_its_field_and_the_stream_goes_on(client: voltorch.Client) -> None:
    with client.events.publisher() as p:
        good = p.publish("pub.bad", {"n": 1})
        bad_type = p.publish("Not A Type!", {"n": 2})
        bad_source = p.publish("pub.bad", source="x" * 300)
        after = p.publish("pub.bad", {"n": 3})
    assert good.result(10).sequence < after.result(10).sequence
    with pytest.raises(InvalidArgumentError) as err:
        bad_type.result(10)
    assert err.value.fields == ["event.type"] and err.value.reason
    with pytest.raises(InvalidArgumentError) as err2:
        bad_source.result(10)
    assert err2.value.fields == ["event.source"]
    assert [e.data for e in client.events.list("pub.bad")] == [{"n": 1}, {"n": 3}]  # nothing of the bad


def test_ids_make_the_stream_idempotent(client: voltorch.Client) -> None:
    first = client.events.publish("pub.idem", {"v": 1}, id="pub-idem-1")
    with client.events.publisher() as p:
        again = p.publish("pub.idem", {"v": 2}, id="pub-idem-1")
        twice = [p.publish_event(NewEvent("pub.idem", {"v": 3}, id="pub-idem-2")) for _ in range(2)]
    assert again.result(10).duplicate and again.result(10).sequence == first.sequence
    a, b = (f.result(10) for f in twice)
    assert not a.duplicate and b.duplicate and a.sequence == b.sequence
    assert [e.id for e in client.events.list("pub.idem")] == ["pub-idem-1", "pub-idem-2"]


def test_answered_means_durable_across_a_restart(tmp_path: Path) -> None:
    config = Config(host="127.0.0.1", port=0, db=str(tmp_path / "v.db"), shutdown_grace=2.0)
    srv = VoltorchServer(config).start()
    try:
        with voltorch.Client(srv.target, timeout=10) as c, c.events.publisher() as p:
            results = [f.result(10) for f in [p.publish("pub.durable", {"i": i}) for i in range(50)]]
    finally:
        srv.stop(grace=1.0)
    srv = VoltorchServer(config).start()
    try:
        with voltorch.Client(srv.target, timeout=10) as c:
            logged = list(c.events.list("pub.durable"))
    finally:
        srv.stop(grace=1.0)
    assert [(e.sequence, e.id) for e in logged] == [(r.sequence, r.id) for r in results]


def test_subscribers_see_what_the_stream_published(client: voltorch.Client) -> None:
    sub = client.events.subscribe("pub.live", heartbeats=True)
    next(sub)  # the first heartbeat: the subscription is in place
    with client.events.publisher() as p:
        futures = [p.publish("pub.live", {"i": i}) for i in range(20)]
    seen: list[Event] = []
    while len(seen) < 20:
        item = next(sub)
        if isinstance(item, Event):  # (heartbeats are skipped)
            seen.append(item)
    sub.close()
    assert [e.sequence for e in seen] == [f.result(10).sequence for f in futures]


def test_many_events_through_a_small_window(client: voltorch.Client) -> None:
    """More events than max_pending: publish() waits for room, nothing is lost or reordered."""
    n = 3000
    with client.events.publisher(max_pending=64) as p:
        futures = [p.publish("pub.many", {"i": i}) for i in range(n)]
        p.flush(timeout=60)
        assert all(f.done() for f in futures)
    seqs = [f.result(0).sequence for f in futures]
    assert seqs == sorted(seqs) and len(set(seqs)) == n
    assert sum(1 for _ in client.events.list("pub.many", page_size=1000)) == n


class _Hold:
    """Holds the server's publishing once an event of `type` is committed (in an EventLog listener, which
    runs before the stream answers): what is published meanwhile waits unanswered until release()."""

    def __init__(self, server: VoltorchServer, type: str):
        self.events, self.type = server.runtime.events, type
        self.holding, self.released = threading.Event(), threading.Event()

    def _listener(self, e: LoggedEvent) -> None:
        if e.type == self.type:
            self.holding.set()
            self.released.wait(30)

    def __enter__(self) -> _Hold:
        self.events.add_listener(self._listener)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        self.released.set()
        self.events.remove_listener(self._listener)


def test_cancel_fails_the_unanswered_and_refuses_more(server: VoltorchServer) -> None:
    with voltorch.Client(server.target, timeout=10) as client:
        p = client.events.publisher()
        done = p.publish("pub.cancel", {"i": 0})
        done.result(10)
        with _Hold(server, "pub.cancel.hold") as hold:
            held = p.publish("pub.cancel.hold", {"i": 1})
            assert hold.holding.wait(10)
            unanswered = [p.publish("pub.cancel", {"i": i}) for i in range(2, 5)]
            p.cancel()
            for fut in [held, *unanswered]:
                with pytest.raises(CancelledError):
                    fut.result(10)
        with pytest.raises((CancelledError, ValueError)):
            p.publish("pub.cancel", {"i": 5})
        assert {"i": 5} not in [e.data for e in client.events.list("pub.cancel")]


def test_futures_cancelled_while_unanswered_leave_the_others_answered(server: VoltorchServer) -> None:
    """A caller's Future.cancel() cannot stop the reader: the event is on its way, so cancel() refuses and
    every future is answered; close() returns."""
    with voltorch.Client(server.target, timeout=10) as client:
        p = client.events.publisher(max_pending=8)
        with _Hold(server, "pub.fcancel.hold") as hold:
            futures = [p.publish("pub.fcancel.hold", {"i": 0})]
            assert hold.holding.wait(10)
            futures += [p.publish("pub.fcancel", {"i": i}) for i in range(1, 6)]
            assert not any([f.cancel() for f in futures[1:4]])
        futures += [p.publish("pub.fcancel", {"i": i}) for i in range(6, 30)]  # needs the released room
        p.close(timeout=10)
        seqs = [f.result(10).sequence for f in futures]
        assert seqs == sorted(seqs) and len(set(seqs)) == 30


def test_a_stopping_server_fails_the_stream_with_unavailable(tmp_path: Path) -> None:
    config = Config(host="127.0.0.1", port=0, db=str(tmp_path / "v.db"), shutdown_grace=0.5)
    srv = VoltorchServer(config).start()
    with voltorch.Client(srv.target, timeout=10) as c:
        p = c.events.publisher()
        p.publish("pub.stop", {}).result(10)
        stopped = threading.Thread(target=srv.stop, kwargs={"grace": 0.5})
        stopped.start()
        stopped.join(30)
        with pytest.raises(UnavailableError) as err:
            for _ in range(1000):  # until the ended stream refuses (bounded)
                p.publish("pub.stop", {}).result(10)
        assert err.value.reason == "SERVER_STOPPING"
        p.close(timeout=10)


def test_the_raw_stream_answers_every_event_in_request_order(server: VoltorchServer) -> None:
    """Without the SDK: the responses answer the requests' events in order, and a half-close ends the call
    once all are answered."""
    reqs = [events_pb2.PublishStreamRequest(events=[events_pb2.Event(type="pub.raw")]) for _ in range(150)]
    reqs[7].events[0].type = ""
    reqs[9].events.extend(events_pb2.Event(type="pub.raw") for _ in range(50))  # 51 events in one request
    with grpc.insecure_channel(server.target) as ch:
        answers = [
            r
            for resp in events_pb2_grpc.EventServiceStub(ch).PublishStream(iter(reqs), timeout=30)
            for r in resp.results
        ]
    assert len(answers) == 200
    assert answers[7].WhichOneof("result") == "error"
    assert (
        answers[7].error.field == "event.type"
        and answers[7].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    )
    seqs = [a.receipt.sequence for i, a in enumerate(answers) if i != 7]
    assert seqs == sorted(seqs) and len(set(seqs)) == 199


def test_an_event_without_trace_context_takes_the_streams(server: VoltorchServer) -> None:
    """The proto's promise: an event carrying no trace context gets the stream's (the call's traceparent);
    one carrying its own keeps it."""
    call_trace, own_trace = "1" * 32, "2" * 32
    untraced = events_pb2.PublishStreamRequest(events=[events_pb2.Event(type="pub.traced")])
    traced = events_pb2.PublishStreamRequest(events=[events_pb2.Event(type="pub.traced")])
    traced.events[0].trace_context.traceparent = f"00-{own_trace}-{'3' * 16}-01"
    with grpc.insecure_channel(server.target) as ch:
        call = events_pb2_grpc.EventServiceStub(ch).PublishStream(
            iter([untraced, traced, untraced]),
            metadata=(("traceparent", f"00-{call_trace}-{'4' * 16}-01"),),
            timeout=30,
        )
        answers = [r for resp in call for r in resp.results]
    assert [a.WhichOneof("result") for a in answers] == ["receipt"] * 3
    with voltorch.Client(server.target, timeout=10) as c:
        logged = list(c.events.list("pub.traced"))
    assert [e.trace_id for e in logged] == [call_trace, own_trace, call_trace]
    assert logged[1].span_id == "3" * 16


def test_the_async_publisher(server: VoltorchServer) -> None:
    async def main() -> tuple[list[PublishResult], BaseException | None]:
        async with grpc.aio.insecure_channel(server.target) as ch, AsyncPublisher(ch, max_pending=16) as p:
            futures = [await p.publish("pub.async", {"i": i}) for i in range(100)]
            bad = await p.publish("", {"i": -1})
            last = await p.publish("pub.async", {"i": 100})
            results = [await f for f in [*futures, last]]
            try:
                await bad
                error = None
            except InvalidArgumentError as exc:
                error = exc
        return results, error

    results, error = asyncio.run(main())
    seqs = [r.sequence for r in results]
    assert seqs == sorted(seqs) and len(set(seqs)) == 101
    assert isinstance(error, InvalidArgumentError) and error.fields == ["event.type"]
    with voltorch.Client(server.target, timeout=10) as c:
        assert [e.data["i"] for e in c.events.list("pub.async")] == list(range(101))


def test_an_unreadable_request_ends_the_stream_after_the_earlier_answers(server: VoltorchServer) -> None:
    good = events_pb2.PublishStreamRequest(events=[events_pb2.Event(type="pub.unreadable")])
    bad = events_pb2.PublishStreamRequest(events=[events_pb2.Event(type="pub.unreadable")])
    bad.events[0].data.SetInParent()  # a Value with no kind: the request checks refuse it
    answers = []
    with grpc.insecure_channel(server.target) as ch:
        call = events_pb2_grpc.EventServiceStub(ch).PublishStream(iter([good, good, bad, good]), timeout=30)
        with pytest.raises(grpc.RpcError) as err:
            for resp in call:
                answers += resp.results
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "events[0].data" in err.value.details()
    assert [a.WhichOneof("result") for a in answers] == ["receipt", "receipt"]
    with voltorch.Client(server.target, timeout=10) as c:
        assert len(list(c.events.list("pub.unreadable"))) == 2


def test_the_async_publisher_cancelled(server: VoltorchServer) -> None:
    async def main() -> tuple[PublishResult, list[BaseException | PublishResult], BaseException]:
        async with grpc.aio.insecure_channel(server.target) as ch:
            p = AsyncPublisher(ch)
            first = await (await p.publish("pub.async.cancel", {"i": 0}))
            with _Hold(server, "pub.async.cancel.hold") as hold:
                unanswered = [await p.publish("pub.async.cancel.hold", {"i": 1})]
                assert await asyncio.to_thread(hold.holding.wait, 10)
                unanswered += [await p.publish("pub.async.cancel", {"i": i}) for i in range(2, 5)]
                await p.cancel()
                outcomes = await asyncio.gather(*unanswered, return_exceptions=True)
            try:
                await p.publish("pub.async.cancel", {"i": 5})
            except (CancelledError, ValueError) as exc:
                return first, outcomes, exc
            raise AssertionError("a cancelled publisher took another event")

    first, outcomes, refused = asyncio.run(main())
    assert all(isinstance(o, CancelledError) for o in outcomes) and len(outcomes) == 4
    assert isinstance(refused, (CancelledError, ValueError))
    with voltorch.Client(server.target, timeout=10) as c:
        assert {"i": 5} not in [e.data for e in c.events.list("pub.async.cancel")]
        assert [e.sequence for e in c.events.list("pub.async.cancel")][0] == first.sequence


def test_async_futures_cancelled_while_unanswered_leave_the_others_answered(server: VoltorchServer) -> None:
    async def main() -> list[PublishResult | BaseException]:
        async with grpc.aio.insecure_channel(server.target) as ch:
            p = AsyncPublisher(ch, max_pending=8)
            with _Hold(server, "pub.afcancel.hold") as hold:
                futures = [await p.publish("pub.afcancel.hold", {"i": 0})]
                assert await asyncio.to_thread(hold.holding.wait, 10)
                futures += [await p.publish("pub.afcancel", {"i": i}) for i in range(1, 6)]
                for f in futures[1:4]:
                    f.cancel()
            futures += [await p.publish("pub.afcancel", {"i": i}) for i in range(6, 30)]  # needs the room
            await asyncio.wait_for(p.close(), 10)
            return await asyncio.gather(*futures, return_exceptions=True)

    outcomes = asyncio.run(main())
    assert [type(o) for o in outcomes[1:4]] == [asyncio.CancelledError] * 3
    answered = [o for i, o in enumerate(outcomes) if not 1 <= i < 4]
    assert all(isinstance(o, PublishResult) for o in answered) and len(answered) == 27


def test_the_async_publisher_stops_sending_when_the_server_ends_the_call(tmp_path: Path) -> None:
    """The server ending the call also ends grpc.aio's task that waits for requests to send."""
    config = Config(host="127.0.0.1", port=0, db=str(tmp_path / "v.db"), shutdown_grace=0.5)
    srv = VoltorchServer(config).start()

    async def main() -> int:
        async with grpc.aio.insecure_channel(srv.target) as ch:
            p = AsyncPublisher(ch)
            await (await p.publish("pub.async.end", {}))
            await asyncio.to_thread(srv.stop, 0.5)
            with pytest.raises(UnavailableError):
                for _ in range(1000):  # until the ended stream refuses (bounded)
                    await (await p.publish("pub.async.end", {}))
            others = asyncio.all_tasks() - {asyncio.current_task()}
            _, pending = await asyncio.wait(others, timeout=10) if others else (set(), set())
            return len(pending)

    try:
        assert asyncio.run(main()) == 0
    finally:
        srv.stop()


def test_a_request_without_events_ends_the_stream_after_the_earlier_answers(server: VoltorchServer) -> None:
    good = events_pb2.PublishStreamRequest(events=[events_pb2.Event(type="pub.empty")] * 3)
    answers = []
    with grpc.insecure_channel(server.target) as ch:
        call = events_pb2_grpc.EventServiceStub(ch).PublishStream(
            iter([good, events_pb2.PublishStreamRequest(), good]), timeout=30
        )
        with pytest.raises(grpc.RpcError) as err:
            for resp in call:
                answers += resp.results
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "events" in err.value.details()
    assert [a.WhichOneof("result") for a in answers] == ["receipt"] * 3


def test_large_events_queued_together_go_in_requests_under_the_message_limit(client: voltorch.Client) -> None:
    """12 events of ~600 kB queued at once are ~7 MB: more than the server's 4 MiB message limit, so the
    publisher must split what it sends together."""
    blob = "x" * 600_000
    with client.events.publisher() as p:
        futures = [p.publish("pub.large", {"i": i, "blob": blob}) for i in range(12)]
    seqs = [f.result(30).sequence for f in futures]
    assert seqs == sorted(seqs) and len(set(seqs)) == 12


def test_a_publisher_publishes_after_the_events_component_restarted(client: voltorch.Client) -> None:
    """stop() then start() (the watcher's restart) leaves the log taking publishers' streams again."""
    client.restart_component("events", reason="test")
    with client.events.publisher() as p:
        fut = p.publish("pub.restarted", {"i": 1})
    assert fut.result(10).sequence > 0
    assert [e.data for e in client.events.list("pub.restarted")] == [{"i": 1}]
