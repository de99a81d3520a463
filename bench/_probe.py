"""Where a delivered event's latency goes: `python -m bench events -k deliver --probe` (bench only).

The server side (`install`, called by `_serve` when BENCH_PROBE is set) wraps, in the server process and
nowhere else, the methods an event passes through and notes monotonic times (one clock for both processes
on Linux): the Publish call reaching the outermost interceptor (grpc's serving thread), the servicer's
Publish (with `--publish stream`: the request taken by the stream's reader thread, and the commit of its
group, `EventLog.publish_each`), the commit's delivery to the broadcaster (`EventLog._deliver`), each stream's `Follower.take` (its
wake-up), the message yielded to grpc and grpc asking for the next one (the send done), the coalescing
sleeps; and, as intervals, what might stall everyone: collections, the WAL checkpointer's passes (passive,
and the one holding the writer lock), the watcher's and metrics' rounds, and late wake-ups of a thread that
sleeps STALL_TICK (the GIL or the CPU was elsewhere). The driver side notes when each Publish was due and
when its loop started the call, when each event reached each subscriber, its own collections and its
loop's and a thread's lateness. `attribute` joins both into one table per latency run: every stage's p50
and p99 over all deliveries and over the slowest 1 %, which stage was the largest for each of the slowest,
how often the slowest overlapped each kind of interval against all deliveries, and the tail's episodes.
BENCH_PROBE_KEEP=<folder> also writes each run's raw records there.

Nothing of this runs unless asked: the wrappers cost the server a few µs per event and per message.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import json
import os
import tempfile
import threading
import time
from collections import defaultdict, deque
from typing import Any

import grpc

STALL_TICK = 0.005  # the stall detectors' sleep
STALL_MIN = 0.003  # lateness past the tick noted as a stall
SUB_KEY = "bench-sub"  # Subscribe metadata naming the driver's subscriber


def now() -> int:
    return time.monotonic_ns()


class Records:
    def __init__(self) -> None:
        self.lists: dict[str, list] = defaultdict(list)

    def add(self, kind: str, row: tuple) -> None:
        self.lists[kind].append(row)  # list.append is atomic under the GIL

    def take(self) -> dict[str, list]:
        out, self.lists = self.lists, defaultdict(list)
        return dict(out)


def _gc_hook(rec: Records) -> None:
    began = [0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            began[0] = now()
        else:
            rec.add("gc", (began[0], now(), info["generation"]))

    gc.callbacks.append(on_gc)


def _stall_thread(rec: Records, name: str) -> None:
    def loop() -> None:
        tick = int(STALL_TICK * 1e9)
        while True:
            t = now()
            time.sleep(STALL_TICK)
            late = now() - t - tick
            if late > STALL_MIN * 1e9:
                rec.add("stall", (t + tick, t + tick + late))

    threading.Thread(target=loop, name=name, daemon=True).start()


# -- server ---------------------------------------------------------------------------------------------


def install(rec: Records) -> None:
    """Wrap the server's delivery path (before the server is built: the handlers bind the methods)."""
    from voltorch_server import app
    from voltorch_server.components.events import EventLog
    from voltorch_server.components.shared import Follower
    from voltorch_server.components.system import Watcher
    from voltorch_server.servicers import events as ev
    from voltorch_server.storage.sqlite import db as sqlite_db

    tl = threading.local()

    publish = ev.EventServicer.Publish

    def Publish(self, request, context):
        t0 = now()
        resp = publish(self, request, context)
        rec.add("pub", (resp.sequence, getattr(tl, "arrived", t0), t0, now()))
        return resp

    # PublishStream: a request "arrives" when the stream's reader thread takes it from grpc, and its
    # "Publish" is the commit of the group it is in (`EventLog.publish_each`, on the handler's thread).
    publish_stream = ev.EventServicer.PublishStream
    publish_each = EventLog.publish_each

    def PublishStream(self, request_iterator, context):
        arrivals: deque[int] = deque()

        def noted():
            for req in request_iterator:
                arrivals.extend([now()] * len(req.events))
                yield req

        tl.arrivals = arrivals
        return publish_stream(self, noted(), context)

    def PublishEach(self, events, **kw):
        t0 = now()
        out = publish_each(self, events, **kw)
        t1 = now()
        arrivals = getattr(tl, "arrivals", None)
        for r in out:
            arrived = arrivals.popleft() if arrivals else t0
            if not isinstance(r, Exception):
                rec.add("pub", (r.sequence, arrived, t0, t1))
        return out

    # The call's arrival: the outermost interceptor runs on grpc's serving thread when the call comes in,
    # before the call is handed to a pool thread.
    telemetry_interceptor = app.telemetry_interceptor

    def make_interceptor(runtime):
        interceptor = telemetry_interceptor(runtime)
        intercept = interceptor.intercept_service

        def Intercept(continuation, details):
            arrived = now()
            handler = intercept(continuation, details)
            if handler is None or not details.method.endswith("/Publish") or handler.unary_unary is None:
                return handler
            fn = handler.unary_unary

            def unary(request, context):
                tl.arrived = arrived
                return fn(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )

        interceptor.intercept_service = Intercept  # type: ignore[method-assign]
        return interceptor

    subscribe = ev.EventServicer.Subscribe

    def Subscribe(self, request, context):
        sub = dict(context.invocation_metadata()).get(SUB_KEY)
        gen = subscribe(self, request, context)
        if sub is None:
            yield from gen
            return
        tl.sub, tl.took = int(sub), None
        try:
            for msg in gen:
                t, took, tl.took = now(), tl.took, None
                yield msg
                if took is not None:
                    rec.add("msg", (tl.sub, *took, t, now()))
        finally:
            tl.sub = None

    take = Follower.take

    def Take(self, timeout=None, limit=500):
        items = take(self, timeout, limit)
        if items and getattr(tl, "sub", None) is not None:
            tl.took = (now(), items[0].sequence, items[-1].sequence)
        return items

    sent = ev.Coalescing.sent

    def Sent(self, token, at):
        wait = sent(self, token, at)
        if wait > 0 and getattr(tl, "sub", None) is not None:
            t = now()
            rec.add("sleep", (tl.sub, t, t + int(wait * 1e9)))
        return wait

    deliver = EventLog._deliver

    def Deliver(self, events, at):
        t = now()
        deliver(self, events, at)
        rec.add("dlv", (events[0].sequence, events[-1].sequence, t, now()))

    def interval(kind: str, fn):
        def wrapped(*a, **kw):
            t = now()
            try:
                return fn(*a, **kw)
            finally:
                rec.add(kind, (t, now()))

        return wrapped

    for owner, name, fn in (
        (ev.EventServicer, "Publish", Publish),
        (ev.EventServicer, "PublishStream", PublishStream),
        (EventLog, "publish_each", PublishEach),
        (app, "telemetry_interceptor", make_interceptor),
        (ev.EventServicer, "Subscribe", Subscribe),
        (Follower, "take", Take),
        (ev.Coalescing, "sent", Sent),
        (EventLog, "_deliver", Deliver),
    ):
        setattr(owner, name, fn)  # bench-only: installed when BENCH_PROBE is set
    checkpoint = sqlite_db._Checkpointer._checkpoint

    def Checkpoint(self):
        t = now()
        try:
            return checkpoint(self)
        finally:  # the second pass of run_once holds the writer lock (every Publish waits)
            rec.add("ckpt_locked" if self._running.locked() and tl_ckpt.second else "checkpoint", (t, now()))
            tl_ckpt.second = not tl_ckpt.second

    run_once = sqlite_db._Checkpointer.run_once

    def RunOnce(self):
        tl_ckpt.second = False
        return run_once(self)

    tl_ckpt = threading.local()
    sqlite_db._Checkpointer._checkpoint = Checkpoint  # type: ignore[method-assign]
    sqlite_db._Checkpointer.run_once = RunOnce  # type: ignore[method-assign]
    Watcher.check_now = interval("watcher", Watcher.check_now)  # type: ignore[method-assign]
    Watcher.collect_metrics = interval("metrics", Watcher.collect_metrics)  # type: ignore[method-assign]
    _gc_hook(rec)
    _stall_thread(rec, "bench-stall-probe")


