"""Is grpc.aio cheaper than grpcio's threaded server? `python -m bench._aio_fanout [--seconds S] [--reps R]`.

Bare grpcio with generic handlers and bytes (no voltorch code), every part in its own process, loopback:

- **fan-out**: N subscribers (one grpc.aio client process, one channel each) hold a server stream; a
  separate publisher process calls a unary Publish at 1,000/s with a ~200-byte payload stamped with its
  send time; the server hands every payload to every stream, one message each. Server shapes: `sync`
  (`grpc.server`, a pool thread per stream blocking on its queue, as voltorch serves now), `aio-mig`
  (`grpc.aio.server`: Publish a sync handler in the migration pool that hands the payload to the loop
  with one `call_soon_threadsafe`, streams async generators on the loop: how voltorch would run on aio)
  and `aio` (the same with an async Publish). Reported: server CPU per delivered message (process CPU
  time / messages yielded in the window), delivered and published rates, p50/p99 publish -> receive.
- **unary**: 8 client threads, closed loop, a small echo: `sync` server; `aio-mig` (aio server, the
  handler sync in the migration pool, as voltorch's blocking handlers would run); `aio` (async handler).
  Reported: calls/s and server CPU per call. **commit**: the same, but the handler hands the request to
  one committer thread (as voltorch's group commit: it drains what is queued and completes each call's
  future) and waits for it: blocking on a `concurrent.futures.Future` in `sync` and `aio-mig`, awaiting
  it (`asyncio.wrap_future`: completed on the loop through `call_soon_threadsafe`) in `aio`.

Each (case, shape) is run `--reps` times, the shapes interleaved within each repetition. Prints one
table; exits 0 whatever the figures (a measurement, not a test).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import resource
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO

import grpc

SERVICE = "bench.Fan"
PUBLISH = f"/{SERVICE}/Publish"
SUBSCRIBE = f"/{SERVICE}/Subscribe"
ECHO = f"/{SERVICE}/Echo"
COMMIT = f"/{SERVICE}/Commit"
PAYLOAD_BYTES = 200
WARM_UP = bytes(8)  # the stamp of messages sent until every stream is open (not measured)
POLL_SECONDS = 0.25  # as servicers/_streams.POLL_SECONDS: how soon a sync stream notices its client left
OPTIONS = [("grpc.so_reuseport", 0)]
STREAM_SHAPES = ("sync", "aio-mig", "aio")
UNARY_SHAPES = ("sync", "aio-mig", "aio")


def _identity(b: bytes) -> bytes:
    return b


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class Counters:
    """Messages handed to grpc by the streams, and Publish calls taken (read by the stdin thread)."""

    def __init__(self) -> None:
        self.delivered = 0
        self.published = 0


class Committer:
    """One thread completing queued requests' futures, all that is ready per wake-up (a group commit with
    nothing to write: the hand-off to it and back is what is measured)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, daemon=True, name="committer").start()

    def submit(self, request: bytes) -> Future:
        fut: Future = Future()
        self._queue.put((fut, request))
        return fut

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for fut, request in batch:
                fut.set_result(request)


def _answer_stdin(counters: Counters, port: int) -> None:
    """One JSON line per stdin line: the process's CPU seconds and the counters; EOF ends the server."""
    print(json.dumps({"port": port}), flush=True)
    for _ in sys.stdin:
        print(
            json.dumps({"cpu": _cpu(), "delivered": counters.delivered, "published": counters.published}),
            flush=True,
        )


# --- the sync server: a pool thread per stream, as voltorch's grpc.server -------------------------------


