"""EventService: publish rate, delivery rate and publish->deliver latency, beside a bare grpcio stream.

Rows (all against the same voltorch server process, the echo server in its own process):

* `echo stream` / `subscribe replay`: one client opens a stream and reads CHUNK messages of the same
  size, again and again. voltorch's stream replays CHUNK events from the log. Target: >= 0.8x the
  echo's msgs/s (delivery costs at most 20% over bare grpcio).
* `echo unary` / `Publish` / `PublishBatch x100`: closed-loop publishing by `--clients` threads;
  every publish is durable (committed) before it is answered.
* `live delivery, N subscribers`: one publisher sends PublishBatch(100) as fast as the subscribers
  keep up (at most LIVE_WINDOW events ahead of the slowest) while N subscribers follow live; the rate
  is messages delivered per second over all subscribers (server µs/op includes publishing).
* `publish->deliver @R/s, N subscribers`: events published one by one at R/s (1,000/s with one
  subscriber; 40/s with 50, i.e. 2,000 deliveries/s); latency is the time from the Publish call to
  arrival at each subscriber (one clock: same process). Target: p99 under 5 ms (budget/p99 >= 1).
  Server µs/op is its CPU per delivery, publishing included: at these rates every delivery wakes a
  stream thread of its own, so it is well above the live delivery rows' (batched) figure.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import threading
import time
from argparse import Namespace
from typing import Any

import grpc
from voltorch.v1 import events_pb2, events_pb2_grpc

from ._harness import (
    _CHANNEL_OPTIONS,
    Case,
    MakeOp,
    Result,
    ServerProcess,
    _percentile,
    echo_stream,
    echo_unary,
    run_cases,
    servers,
)

CHUNK = 1000  # messages per stream op (replay and echo)
LOG_EVENTS = 20_000  # events in the log that replay ops cycle through
LIVE_WINDOW = 2000  # events the live publisher may run ahead of the slowest subscriber
# (subscribers, events/s) of the latency rows. 50 subscribers at 1,000/s would be 50,000 deliveries/s,
# beyond what one Python server process sends on a small machine (see the live delivery rows), so the
# 50-subscriber row runs at 40 events/s = 2,000 deliveries/s.
LATENCY_CASES = ((1, 1000.0), (50, 40.0))
LATENCY_BUDGET_MS = 5.0
pb = events_pb2


def _event(payload: int, type_: str = "bench.tick", i: int = 0) -> pb.Event:
    ev = pb.Event(type=type_, source="bench", correlation_id="bench-run")
    ev.data.struct_value.update({"data": "x" * payload, "i": i})
    return ev


def _message_size(payload: int) -> int:
    """Serialized size of one delivered SubscribeResponse (what the echo stream sends instead)."""
    ev = _event(payload, i=LOG_EVENTS)
    ev.sequence, ev.id, ev.priority = LOG_EVENTS, "evt_066115c9b824752176c232e7", 2
    ev.time.GetCurrentTime()
    return pb.SubscribeResponse(event=ev).ByteSize()


def _populate(target: str, payload: int) -> list[tuple[str, int]]:
    """Fill the log with LOG_EVENTS bench events in chunks of CHUNK, each chunk its own correlation id;
    returns (correlation id, first sequence) per chunk."""
    with grpc.insecure_channel(target, options=_CHANNEL_OPTIONS) as ch:
        stub = events_pb2_grpc.EventServiceStub(ch)
        chunks = []
        for b in range(LOG_EVENTS // CHUNK):
            events = [_event(payload, i=b * CHUNK + i) for i in range(CHUNK)]
            for e in events:
                e.correlation_id = f"bench-chunk-{b}"
            receipts = stub.PublishBatch(pb.PublishBatchRequest(events=events), timeout=60).receipts
            chunks.append((f"bench-chunk-{b}", receipts[0].sequence))
        return chunks


def _replay(chunks: list[tuple[str, int]]) -> MakeOp:
    """One op: replay one chunk (CHUNK events) from the log, the next op the next chunk.

    The filter (the chunk's correlation id) ends the replay at CHUNK events, like the echo stream; the
    chunks cycle through more events than the server's render cache holds, so nothing is pre-built.
    """
    order = itertools.cycle(chunks)

    def make(ch: grpc.Channel):
        stub = events_pb2_grpc.EventServiceStub(ch)

        def op() -> int:
            corr, first = next(order)
            req = pb.SubscribeRequest(filter=pb.EventFilter(correlation_id=corr), from_sequence=first)
            call = stub.Subscribe(req, timeout=60)
            n = 0
            for resp in call:
                if resp.HasField("event"):
                    n += 1
                    if n == CHUNK:
                        break
            call.cancel()
            return n

        return op

    return make


def _publish(payload: int) -> MakeOp:
    def make(ch: grpc.Channel):
        stub = events_pb2_grpc.EventServiceStub(ch)
        req = pb.PublishRequest(event=_event(payload, "bench.publish"))

        def op() -> None:
            stub.Publish(req, timeout=30)

        return op

    return make


def _publish_batch(payload: int, size: int = 100) -> MakeOp:
    def make(ch: grpc.Channel):
        stub = events_pb2_grpc.EventServiceStub(ch)
        req = pb.PublishBatchRequest(events=[_event(payload, "bench.publish", i) for i in range(size)])

        def op() -> int:
            stub.PublishBatch(req, timeout=30)
            return size

        return op

    return make


# -- live rows: a publisher and N subscribers, measured directly ------------------------------------------


class _Subscribers:
    """N live subscriptions, established before use, read by one asyncio loop on its own thread.

    One event loop (grpc.aio, one channel per subscriber) costs the driver far less than N reader
    threads contending for its GIL, which would otherwise show up as delivery latency.
    """

    _loop: asyncio.AbstractEventLoop | None = None  # one loop for the whole run: grpc.aio keeps using it

    @classmethod
    def _shared_loop(cls) -> asyncio.AbstractEventLoop:
        if cls._loop is None:
            cls._loop = asyncio.new_event_loop()
            threading.Thread(target=cls._loop.run_forever, name="bench-subscribers", daemon=True).start()
        return cls._loop

    def __init__(self, target: str, n: int, type_: str, on_event):
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._done = asyncio.run_coroutine_threadsafe(
            self._main(target, n, type_, on_event), self._shared_loop()
        )
        if not self._ready.wait(60):
            raise RuntimeError("subscriptions were not established within 60 s")

    async def _main(self, target: str, n: int, type_: str, on_event) -> None:
        self._stop = asyncio.Event()
        channels = [grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS) for _ in range(n)]
        req = pb.SubscribeRequest(filter=pb.EventFilter(types=[type_]))
        calls = [events_pb2_grpc.EventServiceStub(ch).Subscribe(req) for ch in channels]
        await asyncio.gather(*(c.read() for c in calls))  # the first heartbeats: all in place

        async def read(i: int, call) -> None:
            try:
                while (resp := await call.read()) is not grpc.aio.EOF:  # read(): the style used above
                    if resp.HasField("event"):
                        on_event(i, resp.event)
            except (grpc.RpcError, asyncio.CancelledError):
                pass  # cancelled at the end

        tasks = [asyncio.ensure_future(read(i, c)) for i, c in enumerate(calls)]
        self._ready.set()
        await self._stop.wait()
        for c in calls:
            c.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ch in channels:
            await ch.close()

    def close(self) -> None:
        if self._stop is not None:
            self._shared_loop().call_soon_threadsafe(self._stop.set)
        self._done.result(30)


def _live_delivery(srv: ServerProcess, n_subs: int, args: Any, payload: int) -> tuple[float, float]:
    """Messages delivered per second over all subscribers while one publisher batches; server µs/msg.

    The publisher keeps at most LIVE_WINDOW events ahead of the slowest subscriber: this measures the
    rate delivery sustains (an unthrottled publisher would overflow the subscribers' buffers, and the
    row would measure publishing into the void).
    """
    counts = [0] * n_subs
    type_ = f"bench.live{n_subs}"
    progress = threading.Condition()

    def on_event(i: int, _e) -> None:
        counts[i] += 1
        if counts[i] % 100 == 0:
            with progress:
                progress.notify_all()

    subs = _Subscribers(srv.target, n_subs, type_, on_event)
    stop = threading.Event()
    req = pb.PublishBatchRequest(events=[_event(payload, type_, i) for i in range(100)])

    def publisher() -> None:
        published = 0
        with grpc.insecure_channel(srv.target, options=_CHANNEL_OPTIONS) as ch:
            stub = events_pb2_grpc.EventServiceStub(ch)
            while not stop.is_set():
                with progress:
                    progress.wait_for(
                        lambda p=published: stop.is_set() or p - min(counts) <= LIVE_WINDOW, 1.0
                    )
                if published - min(counts) > LIVE_WINDOW:
                    continue
                stub.PublishBatch(req, timeout=30)
                published += len(req.events)

    t = threading.Thread(target=publisher, daemon=True)
    t.start()
    try:
        stop.wait(args.warmup)
        c0, cpu0, w0 = sum(counts), srv.cpu_seconds(), time.perf_counter()
        stop.wait(args.duration)
        c1, cpu1, w1 = sum(counts), srv.cpu_seconds(), time.perf_counter()
    finally:
        stop.set()
        with progress:
            progress.notify_all()
        t.join(30)
        subs.close()
    delivered = c1 - c0
    return delivered / (w1 - w0), (cpu1 - cpu0) / delivered * 1e6 if delivered else float("nan")


def _latency(
    srv: ServerProcess, n_subs: int, rate: float, args: Any, payload: int
) -> tuple[list[int], float, float]:
    """Publish->deliver latencies (ns) at `rate` events/s; also the publish rate achieved and the
    server's CPU µs per delivery (publishing included) while measuring."""
    sent: dict[int, int] = {}
    lat: list[list[int]] = [[] for _ in range(n_subs)]
    type_ = f"bench.lat{n_subs}"
    measuring = threading.Event()

    def on_event(i: int, e) -> None:
        now = time.perf_counter_ns()
        t0 = sent.get(int(e.data.struct_value["i"]))
        if t0 is not None and measuring.is_set():
            lat[i].append(now - t0)

    subs = _Subscribers(srv.target, n_subs, type_, on_event)
    published = 0
    try:
        with grpc.insecure_channel(srv.target, options=_CHANNEL_OPTIONS) as ch:
            stub = events_pb2_grpc.EventServiceStub(ch)
            reqs = [pb.PublishRequest(event=_event(payload, type_, i)) for i in range(200_000)]
            interval = 1.0 / rate
            start = time.perf_counter()
            end_warm = start + args.warmup
            end = end_warm + args.duration
            i = 0
            while True:
                now = time.perf_counter()
                if now >= end:
                    break
                if now >= end_warm and not measuring.is_set():
                    measuring.set()
                    first_measured, t_measured, cpu0 = i, now, srv.cpu_seconds()
                due = start + i * interval
                if due > now:
                    time.sleep(due - now)  # pacing the publisher, not synchronisation
                sent[i] = time.perf_counter_ns()
                stub.Publish(reqs[i], timeout=30)
                i += 1
            published = i - first_measured
            achieved = published / (time.perf_counter() - t_measured)
            # let the last events arrive
            deadline = time.perf_counter() + 5
            while time.perf_counter() < deadline and min(len(x) for x in lat) < published:
                time.sleep(0.01)
            cpu = srv.cpu_seconds() - cpu0
    finally:
        subs.close()
    delivered = sum(len(x) for x in lat)
    return (
        sorted(x for part in lat for x in part),
        achieved,
        cpu / delivered * 1e6 if delivered else float("nan"),
    )


def _wanted(args: Namespace, name: str) -> bool:
    select = getattr(args, "select", None)
    return not select or select.lower() in name.lower()


def run(args: Namespace) -> list[Result]:
    payload = args.payload
    size = _message_size(payload)
    echo_s, echo_u = f"echo stream {size}B (1 client)", f"echo unary {size}B"
    one = Namespace(**{**vars(args), "clients": 1})
    results: list[Result] = []
    with servers("echo", "voltorch", profile_dir=args.profile) as srv:
        vt = srv["voltorch"]
        chunks = _populate(vt.target, payload)
        results += run_cases(
            "events",
            [
                Case(echo_s, "echo", echo_stream(CHUNK, size), unit="msgs"),
                Case(
                    "subscribe replay (1 subscriber)",
                    "voltorch",
                    _replay(chunks),
                    baseline=echo_s,
                    target=0.8,
                    unit="msgs",
                ),
            ],
            srv,
            one,
        )
        echo_stream_rate = next((r.rate for r in results if r.name == echo_s), 0.0)
        results += run_cases(
            "events",
            [
                Case(echo_u, "echo", echo_unary(size)),
                Case("Publish (durable)", "voltorch", _publish(payload), baseline=echo_u),
                Case(
                    "PublishBatch x100 (durable)",
                    "voltorch",
                    _publish_batch(payload),
                    baseline=echo_u,
                    unit="events",
                ),
            ],
            srv,
            args,
        )
        for n in (1, 50):
            name = f"live delivery, {n} subscriber{'s' if n > 1 else ''}"
            if not _wanted(args, name):
                continue
            rates, cpus = [], []
            for _ in range(args.rounds):
                r, c = _live_delivery(vt, n, args, payload)
                rates.append(r)
                cpus.append(c)
            rate = statistics.median(rates)
            results.append(
                Result(
                    suite="events",
                    name=name,
                    rate=rate,
                    p50_ms=float("nan"),
                    p99_ms=float("nan"),
                    server_us_per_item=statistics.median(cpus),
                    server_switches_per_item=None,
                    client_us_per_item=None,
                    unit="msgs",
                    baseline=echo_s,
                    ratio=rate / echo_stream_rate if echo_stream_rate else None,
                    rounds=rates,
                )
            )
        for n, per_second in LATENCY_CASES:
            name = f"publish->deliver @{per_second:,.0f}/s, {n} subscriber{'s' if n > 1 else ''}"
            if not _wanted(args, name):
                continue
            lat, rate, cpu = _latency(vt, n, per_second, args, payload)
            p99 = _percentile(lat, 0.99)
            results.append(
                Result(
                    suite="events",
                    name=name,
                    rate=rate,
                    p50_ms=_percentile(lat, 0.50),
                    p99_ms=p99,
                    server_us_per_item=cpu,
                    server_switches_per_item=None,
                    client_us_per_item=None,
                    unit="events",
                    baseline=f"p99 budget {LATENCY_BUDGET_MS:g} ms",
                    ratio=LATENCY_BUDGET_MS / p99 if lat and p99 > 0 else None,
                    target=1.0,
                    errors=[] if lat else ["no event was delivered"],
                )
            )
    return results
