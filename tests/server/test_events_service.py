"""EventService over real gRPC: status codes and details, the replay/live seam, heartbeats, slow
consumers, hundreds of concurrent streams beside unary calls, the stream cap, restart and retention."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import grpc
import pytest
import voltorch
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from voltorch.errors import VoltorchError, from_rpc_error
from voltorch.v1 import common_pb2, events_pb2, events_pb2_grpc
from voltorch_server.app import VoltorchServer
from voltorch_server.config import Config

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
pb = events_pb2


@pytest.fixture
def stub(server: VoltorchServer) -> Iterator[events_pb2_grpc.EventServiceStub]:
    with grpc.insecure_channel(server.target) as ch:
        yield events_pb2_grpc.EventServiceStub(ch)


def _server(config: Config, **overrides) -> VoltorchServer:
    """A server with overridden settings; `with` starts and stops it."""
    return VoltorchServer(replace(config, **overrides))


def _err(fn) -> VoltorchError:
    with pytest.raises(grpc.RpcError) as exc:
        fn()
    return from_rpc_error(exc.value)


def _events(n: int, type_: str = "load.tick", **kw) -> pb.PublishBatchRequest:
    return pb.PublishBatchRequest(
        events=[pb.Event(type=type_, data=struct_pb2.Value(number_value=i), **kw) for i in range(n)]
    )


class Reader:
    """Reads a server stream on a daemon thread; the test takes items (or the final error) with timeouts."""

    def __init__(self, call):
        self.call = call
        self.q: queue.Queue = queue.Queue()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            for item in self.call:
                self.q.put(item)
            self.q.put(None)
        except grpc.RpcError as err:
            self.q.put(from_rpc_error(err))

    def next(self, timeout: float = 10.0):
        item = self.q.get(timeout=timeout)
        if isinstance(item, Exception):
            raise item
        return item

    def heartbeat(self, timeout: float = 10.0) -> pb.SubscribeHeartbeat:
        item = self.next(timeout)
        assert item.HasField("heartbeat"), item
        return item.heartbeat

    def events(self, n: int, timeout: float = 10.0) -> list[pb.Event]:
        out: list[pb.Event] = []
        while len(out) < n:
            item = self.next(timeout)
            assert item is not None, "stream ended early"
            if item.HasField("event"):
                out.append(item.event)
        return out


# -- unary calls ------------------------------------------------------------------------------------


def test_publish_list_roundtrip(stub) -> None:
    ev = pb.Event(
        type="agent.registered",
        source="sdk",
        target="agent:planner",
        data=struct_pb2.Value(string_value="hello"),
        correlation_id="c1",
        priority=common_pb2.PRIORITY_HIGH,
        trace_context=common_pb2.TraceContext(traceparent=TRACEPARENT),
        id="my-id",
    )
    r = stub.Publish(pb.PublishRequest(event=ev))
    assert (r.id, r.duplicate) == ("my-id", False) and r.sequence >= 1
    again = stub.Publish(pb.PublishRequest(event=ev))
    assert (again.sequence, again.duplicate) == (r.sequence, True)
    batch = stub.PublishBatch(_events(3))
    first = batch.receipts[0].sequence
    assert [x.sequence for x in batch.receipts] == [first, first + 1, first + 2] and first > r.sequence
    page = stub.ListEvents(
        pb.ListEventsRequest(filter=pb.EventFilter(trace_id="0af7651916cd43dd8448eb211c80319c"))
    )
    [got] = page.events
    assert page.head_sequence >= first + 2 and not page.next_page_token
    assert (got.type, got.source, got.target, got.data.string_value) == (
        "agent.registered",
        "sdk",
        "agent:planner",
        "hello",
    )
    assert got.priority == common_pb2.PRIORITY_HIGH and got.span_id == "b7ad6b7169203331"
    assert got.trace_context.traceparent == TRACEPARENT and got.time.seconds > 0
    desc = stub.ListEvents(
        pb.ListEventsRequest(
            filter=pb.EventFilter(types=["load.*"]), order=pb.EVENT_ORDER_DESCENDING, page_size=2
        )
    )
    assert [e.sequence for e in desc.events] == [first + 2, first + 1] and desc.next_page_token


def test_a_page_of_large_events_stays_within_a_message(stub) -> None:
    """Six events of 900 kB data (each within the 1 MiB limit) made a 5.4 MB page: ListEvents answered
    RESOURCE_EXHAUSTED 'Sent message larger than max'. The page now ends early, with a token."""
    big = struct_pb2.Value(string_value="x" * 900_000)
    for _ in range(6):
        stub.Publish(pb.PublishRequest(event=pb.Event(type="big.blob", data=big)))
    flt = pb.EventFilter(types=["big.blob"])
    page = stub.ListEvents(pb.ListEventsRequest(filter=flt))
    assert 0 < len(page.events) < 6 and page.next_page_token
    seen = len(page.events)
    while page.next_page_token:
        page = stub.ListEvents(pb.ListEventsRequest(filter=flt, page_token=page.next_page_token))
        seen += len(page.events)
    assert seen == 6


def test_a_large_correlation_is_truncated_not_refused(stub) -> None:
    """GetCorrelation has no pages: six events of 900 kB under one correlation id answered
    RESOURCE_EXHAUSTED. It now answers what fits, with truncated set."""
    big = struct_pb2.Value(string_value="x" * 900_000)
    for _ in range(6):
        stub.Publish(pb.PublishRequest(event=pb.Event(type="big.blob", correlation_id="heavy", data=big)))
    resp = stub.GetCorrelation(pb.GetCorrelationRequest(correlation_id="heavy"))
    assert 0 < len(resp.nodes) < 6 and resp.truncated


def test_state_writes_are_published_as_state_changed(server: VoltorchServer, stub) -> None:
    server.runtime.state.set("project.config", {"retries": 3})
    [e] = [
        e
        for e in stub.ListEvents(pb.ListEventsRequest(filter=pb.EventFilter(types=["state.*"]))).events
        if e.data.struct_value["key"] == "project.config"
    ]
    assert e.type == "state.changed" and e.source == "state"


def test_get_correlation(stub) -> None:
    root = stub.Publish(pb.PublishRequest(event=pb.Event(type="job.started", correlation_id="job")))
    child = stub.Publish(pb.PublishRequest(event=pb.Event(type="job.step", causation_id=root.id)))
    resp = stub.GetCorrelation(pb.GetCorrelationRequest(correlation_id="job"))
    assert [n.event.id for n in resp.nodes] == [root.id, child.id]
    assert list(resp.root_ids) == [root.id] and list(resp.nodes[0].child_ids) == [child.id]
    assert resp.nodes[1].parent_id == root.id and resp.nodes[1].depth == 1
    err = _err(lambda: stub.GetCorrelation(pb.GetCorrelationRequest(correlation_id="nope")))
    assert err.code == grpc.StatusCode.NOT_FOUND


_TS_BAD = timestamp_pb2.Timestamp(seconds=1, nanos=-5)


@pytest.mark.parametrize(
    ("method", "request_", "field"),
    [
        ("Publish", pb.PublishRequest(event=pb.Event(type="Bad Type")), "event.type"),
        ("Publish", pb.PublishRequest(event=pb.Event(type="a.b", priority=9)), "event.priority"),  # type: ignore[arg-type]
        (
            "Publish",
            pb.PublishRequest(
                event=pb.Event(type="a.b", trace_context=common_pb2.TraceContext(traceparent="x"))
            ),
            "event.trace_context.traceparent",
        ),
        (
            "Publish",
            pb.PublishRequest(event=pb.Event(type="a.b", data=struct_pb2.Value(number_value=float("nan")))),
            "event.data",
        ),
        ("PublishBatch", pb.PublishBatchRequest(events=[pb.Event(type="a.b"), pb.Event()]), "events[1].type"),
        ("PublishBatch", pb.PublishBatchRequest(), "events"),
        ("Subscribe", pb.SubscribeRequest(filter=pb.EventFilter(types=["ok.*", "a[b"])), "filter.types[1]"),
        ("Subscribe", pb.SubscribeRequest(filter=pb.EventFilter(min_priority=9)), "filter.min_priority"),  # type: ignore[arg-type]
        ("Subscribe", pb.SubscribeRequest(from_sequence=-1), "from_sequence"),
        ("Subscribe", pb.SubscribeRequest(from_sequence=0), "from_sequence"),
        ("Subscribe", pb.SubscribeRequest(from_time=_TS_BAD), "from_time"),
        (
            "Subscribe",
            pb.SubscribeRequest(heartbeat_interval=duration_pb2.Duration(nanos=500_000_000)),
            "heartbeat_interval",
        ),
        (
            "Subscribe",
            pb.SubscribeRequest(heartbeat_interval=duration_pb2.Duration(seconds=-1)),
            "heartbeat_interval",
        ),
        ("ListEvents", pb.ListEventsRequest(page_token="garbage"), "page_token"),
        ("ListEvents", pb.ListEventsRequest(page_size=-1), "page_size"),
        ("ListEvents", pb.ListEventsRequest(start_sequence=-3), "start_sequence"),
        ("ListEvents", pb.ListEventsRequest(order=7), "order"),  # type: ignore[arg-type]
        ("ListEvents", pb.ListEventsRequest(filter=pb.EventFilter(types=["Upper.*"])), "filter.types[0]"),
        ("ListEvents", pb.ListEventsRequest(start_time=_TS_BAD), "start_time"),
        ("GetCorrelation", pb.GetCorrelationRequest(), "correlation_id"),
        ("GetCorrelation", pb.GetCorrelationRequest(correlation_id="c", max_events=-1), "max_events"),
    ],
)
def test_bad_requests_are_invalid_argument_naming_the_field(stub, method: str, request_, field: str) -> None:
    def invoke():
        result = getattr(stub, method)(request_, timeout=10)
        if method == "Subscribe":
            next(result)

    err = _err(invoke)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT, err
    assert [v.field for v in err.field_violations] == [field]
    assert field in err.message


def test_page_token_of_another_query_is_rejected(stub) -> None:
    stub.PublishBatch(_events(5))
    page = stub.ListEvents(pb.ListEventsRequest(page_size=2))
    err = _err(
        lambda: stub.ListEvents(
            pb.ListEventsRequest(
                page_size=2, page_token=page.next_page_token, filter=pb.EventFilter(source="x")
            )
        )
    )
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and err.field_violations[0].field == "page_token"


# -- streams ----------------------------------------------------------------------------------------


def test_replay_live_seam_under_concurrent_publishing(server: VoltorchServer, stub) -> None:
    """Two subscribers join while a publisher is busy: one replays from 1, one is live-only. Each gets
    exactly the matching events from its start, in sequence order: no gap, no duplicate."""
    stub.PublishBatch(
        pb.PublishBatchRequest(events=[pb.Event(type="seam.a" if i % 2 else "noise.a") for i in range(200)])
    )
    midway, joined = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    def publisher() -> None:
        try:
            with grpc.insecure_channel(server.target) as ch:
                pub = events_pb2_grpc.EventServiceStub(ch)
                for i in range(150):
                    pub.PublishBatch(
                        pb.PublishBatchRequest(
                            events=[
                                pb.Event(type="seam.b" if (i + j) % 2 else "noise.b")
                                for j in range(i % 5 + 1)
                            ]
                        ),
                        timeout=10,
                    )
                    if i == 30:
                        midway.set()
                        assert joined.wait(30)  # the rest is published while both subscribers run
                pub.Publish(pb.PublishRequest(event=pb.Event(type="seam.end")), timeout=10)
        except BaseException as exc:
            failed.append(exc)
            midway.set()

    t = threading.Thread(target=publisher)
    t.start()
    assert midway.wait(30)
    flt = pb.EventFilter(types=["seam.*"])
    replaying = Reader(stub.Subscribe(pb.SubscribeRequest(filter=flt, from_sequence=1)))
    live = Reader(stub.Subscribe(pb.SubscribeRequest(filter=flt)))
    live_start = live.heartbeat().resume_sequence
    replaying.heartbeat()
    joined.set()
    t.join()  # the readers keep reading meanwhile
    assert not failed, f"publisher failed: {failed[0]!r}"

    def until_end(r: Reader) -> list[int]:
        seqs = []
        while True:
            [e] = r.events(1, timeout=30)
            seqs.append(e.sequence)
            if e.type == "seam.end":
                return seqs

    got_replay, got_live = until_end(replaying), until_end(live)
    replaying.call.cancel()
    live.call.cancel()
    matching = [
        e.sequence for e in server.runtime.events.read_after(0, 100_000) if e.type.startswith("seam.")
    ]
    assert got_replay == matching
    assert got_live == [s for s in matching if s >= live_start]
    assert live_start > 200  # it really joined mid-stream


def test_heartbeats_advance_past_filtered_events(server: VoltorchServer, stub) -> None:
    before = stub.PublishBatch(_events(3)).receipts[-1].sequence
    r = Reader(
        stub.Subscribe(
            pb.SubscribeRequest(
                filter=pb.EventFilter(types=["never.*"]), heartbeat_interval=duration_pb2.Duration(seconds=1)
            )
        )
    )
    assert r.heartbeat().resume_sequence > before  # established, positioned after the head
    last = stub.PublishBatch(_events(5)).receipts[-1].sequence  # nothing matches
    while (hb := r.heartbeat(timeout=10)).resume_sequence <= last:
        pass
    assert hb.resume_sequence <= server.runtime.events.last_sequence() + 1 and hb.time.seconds > 0
    r.call.cancel()


def test_zero_heartbeat_interval_sends_none(stub) -> None:
    r = Reader(
        stub.Subscribe(
            pb.SubscribeRequest(
                filter=pb.EventFilter(types=["a.b"]),
                from_sequence=1,
                heartbeat_interval=duration_pb2.Duration(),
            )
        )
    )
    seq = stub.Publish(pb.PublishRequest(event=pb.Event(type="a.b"))).sequence
    first = r.next()
    assert first.HasField("event") and first.event.sequence == seq
    r.call.cancel()


def test_slow_consumer_is_cut_off_and_resumes_without_loss(config: Config) -> None:
    """A subscriber that falls behind its buffer (20 here) gets RESOURCE_EXHAUSTED with the sequence to
    resume from; publishers were never slowed, and resuming there delivers the rest exactly once."""
    with _server(config, subscriber_buffer=20) as srv, grpc.insecure_channel(srv.target) as ch:
        stub = events_pb2_grpc.EventServiceStub(ch)
        other = Reader(stub.Subscribe(pb.SubscribeRequest(filter=pb.EventFilter(types=["other.*"]))))
        other.heartbeat()
        slow = Reader(stub.Subscribe(pb.SubscribeRequest(filter=pb.EventFilter(types=["load.*"]))))
        start = slow.heartbeat().resume_sequence
        subscribers = srv.runtime.events.subscriber_count  # ours (2) and any in-process ones
        got: list[int] = []
        published = 0
        err = None
        # Each burst is one transaction: delivered at once, 100 events into a buffer of 20. A burst that
        # meets a subscriber still replaying is read from the log instead; a live one overflows.
        for _ in range(10):
            stub.PublishBatch(_events(100))
            published += 100
            try:
                while len(got) < published:
                    got += [e.sequence for e in slow.events(1)]
            except VoltorchError as exc:
                err = exc
                break
        assert err is not None, "the slow subscriber never overflowed"
        assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED and err.reason == "SUBSCRIBER_OVERFLOW"
        resume = int(err.metadata["resume_sequence"])
        assert resume == (got[-1] + 1 if got else start)
        assert srv.runtime.events.subscriber_count == subscribers - 1  # only the slow one was cut off
        stub.Publish(pb.PublishRequest(event=pb.Event(type="other.ping")))
        assert other.events(1)[0].type == "other.ping"
        again = Reader(
            stub.Subscribe(pb.SubscribeRequest(filter=pb.EventFilter(types=["load.*"]), from_sequence=resume))
        )
        again.heartbeat()
        got += [e.sequence for e in again.events(published - len(got))]
        everything = srv.runtime.events.read_after(0, 100_000)
        assert got == [e.sequence for e in everything if e.type == "load.tick"]  # all, once, in order
        other.call.cancel()
        again.call.cancel()


def test_server_stop_ends_streams_with_a_resume_point(config: Config) -> None:
    srv = _server(config).start()
    ch = grpc.insecure_channel(srv.target)
    stub = events_pb2_grpc.EventServiceStub(ch)
    last = stub.PublishBatch(_events(2)).receipts[-1].sequence
    r = Reader(stub.Subscribe(pb.SubscribeRequest(filter=pb.EventFilter(types=["load.*"]), from_sequence=1)))
    r.heartbeat()
    r.events(2)
    srv.stop(grace=2)
    with pytest.raises(VoltorchError) as exc:
        r.next()
    assert exc.value.code == grpc.StatusCode.UNAVAILABLE
    assert int(exc.value.metadata["resume_sequence"]) >= last + 1
    ch.close()


def test_events_survive_a_restart(config: Config) -> None:
    with _server(config) as srv, grpc.insecure_channel(srv.target) as ch:
        stub = events_pb2_grpc.EventServiceStub(ch)
        receipts = stub.PublishBatch(_events(10, correlation_id="run-1")).receipts
    with _server(config) as srv, grpc.insecure_channel(srv.target) as ch:
        stub = events_pb2_grpc.EventServiceStub(ch)
        page = stub.ListEvents(pb.ListEventsRequest(filter=pb.EventFilter(correlation_id="run-1")))
        assert [e.data.number_value for e in page.events] == list(range(10))
        assert [e.sequence for e in page.events] == [r.sequence for r in receipts]
        after = stub.Publish(pb.PublishRequest(event=pb.Event(type="load.tick"))).sequence
        assert after > receipts[-1].sequence  # the sequence continues, never reused
        assert len(stub.GetCorrelation(pb.GetCorrelationRequest(correlation_id="run-1")).nodes) == 10
        r = Reader(
            stub.Subscribe(
                pb.SubscribeRequest(
                    filter=pb.EventFilter(types=["load.*"]), from_sequence=receipts[8].sequence
                )
            )
        )
        assert [e.sequence for e in r.events(3)] == [receipts[8].sequence, receipts[9].sequence, after]
        r.call.cancel()


def test_compacted_sequences_are_out_of_range(config: Config) -> None:
    with _server(config, event_retention_count=3) as srv, grpc.insecure_channel(srv.target) as ch:
        stub = events_pb2_grpc.EventServiceStub(ch)
        stub.PublishBatch(_events(10))
        assert srv.runtime.events.compact() >= 7
        oldest = srv.runtime.events.oldest_available()
        for fn in (
            lambda: next(stub.Subscribe(pb.SubscribeRequest(from_sequence=oldest - 1))),
            lambda: next(stub.Subscribe(pb.SubscribeRequest(from_time=timestamp_pb2.Timestamp(seconds=1)))),
            lambda: stub.ListEvents(pb.ListEventsRequest(start_sequence=2)),
        ):
            err = _err(fn)
            assert err.code == grpc.StatusCode.OUT_OF_RANGE
            assert err.reason == "EVENTS_COMPACTED" and err.metadata["oldest_sequence"] == str(oldest)
            assert str(oldest) in err.message
        assert stub.ListEvents(pb.ListEventsRequest()).events[0].sequence == oldest


# -- many streams -----------------------------------------------------------------------------------


def test_hundreds_of_subscribers_while_unary_calls_are_served(server: VoltorchServer) -> None:
    """200 real gRPC subscriptions stay open (one server thread each) and every one receives every
    event, while unary calls on other connections keep being answered."""
    n_subs, n_events = 200, 10

    def unary_probe() -> float:
        worst = 0.0
        with voltorch.Client(server.target, timeout=10) as client:
            for i in range(10):
                t0 = time.perf_counter()
                client.state.set(f"probe/{i}", i)
                client.events.publish("probe.ping", i)
                next(iter(client.events.list("probe.*", page_size=1)))
                worst = max(worst, time.perf_counter() - t0)
        return worst

    async def main() -> None:
        channels = [grpc.aio.insecure_channel(server.target) for _ in range(4)]
        try:
            stubs = [events_pb2_grpc.EventServiceStub(ch) for ch in channels]
            calls = [
                stubs[i % len(stubs)].Subscribe(pb.SubscribeRequest(filter=pb.EventFilter(types=["load.*"])))
                for i in range(n_subs)
            ]
            firsts = await asyncio.wait_for(asyncio.gather(*(c.read() for c in calls)), 60)
            assert all(f.HasField("heartbeat") for f in firsts)
            assert server.stream_limit.open_streams >= n_subs
            assert server.runtime.events.subscriber_count >= n_subs
            worst = await asyncio.to_thread(unary_probe)
            assert worst < 10  # each round trip was answered (the per-call deadline is 10 s)
            await asyncio.to_thread(
                lambda: server.runtime.events.publish_batch([_new(i) for i in range(n_events)])
            )

            async def read_all(c) -> list[int]:
                return [(await c.read()).event.data.number_value for _ in range(n_events)]

            results = await asyncio.wait_for(asyncio.gather(*(read_all(c) for c in calls)), 60)
            assert all(r == list(range(n_events)) for r in results)
            for c in calls:
                c.cancel()
        finally:
            for ch in channels:
                await ch.close()

    asyncio.run(main())


def _new(i: int):
    from voltorch_server.components.events import NewEvent

    return NewEvent("load.tick", data=i)


def test_stream_cap_keeps_unary_calls_answering(config: Config) -> None:
    with _server(config, max_streams=3, max_workers=6) as srv, grpc.insecure_channel(srv.target) as ch:
        stub = events_pb2_grpc.EventServiceStub(ch)
        readers = [
            Reader(stub.Subscribe(pb.SubscribeRequest(filter=pb.EventFilter(types=["a.b"]))))
            for _ in range(3)
        ]
        for r in readers:
            r.heartbeat()
        err = _err(lambda: next(stub.Subscribe(pb.SubscribeRequest())))
        assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED and err.reason == "TOO_MANY_STREAMS"
        for _ in range(5):  # 3 of 6 threads hold streams; unary calls still get the rest
            assert stub.Publish(pb.PublishRequest(event=pb.Event(type="a.b")), timeout=10).sequence > 0
        assert [e.type for e in readers[0].events(5)] == ["a.b"] * 5
        for r in readers:
            r.call.cancel()
