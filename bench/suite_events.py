"""EventService: publish rate, replay and live delivery rates and publish->deliver latency, beside a bare
grpcio stream.

Rows (all against the same voltorch server process, the echo server in its own process):

* `echo stream` / `subscribe replay (1 subscriber, unbatched)`: one client opens a stream and reads CHUNK
  messages of the same size, again and again; voltorch's stream replays CHUNK events from the log, one per
  message (a client that does not ask for batches). Target: >= 0.8x the echo's msgs/s.
* `subscribe replay, batched (1 subscriber)`: the same replay asking for batches (max_batch=500, as the SDK
  does), in events/s. Target: >= REPLAY_TARGET events/s.
* `echo unary` / `Publish` / `PublishBatch x100` / `PublishStream x100 in flight`: closed-loop publishing
  by `--clients` threads (the stream: each client's one PublishStream, 100 events written, then the last
  answer awaited); every publish is durable (committed) before it is answered.
* `live delivery, N subscribers`: one publisher sends PublishBatch(100) as fast as the subscribers
  keep up (at most LIVE_WINDOW events ahead of the slowest) while N batched subscribers follow live; the
  rate is events delivered per second over all subscribers (server µs/op includes publishing).
* `publish->deliver @1,000/s, N subscribers` (N = 1, 10, 50): events published one by one at 1,000/s while
  N batched subscribers follow live; latency is the time from the Publish call to arrival at each
  subscriber (one clock: same process). Targets: p99 under LATENCY_BUDGETS_MS[N]; no subscriber cut off
  for overflow (cut-offs are reported as errors). The name also gives messages per delivered event (1.0 =
  no batching happened) and the server's longest garbage-collector pause in the measured windows (every
  stream stalls for it); `srv sw/op` is the server's context switches per delivered event.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import statistics
import threading
import time
from argparse import Namespace
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import voltorch
from voltorch.v1 import common_pb2, events_pb2, events_pb2_grpc

from . import _probe
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
# (subscribers, events/s) of the latency rows and their p99 budgets
LATENCY_CASES = ((1, 1000.0), (10, 1000.0), (50, 1000.0))
LATENCY_BUDGETS_MS = {1: 5.0, 10: 5.0, 50: 20.0}
REPLAY_TARGET = 60_000.0  # events/s replayed to one batched subscriber
MAX_IN_FLIGHT = 200  # unanswered Publish calls the latency rows' publisher allows
MAX_BATCH = 500  # what the bench's batched subscribers ask for (the SDK's STREAM_BATCH)
PUBLISH_METHOD = "/voltorch.v1.EventService/Publish"
PUBLISH_STREAM_METHOD = "/voltorch.v1.EventService/PublishStream"
pb = events_pb2


def _event(payload: int, type_: str = "bench.tick", i: int = 0) -> pb.Event:
    ev = pb.Event(type=type_, source="bench", correlation_id="bench-run")
    ev.data.struct_value.update({"data": "x" * payload, "i": i})
    return ev


def _message_size(payload: int) -> int:
    """Serialized size of one delivered SubscribeResponse (what the echo stream sends instead)."""
    ev = _event(payload, i=LOG_EVENTS)
    ev.sequence, ev.id = LOG_EVENTS, "evt_066115c9b824752176c232e7"
    ev.priority = common_pb2.PRIORITY_NORMAL
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


def _count(resp: pb.SubscribeResponse) -> int:
    """Events in one Subscribe message (a batch, a single event, or 0 for a heartbeat)."""
    kind = resp.WhichOneof("payload")
    return len(resp.batch.events) if kind == "batch" else 1 if kind == "event" else 0


def _replay(chunks: list[tuple[str, int]], max_batch: int = 0) -> MakeOp:
    """One op: replay one chunk (CHUNK events) from the log, the next op the next chunk.

    The filter (the chunk's correlation id) ends the replay at CHUNK events, like the echo stream; the
    chunks cycle through more events than the server's render cache holds, so nothing is pre-built.
    """
    order = itertools.cycle(chunks)

    def make(ch: grpc.Channel):
        stub = events_pb2_grpc.EventServiceStub(ch)

        def op() -> int:
            corr, first = next(order)
            req = pb.SubscribeRequest(
                filter=pb.EventFilter(correlation_id=corr), from_sequence=first, max_batch=max_batch
            )
            call = stub.Subscribe(req, timeout=60)
            n = 0
            for resp in call:
                n += _count(resp)
                if n >= CHUNK:
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


def _publish_stream(payload: int, size: int = 100) -> MakeOp:
    """One op: `size` events published over the client's one PublishStream (the SDK's Publisher, kept
    open across ops), waiting for the last answer: each event durable, answered on its own."""

    def make(ch: grpc.Channel):
        publisher = voltorch.Publisher(events_pb2_grpc.EventServiceStub(ch), max_pending=size)
        event = voltorch.NewEvent("bench.publish", {"data": "x" * payload}, source="bench")

        def op() -> int:
            last = None
            for _ in range(size):
                last = publisher.publish_event(event)
            assert last is not None
            last.result(30)
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

    def __init__(self, target: str, n: int, type_: str, on_event, max_batch: int = MAX_BATCH):
        self.loop = self._shared_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.messages = 0  # messages carrying events, over all subscribers
        self.cut_off: list[str] = []  # subscribers whose stream the server ended (overflow)
        self._done = asyncio.run_coroutine_threadsafe(
            self._main(target, n, type_, on_event, max_batch), self._shared_loop()
        )
        if not self._ready.wait(60):
            raise RuntimeError("subscriptions were not established within 60 s")

    async def _main(self, target: str, n: int, type_: str, on_event, max_batch: int) -> None:
        self._stop = asyncio.Event()
        channels = [grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS) for _ in range(n)]
        req = pb.SubscribeRequest(filter=pb.EventFilter(types=[type_]), max_batch=max_batch)
        calls = [
            events_pb2_grpc.EventServiceStub(ch).Subscribe(req, metadata=((_probe.SUB_KEY, str(i)),))
            for i, ch in enumerate(channels)
        ]
        await asyncio.gather(*(c.read() for c in calls))  # the first heartbeats: all in place

        async def read(i: int, call) -> None:
            try:
                while (resp := await call.read()) is not grpc.aio.EOF:  # read(): the style used above
                    kind = resp.WhichOneof("payload")
                    if kind == "batch":
                        self.messages += 1
                        for e in resp.batch.events:
                            on_event(i, e)
                    elif kind == "event":  # a server without batching
                        self.messages += 1
                        on_event(i, resp.event)
            except asyncio.CancelledError:
                pass  # cancelled at the end
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.CANCELLED:
                    self.cut_off.append(f"subscriber {i}: {err.code().name} {err.details()}"[:200])

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

    subs = _Subscribers(srv.target, n_subs, type_, on_event, getattr(args, "max_batch", MAX_BATCH))
    stop = threading.Event()
    req = pb.PublishBatchRequest(events=[_event(payload, type_, i) for i in range(100)])

    def publisher() -> None:
        published = 0
        with grpc.insecure_channel(srv.target, options=_CHANNEL_OPTIONS) as ch:
            stub = events_pb2_grpc.EventServiceStub(ch)
            while not stop.is_set():

                def caught_up(p: int = published) -> bool:
                    return stop.is_set() or p - min(counts) <= LIVE_WINDOW

                with progress:
                    progress.wait_for(caught_up, 1.0)
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


class _Schedule:
    """The open loop both pacers keep: event i is due at start + i / rate, however long a call takes.
    measure() runs on another thread when the warm-up ends; the measured window starts when it returns,
    and begin(i) names the first event in it."""

    def __init__(
        self,
        rate: float,
        warmup: float,
        duration: float,
        measure: Callable[[], None],
        begin: Callable[[int], None],
    ):
        self.loop = asyncio.get_running_loop()
        self.interval = 1.0 / rate
        self.start = self.loop.time()
        self.end_warm, self.end = self.start + warmup, self.start + warmup + duration
        self.measure, self.begin = measure, begin
        self.readings: asyncio.Future | None = None
        self.first_measured: int | None = None
        self.t_measured = 0.0
        self.count = 0  # events sent (the caller's body ran for each)

    async def due(self, n: int) -> AsyncIterator[int]:
        """0, 1, ... n - 1, each at its time, until the window ends."""
        loop = self.loop
        for i in range(n):
            now = loop.time()
            if now >= self.end:
                return
            if self.readings is None and now >= self.end_warm:
                self.readings = loop.run_in_executor(None, self.measure)
            if self.first_measured is None and self.readings is not None and self.readings.done():
                self.readings.result()
                self.first_measured, self.t_measured = i, now
                self.begin(i)
            due = self.start + i * self.interval
            if due > now:
                await asyncio.sleep(due - now)  # pacing the publisher, not synchronisation
            yield i
            self.count = i + 1

    def achieved(self) -> tuple[int, float]:
        """(events sent in the measured window, their rate)."""
        published = self.count - (self.first_measured or 0)
        if self.first_measured is None:
            return published, 0.0
        return published, published / (self.loop.time() - self.t_measured)


async def _paced_publish(
    target: str,
    reqs: list[bytes],
    rate: float,
    warmup: float,
    duration: float,
    sent: dict[int, int],
    measure: Callable[[], None],
    begin: Callable[[int], None],
    started: Callable[[int], None] | None = None,
    stream: bool = False,
) -> tuple[int, float]:
    """Publish reqs[i] at start + i / rate (open loop: on schedule however long a call takes, at most
    MAX_IN_FLIGHT unanswered), on the subscribers' event loop: one driver thread in all, so the driver
    spends its CPU on calls, not on handing its GIL between a publisher and the subscribers' loop.
    Calls measure() on another thread when the warm-up ends (its readings, the server's threads one by
    one, took the loop 10-30 ms: the events sent meanwhile left as a burst and set the p99 of a 1- or
    10-subscriber window); the window starts when it returns: begin(i) names the first event in it.
    Returns (events published since, their rate). `stream`: over one PublishStream call instead
    (`_paced_stream`)."""
    async with grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS) as ch:
        schedule = _Schedule(rate, warmup, duration, measure, begin)
        if stream:
            return await _paced_stream(ch, reqs, schedule, sent, started)
        publish = ch.unary_unary(PUBLISH_METHOD)
        pending: deque[Any] = deque()
        async for i in schedule.due(len(reqs)):
            while pending and pending[0].done():
                pending.popleft().result()
            if len(pending) >= MAX_IN_FLIGHT:
                await pending.popleft()  # the server fell far behind: wait (the rate shows it)
            sent[i] = time.perf_counter_ns()
            if started is None:
                pending.append(asyncio.ensure_future(publish(reqs[i], timeout=30)))
            else:  # --probe: note when the loop gets to the call (the wrapper runs just before it)

                async def call(i: int = i) -> Any:
                    started(i)
                    return await publish(reqs[i], timeout=30)

                pending.append(asyncio.ensure_future(call()))
        published, achieved = schedule.achieved()
        for f in pending:
            await f
    return published, achieved


async def _paced_stream(
    ch: grpc.aio.Channel,
    reqs: list[bytes],
    schedule: _Schedule,
    sent: dict[int, int],
    started: Callable[[int], None] | None,
) -> tuple[int, float]:
    """`_paced_publish` over one PublishStream call: reqs[i] written at start + i / rate (a PublishRequest's
    bytes are a PublishStreamRequest's: field 1 both), at most MAX_IN_FLIGHT unanswered; a task reads the
    answers."""
    call = ch.stream_stream(
        PUBLISH_STREAM_METHOD, response_deserializer=pb.PublishStreamResponse.FromString
    )()
    answered = 0
    room = asyncio.Event()

    async def read() -> None:
        nonlocal answered
        async for resp in call:
            answered += len(resp.results)
            for r in resp.results:
                if r.WhichOneof("result") != "receipt":
                    raise RuntimeError(f"publish refused: {r.error.message}")
            room.set()

    reader = asyncio.ensure_future(read())
    async for i in schedule.due(len(reqs)):
        while i - answered >= MAX_IN_FLIGHT and not reader.done():
            room.clear()
            await room.wait()  # the server fell far behind: wait (the rate shows it)
        sent[i] = time.perf_counter_ns()
        if started is not None:
            started(i)
        await call.write(reqs[i])
    published, achieved = schedule.achieved()
    await call.done_writing()
    await reader
    return published, achieved


_DRIVER_PROBE: list[_probe.Driver] = []


def _driver_probe() -> _probe.Driver:
    """The driver's probe (one per process: its collector hook and stall thread stay)."""
    if not _DRIVER_PROBE:
        _DRIVER_PROBE.append(_probe.Driver())
    return _DRIVER_PROBE[0]


@dataclass
class _LatencyRun:
    latencies_ns: list[int]  # sorted, over all subscribers
    publish_rate: float  # events/s the publisher achieved while measuring
    cpu_us: float  # server CPU per delivered event, publishing included
    client_us: float  # this driver's CPU (publisher and subscribers) per delivered event
    switches: float  # server context switches per delivered event
    msgs_per_event: float  # messages the subscribers received per event (1.0: no batching happened)
    cut_off: list[str]  # subscribers the server cut off (overflow)
    gc_max_ms: float  # the server's longest garbage-collector pause while measuring (nan: not known)


def _latency(
    srv: Any, n_subs: int, rate: float, args: Any, payload: int, sub_target: str | None = None
) -> _LatencyRun:
    """Publish->deliver latencies at `rate` events/s, one Publish call per event (open loop: calls are
    issued on schedule, at most MAX_IN_FLIGHT unanswered), N batched subscribers (on `sub_target`, else
    on the publisher's server: the cluster suite subscribes on another replica)."""
    sent: dict[int, int] = {}
    lat: list[list[int]] = [[] for _ in range(n_subs)]
    type_ = f"bench.lat{n_subs}"
    probe = _driver_probe() if getattr(args, "probe", False) else None

    def on_event(i: int, e) -> None:
        now = time.perf_counter_ns()
        index = int(e.data.struct_value["i"])
        t0 = sent.get(index)
        if t0 is not None and index >= first[0]:
            lat[i].append(now - t0)
            if probe is not None:
                probe.received(i, e.sequence, index, now)

    max_batch = getattr(args, "max_batch", MAX_BATCH)
    subs = _Subscribers(sub_target or srv.target, n_subs, type_, on_event, max_batch)
    if probe is not None:
        probe.start_loop_probe(subs.loop)
        probe.rec.take()
        getattr(srv, "probe_records", dict)()  # from now on
    n_reqs = min(int(rate * (args.warmup + args.duration)) + MAX_IN_FLIGHT, 200_000)
    # Requests pre-serialized, answers left undecoded (no serializers: bytes in, bytes out).
    reqs = [pb.PublishRequest(event=_event(payload, type_, i)).SerializeToString() for i in range(n_reqs)]
    marks: dict[str, Any] = {}
    first = [1 << 62]  # the first event measured (set when the window begins)
    # The driver's own full collections (its heap: grpc, protobuf, the earlier rows) paused its one loop
    # for 20-70 ms every few seconds, which showed as delivery latency: frozen for the row, as the server.
    gc.collect()
    gc.freeze()

    gc_pauses: Callable[[], dict[str, float]] = getattr(
        srv, "gc_pauses", dict
    )  # a cluster's replicas do not say

    def measure() -> None:
        gc_pauses()  # from now on
        marks.update(
            cpu0=srv.cpu_seconds(), sw0=srv.context_switches(), msgs0=subs.messages, cli0=time.process_time()
        )

    def begin(i: int) -> None:
        marks["t0"] = time.perf_counter_ns()
        first[0] = i  # events from i on are measured

    try:
        published, achieved = asyncio.run_coroutine_threadsafe(
            _paced_publish(
                srv.target,
                reqs,
                rate,
                args.warmup,
                args.duration,
                sent,
                measure,
                begin,
                probe.started if probe is not None else None,
                getattr(args, "publish", "stream") == "stream",
            ),
            subs.loop,
        ).result(args.warmup + args.duration + 120)
        # let the last events arrive
        deadline = time.perf_counter() + 5
        while time.perf_counter() < deadline and min(len(x) for x in lat) < published:
            time.sleep(0.01)
        cpu0, sw0, msgs0, cli0 = marks["cpu0"], marks["sw0"], marks["msgs0"], marks["cli0"]
        cpu = srv.cpu_seconds() - cpu0
        switches = srv.context_switches() - sw0
        msgs = subs.messages - msgs0
        cli = time.process_time() - cli0
        gc_max = gc_pauses().get("max_ms", float("nan"))
        if probe is not None:
            server_rec: dict[str, Any] = getattr(srv, "probe_records", dict)()
            driver_rec = probe.rec.take()
            table = _probe.attribute(server_rec, driver_rec, sent, marks["t0"])
            keep = os.environ.get("BENCH_PROBE_KEEP")  # a folder: the raw records, one file per run
            if keep:
                path = os.path.join(keep, f"probe-{n_subs}-{time.time_ns()}.json")
                with open(path, "w") as f:
                    json.dump(
                        {"server": server_rec, "driver": driver_rec, "sent": sent, "t0": marks["t0"]}, f
                    )
            print(f"{n_subs} subscriber(s):", *table, sep="\n", flush=True)
    finally:
        subs.close()
        gc.unfreeze()
    delivered = sum(len(x) for x in lat)
    per = (lambda x: x / delivered) if delivered else (lambda x: float("nan"))
    return _LatencyRun(
        sorted(x for part in lat for x in part),
        achieved,
        per(cpu) * 1e6,
        per(cli) * 1e6,
        per(switches),
        per(msgs),
        subs.cut_off,
        gc_max,
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
                    "subscribe replay (1 subscriber, unbatched)",
                    "voltorch",
                    _replay(chunks),
                    baseline=echo_s,
                    target=0.8,
                    unit="msgs",
                ),
                Case(
                    "subscribe replay, batched (1 subscriber)",
                    "voltorch",
                    _replay(chunks, MAX_BATCH),
                    unit="events",
                ),
            ],
            srv,
            one,
        )
        for r in results:
            if r.name.startswith("subscribe replay, batched"):
                r.baseline, r.ratio, r.target = f"{REPLAY_TARGET:,.0f} events/s", r.rate / REPLAY_TARGET, 1.0
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
                Case(
                    "PublishStream x100 in flight (durable, each answered)",
                    "voltorch",
                    _publish_stream(payload),
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
            rates: list[float] = []
            cpus: list[float] = []
            for _ in range(args.rounds):
                got, cpu_us = _live_delivery(vt, n, args, payload)
                rates.append(got)
                cpus.append(cpu_us)
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
                    unit="events",
                    baseline=echo_s,
                    ratio=rate / echo_stream_rate if echo_stream_rate else None,
                    rounds=rates,
                )
            )
        for n, per_second in LATENCY_CASES:
            name = f"publish->deliver @{per_second:,.0f}/s, {n} subscriber{'s' if n > 1 else ''}"
            if not _wanted(args, name):
                continue
            runs = [_latency(vt, n, per_second, args, payload) for _ in range(args.rounds)]
            lat = sorted(x for run in runs for x in run.latencies_ns)
            p99 = _percentile(lat, 0.99)
            budget = LATENCY_BUDGETS_MS[n]
            cut = [c for run in runs for c in run.cut_off]
            errors = [f"{len(cut)} subscriber(s) cut off: {cut[0]}"] if cut else []
            results.append(
                Result(
                    suite="events",
                    name=f"{name} ({getattr(args, 'publish', 'stream')},"
                    f" {statistics.median(r.msgs_per_event for r in runs):.2f} msgs/event,"
                    f" srv GC <= {max(r.gc_max_ms for r in runs):.1f} ms)",
                    rate=statistics.median(r.publish_rate for r in runs),
                    p50_ms=_percentile(lat, 0.50),
                    p99_ms=p99,
                    server_us_per_item=statistics.median(r.cpu_us for r in runs),
                    server_switches_per_item=statistics.median(r.switches for r in runs),
                    client_us_per_item=statistics.median(r.client_us for r in runs),
                    unit="events",
                    baseline=f"p99 budget {budget:g} ms",
                    ratio=budget / p99 if lat and p99 > 0 else None,
                    target=1.0,
                    rounds=[_percentile(r.latencies_ns, 0.99) for r in runs],
                    errors=errors + ([] if lat else ["no event was delivered"]),
                )
            )
    return results
