"""Batched stream messages over real gRPC: Subscribe, state Watch and WatchExecution send what is ready in
one message when the client asks (max_batch), within a count and a byte limit, one item when caught up;
clients that do not ask get single items; positions stay per item; the SDK iterators flatten batches."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import grpc
import pytest
import voltorch
from google.protobuf import duration_pb2, struct_pb2
from voltorch.errors import from_rpc_error
from voltorch.v1 import (
    events_pb2,
    events_pb2_grpc,
    state_pb2,
    state_pb2_grpc,
    workflows_pb2,
    workflows_pb2_grpc,
)
from voltorch_server.app import VoltorchServer

pb = events_pb2
# The documented limits of one batched message (events.proto, SubscribeRequest.max_batch).
MAX_BATCH_ITEMS = 500
MAX_BATCH_BYTES = 1 << 20
NO_HEARTBEATS = duration_pb2.Duration(seconds=0)
MINE = pb.EventFilter(types=["batch.tick"])  # not the server's own events, published meanwhile


@pytest.fixture
def channel(server: VoltorchServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as ch:
        yield ch


@pytest.fixture
def stub(channel: grpc.Channel) -> events_pb2_grpc.EventServiceStub:
    return events_pb2_grpc.EventServiceStub(channel)


def _publish(stub, n: int, type_: str = "batch.tick", data: struct_pb2.Value | None = None) -> list[int]:
    seqs: list[int] = []
    for start in range(0, n, 1000):
        events = [
            pb.Event(type=type_, data=data or struct_pb2.Value(number_value=i))
            for i in range(start, min(n, start + 1000))
        ]
        seqs += [r.sequence for r in stub.PublishBatch(pb.PublishBatchRequest(events=events)).receipts]
    return seqs


def _messages(call, events: int) -> list[pb.SubscribeResponse]:
    """Messages of a Subscribe stream until `events` events have arrived (heartbeats excluded)."""
    out: list[pb.SubscribeResponse] = []
    got = 0
    for resp in call:
        kind = resp.WhichOneof("payload")
        if kind == "heartbeat":
            continue
        out.append(resp)
        got += len(resp.batch.events) if kind == "batch" else 1
        if got >= events:
            break
    call.cancel()
    return out


def _sizes(msgs: list[pb.SubscribeResponse]) -> list[int]:
    assert all(m.WhichOneof("payload") == "batch" for m in msgs)
    return [len(m.batch.events) for m in msgs]


def _seqs(msgs: list[pb.SubscribeResponse]) -> list[int]:
    return [e.sequence for m in msgs for e in (m.batch.events if m.HasField("batch") else [m.event])]


def test_replay_is_batched_up_to_the_count_the_client_asked_for(stub):
    seqs = _publish(stub, 20)
    req = pb.SubscribeRequest(
        filter=MINE, from_sequence=seqs[0], max_batch=7, heartbeat_interval=NO_HEARTBEATS
    )
    msgs = _messages(stub.Subscribe(req, timeout=30), 20)
    assert _sizes(msgs) == [7, 7, 6]
    assert _seqs(msgs) == seqs
    assert [e.data.number_value for m in msgs for e in m.batch.events] == list(range(20))


def test_the_server_caps_the_count_per_message(stub):
    seqs = _publish(stub, 1200)
    req = pb.SubscribeRequest(filter=MINE, from_sequence=seqs[0], max_batch=MAX_BATCH_ITEMS + 100)
    msgs = _messages(stub.Subscribe(req, timeout=30), 1200)
    assert _sizes(msgs) == [MAX_BATCH_ITEMS, MAX_BATCH_ITEMS, 1200 - 2 * MAX_BATCH_ITEMS]
    assert _seqs(msgs) == seqs


def test_a_batch_stays_within_the_byte_limit(stub):
    big = struct_pb2.Value(string_value="x" * (300 * 1024))  # 3 fit in 1 MiB, 4 do not
    seqs = _publish(stub, 10, data=big)
    req = pb.SubscribeRequest(
        filter=MINE, from_sequence=seqs[0], max_batch=100, heartbeat_interval=NO_HEARTBEATS
    )
    msgs = _messages(stub.Subscribe(req, timeout=30), 10)
    assert _sizes(msgs) == [3, 3, 3, 1]
    assert all(m.ByteSize() <= MAX_BATCH_BYTES + 64 for m in msgs)
    assert _seqs(msgs) == seqs


def test_a_caught_up_subscriber_gets_each_event_alone_at_once(stub):
    call = stub.Subscribe(
        pb.SubscribeRequest(filter=pb.EventFilter(types=["live.*"]), max_batch=500), timeout=30
    )
    it = iter(call)
    assert next(it).HasField("heartbeat")  # in place: nothing published from here on is missed
    try:
        for i in range(3):
            (seq,) = _publish(stub, 1, type_="live.tick")
            msg = next(it)
            assert [e.sequence for e in msg.batch.events] == [seq], i
    finally:
        call.cancel()


def test_old_clients_get_one_event_per_message(stub):
    seqs = _publish(stub, 600)
    req = pb.SubscribeRequest(
        filter=MINE, from_sequence=seqs[0], heartbeat_interval=NO_HEARTBEATS
    )  # no max_batch
    msgs = _messages(stub.Subscribe(req, timeout=30), 600)
    assert len(msgs) == 600
    assert all(m.WhichOneof("payload") == "event" for m in msgs)
    assert _seqs(msgs) == seqs


def test_positions_stay_per_event(stub):
    seqs = _publish(stub, 50)
    req = pb.SubscribeRequest(filter=MINE, from_sequence=seqs[0], max_batch=500)
    call = stub.Subscribe(req, timeout=30)
    first = next(iter(call))
    assert first.heartbeat.resume_sequence == seqs[0]  # the first message is still a heartbeat
    msgs = _messages(call, 50)
    assert _sizes(msgs) == [50]
    # Resume from the middle of that batch: exactly the events after the one we stopped at.
    resume = msgs[0].batch.events[19].sequence + 1
    again = _messages(
        stub.Subscribe(pb.SubscribeRequest(filter=MINE, from_sequence=resume, max_batch=500), timeout=30), 30
    )
    assert _seqs(again) == seqs[20:]


def test_negative_max_batch_is_an_invalid_argument(stub, channel):
    with pytest.raises(grpc.RpcError) as exc:
        next(iter(stub.Subscribe(pb.SubscribeRequest(max_batch=-1), timeout=30)))
    err = from_rpc_error(exc.value)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and "max_batch" in str(err)
    watch = state_pb2_grpc.StateServiceStub(channel).Watch(state_pb2.WatchRequest(prefix="", max_batch=-5))
    with pytest.raises(grpc.RpcError) as exc:
        next(iter(watch))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_sdk_subscription_asks_for_batches_and_flattens_them(client: voltorch.Client, stub):
    seqs = _publish(stub, 1100)
    sub = client.events.subscribe("batch.tick", from_sequence=seqs[0])
    assert sub._request().max_batch > 1
    got = []
    with sub:
        for e in sub:
            assert isinstance(e, voltorch.Event)  # no heartbeats were asked for
            got.append((e.sequence, e.data))
            if len(got) == 1100:
                break
    assert got == [(s, i) for i, s in enumerate(seqs)]


def test_sdk_subscription_reads_servers_that_send_single_events(client: voltorch.Client, stub):
    """The SDK against an unbatched stream (as a server without batching sends): same events."""
    seqs = _publish(stub, 5)
    sub = client.events.subscribe("batch.tick", from_sequence=seqs[0])
    old_request = pb.SubscribeRequest(filter=MINE, from_sequence=seqs[0])  # an older SDK's request
    sub._request = lambda: old_request  # type: ignore[method-assign]
    with sub:
        got = [next(sub) for _ in range(5)]
    assert [e.sequence for e in got if isinstance(e, voltorch.Event)] == seqs


# -- state Watch ------------------------------------------------------------------------------------------


def test_state_watch_batches_replay_and_old_clients_get_single_changes(client: voltorch.Client, channel):
    first = client.state.set("b.k0", 0).revision
    for i in range(1, 30):
        client.state.set(f"b.k{i}", i)
    watch = state_pb2_grpc.StateServiceStub(channel).Watch

    def read(req: state_pb2.WatchRequest, changes: int) -> list[state_pb2.WatchResponse]:
        out, got = [], 0
        call = watch(req, timeout=30)
        for resp in call:
            out.append(resp)
            got += len(resp.changes) or 1
            if got >= changes:
                break
        call.cancel()
        return out

    batched = read(state_pb2.WatchRequest(prefix="b.", start_revision=first, max_batch=500), 30)
    assert [len(m.changes) for m in batched] == [30]
    assert [c.kv.key for c in batched[0].changes] == [f"b.k{i}" for i in range(30)]
    assert not batched[0].HasField("kv")
    small = read(state_pb2.WatchRequest(prefix="b.", start_revision=first, max_batch=8), 30)
    assert [len(m.changes) for m in small] == [8, 8, 8, 6]
    single = read(state_pb2.WatchRequest(prefix="b.", start_revision=first), 30)
    assert len(single) == 30 and all(not m.changes for m in single)
    assert [m.revision for m in single] == [c.revision for c in batched[0].changes]
    # The SDK asks for batches and yields changes one by one, resuming per change.
    changes = client.state.watch(prefix="b.", start_revision=first)
    assert [(c.key, c.kv.value) for _, c in zip(range(30), changes, strict=False)] == [
        (f"b.k{i}", i) for i in range(30)
    ]


# -- WatchExecution ---------------------------------------------------------------------------------------


def test_watch_execution_batches_and_ends_after_the_last_event(client: voltorch.Client, channel):
    started = client.workflows.execute_complete("Build a tiny todo list API", skip_review=True)
    eid = started.execution.id
    client.workflows.wait(eid, timeout=60)
    stub = workflows_pb2_grpc.WorkflowServiceStub(channel)
    batched = list(stub.WatchExecution(workflows_pb2.WatchExecutionRequest(execution_id=eid, max_batch=500)))
    single = list(stub.WatchExecution(workflows_pb2.WatchExecutionRequest(execution_id=eid)))
    assert all(m.updates for m in batched) and all(not m.updates for m in single)
    assert len(batched) < len(single)  # the whole finished run replays in few messages
    flat = [u.event.sequence for m in batched for u in m.updates]
    assert flat == [m.event.sequence for m in single]
    assert batched[-1].updates[-1].event.type == "workflow.execution.completed"
    small = list(
        stub.WatchExecution(
            workflows_pb2.WatchExecutionRequest(execution_id=eid, max_batch=2, include_execution=True)
        )
    )
    assert all(1 <= len(m.updates) <= 2 for m in small)
    assert all(u.execution.id == eid for m in small for u in m.updates)
    assert [u.event.sequence for m in small for u in m.updates] == flat
    # The SDK flattens: the same events, one by one (live-output deltas included when asked).
    assert [e.event.sequence for e in client.workflows.watch(eid, timeout=30, deltas=True)] == flat
    # Resuming per event from the middle of a batch.
    mid = flat[len(flat) // 2]
    assert [
        e.event.sequence for e in client.workflows.watch(eid, from_sequence=mid, timeout=30, deltas=True)
    ] == [s for s in flat if s >= mid]


def test_a_live_batched_subscriber_misses_nothing_under_concurrent_publishing(stub):
    """Publishers in several threads while a batched subscriber follows live: every event once, in order."""
    call = stub.Subscribe(
        pb.SubscribeRequest(filter=pb.EventFilter(types=["conc.*"]), max_batch=64), timeout=60
    )
    it = iter(call)
    assert next(it).HasField("heartbeat")
    got: queue.Queue = queue.Queue()

    def read() -> None:
        try:
            for m in it:
                for e in m.batch.events:
                    got.put(e.sequence)
        except grpc.RpcError:
            pass

    threading.Thread(target=read, daemon=True).start()
    published: list[int] = []
    lock = threading.Lock()

    def publish() -> None:
        for _ in range(20):
            s = _publish(stub, 10, type_="conc.tick")
            with lock:
                published.extend(s)

    threads = [threading.Thread(target=publish) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    seen = [got.get(timeout=30) for _ in range(len(published))]
    call.cancel()
    assert seen == sorted(published)