def serve_sync() -> None:
    counters = Counters()
    subscribers: list[queue.SimpleQueue] = []
    lock = threading.Lock()

    def publish(request: bytes, context: grpc.ServicerContext) -> bytes:
        with lock:
            subs = list(subscribers)
        for q in subs:
            q.put(request)
        counters.published += 1
        return b""

    def subscribe(request: bytes, context: grpc.ServicerContext):
        q: queue.SimpleQueue = queue.SimpleQueue()
        with lock:
            subscribers.append(q)
        try:
            while context.is_active():
                try:
                    msg = q.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                counters.delivered += 1
                yield msg
        finally:
            with lock:
                subscribers.remove(q)

    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        return request

    committer = Committer()

    def commit(request: bytes, context: grpc.ServicerContext) -> bytes:
        return committer.submit(request).result()

    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Publish": grpc.unary_unary_rpc_method_handler(publish, _identity, _identity),
            "Subscribe": grpc.unary_stream_rpc_method_handler(subscribe, _identity, _identity),
            "Echo": grpc.unary_unary_rpc_method_handler(echo, _identity, _identity),
            "Commit": grpc.unary_unary_rpc_method_handler(commit, _identity, _identity),
        },
    )
    server = grpc.server(
        ThreadPoolExecutor(max_workers=768, thread_name_prefix="rpc"),  # voltorch's default max_workers
        handlers=[handler],
        maximum_concurrent_rpcs=2048,
        options=OPTIONS,
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    _answer_stdin(counters, port)
    server.stop(0.5).wait()


# --- the aio server: every stream on one event loop ------------------------------------------------------


def serve_aio(async_publish: bool) -> None:
    counters = Counters()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        subscribers: set[asyncio.Queue] = set()

        def fan_out(payload: bytes) -> None:
            for q in subscribers:
                q.put_nowait(payload)

        def publish_sync(request: bytes, context: grpc.ServicerContext) -> bytes:
            loop.call_soon_threadsafe(fan_out, request)  # one hand-off per publish, whatever N
            counters.published += 1
            return b""

        async def publish_async(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            fan_out(request)
            counters.published += 1
            return b""

        async def subscribe(request: bytes, context: grpc.aio.ServicerContext):
            q: asyncio.Queue = asyncio.Queue()
            subscribers.add(q)
            try:
                while True:
                    msg = await q.get()
                    counters.delivered += 1
                    yield msg
            finally:
                subscribers.discard(q)

        def echo_sync(request: bytes, context: grpc.ServicerContext) -> bytes:
            return request

        async def echo_async(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return request

        committer = Committer()

        def commit_sync(request: bytes, context: grpc.ServicerContext) -> bytes:
            return committer.submit(request).result()

        async def commit_async(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return await asyncio.wrap_future(committer.submit(request))

        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Publish": grpc.unary_unary_rpc_method_handler(
                    publish_async if async_publish else publish_sync, _identity, _identity
                ),
                "Subscribe": grpc.unary_stream_rpc_method_handler(subscribe, _identity, _identity),
                "Echo": grpc.unary_unary_rpc_method_handler(
                    echo_async if async_publish else echo_sync, _identity, _identity
                ),
                "Commit": grpc.unary_unary_rpc_method_handler(
                    commit_async if async_publish else commit_sync, _identity, _identity
                ),
            },
        )
        server = grpc.aio.server(
            migration_thread_pool=ThreadPoolExecutor(max_workers=768, thread_name_prefix="rpc"),
            handlers=[handler],
            maximum_concurrent_rpcs=2048,
            options=OPTIONS,
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        await loop.run_in_executor(None, _answer_stdin, counters, port)
        await server.stop(0.5)

    asyncio.run(main())


# --- clients ----------------------------------------------------------------------------------------------


def subscribe_client(target: str, n: int) -> None:
    """N streams on one loop; prints "ready" once all are open, then on stdin EOF one JSON line of
    latencies (ms, publish stamp -> read) and the count."""

    async def main() -> None:
        channels = [grpc.aio.insecure_channel(target, options=OPTIONS) for _ in range(n)]
        lat: list[float] = []
        calls = [ch.unary_stream(SUBSCRIBE, _identity, _identity)(b"") for ch in channels]
        await asyncio.gather(*(ch.channel_ready() for ch in channels))

        async def read(call) -> None:
            try:
                while (msg := await call.read()) is not grpc.aio.EOF:
                    if msg[:8] != WARM_UP:
                        lat.append((time.monotonic_ns() - int.from_bytes(msg[:8], "big")) / 1e6)
            except (grpc.aio.AioRpcError, asyncio.CancelledError):
                pass

        readers = [asyncio.ensure_future(read(c)) for c in calls]
        loop = asyncio.get_running_loop()
        print("ready", flush=True)
        await loop.run_in_executor(None, sys.stdin.read)
        for c in calls:
            c.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        print(json.dumps({"n": len(lat), "lat": lat}), flush=True)
        for ch in channels:
            await ch.close()

    asyncio.run(main())


def publish_client(target: str, rate: float, seconds: float) -> None:
    """Unary Publish at `rate`/s on a fixed schedule (late calls go at once); one JSON line at the end.
    Rate 0: one warm-up message (not measured) per line on stdin, until EOF."""
    pad = b"x" * (PAYLOAD_BYTES - 8)
    with grpc.insecure_channel(target, options=OPTIONS) as ch:
        call = ch.unary_unary(PUBLISH, _identity, _identity)
        if rate == 0:
            for _ in sys.stdin:
                call(WARM_UP + pad)
                print("sent", flush=True)
            return
        call(WARM_UP + pad)  # connected before the clock starts
        start = time.monotonic()
        sent = 0
        total = int(rate * seconds)
        while sent < total:
            due = start + sent / rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)  # pacing an open-loop schedule
            call(time.monotonic_ns().to_bytes(8, "big") + pad)
            sent += 1
        print(json.dumps({"sent": sent, "seconds": time.monotonic() - start}), flush=True)


def unary_client(target: str, method: str, threads: int, seconds: float) -> None:
    """`threads` closed loops of `method` for `seconds`; one JSON line with the calls made."""
    payload = b"y" * 100
    with grpc.insecure_channel(target, options=OPTIONS) as ch:
        call = ch.unary_unary(method, _identity, _identity)
        call(payload)
        go = threading.Event()
        counts = [0] * threads
        end = [0.0]

        def loop(i: int) -> None:
            go.wait()
            while time.monotonic() < end[0]:
                call(payload)
                counts[i] += 1

        workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        print("ready", flush=True)
        sys.stdin.readline()
        end[0] = time.monotonic() + seconds
        go.set()
        for w in workers:
            w.join()
        print(json.dumps({"calls": sum(counts)}), flush=True)


# --- the parent -------------------------------------------------------------------------------------------


class Child:
    """One role of this module in its own process, talked to by lines on its stdin and stdout."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench._aio_fanout", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in: IO[str] = self.proc.stdin
        self._out: IO[str] = self.proc.stdout

    def send(self, line: str = "") -> None:
        self._in.write(line + "\n")
        self._in.flush()

    def read(self) -> str:
        return self._out.readline()

    def finish(self) -> None:
        """Closes its stdin (the end of its input: it finishes and exits), leaving its stdout readable."""
        self._in.close()

    def wait(self) -> None:
        self.proc.wait(timeout=30)


class Server(Child):
    def __init__(self, shape: str):
        super().__init__("serve", shape)
        self.target = f"127.0.0.1:{json.loads(self.read())['port']}"

    def sample(self) -> dict:
        self.send()
        return json.loads(self.read())

    def close(self) -> None:
        self.finish()
        self.wait()


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def run_fanout(shape: str, n: int, rate: float, seconds: float) -> dict:
    srv = Server(shape)
    try:
        subs = Child("subscribe", srv.target, str(n))
        assert subs.read().strip() == "ready"
        # Warm-up messages until every stream has had one (the streams are open on the server), bounded.
        warm = Child("publish", srv.target, "0", "0")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            s = srv.sample()
            if s["delivered"] >= n * s["published"] > 0:
                break
            warm.send()
            warm.read()
            time.sleep(0.05)  # polling the server's counter, bounded
        else:
            raise RuntimeError(f"{n} streams not open after 20 s")
        warm.finish()
        warm.wait()
        time.sleep(0.3)
        before = srv.sample()
        pub = Child("publish", srv.target, str(rate), str(seconds))
        pub.finish()
        pub_out = json.loads(pub.read())
        pub.wait()
        after = srv.sample()
        # Let a backlog drain (bounded) so latencies of late messages are counted, not dropped.
        expected = before["delivered"] + pub_out["sent"] * n
        drain_until = time.monotonic() + 5
        while srv.sample()["delivered"] < expected and time.monotonic() < drain_until:
            time.sleep(0.05)
        subs.finish()
        sub_out = json.loads(subs.read())
        subs.wait()
    finally:
        srv.close()
    delivered = after["delivered"] - before["delivered"]
    lat = sub_out["lat"]
    return {
        "cpu_us_per_msg": (after["cpu"] - before["cpu"]) / max(delivered, 1) * 1e6,
        "delivered_per_s": delivered / pub_out["seconds"],
        "published_per_s": pub_out["sent"] / pub_out["seconds"],
        "p50_ms": _pct(lat, 0.5),
        "p99_ms": _pct(lat, 0.99),
        "received": len(lat),
        "expected": pub_out["sent"] * n,
    }


def run_unary(shape: str, method: str, threads: int, seconds: float) -> dict:
    srv = Server(shape)
    try:
        cli = Child("unary", srv.target, method, str(threads), str(seconds))
        assert cli.read().strip() == "ready"
        before = srv.sample()
        cli.send()
        out = json.loads(cli.read())
        after = srv.sample()
        cli.finish()
        cli.wait()
    finally:
        srv.close()
    calls = out["calls"]
    return {"per_s": calls / seconds, "cpu_us_per_call": (after["cpu"] - before["cpu"]) / max(calls, 1) * 1e6}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "serve":
        if argv[1] == "sync":
            serve_sync()
        else:
            serve_aio(async_publish=argv[1] == "aio")
        return 0
    if argv and argv[0] == "subscribe":
        subscribe_client(argv[1], int(argv[2]))
        return 0
    if argv and argv[0] == "publish":
        publish_client(argv[1], float(argv[2]), float(argv[3]))
        return 0
    if argv and argv[0] == "unary":
        unary_client(argv[1], argv[2], int(argv[3]), float(argv[4]))
        return 0
    p = argparse.ArgumentParser(prog="python -m bench._aio_fanout", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=5.0, help="measured window per run")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--rate", type=float, default=1000.0, help="publishes per second")
    p.add_argument("--subscribers", default="10,50")
    p.add_argument("--only", choices=["fanout", "unary", "commit"], help="one case only")
    args = p.parse_args(argv)
    load = os.getloadavg()[0]
    print(f"# grpcio {grpc.__version__}, load {load:.1f}, {args.seconds:g} s windows, {args.reps} reps")
    fan: dict[tuple[int, str], list[dict]] = {}
    uni: dict[tuple[str, str], list[dict]] = {}
    unary_cases = {"unary": ECHO, "commit": COMMIT}
    for rep in range(args.reps):
        if args.only in (None, "fanout"):
            for n in (int(x) for x in args.subscribers.split(",")):
                for shape in STREAM_SHAPES:
                    r = run_fanout(shape, n, args.rate, args.seconds)
                    fan.setdefault((n, shape), []).append(r)
                    print(
                        f"fanout rep {rep + 1} N={n:<3} {shape:8} srv µs/msg {r['cpu_us_per_msg']:6.1f}  "
                        f"delivered/s {r['delivered_per_s']:8.0f}  published/s {r['published_per_s']:6.0f}  "
                        f"p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  "
                        f"received {r['received']}/{r['expected']}",
                        flush=True,
                    )
        for case, method in unary_cases.items():
            if args.only not in (None, case):
                continue
            for shape in UNARY_SHAPES:
                r = run_unary(shape, method, 8, args.seconds)
                uni.setdefault((case, shape), []).append(r)
                print(
                    f"{case:6} rep {rep + 1} {shape:8} calls/s {r['per_s']:7.0f}  "
                    f"srv µs/call {r['cpu_us_per_call']:6.1f}",
                    flush=True,
                )
    print("\n# medians")
    for (n, shape), rs in fan.items():
        med = {
            k: statistics.median(r[k] for r in rs)
            for k in ("cpu_us_per_msg", "delivered_per_s", "p50_ms", "p99_ms")
        }
        print(
            f"fanout N={n:<3} {shape:8} srv µs/msg {med['cpu_us_per_msg']:6.1f}  delivered/s "
            f"{med['delivered_per_s']:8.0f}  p50 {med['p50_ms']:7.2f} ms  p99 {med['p99_ms']:7.2f} ms"
        )
    for (case, shape), rs in uni.items():
        print(
            f"{case:6} {shape:8} calls/s {statistics.median(r['per_s'] for r in rs):7.0f}  srv µs/call "
            f"{statistics.median(r['cpu_us_per_call'] for r in rs):6.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
