"""Caps the number of open server streams so unary calls always find a worker thread."""

from __future__ import annotations

import threading

import grpc

from ..errors import ResourceExhausted
from ._handlers import behaviour, rebuild
from ._status import to_status


class StreamLimitInterceptor(grpc.ServerInterceptor):
    def __init__(self, max_streams: int):
        self.max_streams = max_streams
        self._open = 0
        self._lock = threading.Lock()

    @property
    def open_streams(self) -> int:
        return self._open

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or not (handler.unary_stream or handler.stream_stream):
            return handler
        return rebuild(handler, self._wrap(behaviour(handler)))

    def _wrap(self, fn):
        def limited(request, context):
            with self._lock:
                admitted = self._open < self.max_streams
                if admitted:
                    self._open += 1
            if not admitted:
                context.abort_with_status(
                    to_status(
                        ResourceExhausted(
                            f"the server holds its maximum of {self.max_streams} open streams; retry later",
                            reason="TOO_MANY_STREAMS",
                        )
                    )
                )
            try:
                yield from fn(request, context)
            finally:
                with self._lock:
                    self._open -= 1

        return limited