def dump(rec: Records) -> str:
    fd, path = tempfile.mkstemp(prefix="voltorch-probe-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(rec.take(), f)
    return path


# -- driver ---------------------------------------------------------------------------------------------


class Driver:
    """The driver's half: per delivery (subscriber, sequence, event index, received); its stalls."""

    def __init__(self) -> None:
        self.rec = Records()
        _gc_hook(self.rec)
        _stall_thread(self.rec, "bench-stall-probe")
        self._lag_task: Any = None

    def start_loop_probe(self, loop: asyncio.AbstractEventLoop) -> None:
        async def lag() -> None:
            tick = int(STALL_TICK * 1e9)
            while True:
                t = now()
                await asyncio.sleep(STALL_TICK)
                late = now() - t - tick
                if late > STALL_MIN * 1e9:
                    self.rec.add("loop", (t + tick, t + tick + late))

        if self._lag_task is None:
            self._lag_task = asyncio.run_coroutine_threadsafe(lag(), loop)

    def started(self, index: int) -> None:
        self.rec.add("start", (index, now()))

    def received(self, sub: int, seq: int, index: int, at: int) -> None:
        self.rec.add("recv", (sub, seq, index, at))


STAGES = (
    ("due -> call started", "the driver's loop getting to the call (busy reading the subscribers)"),
    ("started -> arrived", "grpc's client, the wire, the server's serving thread taking the call"),
    ("arrived -> Publish", "a pool thread taking the call, the interceptors"),
    ("Publish -> commit", "the Publish call until its commit reaches the broadcaster"),
    ("tick wait", "the stream's coalescing sleep still to run when the event was offered"),
    ("wake late", "the stream's take() after max(offered, its sleep's end)"),
    ("take -> yield", "rendering and combining the batch"),
    ("yield -> received", "grpc send, wire, the driver's loop reading it"),
)
INTERVALS = (
    ("srv gc", "srv_gc"),
    ("srv stall", "srv_stall"),
    ("checkpoint, passive", "checkpoint"),
    ("checkpoint, locked", "ckpt_locked"),
    ("watcher", "watcher"),
    ("metrics", "metrics"),
    ("drv gc", "drv_gc"),
    ("drv thread stall", "drv_stall"),
    ("drv loop late", "drv_loop"),
)


def _overlaps(intervals: list[tuple[int, int]]):
    """A function telling whether [a, b] overlaps any of the intervals."""
    intervals = sorted(intervals)
    starts = [s for s, _ in intervals]
    ends_max: list[int] = []
    m = -1
    for _, e in intervals:
        m = max(m, e)
        ends_max.append(m)

    def hit(a: int, b: int) -> bool:
        i = bisect.bisect_right(starts, b) - 1  # last interval starting before b
        return i >= 0 and ends_max[i] >= a

    return hit


def attribute(server: dict[str, list], driver: dict[str, list], sent: dict[int, int], t0: int) -> list[str]:
    """The table for one latency run: stages and overlapping intervals, all deliveries and the slowest 1 %.
    `sent`: event index -> send time (perf_counter_ns: CLOCK_MONOTONIC, as monotonic_ns on Linux); `t0`:
    the measuring window's start."""
    pub = {seq: (a, b) for seq, a, b, _ in server.get("pub", [])}
    started = {i: t for i, t in driver.get("start", [])}
    dlv: list[tuple[int, int, int, int]] = sorted(server.get("dlv", []))
    dlv_first = [d[0] for d in dlv]
    msgs: dict[int, list] = defaultdict(list)
    for sub, t_take, first, last, t_yield, t_back in server.get("msg", []):
        msgs[sub].append((first, last, t_take, t_yield, t_back))
    for v in msgs.values():
        v.sort()
    msg_first = {s: [m[0] for m in v] for s, v in msgs.items()}
    sleeps: dict[int, list] = defaultdict(list)
    for sub, a, b in server.get("sleep", []):
        sleeps[sub].append((a, b))
    for v in sleeps.values():
        v.sort()
    sleep_start = {s: [a for a, _ in v] for s, v in sleeps.items()}
    kinds = {
        "srv_gc": [(a, b) for a, b, _ in server.get("gc", [])],
        "srv_stall": [tuple(x) for x in server.get("stall", [])],
        "checkpoint": [tuple(x) for x in server.get("checkpoint", [])],
        "ckpt_locked": [tuple(x) for x in server.get("ckpt_locked", [])],
        "watcher": [tuple(x) for x in server.get("watcher", [])],
        "metrics": [tuple(x) for x in server.get("metrics", [])],
        "drv_gc": [(a, b) for a, b, _ in driver.get("gc", [])],
        "drv_stall": [tuple(x) for x in driver.get("stall", [])],
        "drv_loop": [tuple(x) for x in driver.get("loop", [])],
    }
    hits = {k: _overlaps(v) for k, v in kinds.items()}
    rows: list[tuple[int, list[float], dict[str, bool], int]] = []
    missing = 0
    for sub, seq, index, t_recv in driver.get("recv", []):
        t_sent = sent.get(index)
        if t_sent is None or t_sent < t0 or seq not in pub:
            continue
        i = bisect.bisect_right(dlv_first, seq) - 1
        mi = bisect.bisect_right(msg_first.get(sub, []), seq) - 1
        if i < 0 or mi < 0 or dlv[i][1] < seq or msgs[sub][mi][1] < seq:
            missing += 1
            continue
        t_arr, t_pub = pub[seq]
        t_dlv = dlv[i][2]
        _, _, t_take, t_yield, _ = msgs[sub][mi]
        si = bisect.bisect_right(sleep_start.get(sub, []), t_dlv) - 1
        wake = max(t_dlv, sleeps[sub][si][1]) if si >= 0 else t_dlv
        t_start = started.get(index, t_sent)
        stages = [
            t_start - t_sent,
            t_arr - t_start,
            t_pub - t_arr,
            t_dlv - t_pub,
            wake - t_dlv,
            t_take - wake,
            t_yield - t_take,
            t_recv - t_yield,
        ]
        overlap = {k: h(t_sent, t_recv) for k, h in hits.items()}
        rows.append((t_recv - t_sent, [s / 1e6 for s in stages], overlap, t_sent))
    if not rows:
        return [f"probe: no delivery could be joined ({missing} without server records)"]
    rows.sort(key=lambda r: r[0])
    p99 = rows[int(0.99 * (len(rows) - 1))][0]
    tail = [r for r in rows if r[0] >= p99]

    def q(xs: list[float], p: float) -> float:
        xs = sorted(xs)
        return xs[int(p * (len(xs) - 1))]

    out = [
        f"probe: {len(rows)} deliveries joined ({missing} not), p99 {p99 / 1e6:.1f} ms; slowest 1 %: {len(tail)}",
        f"  {'stage (ms)':<20} {'all p50':>8} {'all p99':>8} {'tail p50':>9} {'tail max':>9} {'tail: largest':>14}",
    ]
    largest = [max(range(len(STAGES)), key=lambda j: r[1][j]) for r in tail]
    for j, (name, _) in enumerate(STAGES):
        a = [r[1][j] for r in rows]
        t = [r[1][j] for r in tail]
        out.append(
            f"  {name:<20} {q(a, 0.5):8.2f} {q(a, 0.99):8.2f} {q(t, 0.5):9.2f} {max(t):9.2f}"
            f" {largest.count(j) / len(tail):13.0%}"
        )
    out.append(f"  {'overlapping':<20} {'all':>8} {'tail':>8}   (intervals in the window: count, longest ms)")
    for label, k in INTERVALS:
        share_all = sum(r[2][k] for r in rows) / len(rows)
        share_tail = sum(r[2][k] for r in tail) / len(tail)
        inside = [(x, y) for x, y in kinds[k] if y >= t0]
        longest = max(((y - x) / 1e6 for x, y in inside), default=0.0)
        out.append(f"  {label:<20} {share_all:8.1%} {share_tail:8.1%}   {len(inside)}, {longest:.1f}")
    # A stall delays every event published during it on every subscriber: episodes of the tail, by send time.
    episodes: list[list[int]] = []
    for sent_at in sorted(r[3] for r in tail):
        if episodes and sent_at - episodes[-1][1] <= 20_000_000:
            episodes[-1][1] = sent_at
            episodes[-1][2] += 1
        else:
            episodes.append([sent_at, sent_at, 1])
    out.append(
        "  tail episodes (sent within 20 ms of each other): "
        + ", ".join(f"+{(a - t0) / 1e9:.2f}s x{n} over {(b - a) / 1e6:.0f} ms" for a, b, n in episodes[:12])
    )
    return out
