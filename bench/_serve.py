"""A benchmark server in its own process: `python -m bench._serve echo|voltorch [--db PATH] [--profile OUT]`.

Prints one JSON line `{"port": N}` once it is serving, then serves until stdin closes (the parent
exits or calls `ServerProcess.stop()`), then shuts down and, with --profile, writes merged cProfile
stats to OUT and their text summary to OUT + ".txt". Each line on stdin is answered with one JSON line:
`gc` with the garbage collector's pauses since the previous one (`GcPauses.take`); `usage` with
`{"switches": N}`, the process's context switches (all threads); `probe`, with BENCH_PROBE set, with
`{"path": P}`, a JSON file of the stage records since the previous one (`_probe`).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

ECHO_SERVICE = "bench.Echo"
UNARY = f"/{ECHO_SERVICE}/Unary"
STREAM = f"/{ECHO_SERVICE}/Stream"


def _identity(b: bytes) -> bytes:
    return b


def _unary(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request


def _stream(request: bytes, context: grpc.ServicerContext):
    """Yields `count` copies of the payload; the request is a 4-byte big-endian count then the payload."""
    count = int.from_bytes(request[:4], "big")
    payload = request[4:]
    for _ in range(count):
        yield payload


def encode_stream_request(count: int, payload: bytes) -> bytes:
    return count.to_bytes(4, "big") + payload


def echo_server(config) -> grpc.Server:
    """The bare-grpcio baseline: the same thread pool and limits as voltorch, no interceptors, bytes in/out."""
    handler = grpc.method_handlers_generic_handler(
        ECHO_SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(
                _unary, request_deserializer=_identity, response_serializer=_identity
            ),
            "Stream": grpc.unary_stream_rpc_method_handler(
                _stream, request_deserializer=_identity, response_serializer=_identity
            ),
        },
    )
    server = grpc.server(
        ThreadPoolExecutor(max_workers=config.max_workers, thread_name_prefix="rpc"),
        handlers=[handler],
        maximum_concurrent_rpcs=config.max_concurrent_rpcs,
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    return server


class GcPauses:
    """The collector's pauses (every collection holds the GIL: nothing else in the server runs), noted
    through gc.callbacks: a full collection over a large heap is a stall of every stream at once."""

    def __init__(self) -> None:
        self._began = 0.0
        self._reset()
        gc.callbacks.append(self._on_gc)

    def _reset(self) -> None:
        self.collections = 0
        self.full = 0  # generation 2
        self.longest = 0.0
        self.total = 0.0

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        pause = time.perf_counter() - self._began
        self.collections += 1
        self.full += info["generation"] == 2
        self.longest = max(self.longest, pause)
        self.total += pause

    def take(self) -> dict[str, float]:
        """Counts and pauses (ms) since the previous take."""
        out = {
            "collections": self.collections,
            "full": self.full,
            "max_ms": self.longest * 1e3,
            "total_ms": self.total * 1e3,
            "frozen": gc.get_freeze_count(),  # objects out of collections (heap.settle)
        }
        self._reset()
        return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench._serve")
    p.add_argument("kind", choices=["echo", "voltorch"])
    p.add_argument("--db", help="database file (voltorch)")
    p.add_argument("--profile", help="write cProfile stats of every thread here on exit")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from voltorch_server.config import load

    # VOLTORCH_* variables apply (e.g. VOLTORCH_DB_SYNCHRONOUS=FULL); the address and database do not.
    probe = None
    config = load(None, host="127.0.0.1", port=0, db=args.db or ":memory:", shutdown_grace=1.0)
    # Confined as `voltorch serve` confines itself (an older BENCH_SERVER_SRC tree has no such setting), and
    # so is the echo baseline: a bare grpcio server pays the same GIL hand-offs between cores.
    if hasattr(config, "cpu_affinity"):
        from voltorch_server import cpus

        cpus.apply(config.cpu_affinity, getattr(config, "cpu_affinity_recheck", 0.0))
    if args.kind == "echo":
        server = echo_server(config)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        stop = lambda: server.stop(1.0).wait()  # noqa: E731
    else:
        import voltorch_server

        if os.environ.get("BENCH_PROBE"):  # `python -m bench ... --probe`: stage timestamps (bench._probe)
            from . import _probe

            probe = _probe.Records()
            _probe.install(probe)
        from voltorch_server.app import VoltorchServer

        vs = VoltorchServer(config).start()
        # BENCH_SERVER_SRC may name a tree from before heap.settle; an import would not tell (the
        # editable install finds this tree's module), the tree's files do.
        if (Path(voltorch_server.__file__).parent / "heap.py").exists():
            from voltorch_server import heap

            heap.settle()  # as `voltorch serve` does
        port = vs.port
        stop = lambda: vs.stop(1.0)  # noqa: E731
    if args.profile:  # after start-up, so imports and migrations stay out of the profile
        from . import _profile

        _profile.enable()
    pauses = GcPauses()
    print(json.dumps({"port": port}), flush=True)
    for line in sys.stdin:  # ends at EOF: the parent is done with us
        if line.strip() == "gc":
            print(json.dumps(pauses.take()), flush=True)
        elif line.strip() == "usage":
            # Every thread's, in one system call: reading them thread by thread from outside (psutil)
            # took the driver 10-30 ms with 50 streams open, at the start of each measured window.
            ru = resource.getrusage(resource.RUSAGE_SELF)
            print(json.dumps({"switches": ru.ru_nvcsw + ru.ru_nivcsw}), flush=True)
        elif line.strip() == "probe":
            from . import _probe

            print(json.dumps({"path": _probe.dump(probe) if probe is not None else ""}), flush=True)
    stop()
    if args.profile:
        from . import _profile

        summary = _profile.dump(args.profile)
        with open(args.profile + ".txt", "w") as f:
            f.write(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
