"""Coalescing of busy batched Subscribe streams: the shared window grows with the streams that are sending
(active streams / budget, at most the latency bound), a stream sleeps only when its messages come closer
than the window and only until the next tick of it, and
coalesced streams still deliver every event once, in order."""

from __future__ import annotations

import queue
import threading
from dataclasses import replace

import grpc
import pytest
from voltorch.v1 import events_pb2, events_pb2_grpc
from voltorch_server.app import VoltorchServer
from voltorch_server.config import Config, load
from voltorch_server.servicers import Coalescing

pb = events_pb2
ACTIVE = Coalescing.ACTIVE_SECONDS
STEP = Coalescing.RECOUNT_SECONDS * 1.5  # past the recount interval, whatever the rounding


def _on_tick(now: float, wait: float, window: float) -> bool:
    """now + wait lands on a multiple of window (to float precision)."""
    r = (now + wait) % window
    return min(r, window - r) < 1e-9


def test_one_busy_stream_waits_until_the_next_tick_of_one_over_budget():
    c = Coalescing(budget=1000.0, max_window=0.01)
    s = c.join()
    now = 100.0123
    assert c.sent(s, now - 0.0004) == 0.0  # its first message: nothing gathered, nothing to wait for
    wait = c.sent(s, now)  # a second within the window: busy
    assert c.window == pytest.approx(0.001)
    assert 0 < wait <= c.window
    assert _on_tick(now, wait, c.window)


def test_a_stream_whose_messages_are_a_window_apart_sends_at_once():
    """One subscriber of a steady log (say 1,000 events/s against a 1/3,000 s window): sleeping after
    each message would gather nothing, and cost a wake-up and up to a window of latency per event."""
    c = Coalescing(budget=1000.0, max_window=0.01)
    s = c.join()
    now = 20.0
    for i in range(5):
        assert c.sent(s, now + i * 0.0015) == 0.0  # 1.5 ms apart, the window is 1 ms
    assert c.window == pytest.approx(0.001)
    assert c.sent(s, now + 4 * 0.0015 + 0.0002) > 0  # one sooner than the window: it gathers again


def test_the_window_grows_with_the_streams_sending_and_stops_at_the_latency_bound():
    c = Coalescing(budget=1000.0, max_window=0.02)
    streams = [c.join() for _ in range(30)]
    now = 50.0
    for s in streams[:10]:
        c.sent(s, now)
    c.sent(streams[0], now + STEP)  # the count is taken at most every RECOUNT_SECONDS
    assert c.window == pytest.approx(0.010)
    for s in streams:
        c.sent(s, now + STEP)
    c.sent(streams[0], now + 2 * STEP)
    assert c.window == pytest.approx(0.02)  # 30 / 1000 = 0.03, bounded by max_window


def test_streams_that_stopped_sending_or_left_do_not_lengthen_the_window():
    c = Coalescing(budget=100.0, max_window=1.0)
    quiet, gone, busy = c.join(), c.join(), c.join()
    now = 10.0
    c.sent(quiet, now)
    c.sent(gone, now)
    c.sent(busy, now + STEP)
    assert c.window == pytest.approx(0.03)
    c.leave(gone)
    c.sent(busy, now + ACTIVE + STEP)  # quiet's last message is now older than ACTIVE_SECONDS
    assert c.window == pytest.approx(0.01)


def test_without_a_window_streams_send_at_once():
    c = Coalescing(budget=1000.0, max_window=0.0)
    s = c.join()
    assert c.sent(s, 1.0) == 0.0
    assert c.window == 0.0


@pytest.mark.parametrize(("budget", "max_window"), [(0.0, 0.01), (-1.0, 0.01), (100.0, -0.1)])
def test_a_budget_that_is_not_positive_or_a_negative_window_is_refused(budget, max_window):
    with pytest.raises(ValueError):
        Coalescing(budget, max_window)


@pytest.mark.parametrize(("key", "value"), [("stream_message_budget", "-1"), ("stream_max_coalesce", "2")])
def test_settings_out_of_range_are_refused_naming_the_setting(key, value):
    with pytest.raises(ValueError, match=key):
        load(env={f"VOLTORCH_{key.upper()}": value})


def test_coalesced_subscribers_get_every_event_once_in_order(config: Config):
    """A wide window (0.05 s for any number of streams) while publishers in several threads publish one
    event per call: each of several batched subscribers sees every event once, in sequence order."""
    cfg = replace(config, stream_message_budget=1.0, stream_max_coalesce=0.05)
    with VoltorchServer(cfg) as srv, grpc.insecure_channel(srv.target) as ch:
        stub = events_pb2_grpc.EventServiceStub(ch)
        flt = pb.EventFilter(types=["coal.tick"])
        calls = [stub.Subscribe(pb.SubscribeRequest(filter=flt, max_batch=64), timeout=60) for _ in range(3)]
        got: list[queue.Queue] = [queue.Queue() for _ in calls]
        messages = [0] * len(calls)

        def read(i: int) -> None:
            try:
                for m in calls[i]:
                    if m.HasField("batch"):
                        messages[i] += 1
                        for e in m.batch.events:
                            got[i].put(e.sequence)
            except grpc.RpcError:
                pass

        iters = [iter(c) for c in calls]
        for it in iters:
            assert next(it).HasField("heartbeat")  # subscribed
        for i in range(len(calls)):
            threading.Thread(target=read, args=(i,), daemon=True).start()
        published: list[int] = []
        lock = threading.Lock()

        def publish() -> None:
            for _ in range(25):
                r = stub.Publish(pb.PublishRequest(event=pb.Event(type="coal.tick")))
                with lock:
                    published.append(r.sequence)

        threads = [threading.Thread(target=publish) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for i, q in enumerate(got):
            seen = [q.get(timeout=30) for _ in range(len(published))]
            assert seen == sorted(published), f"subscriber {i}"
            assert q.empty()
        for c in calls:
            c.cancel()
