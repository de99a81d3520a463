"""Caps the number of open server streams so unary calls always find a worker thread.

Anonymous streams (health Watch and reflection without a valid token: the services auth leaves open)
have their own small cap, apart from `max_streams`: probes and grpcurl sessions, however many, can
never lock authenticated subscribers and workers out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import grpc

from ..errors import ResourceExhausted
from ._handlers import behaviour, rebuild
from ._status import to_status


class _Slots:
    """A counted pool of stream slots."""

    def __init__(self, limit: int, what: str):
        self.limit = limit
        self.what = what
        self.open = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.open >= self.limit:
                return False
            self.open += 1
            return True

    def give(self) -> None:
        with self._lock:
            self.open -= 1


class StreamLimitInterceptor(grpc.ServerInterceptor):
    def __init__(
        self,
        max_streams: int,
        *,
        max_anonymous_streams: int = 0,
        is_anonymous: Callable[[grpc.HandlerCallDetails], bool] | None = None,
    ):
        self.max_streams = max_streams
        self._streams = _Slots(max_streams, "open streams")
        self._anonymous = _Slots(max_anonymous_streams, "anonymous (unauthenticated) streams")
        self._is_anonymous = is_anonymous

    @property
    def open_streams(self) -> int:
        return self._streams.open + self._anonymous.open

    @property
    def open_anonymous_streams(self) -> int:
        return self._anonymous.open

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or not (handler.unary_stream or handler.stream_stream):
            return handler
        anonymous = self._is_anonymous is not None and self._is_anonymous(handler_call_details)
        slots = self._anonymous if anonymous else self._streams
        return rebuild(handler, self._wrap(behaviour(handler), slots))

    def _wrap(self, fn, slots: _Slots):
        def limited(request, context):
            if not slots.take():
                context.abort_with_status(
                    to_status(
                        ResourceExhausted(
                            f"the server holds its maximum of {slots.limit} {slots.what}; retry later",
                            reason="TOO_MANY_STREAMS",
                        )
                    )
                )
            try:
                yield from fn(request, context)
            finally:
                slots.give()

        return limited
